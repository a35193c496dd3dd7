"""Flag bits, in one place for the whole pipeline.

Each family is stored in its own output columns (:data:`FLAG_FAMILIES`), so bit
values may repeat across families (never within one). :data:`FLAG_DOCS`
describes every bit (value, meaning, where it is set); the documentation's flag
reference is rendered from these two, and a test keeps them complete.
"""

# model flags (FitResult["flags"])
NO_DATA = 2**0
BAD_JACOBIAN = 2**1
BAD_PSF = 2**2
BAD_GUESS = 2**3
LM_MAXIT = 2**4
LM_SINGULAR = 2**5
COV_NOT_POSDEF = 2**6
NONFINITE = 2**7
BAD_MODEL = 2**8
BAD_INPUT = 2**9
ZERO_FLUX = 2**10
BAD_ERRORS = 2**11
NO_CHI2PER = 2**12
AT_SIZE_BOUND = 2**13
MOF_UNCONVERGED = 2**14
SHAPE_AT_LIMIT = 2**15

ENGINE_FLAG_NAMES = {
    NO_DATA: "NO_DATA", BAD_JACOBIAN: "BAD_JACOBIAN", BAD_PSF: "BAD_PSF",
    BAD_GUESS: "BAD_GUESS", LM_MAXIT: "LM_MAXIT", LM_SINGULAR: "LM_SINGULAR",
    COV_NOT_POSDEF: "COV_NOT_POSDEF", NONFINITE: "NONFINITE", BAD_MODEL: "BAD_MODEL",
    BAD_INPUT: "BAD_INPUT", ZERO_FLUX: "ZERO_FLUX", BAD_ERRORS: "BAD_ERRORS",
    NO_CHI2PER: "NO_CHI2PER", AT_SIZE_BOUND: "AT_SIZE_BOUND",
    MOF_UNCONVERGED: "MOF_UNCONVERGED", SHAPE_AT_LIMIT: "SHAPE_AT_LIMIT",
}

# object flags: the fitters' bits, values as in the DES tools
PSF_FIT_FAILURE = 2**0
GAL_FIT_FAILURE = 2**1
PSF_FLUX_FIT_FAILURE = 2**2
LOW_PSF_FLUX = 2**3
METACAL_FAILURE = 2**4

# object flags: run-level bits, values as in the DES tools
OBJECT_IN_BLACKLIST = 2**24
BAD_OBJ = 2**25
IMAGE_FLAGS = 2**26
NO_CUTOUTS = 2**27
BOX_SIZE_TOO_BIG = 2**28
UTTER_FAILURE = 2**29
NO_ATTEMPT = 2**30

# MOF flags, ngmixer's values
NBR_NOT_CONVERGED = 2**0
NBR_BAD_FIT = 2**1
NBR_NOT_FIT = 2**2
NBR_SKIPPED_IN_CONV_CHECK = 2**3
FOFMEM_NOT_CONVERGED = 2**4
FOFMEM_BAD_FIT = 2**5
FOFMEM_NOT_FIT = 2**6
FOFMEM_SKIPPED_IN_CONV_CHECK = 2**7
MOF_NOT_CONVERGED = 2**8
MOF_SKIPPED_IN_CONV_CHECK = 2**9

# neighbour flags (NBR_HAS_NO_PSF_FIT: ngmixer's value)
NBR_NOT_MODELLED = 2**0
NBR_OFF_EPOCH = 2**1
NBR_HAS_NO_PSF_FIT = 2**30

# bits of {m}_flags that say the fit itself is unusable (set in {m}_max_flags too);
# the others describe the object's context (MOF convergence)
FIT_BITS = (NO_DATA | BAD_JACOBIAN | BAD_PSF | BAD_GUESS | LM_MAXIT | LM_SINGULAR
            | COV_NOT_POSDEF | NONFINITE | BAD_MODEL | BAD_INPUT | ZERO_FLUX | BAD_ERRORS
            | NO_CHI2PER | AT_SIZE_BOUND | SHAPE_AT_LIMIT)

# default values for numbers that were not measured
DEFVAL = -9999.0
BIGVAL = 9999.0

#: family -> (title, the columns that hold its bits)
FLAG_FAMILIES: dict[str, tuple[str, str]] = {
    "model": ("Model flags", "{m}_flags, {m}_max_flags, {m}_flags_r, psf_flags (per band), "
              "mcal_flags (with METACAL_FAILURE, 16, when a metacal type could not be "
              "fitted), psf_fit_flags of epoch_data (the PSF fit's)"),
    "object": ("Object flags", "flags of model_fits (the run-level bits also in obj_flags); "
               "psf_fit_flags holds PSF_FIT_FAILURE for an epoch without a PSF image"),
    "mof": ("MOF flags", "{m}_mof_flags"),
    "neighbour": ("Neighbour flags", "nbr_flags of nbrs_data and mof_pairs"),
}

_ENGINE = "the engine's fit (pipeline.gmix.maxlike.fit_model)"
_CHECK = "the fitters' check of every result (pipeline.fitters.base.fit_quality_flags)"

#: family -> [(name, value, meaning, where it is set)]
FLAG_DOCS: dict[str, list[tuple[str, int, str, str]]] = {
    "model": [
        ("NO_DATA", NO_DATA, "no pixel with positive weight in some band", _ENGINE),
        ("BAD_JACOBIAN", BAD_JACOBIAN, "singular or non-finite Jacobian", _ENGINE),
        ("BAD_PSF", BAD_PSF, "PSF mixture missing, without flux, non-finite or singular",
         _ENGINE),
        ("BAD_GUESS", BAD_GUESS, "the model is invalid at every starting point; also cm "
         "without good exp and dev fits", f"{_ENGINE}; the cm fit"),
        ("LM_MAXIT", LM_MAXIT, "Levenberg-Marquardt reached its iteration limit", _ENGINE),
        ("LM_SINGULAR", LM_SINGULAR, "normal matrix singular at every damping; also a "
         "singular fracdev fit (cm)", f"{_ENGINE}; the cm fit"),
        ("COV_NOT_POSDEF", COV_NOT_POSDEF, "covariance (inverse normal matrix) singular or "
         "not positive definite", _ENGINE),
        ("NONFINITE", NONFINITE, "non-finite parameters or chi2", _ENGINE),
        ("BAD_MODEL", BAD_MODEL, "unknown model or wrong number of parameters", _ENGINE),
        ("BAD_INPUT", BAD_INPUT, "inconsistent input (shapes, bands) or a fit that raised",
         _ENGINE),
        ("ZERO_FLUX", ZERO_FLUX, "PSF-flux template without signal (psf_flags)",
         "the PSF flux fit (pipeline.gmix.template)"),
        ("BAD_ERRORS", BAD_ERRORS, "a parameter, flux, T or shape error is not finite and "
         "positive, or the covariance is missing", _CHECK),
        ("NO_CHI2PER", NO_CHI2PER, "chi2 per degree of freedom not measured: no more "
         "weighted pixels than parameters", _CHECK),
        ("AT_SIZE_BOUND", AT_SIZE_BOUND, "T ended at a bound of the fit: within 0.1% of "
         "the range of a flat T prior or of the bounds given to the engine, or (MOF) within "
         "1% of its upper size bound, a Gaussian sigma of half the stamp, where the profile "
         "absorbed other light", f"{_ENGINE}; the MOF fitter (pipeline.fitters.mof)"),
        ("MOF_UNCONVERGED", MOF_UNCONVERGED, "MOF: the object's own fit did not pass the "
         "convergence test, was skipped in it, or the joint fit did not converge "
         "({m}_mof_flags has the detail); only in {m}_flags, not {m}_max_flags",
         "the MOF fitter (pipeline.fitters.mof)"),
        ("SHAPE_AT_LIMIT", SHAPE_AT_LIMIT, "|g| ended above 0.999, at the edge of the shape "
         "domain |g| < 1: the likelihood rises towards a line-like profile, as it does for "
         "small, faint objects in noise; the shape means nothing and T and flux tend to be "
         "low. Set after every starting point was tried (no shape prior can end there)",
         _ENGINE),
    ],
    "object": [
        ("PSF_FIT_FAILURE", PSF_FIT_FAILURE, "no epoch of some band has a PSF fit "
         "(psf_fit_flags of a failed epoch also holds this value)",
         "fitters (pipeline.fitters.maxlike.fit_psfs)"),
        ("GAL_FIT_FAILURE", GAL_FIT_FAILURE, "some model's {m}_max_flags is not 0",
         "fitters (max, metacal, MOF)"),
        ("PSF_FLUX_FIT_FAILURE", PSF_FLUX_FIT_FAILURE, "the PSF flux fit failed in some "
         "band (psf_flags)", "fitters (pipeline.fitters.maxlike.fit_psf_fluxes)"),
        ("LOW_PSF_FLUX", LOW_PSF_FLUX, "reserved (ngmixer's min_psf_s2n cut; not set)", "-"),
        ("METACAL_FAILURE", METACAL_FAILURE, "mcal_flags is not 0", "the metacal fitter"),
        ("OBJECT_IN_BLACKLIST", OBJECT_IN_BLACKLIST, "reserved (ngmixer's blacklist; not "
         "set)", "-"),
        ("BAD_OBJ", BAD_OBJ, "flagged in the --obj-flags file (or propagated star flags): "
         "not fitted", "the MEDS ImageIO"),
        ("IMAGE_FLAGS", IMAGE_FLAGS, "some band has no usable epoch after the image checks",
         "the MEDS ImageIO"),
        ("NO_CUTOUTS", NO_CUTOUTS, "no epoch cutout in any band", "the MEDS ImageIO"),
        ("BOX_SIZE_TOO_BIG", BOX_SIZE_TOO_BIG, "box_size above max_box_size: not fitted",
         "the MEDS ImageIO"),
        ("UTTER_FAILURE", UTTER_FAILURE, "reading or fitting raised an exception (recorded "
         "in the -diagnostics.jsonl file)", "ngmixit (pipeline.runner) and the fitters"),
        ("NO_ATTEMPT", NO_ATTEMPT, "not fitted (the default of every flags column)",
         "ngmixit (pipeline.runner)"),
    ],
    "mof": [
        ("NBR_NOT_CONVERGED", NBR_NOT_CONVERGED, "another member of the group did not "
         "converge", "the MOF fitter"),
        ("NBR_BAD_FIT", NBR_BAD_FIT, "another member has no usable fit (not drawn: its seg "
         "pixels were masked)", "the MOF fitter"),
        ("NBR_NOT_FIT", NBR_NOT_FIT, "another member was not fitted at all (flags from "
         "reading)", "the MOF fitter"),
        ("NBR_SKIPPED_IN_CONV_CHECK", NBR_SKIPPED_IN_CONV_CHECK, "another member was "
         "skipped in the convergence test", "the MOF fitter"),
        ("FOFMEM_NOT_CONVERGED", FOFMEM_NOT_CONVERGED, "some member of the group (this "
         "one included) did not converge", "the MOF fitter"),
        ("FOFMEM_BAD_FIT", FOFMEM_BAD_FIT, "some member of the group has no usable fit",
         "the MOF fitter"),
        ("FOFMEM_NOT_FIT", FOFMEM_NOT_FIT, "some member of the group was not fitted",
         "the MOF fitter"),
        ("FOFMEM_SKIPPED_IN_CONV_CHECK", FOFMEM_SKIPPED_IN_CONV_CHECK, "some member of the "
         "group was skipped in the convergence test", "the MOF fitter"),
        ("MOF_NOT_CONVERGED", MOF_NOT_CONVERGED, "this object did not converge (iterate: "
         "failed the test at the last sweep; joint: the joint fit stopped unconverged)",
         "the MOF fitter"),
        ("MOF_SKIPPED_IN_CONV_CHECK", MOF_SKIPPED_IN_CONV_CHECK, "this object's fit was "
         "not usable in the last sweep, so its convergence was not tested", "the MOF fitter"),
    ],
    "neighbour": [
        ("NBR_NOT_MODELLED", NBR_NOT_MODELLED, "the neighbour was not drawn on this stamp "
         "(no usable fit or PSF): its seg pixels were masked", "the MOF fitter"),
        ("NBR_OFF_EPOCH", NBR_OFF_EPOCH, "the neighbour has no cutout in this image: placed "
         "from its sky position, drawn with the PSF of the nearest member that has one",
         "the MOF fitter"),
        ("NBR_HAS_NO_PSF_FIT", NBR_HAS_NO_PSF_FIT, "no PSF mixture for the neighbour on this "
         "image (nbr_psf_fit_pars and the nbr_jac columns are -9999)", "the MOF fitter"),
    ],
}


def flag_names(flags: int) -> list:
    """Names of the model flag bits set in ``flags``."""
    return [name for bit, name in ENGINE_FLAG_NAMES.items() if flags & bit]
