"""Flag bits, in one place for the whole pipeline.

Three families, each stored in its own output column so the bit values may
overlap between families:

* engine result flags (``FitResult['flags']``, ``M_flags`` columns): why a fit
  of the engine failed;
* fitter flags (``flags`` column of ``model_fits``), as DES users know them;
* run-level flags (set by the driver, high bits of ``flags``);
* MOF flags (``M_mof_flags``).
"""

# --- engine result flags (FitResult["flags"]) --------------------------------
NO_DATA = 2**0            # no pixel with positive weight (all-zero weight / all non-finite)
BAD_JACOBIAN = 2**1       # singular or non-finite Jacobian
BAD_PSF = 2**2            # PSF mixture missing flux, non-finite or singular
BAD_GUESS = 2**3          # no valid starting point (model invalid at the guess)
LM_MAXIT = 2**4           # Levenberg-Marquardt hit the iteration limit
LM_SINGULAR = 2**5        # normal matrix could not be factorised at any damping
COV_NOT_POSDEF = 2**6     # covariance (inverse normal matrix) singular or not positive
NONFINITE = 2**7          # non-finite value in parameters or chi2
BAD_MODEL = 2**8          # unknown model / wrong number of parameters
BAD_INPUT = 2**9          # inconsistent input (shapes, bands) detected by the fitter
ZERO_FLUX = 2**10         # PSF-flux template has zero norm / no signal

ENGINE_FLAG_NAMES = {
    NO_DATA: "NO_DATA", BAD_JACOBIAN: "BAD_JACOBIAN", BAD_PSF: "BAD_PSF",
    BAD_GUESS: "BAD_GUESS", LM_MAXIT: "LM_MAXIT", LM_SINGULAR: "LM_SINGULAR",
    COV_NOT_POSDEF: "COV_NOT_POSDEF", NONFINITE: "NONFINITE", BAD_MODEL: "BAD_MODEL",
    BAD_INPUT: "BAD_INPUT", ZERO_FLUX: "ZERO_FLUX",
}

# --- fitter flags (model_fits "flags"), values as in the DES tools -----------
PSF_FIT_FAILURE = 2**0
GAL_FIT_FAILURE = 2**1
PSF_FLUX_FIT_FAILURE = 2**2
LOW_PSF_FLUX = 2**3
METACAL_FAILURE = 2**4

# --- run-level flags ----------------------------------------------------------
OBJECT_IN_BLACKLIST = 2**24
BAD_OBJ = 2**25
IMAGE_FLAGS = 2**26
NO_CUTOUTS = 2**27
BOX_SIZE_TOO_BIG = 2**28
UTTER_FAILURE = 2**29
NO_ATTEMPT = 2**30

# --- MOF flags (M_mof_flags) ---------------------------------------------------
NBR_NOT_CONVERGED = 2**0
NBR_BAD_FIT = 2**1
NBR_NOT_FIT = 2**2
NBR_SKIPPED_IN_CONV_CHECK = 2**3
# bits 2**4 .. 2**7 are FOF-member bits
MOF_NOT_CONVERGED = 2**8
MOF_SKIPPED_IN_CONV_CHECK = 2**9

# default values for numbers that were not measured
DEFVAL = -9999.0
BIGVAL = 9999.0


def flag_names(flags: int) -> list:
    """Names of the engine flag bits set in ``flags``."""
    return [name for bit, name in ENGINE_FLAG_NAMES.items() if flags & bit]
