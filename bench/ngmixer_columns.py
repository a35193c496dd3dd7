"""Compare megamixer's output columns with the ones ngmixer's own dtype code builds.

    python bench/ngmixer_columns.py --ngmixer /tmp/ref/ngmixer [--nband 3] [--python PY]

ngmixer (a checkout of esheldon/ngmixer, not installed) is py2-era and needs
ngmix, meds and esutil, which cannot be installed here.  Its dtype methods,
however, need only numpy: a child interpreter (``--python``, default this one)
imports ngmixer's modules with those packages replaced by inert placeholder
modules (and ``xrange`` = ``range``, ``dict.keys()`` a list where it is added to one), builds the fitter and ngmixer objects
without running their constructors' I/O, and calls the methods that make the
tables' dtypes: ``MOFNGMixer._get_dtype`` / ``NGMixer._get_dtype``,
``_get_epoch_dtype``, ``_get_nbrs_dtype``, ``MEDSImageIO.get_file_meta_data``
and the DES collation's ``DESConcat.pick_fields`` (on an empty table) and
``pick_epoch_fields``.  Nothing
from ngmixer is imported by this script itself.

For three configs (max: exp, dev, cm; metacal: gauss; MOF: exp, dev, cm) it
prints, per table, ngmixer's columns missing from megamixer's output, those
present with another type or shape, and the count of project-only columns.
megamixer's side comes from :mod:`pipeline.schema` (the declarations ngmixit
writes from); a one-band column of shape (1,) counts as a scalar, as FITS
stores both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# runs in the child interpreter: ngmixer's dtype code, printed as JSON
HARNESS = r'''
import builtins, importlib, importlib.abc, importlib.machinery, json, sys, types
import numpy

builtins.xrange = range
STUBBED = ("ngmix", "meds", "esutil", "galsim", "scipy", "fitsio", "yaml", "psutil",
           "matplotlib", "biggles", "images")

class Placeholder(types.ModuleType):
    """Any attribute is a new class (usable as a base, an exception, a callable)."""
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (Exception,), {"__init__": lambda self, *a, **k: None})
        setattr(self, name, value)
        return value

class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in STUBBED:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None
    def create_module(self, spec):
        mod = Placeholder(spec.name)
        mod.__path__ = []
        return mod
    def exec_module(self, module):
        pass

sys.meta_path.insert(0, Finder())
spec = json.loads(sys.argv[2])
pkg = types.ModuleType("ngmixer")
pkg.__path__ = [sys.argv[1] + "/ngmixer"]
sys.modules["ngmixer"] = pkg
bootfit = importlib.import_module("ngmixer.bootfit")
medsio = importlib.import_module("ngmixer.imageio.medsio")
ngmixing = importlib.import_module("ngmixer.ngmixing")
mofngmixing = importlib.import_module("ngmixer.mofngmixing")
desconcat = importlib.import_module("ngmixer.megamixer.desconcat")

def entries(dt):
    return [[d[0], numpy.dtype(d[1]).str[1:], list(d[2]) if len(d) > 2 else []]
            for d in numpy.dtype(dt).descr]

nband = spec["nband"]
conf = {"nband": nband, "fit_me_galaxy": True, "fit_coadd_galaxy": False,
        "psf_pars": {"model": spec["psf_model"], "ntry": 1, "fit_pars": {}},
        "fit_models": spec["models"], "model_pars": {m: {} for m in spec["models"]},
        "model_nbrs": spec["mof"], "make_plots": False, "replace_bad_pixels": False}
if spec["metacal"]:
    conf["metacal_pars"] = {"types": spec["metacal"], "step": 0.01}
cls = bootfit.MetacalNGMixBootFitter if spec["metacal"] else bootfit.MaxNGMixBootFitter
fitter = cls(conf)
io = object.__new__(medsio.MEDSImageIO)
io.conf = dict(conf, config_file="/runs/fit.yaml")
io.meds_meta_list = [numpy.zeros(1, dtype=[("magzp_ref", "f8")])] * nband
io.meds_files_full = [f"/data/tile-{b}-meds.fits" for b in range(nband)]
mixer = dict.__new__(mofngmixing.MOFNGMixer if spec["mof"] else ngmixing.NGMixer)
mixer.update(conf)
mixer.imageio = io
mixer.fitter = fitter
model = mixer._get_dtype()
out = {"model_fits": entries(model), "epoch_data": entries(mixer._get_epoch_dtype()),
       "meta_data": entries(io.get_file_meta_data().dtype)}
if spec["mof"]:
    out["nbrs_data"] = entries(mixer._get_nbrs_dtype())
concat = object.__new__(desconcat.DESMetacalConcat if spec["metacal"] else
                        desconcat.DESConcat)
concat.bands = [str(b) for b in range(nband)]
concat.nbands = nband
class Py2Dict(dict):
    def keys(self):            # py2: a list
        return list(super().keys())
concat.config = {"model_pars": Py2Dict({m: {} for m in spec["models"]})}
esutil = sys.modules["esutil"]
esutil.numpy_util = types.SimpleNamespace(copy_fields=lambda a, b: None)
try:
    collated = concat.pick_fields(numpy.zeros(0, dtype=model),
                                  {"magzp_ref": numpy.zeros(nband)})
    out["collated"] = entries(collated.dtype)
    epochs = numpy.ones(1, dtype=mixer._get_epoch_dtype())
    out["collated_epoch"] = entries(concat.pick_epoch_fields(epochs).dtype)
except Exception as err:       # its own code, e.g. one band: report, do not compare
    out["collated_error"] = f"{type(err).__name__}: {err}"
print(json.dumps(out))
'''

CONFIGS = {
    "max (exp, dev, cm)": {"fitter": "max", "models": ["exp", "dev", "cm"], "mof": False,
                           "metacal": [], "psf_model": "coellip3"},
    "metacal (gauss)": {"fitter": "metacal", "models": ["gauss"], "mof": False,
                        "metacal": ["noshear", "1p", "1m", "2p", "2m"], "psf_model": "gauss"},
    "mof (exp, dev, cm)": {"fitter": "mof", "models": ["exp", "dev", "cm"], "mof": True,
                           "metacal": [], "psf_model": "coellip3"},
}


def ngmixer_tables(ngmixer: str, python: str, spec: dict) -> dict:
    proc = subprocess.run([python, "-c", HARNESS, ngmixer, json.dumps(spec)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"ngmixer's dtype code failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def project_tables(spec: dict) -> dict:
    from pipeline.fitconfig import check_fit_config
    from pipeline.schema import collated_columns, fit_output_columns
    prior = {"cen": {"type": "normal2d", "width": 0.263}, "g": {"type": "ba", "sigma": 0.3},
             "T": {"type": "TwoSidedErf", "pars": [-10.0, 0.03, 1.0e6, 1.0e5]},
             "counts": {"type": "TwoSidedErf", "pars": [-1.0e4, 1.0, 1.0e9, 1.0e8]}}
    raw = {"fitter_type": spec["fitter"], "models": spec["models"],
           "model_pars": {m: prior for m in spec["models"]},
           "psf_pars": {"model": spec["psf_model"]}}
    if spec["mof"]:
        raw["model_nbrs"] = True
    if spec["metacal"]:
        raw["metacal_pars"] = {"types": spec["metacal"], "model": spec["models"][0]}
    conf = check_fit_config(raw)
    tables = fit_output_columns(conf, spec["nband"])
    collated = collated_columns(conf, spec["nband"])
    tables["collated"] = collated["model_fits"]
    tables["collated_epoch"] = collated["epoch_data"]
    return {name: [[c.name, c.fmt, list(c.shape)] for c in cols]
            for name, cols in tables.items()}


def _norm(shape: list) -> tuple:
    return () if list(shape) in ([], [1]) else tuple(shape)


def _same_type(a: str, b: str) -> bool:
    if a[0] in "SU" and b[0] in "SU":
        return True            # text either way (FITS stores both as ASCII)
    return a == b


def compare(ref: list, ours: list, known: set[str]) -> tuple[list, list, int]:
    """(missing, different type/shape, number of columns not in ``known``)."""
    mine = {n: (f, _norm(s)) for n, f, s in ours}
    missing, different = [], []
    for name, fmt, shape in ref:
        if name not in mine:
            missing.append(name)
        elif not (_same_type(fmt, mine[name][0]) and _norm(shape) == mine[name][1]):
            different.append(f"{name}: ngmixer {fmt}{list(_norm(shape))}, "
                             f"megamixer {mine[name][0]}{list(mine[name][1])}")
    extra = len(set(mine) - known)
    return missing, different, extra


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ngmixer", required=True, help="checkout of esheldon/ngmixer")
    p.add_argument("--nband", type=int, default=3)
    p.add_argument("--python", default=sys.executable,
                   help="interpreter (with numpy) that runs ngmixer's dtype code")
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(args.ngmixer, "ngmixer", "bootfit.py")):
        p.error(f"--ngmixer {args.ngmixer}: no ngmixer/bootfit.py there")
    total_missing = total_diff = 0
    for title, spec in CONFIGS.items():
        spec = dict(spec, nband=args.nband)
        ref = ngmixer_tables(args.ngmixer, args.python, spec)
        ours = project_tables(spec)
        print(f"== {title}, {args.nband} bands")
        if "collated_error" in ref:
            print(f"  collated       ngmixer's DES collation raised {ref.pop('collated_error')}")
        for table in ref:
            refcols = ref[table]
            known = {c[0] for c in refcols}
            if table == "meta_data":     # MEDS metadata columns come from the files
                refcols = [c for c in refcols if c[0] != "magzp_ref"]
            if table.startswith("collated"):      # what the DES collation adds
                base = {c[0] for c in ref["model_fits" if table == "collated"
                                          else "epoch_data"]}
                refcols = [c for c in refcols if c[0] not in base]
            missing, different, extra = compare(refcols, ours.get(table, []), known)
            total_missing += len(missing)
            total_diff += len(different)
            print(f"  {table:14s} ngmixer {len(refcols):3d} columns: {len(missing)} missing, "
                  f"{len(different)} with another type/shape; megamixer has {extra} more")
            for line in missing:
                print(f"      missing: {line}")
            for line in different:
                print(f"      differs: {line}")
    print(f"total: {total_missing} missing, {total_diff} different")
    return 1 if total_missing or total_diff else 0


if __name__ == "__main__":
    sys.exit(main())
