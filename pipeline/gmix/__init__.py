"""The fitting engine: Gaussian mixtures, Jacobians, observations, rendering,
max-likelihood fits with priors (see DESIGN.md "Engine API")."""
from .gmix import GAUSS_DTYPE, GMix, GMixModel, GMixRangeError, make_gmix
from .jacobian import DiagonalJacobian, Jacobian
from .models import get_model
from .observation import MultiBandObsList, ObsList, Observation, get_mb_obs
from .maxlike import FitResult, fit_model
from .priors import (CenPrior, FlatPrior, GaussPrior, GPriorBA, JointPrior, LogNormalPrior,
                     TwoSidedErf, make_priors)
from .template import fit_psf_flux

try:  # PSF fitting and metacal live in modules of the PSF/metacal helper
    from .psf import fit_psf
except ImportError:  # pragma: no cover - until those modules exist
    pass
try:
    from .metacal import metacal
except ImportError:  # pragma: no cover
    pass
