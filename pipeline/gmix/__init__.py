"""The fitting engine: Gaussian mixtures, Jacobians, observations, rendering,
max-likelihood fits with priors (reference: docs/api/gmix.rst)."""
from .gmix import GAUSS_DTYPE, GMix, GMixModel, GMixRangeError, make_gmix
from .jacobian import DiagonalJacobian, Jacobian
from .models import get_model
from .observation import MultiBandObsList, ObsList, Observation, get_mb_obs
from .maxlike import FitResult, fit_model
from .priors import (CenPrior, FlatPrior, GaussPrior, GPriorBA, JointPrior, LogNormalPrior,
                     TwoSidedErf, make_priors)
from .template import fit_psf_flux

from .psf import fit_psf, fit_psfs
from .metacal import make_metacal_obs, metacal
