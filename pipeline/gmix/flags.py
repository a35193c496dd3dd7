"""Flag bits, in one place for the whole pipeline.

Four families, each stored in its own output columns so the bit values may
overlap between families:

* engine result flags (``FitResult['flags']``, ``M_flags`` columns): why a fit
  of the engine failed;
* fitter flags (``flags`` column of ``model_fits``), as DES users know them;
* run-level flags (set while reading an object, high bits of ``flags``; also the
  ``obj_flags`` column);
* MOF flags (``M_mof_flags``).

Every constant's trailing comment says what it means: the documentation's flag
tables are generated from this file (``pipeline.docgen.flagref``).
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
PSF_FIT_FAILURE = 2**0        # no epoch of some band kept a PSF fit
GAL_FIT_FAILURE = 2**1        # a model fit failed (its M_flags say why)
PSF_FLUX_FIT_FAILURE = 2**2   # the PSF flux fit failed in some band (see psf_flags)
LOW_PSF_FLUX = 2**3           # reserved (DES value); not set by this pipeline
METACAL_FAILURE = 2**4        # a metacal fit failed or could not run (see mcal_flags)

# --- run-level flags ----------------------------------------------------------
OBJECT_IN_BLACKLIST = 2**24   # reserved (DES value); not set by this pipeline
BAD_OBJ = 2**25               # flagged in the --obj-flags file: not fitted
IMAGE_FLAGS = 2**26           # some band has no usable epoch (image flags, weights): not fitted
NO_CUTOUTS = 2**27            # no cutout in any band: not fitted
BOX_SIZE_TOO_BIG = 2**28      # stamp larger than max_box_size: not fitted
UTTER_FAILURE = 2**29         # an exception while reading or fitting (see OUT-diagnostics.jsonl)
NO_ATTEMPT = 2**30            # not fitted (the default of every flags column)

# --- MOF flags (M_mof_flags) ---------------------------------------------------
NBR_NOT_CONVERGED = 2**0           # a group neighbour's fit did not converge
NBR_BAD_FIT = 2**1                 # a group neighbour has no usable fit (masked, not subtracted)
NBR_NOT_FIT = 2**2                 # a group neighbour could not be fitted at all
NBR_SKIPPED_IN_CONV_CHECK = 2**3   # a group neighbour was left out of the convergence test
# bits 2**4 .. 2**7 are FOF-member bits
MOF_NOT_CONVERGED = 2**8           # this object's fit did not converge within mof.max_itr sweeps
MOF_SKIPPED_IN_CONV_CHECK = 2**9   # this object was left out of the convergence test

# --- default values (numbers that were not measured) ---------------------------
DEFVAL = -9999.0          # value of every number that was not measured
BIGVAL = 9999.0           # error of a number that was not measured


def flag_names(flags: int) -> list:
    """Names of the engine flag bits set in ``flags``."""
    return [name for bit, name in ENGINE_FLAG_NAMES.items() if flags & bit]
