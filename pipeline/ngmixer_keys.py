"""ngmixer's config keys: what the project does with each.

ngmixer's fit, run and neighbour configs are accepted as they are. Before a
config is checked against the project's schema, every key ngmixer reads is
either

* translated to the project's key or value (``fit_models`` -> ``models``,
  ``fitter_type: max-ngmix-boot`` -> ``max``, ``region: mof``, ngmixer's prior
  formats, ``num_fofs_per_chunk`` -> ``chunksize``, ...),
* accepted as inert (bookkeeping, or a value that asks for what the project does
  anyway) and recorded, or
* refused with a problem naming the key, its value and what is supported, when
  the value asks for behaviour the project does not have.

Keys that are neither ngmixer's nor the project's stay for the schema to report
(with a suggestion). ``docs/ngmixer-configs.rst`` is the table of all of this.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

#: ngmixer fitter names the project runs, and what it runs them as
FITTERS = {"max-ngmix-boot": "max", "metacal-ngmix-boot": "metacal"}
#: ngmixer fitters the project does not have, and what they did
UNSUPPORTED_FITTERS = {
    "isamp-ngmix-boot": "importance sampling",
    "metacal-admom-boot": "metacal with adaptive moments",
    "deconv": "deconvolution moments",
    "metacal-deconv": "metacal with deconvolution moments",
    "metacal-deconv-psfbase": "metacal with deconvolution moments",
    "galsim-forcephot": "galsim forced photometry",
}
#: ngmixer ImageIO types; only the generic MEDS reader exists here
DES_IO_TYPES = ("meds-des-sv", "meds-des-sv-mof", "meds-des-y1", "meds-des-y3", "meds-wtg",
                "meds-hsc-dr1", "meds-simp-sim")
#: ngmixer collation classes the project's collate replaces (one output format)
CONCAT_TYPES = ("concat", "concat-des", "concat-metacal-des")

# Keys read only by ngmixer's DES/survey ImageIO classes (io_type meds-des-*):
# with io_type 'meds' ngmixer never read them, and neither does the project.
DES_IO_KEYS = ("read_wcs", "read_me_wcs", "flag_y1_stellarhalo_masked", "use_psf_rerun", "psf_rerun_version", "center_psf", "psf_s2n_checks",
               "extra_mask_flag_list", "tilings", "replacement_flags", "trim_psf")


@dataclass
class Translation:
    """A config in the project's keys, with what was done to ngmixer's keys."""

    data: dict
    notes: list[str] = field(default_factory=list)
    inert: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def keep_inert(self, name: str, value: Any, why: str) -> None:
        self.inert[name] = copy.deepcopy(value)
        self.notes.append(f"{name}: {value!r} accepted, {why}")

    def refuse(self, name: str, value: Any, why: str) -> None:
        self.problems.append(f"'{name}' is {value!r}: {why}")

    def record(self, text: str) -> dict:
        """What a loaded config keeps of its ngmixer origin (written to meta_data)."""
        return {"original": text, "notes": list(self.notes), "inert": copy.deepcopy(self.inert)}

    @property
    def translated(self) -> bool:
        return bool(self.notes or self.inert)


_SAME = object()


def _same(a: Any, b: Any) -> bool:
    """Equal, with booleans equal only to booleans (YAML's 0 is not false here)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _move(tr: Translation, old: str, new: str, value: Any = _SAME, note: str = "") -> None:
    """Rename ``old`` to the project's ``new`` (both given is a problem)."""
    popped = tr.data.pop(old, None)
    value = popped if value is _SAME else value
    if new in tr.data:
        tr.problems.append(f"'{old}' (ngmixer) and '{new}' are the same setting: give one")
        return
    tr.data[new] = value
    tr.note(note or f"{old} -> {new}")


def _flag(default: Any, why: str, supported: str) -> Callable[[Translation, str, Any], None]:
    """A key whose ngmixer default (or one of several equivalent values) the project
    matches; other values are refused."""
    defaults = default if isinstance(default, tuple) else (default,)

    def handle(tr: Translation, key: str, value: Any) -> None:
        tr.data.pop(key)
        if any(_same(value, d) for d in defaults):
            tr.keep_inert(key, value, why)
        else:
            tr.refuse(key, value, supported)
    return handle


def _inert(why: str) -> Callable[[Translation, str, Any], None]:
    def handle(tr: Translation, key: str, value: Any) -> None:
        tr.data.pop(key)
        tr.keep_inert(key, value, why)
    return handle


def _refuse(why: str) -> Callable[[Translation, str, Any], None]:
    def handle(tr: Translation, key: str, value: Any) -> None:
        tr.data.pop(key)
        tr.refuse(key, value, why)
    return handle


# ------------------------------------------------------------------ fit configs


def _fitter_type(tr: Translation, key: str, value: Any) -> None:
    if value in FITTERS:
        tr.data[key] = FITTERS[value]
        tr.note(f"fitter_type: {value} -> {FITTERS[value]}")
    elif value in UNSUPPORTED_FITTERS:
        tr.refuse(key, value, f"ngmixer's {UNSUPPORTED_FITTERS[value]} fitter is not supported "
                              f"(supported: {', '.join(FITTERS)}, or max, metacal, mof)")


def _imageio(tr: Translation, key: str, value: Any) -> None:
    if not isinstance(value, dict):
        return
    io = dict(value)
    io_type = io.get("io_type")
    if io_type in DES_IO_TYPES:
        tr.refuse("imageio.io_type", io_type, "survey-specific ngmixer ImageIO classes are not "
                                              "supported (supported: meds)")
    psfs = io.pop("psfs", None)
    if psfs is not None:
        ptype = psfs.get("type") if isinstance(psfs, dict) else psfs
        if ptype == "infile":
            if "psf_source" in io:
                tr.problems.append("'imageio.psfs' (ngmixer) and 'imageio.psf_source' are the "
                                   "same setting: give one")
            io["psf_source"] = "meds"
            tr.note("imageio.psfs: {type: infile} -> imageio.psf_source: meds")
            rest = {k: v for k, v in psfs.items() if k != "type"} if isinstance(psfs, dict) else {}
            if rest:
                tr.keep_inert("imageio.psfs", psfs, "options of in-file PSFs are not used")
        else:
            tr.refuse("imageio.psfs.type", ptype, "only PSF images stored in the MEDS file are "
                                                  "supported (supported: infile)")
    for sub in ("astrom", "image_type"):
        if sub in io:
            tr.keep_inert(f"imageio.{sub}", io.pop(sub),
                          "read only by ngmixer's DES ImageIO classes")
    tr.data[key] = io


def _region(tr: Translation, key: str, value: Any) -> None:
    if value == "mof":
        # ngmixer: raw weights, plus the uberseg weights that MOF uses for its first sweeps
        model_nbrs = tr.data.get("model_nbrs") or tr.data.get("fitter_type") == "mof"
        tr.data[key] = "uberseg" if model_nbrs else "weight"
        tr.note(f"region: mof -> {tr.data[key]} ("
                + ("uberseg until mof.min_useg_itr, raw weights after, as in ngmixer"
                   if model_nbrs else "ngmixer fits single objects with the raw weight")
                + ")")
    elif value == "seg_and_sky":
        tr.data[key] = "cweight"
        tr.note("region: seg_and_sky -> cweight")


def _checkpoints(tr: Translation, key: str, value: Any) -> None:
    tr.data.pop(key)
    if value is None:
        tr.keep_inert(key, value, "no checkpoint times given")
        return
    if not (isinstance(value, list) and value
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                    for v in value)):
        tr.refuse(key, value, "must be a list of checkpoint times in minutes, >= 0")
        return
    times = sorted(float(v) for v in value)
    gaps = [b - a for a, b in zip([0.0] + times, times) if b > a]
    seconds = 60.0 * min(gaps) if gaps else 0.0
    _move(tr, key, "checkpoint_seconds", seconds,
          note=f"checkpoints: {value} minutes -> checkpoint_seconds: {seconds:g} (a checkpoint "
               f"every shortest interval; ngmixer wrote one at each listed time)")


def _extra_mask_flags(tr: Translation, key: str, value: Any) -> None:
    _move(tr, key, "bmask_flags2check", 0 if value is None else value)


def _max_zero_weight_frac(tr: Translation, key: str, value: Any) -> None:
    if value == "one-over-side":
        tr.refuse(key, value, "a fraction depending on the stamp side is not supported "
                              "(supported: a number in [0, 1])")
        tr.data.pop(key)


def _use_coadd_prefix(tr: Translation, key: str, value: Any) -> None:
    tr.data.pop(key)
    if value and tr.data.get("fit_coadd_galaxy"):
        tr.refuse(key, value, "coadd fits are written under the model names, without a "
                              "'coadd_' prefix (supported: false)")
    else:
        tr.keep_inert(key, value, "only names coadd-fit columns, and no coadd fit is made")


def _collate(tr: Translation, key: str, value: Any) -> None:
    tr.data.pop(key)
    blinding = value.get("blinding") if isinstance(value, dict) else value
    if blinding is None:
        tr.keep_inert(key, value, "used by ngmixer's DES collation only to blind")
    else:
        tr.refuse(f"{key}.blinding", blinding, "blinding catalogues is not supported "
                                                "(supported: null)")


def _propagate_star_flags(tr: Translation, key: str, value: Any) -> None:
    if isinstance(value, dict):  # ngmixer's DES Y1 form; the project's key is a boolean
        tr.data.pop(key)
        tr.keep_inert(key, value, "read only by ngmixer's DES Y1/Y3 ImageIO classes")


def _prior(tr: Translation, where: str, slot: str, value: Any) -> Any:
    """One ngmixer prior in the project's form (None: dropped)."""
    if not isinstance(value, dict):
        return value
    out = dict(value)
    if slot == "cen" and "type" not in out:
        out["type"] = "normal2d"  # ngmixer reads only the width
        tr.note(f"{where}: no type -> normal2d (ngmixer reads only 'width')")
    ptype = str(out.get("type", ""))
    if ptype in ("gmixnd", "cosmos_exp", "cosmos_dev", "cosmos-sersic", "cosmos-exp",
                 "cosmos-dev"):
        tr.refuse(f"{where}.type", ptype, "ngmixer's fitted COSMOS / GMixND priors are not "
                                          "supported (use flat, gauss, lognormal, TwoSidedErf "
                                          "or ba)")
        return None
    if slot == "counts" and "repeat" in out:
        repeat = out.pop("repeat")
        if ptype.lower() == "lognormal" and "pars" in out:
            out["mean"], out["sigma"] = out.pop("pars")[:2]
        if not repeat:
            pars = out.pop("pars", None)
            if not isinstance(pars, list) or not all(isinstance(p, list) for p in pars):
                tr.refuse(f"{where}.pars", pars, "with repeat: false, a list of parameter "
                                                 "lists, one per band")
                return None
            per_band = [dict(out, pars=p) for p in pars]
            tr.note(f"{where}: repeat: false -> one prior per band")
            return per_band
        tr.note(f"{where}: repeat: true -> one prior for every band")
    return out


def _model_pars(tr: Translation, key: str, value: Any) -> None:
    if not isinstance(value, dict):
        return
    out = {}
    for model, slots in value.items():
        if not isinstance(slots, dict):
            out[model] = slots
            continue
        new = {}
        for slot, prior in slots.items():
            where = f"model_pars.{model}.{slot}"
            if slot in ("cen", "g", "T", "counts", "fracdev"):
                prior = _prior(tr, where, slot, prior)
                if prior is None and slots.get(slot) is not None:
                    continue
            new[slot] = prior
        out[model] = new
    tr.data[key] = out


def _sub_flags(tr: Translation, key: str, block: dict, table: tuple) -> None:
    """Sub-keys of ``block`` whose value (default) the project matches; others refused."""
    for sub, default, why in table:
        if sub in block:
            val = block.pop(sub)
            if _same(val, default):
                tr.keep_inert(f"{key}.{sub}", val, "the project's behaviour")
            else:
                tr.refuse(f"{key}.{sub}", val, f"{why} (supported: {default!r})")


def _metacal_pars(tr: Translation, key: str, value: Any) -> None:
    if not isinstance(value, dict):
        return
    mc = dict(value)
    _sub_flags(tr, key, mc, (
        ("symmetrize_psf", False, "symmetrising the PSF is not supported"),
        ("use_noise_image", False, "a separate noise image is not supported; fixnoise adds "
                                   "rotated noise"),
        ("analytic_psf", None, "an analytic reconvolution PSF is not supported (see "
                               "metacal_pars.psf)")))
    for sub in ("model_pars", "psf_pars"):
        if sub in mc:
            tr.refuse(f"{key}.{sub}", mc.pop(sub), f"separate metacal {sub} are not supported "
                      f"(metacal uses the top-level {sub} of its model)")
    if "nband" in mc:
        tr.keep_inert(f"{key}.nband", mc.pop("nband"), "the band count comes from the MEDS files")
    tr.data[key] = mc


def _max_pars(tr: Translation, key: str, value: Any) -> None:
    if not isinstance(value, dict):
        return
    mp = dict(value)
    _sub_flags(tr, key, mp, (
        ("use_fracdev_grid", False, "a grid search for fracdev is not supported"),
        ("fracdev_range", [0.0, 1.0], "cm's fracdev is clipped to [0, 1]"),
        ("TdByTe_range", None, "cm's TdByTe is not clipped")))
    tr.data[key] = mp


FIT_KEYS: dict[str, Callable[[Translation, str, Any], None]] = {
    "fitter_type": _fitter_type,
    "imageio": _imageio,
    "fit_models": lambda tr, key, value: _move(tr, key, "models"),
    "region": _region,
    "checkpoints": _checkpoints,
    "extra_mask_flags": _extra_mask_flags,
    "max_zero_weight_frac": _max_zero_weight_frac,
    "model_pars": _model_pars,
    "metacal_pars": _metacal_pars,
    "max_pars": _max_pars,
    "use_coadd_prefix": _use_coadd_prefix,
    "collate": _collate,
    "propagate_star_flags": _propagate_star_flags,
    "use_logpars": _flag(False, "the project fits T and fluxes linearly, as ngmixer's default",
                         "fits in log(T)/log(flux) are not supported (supported: false)"),
    "replace_cov": _flag(False, "covariances are the LM ones, as ngmixer's default",
                         "replacing the LM covariance by a numerical Hessian is not supported "
                         "(supported: false)"),
    "normalize_psf": _flag(True, "PSF fluxes use the PSF normalised to unit flux, as here",
                           "PSF fluxes with an unnormalised PSF are not supported "
                           "(supported: true)"),
    "pre_find_center": _flag(False, "no centre pre-search, as ngmixer's default",
                             "a centre pre-search is not supported (supported: false)"),
    "do_shear": _flag(False, "no shear sensitivities, as ngmixer's default",
                      "lensfit/B&A shear sensitivities are not supported (supported: false)"),
    "min_psf_s2n": _flag((None, float("-inf")), "no PSF-flux S/N cut, as ngmixer's default",
                         "a PSF-flux S/N cut before fitting is not supported (supported: null)"),
    "min_psf_model_s2n": _flag(None, "no PSF-model S/N cut, as ngmixer's default",
                               "a PSF-model S/N cut is not supported (supported: null)"),
    "model_nrbs_unmodmask": _flag("nbrs-seg", "failed neighbours are masked by their seg "
                                  "pixels, as here", "only seg masking of unmodelled "
                                  "neighbours is supported (supported: nbrs-seg)"),
    "guess_from_nbrs": _flag(True, "MOF fits from --mof-file start at the MOF parameters, "
                             "as here", "fits from --mof-file always start at the MOF "
                             "parameters (supported: true)"),
    "replace_bad_pixels": _flag(False, "masked pixels are not interpolated, as here",
                                "interpolating masked pixels before metacal is not supported "
                                "(supported: false)"),
    "ignore_zero_images": _flag(False, "all-zero images are not skipped, as ngmixer's "
                                "default", "skipping all-zero images is not supported "
                                "(supported: false)"),
    "symmetrize_weight": _flag(False, "weights are not symmetrised, as ngmixer's default",
                               "symmetrising weight maps is not supported (supported: false)"),
    "central_bmask_radius": _flag(None, "no central bmask test, as ngmixer's default",
                                  "dropping epochs with a masked centre is not supported "
                                  "(supported: null)"),
    "max_cutouts": _flag(None, "every epoch is used, as ngmixer's default",
                         "limiting the number of epochs is not supported (supported: null)"),
    "bmask_skip_flags": _flag(0, "no epoch is skipped for bmask bits", "skipping epochs by "
                              "bmask bits is not supported (use bmask_flags2check to zero "
                              "flagged pixels; supported: 0)"),
    "make_corrected_meds": _flag(False, "no corrected MEDS files, as ngmixer's default",
                                 "use ngmixer-meds-mof-nbrs-correct to write corrected MEDS "
                                 "files (supported: false)"),
    "target_noise": _refuse("adding noise to a target level is not supported"),
    "trim_image": _refuse("trimming stamps is not supported"),
    "max_bmask_frac": _refuse("ngmixer itself no longer supports it"),
    "symmetrize_bmask": _refuse("ngmixer itself no longer supports it"),
    "correct_meds": _refuse("use ngmixer-meds-mof-nbrs-correct to write neighbour-corrected "
                            "MEDS files"),
    "cov_pars": _inert("used by ngmixer only with replace_cov: true"),
    "isample_pars": _inert("used by ngmixer only by the isamp fitter"),
    "admom_pars": _inert("used by ngmixer only by the metacal-admom fitter"),
    "band_not_in_name": _inert("used by ngmixer only with correct_meds"),
    "verbose": _inert("logging is set with --log-level"),
    "prop_sat_starpix": _inert("named in ngmixer's README but read by none of its code"),
    **{k: _inert("read only by ngmixer's DES ImageIO classes (io_type meds-des-*); with "
                 "io_type meds ngmixer ignores it too") for k in DES_IO_KEYS},
}


def translate_fit(data: dict) -> Translation:
    """A fit config with ngmixer's keys translated (see the module docstring)."""
    tr = Translation(dict(data))
    ngmixer = data.get("fitter_type") in FITTERS or data.get("fitter_type") in UNSUPPORTED_FITTERS
    for key, handle in FIT_KEYS.items():
        if key in data and key in tr.data:
            handle(tr, key, tr.data[key])
    if ngmixer and "models" not in tr.data and isinstance(tr.data.get("model_pars"), dict):
        tr.data["models"] = list(tr.data["model_pars"])
        tr.note("models taken from the model_pars keys (ngmixer's default)")
    if ngmixer and tr.data.get("fitter_type") == "metacal" and tr.data.get("models"):
        mc = tr.data.setdefault("metacal_pars", {})
        if isinstance(mc, dict) and "model" not in mc and isinstance(tr.data["models"], list):
            mc["model"] = tr.data["models"][0]
            tr.note(f"metacal_pars.model: {mc['model']} (ngmixer's metacal fits its one model)")
    return tr


# ------------------------------------------------------------------ run configs

_ENV = re.compile(r"\$(\w+|\{[^}]*\})")


def expand_env(value: str) -> tuple[str, list[str]]:
    """``$VAR`` / ``${VAR}`` expanded; also the names of undefined variables."""
    missing = [m.group(1).strip("{}") for m in _ENV.finditer(value)
               if m.group(1).strip("{}") not in os.environ]
    return os.path.expandvars(value), missing


def _env_path(tr: Translation, key: str, new: str, value: Any) -> None:
    if isinstance(value, str):
        expanded, missing = expand_env(value)
        if missing:
            tr.refuse(key, value, f"environment variable {missing[0]} is not set")
            tr.data.pop(key)
            return
        value = expanded
    _move(tr, key, new, value)


def _concat_type(tr: Translation, key: str, value: Any) -> None:
    tr.data.pop(key)
    if value in CONCAT_TYPES:
        tr.keep_inert(key, value, "megamixit collate writes one format (ids, flags, fits, "
                                  "M_mag, M_flux_s2n, M_T_s2n, psf_mag)")
    else:
        tr.refuse(key, value, f"not supported (supported: {', '.join(CONCAT_TYPES)})")


RUN_KEYS: dict[str, Callable[[Translation, str, Any], None]] = {
    "ngmix_config": lambda tr, key, value: _env_path(tr, key, "fit_config", value),
    "num_fofs_per_chunk": lambda tr, key, value: _move(tr, key, "chunksize"),
    "concat_type": _concat_type,
}


def translate_run(data: dict) -> Translation:
    """A megamixit run config with ngmixer's keys translated.

    An ngmixer-style config (``num_fofs_per_chunk``) also gets ngmixer's defaults:
    the fit config ``$NGMIXER_CONFIG_DIR/ngmix_config/ngmix-<run>.yaml`` (or
    ``ngmix-<run>.yaml`` beside the run config) and the output folder
    ``$NGMIXER_OUTPUT_DIR`` (or the run config's folder).
    """
    tr = Translation(dict(data))
    ngmixer = "num_fofs_per_chunk" in data
    for key, handle in RUN_KEYS.items():
        if key in data:
            handle(tr, key, tr.data[key])
    run = data.get("run")
    if ngmixer and "fit_config" not in tr.data and isinstance(run, str):
        cdir = os.environ.get("NGMIXER_CONFIG_DIR")
        name = f"ngmix-{run}.yaml"
        tr.data["fit_config"] = os.path.join(cdir, "ngmix_config", name) if cdir else name
        tr.note(f"fit_config: {tr.data['fit_config']} (ngmixer's default for run '{run}')")
    if ngmixer and "output_dir" not in tr.data:
        tr.data["output_dir"] = os.environ.get("NGMIXER_OUTPUT_DIR", ".")
        tr.note(f"output_dir: {tr.data['output_dir']} (ngmixer's default)")
    return tr


# ------------------------------------------------------------------ nbrs configs


def translate_nbrs(data: dict) -> Translation:
    """ngmixer's neighbour config (``run`` plus a nested ``nbrs`` block) flattened."""
    tr = Translation(dict(data))
    if isinstance(tr.data.get("nbrs"), dict):
        block = tr.data.pop("nbrs")
        for key, value in block.items():
            if key in tr.data:
                tr.problems.append(f"'nbrs.{key}' (ngmixer) and '{key}' are the same setting: "
                                   f"give one")
            tr.data[key] = value
        tr.note("nbrs: {...} -> top-level keys")
    if "run" in tr.data:
        tr.keep_inert("run", tr.data.pop("run"), "a label; output names come from "
                                                 "--nbrs-file and --fof-file")
    return tr


def dump_record(record: dict) -> str:
    """A record as YAML text (for meta_data)."""
    return yaml.safe_dump(record, sort_keys=False)
