"""The fitting engine: Gaussian mixtures, Jacobians, observations, rendering,
max-likelihood fits with priors (see DESIGN.md "Engine API")."""
from .gmix import GAUSS_DTYPE, GMix, GMixModel, GMixRangeError, make_gmix
from .jacobian import DiagonalJacobian, Jacobian
from .models import get_model
from .observation import MultiBandObsList, ObsList, Observation, get_mb_obs
