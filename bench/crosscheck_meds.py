"""Optional cross-check of pipeline.meds against the reference MEDS package.

    python bench/crosscheck_meds.py --ref /tmp/ref/meds [--ref-python PY] [--dir D]

Needs a checkout of the reference package (``--ref``, importable from its
source tree, C extension built in place) and a Python that can run it
(``--ref-python``: numpy, fitsio, esutil; its maker needs a fitsio that writes
2-D stamps into 1-D HDUs, e.g. fitsio 1.2). Nothing of the reference is
imported by the project or its tests; this script imports it only in the
subprocesses it starts with ``--role``.

It builds a blended tile with the reference ``MEDSMaker`` and one with
``ngmixer-sim`` (the project's writer), fpacks both when ``fpack`` is on the
PATH, then calls every public reader method on every object and cutout of each
file with both readers (the project's region methods with ``reference=True``)
and compares the results exactly (values and dtypes). It also runs the
reference's ``validate_meds`` on each file and counts how far the project's own
region rules (``reference=False``) differ from the reference's.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import pickle
import shutil
import subprocess
import sys
from collections import Counter

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.abspath(__file__)
TYPES = ("image", "weight", "seg", "bmask", "ormask", "noise", "psf")
REGION_METHODS = ("get_cweight_cutout", "get_cweight_mosaic", "get_cweight_cutout_list",
                  "get_uberseg", "get_uberseg_list", "get_cseg_cutout", "get_cseg_mosaic",
                  "get_cseg_cutout_list", "interpolate_coadd_seg",
                  "interpolate_coadd_seg_mosaic")


# ------------------------------------------------------------ calling readers
def _plain(value):
    """A result in a form both interpreters pickle and compare: arrays stay arrays."""
    if isinstance(value, np.matrix):
        return ("matrix", np.asarray(value))
    if isinstance(value, np.void):
        return ("record", {n: np.asarray(value[n]).tolist() for n in value.dtype.names})
    if isinstance(value, np.ndarray) and value.dtype.names:
        return ("table", {n: np.asarray(value[n]).tolist() for n in value.dtype.names},
                value.dtype.names)
    if isinstance(value, dict):
        return ("dict", {k: float(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_plain(v) for v in value])
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, str):  # also numpy.str_
        return ("str", str(value))
    if isinstance(value, (np.generic, int, float, bool)):
        return ("scalar", type(value).__name__, np.asarray(value).item())
    return ("other", str(value).strip())


def _call(fn, *args, **kw):
    try:
        return _plain(fn(*args, **kw))
    except Exception as err:  # noqa: BLE001 - recording which builtin the error is
        kinds = [c.__name__ for c in (ValueError, OSError, KeyError, IndexError, TypeError)
                 if isinstance(err, c)]
        return ("error", kinds)


def dump_calls(m, region_kw: dict) -> dict:
    """Every public reader call on every object and cutout of an open MEDS file."""
    out = {"size": _plain(m.size), "has_psf": _plain(m.has_psf()), "cat": _plain(m.get_cat()),
           "image_info": _plain(m.get_image_info()), "meta": _plain(m.get_meta())}
    out["error/obj_range"] = _call(m.get_cutout, m.size, 0)
    out["error/column"] = _call(m.__getitem__, "nonesuch")
    for i in range(m.size):
        ncut = int(m["ncutout"][i])
        out[f"error/cut_range/{i}"] = _call(m.get_cutout, i, ncut)
        out[f"get_number/{i}"] = _call(m.get_number, i)
        for t in TYPES:
            out[f"get_cutout_list/{i}/{t}"] = _call(m.get_cutout_list, i, type=t)
            out[f"get_mosaic/{i}/{t}"] = _call(m.get_mosaic, i, type=t)
        out[f"get_psf_list/{i}"] = _call(m.get_psf_list, i)
        out[f"get_jacobian_list/{i}"] = _call(m.get_jacobian_list, i)
        for name in ("get_cweight_mosaic", "get_cweight_cutout_list", "get_uberseg_list",
                     "get_cseg_mosaic", "get_cseg_cutout_list", "interpolate_coadd_seg_mosaic"):
            out[f"{name}/{i}"] = _call(getattr(m, name), i, **region_kw)
        out[f"get_cweight_mosaic/{i}/restrict"] = _call(m.get_cweight_mosaic, i,
                                                        restrict_to_seg=True, **region_kw)
        for k in range(ncut):
            key = f"{i}/{k}"
            for t in TYPES:
                out[f"get_cutout/{key}/{t}"] = _call(m.get_cutout, i, k, type=t)
            for name in ("get_psf", "get_jacobian", "get_jacobian_matrix", "get_cutout_rowcol",
                         "get_source_info", "get_source_path"):
                out[f"{name}/{key}"] = _call(getattr(m, name), i, k)
            for name in ("get_cweight_cutout", "get_cseg_cutout", "interpolate_coadd_seg"):
                out[f"{name}/{key}"] = _call(getattr(m, name), i, k, **region_kw)
            out[f"get_cweight_cutout/{key}/restrict"] = _call(
                m.get_cweight_cutout, i, k, restrict_to_seg=True, **region_kw)
            for fast in (True, False):
                out[f"get_uberseg/{key}/fast={fast}"] = _call(m.get_uberseg, i, k, fast=fast,
                                                              **region_kw)
            for canon in (False, True):
                out[f"get_cseg_weight/{key}/canonical={canon}"] = _call(
                    m.get_cseg_weight, i, k, use_canonical_cen=canon)
    return out


# ------------------------------------------------------- roles (subprocesses)
def role_dump_reference(args) -> None:
    """Run in the reference's interpreter: its reader on ``--file``, and validate_meds."""
    sys.path.insert(0, args.ref)
    import meds

    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        meds.util.validate_meds(args.file)
    m = meds.MEDS(args.file)
    result = {"calls": dump_calls(m, {}), "validate_meds": report.getvalue(),
              "have_c_uberseg": bool(meds.meds._have_c_ubserseg)}
    m.close()
    with open(args.out, "wb") as fobj:
        pickle.dump(result, fobj, protocol=4)


def role_make_reference(args) -> None:
    """Run in the reference's interpreter: a blended tile built with its MEDSMaker."""
    sys.path.insert(0, args.ref)
    import fitsio
    import meds

    rng = np.random.RandomState(args.seed)
    shapes = [(160, 170), (150, 180), (170, 160)]
    # coadd, then two epochs rotated, sheared and shifted (CD in degrees/pixel)
    cds = [[[-0.263, 0.0], [0.0, 0.263]], [[-0.25, 0.06], [0.05, 0.27]],
           [[0.02, -0.26], [0.255, 0.03]]]
    headers = []
    for shape, cd, crpix in zip(shapes, cds, [(85.0, 80.0), (95.5, 70.3), (75.2, 88.8)]):
        headers.append({"NAXIS1": shape[1], "NAXIS2": shape[0], "CTYPE1": "RA---TAN",
                        "CTYPE2": "DEC--TAN", "CRVAL1": 30.0, "CRVAL2": -20.0,
                        "CRPIX1": crpix[0], "CRPIX2": crpix[1],
                        "CD1_1": cd[0][0] / 3600, "CD1_2": cd[0][1] / 3600,
                        "CD2_1": cd[1][0] / 3600, "CD2_2": cd[1][1] / 3600})
    import esutil as eu

    wcss = [eu.wcsutil.WCS({k.lower(): v for k, v in h.items()}) for h in headers]
    # objects: isolated ones and close pairs, well inside every image
    nobj = args.nobj
    centres = rng.uniform(40, 120, size=(nobj, 2))
    pairs = np.arange(1, nobj, 3)
    centres[pairs] = centres[pairs - 1] + rng.uniform(-5, 5, size=(pairs.size, 2))
    ra, dec = wcss[0].image2sky(centres[:, 1] + 1, centres[:, 0] + 1)
    radius = rng.uniform(2.5, 5.0, nobj)
    image_paths = []
    for i, (hdr, wcs, shape) in enumerate(zip(headers, wcss, shapes)):
        col, row = wcs.sky2image(ra, dec)
        rr, cc = np.mgrid[0:shape[0], 0:shape[1]]
        d2 = (rr[..., None] - (row - 1)) ** 2 + (cc[..., None] - (col - 1)) ** 2
        nearest = d2.argmin(axis=2)
        seg = np.where(d2.min(axis=2) < radius[nearest] ** 2, nearest + 1, 0).astype("i4")
        image = (100 * np.exp(-0.5 * d2 / 4.0).sum(axis=2)
                 + rng.normal(0, 1, shape)).astype("f4")
        weight = np.ones(shape, "f4")
        weight[rng.uniform(size=shape) < 0.01] = 0.0
        bmask = np.where(rng.uniform(size=shape) < 0.01, 2**rng.randint(0, 4, shape), 0)
        paths = {}
        for kind, arr in (("image", image), ("weight", weight), ("seg", seg),
                          ("bmask", bmask.astype("i4"))):
            paths[kind] = os.path.join(args.dir, f"ref-src{i}-{kind}.fits")
            fitsio.write(paths[kind], arr, header=hdr, clobber=True)
        image_paths.append(paths)
    plen = max(len(p) for paths in image_paths for p in paths.values())
    info = meds.util.get_image_info_struct(len(shapes), plen)
    for i, paths in enumerate(image_paths):
        for kind in ("image", "weight", "seg", "bmask"):
            info[f"{kind}_path"][i] = paths[kind]
            info[f"{kind}_ext"][i] = 0
        info["image_id"][i] = 100 + i
        info["magzp"][i] = 30.0
        info["position_offset"][i] = 1.0

    class GaussPSF:
        """A PSF whose size and centre vary with position, so stamps differ."""

        def __init__(self, k):
            self.k = k

        def get_rec(self, row, col):
            rr, cc = np.mgrid[0:21, 0:21] - 10.0
            sigma = 1.5 + 0.002 * row + 0.001 * col + 0.1 * self.k
            im = np.exp(-0.5 * (rr**2 + cc**2) / sigma**2)
            return (im / im.sum()).astype("f4")

        def get_center(self, row, col):
            return (10.0, 10.0)

    obj = meds.util.get_meds_input_struct(nobj, extra_fields=[("number", "i8")])
    obj["id"] = 5000 + np.arange(nobj)
    obj["number"] = np.arange(1, nobj + 1)
    obj["box_size"] = np.where(np.arange(nobj) % 2, 32, 48)
    obj["ra"], obj["dec"] = ra, dec
    meta = np.zeros(1, dtype=[("medsconf", "S10"), ("magzp_ref", "f8")])
    meta["medsconf"], meta["magzp_ref"] = "xcheck", 30.0
    maker = meds.MEDSMaker(obj, info, psf_data=[GaussPSF(k) for k in range(len(shapes))],
                           config={"cutout_types": ["weight", "seg", "bmask"],
                                   "psf": {"type": "gauss"}}, meta_data=meta)
    with contextlib.redirect_stdout(io.StringIO()):
        maker.write(args.out)


# ------------------------------------------------------------------- compare
def _same(a, b) -> tuple[bool, str]:
    """(equal, how they differ) for two _plain results."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False, "type"
        if a.shape != b.shape or not np.array_equal(a, b):
            return False, "values"
        if a.dtype != b.dtype:
            return False, f"dtype {a.dtype} vs {b.dtype}"
        return True, ""
    if isinstance(a, tuple) and isinstance(b, tuple) and a[:1] == b[:1] and a[0] in (
            "list", "tuple"):
        if len(a[1]) != len(b[1]):
            return False, "length"
        for x, y in zip(a[1], b[1]):
            ok, why = _same(x, y)
            if not ok:
                return False, why
        return True, ""
    if isinstance(a, tuple) and a[:1] == ("matrix",) and b[:1] == ("matrix",):
        return _same(a[1], b[1])
    if isinstance(a, tuple) and a[:1] == ("scalar",) and b[:1] == ("scalar",):
        return a[2] == b[2], "" if a[2] == b[2] else "values"
    return a == b, "" if a == b else "values"


def _pixel_diff(a, b) -> int:
    """Differing pixels between two array (or list-of-array) results."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape:
        return int(np.sum(a != b))
    if isinstance(a, tuple) and isinstance(b, tuple) and a[:1] == b[:1] == ("list",):
        return sum(_pixel_diff(x, y) for x, y in zip(a[1], b[1]))
    return 0


def compare_file(path: str, ref: dict) -> dict:
    """Project reader (reference rules) vs the reference dump; plus the project's own rules."""
    sys.path.insert(0, ROOT)
    from pipeline.meds import MEDS

    with MEDS(path) as m:
        mine = dump_calls(m, {"reference": True})
        own = dump_calls(m, {})
    matched, differ = Counter(), Counter()
    examples: dict[str, str] = {}
    for key, want in ref["calls"].items():
        method = key.split("/")[0] if not key.startswith("error/") else "/".join(
            key.split("/")[:2])
        ok, why = _same(mine.get(key), want)
        (matched if ok else differ)[method] += 1
        if not ok:
            examples.setdefault(method, f"{key}: {why}")
    own_diff = Counter()
    total = Counter()
    for key, value in own.items():
        method = key.split("/")[0]
        if method in REGION_METHODS or method == "get_uberseg":
            total[method] += 1
            if _pixel_diff(value, mine[key]):
                own_diff[method] += _pixel_diff(value, mine[key])
    # the reference's own two uberseg searches (C tree, python loop) on the same cutouts
    fast_slow = [_pixel_diff(v, ref["calls"][k.replace("fast=True", "fast=False")])
                 for k, v in ref["calls"].items() if k.endswith("fast=True")]
    return {"matched": matched, "differ": differ, "examples": examples,
            "own_rules_pixel_diff": own_diff, "validate_meds": ref["validate_meds"],
            "ref_fast_vs_slow": (sum(d > 0 for d in fast_slow), len(fast_slow), sum(fast_slow))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="source tree of the reference package")
    parser.add_argument("--ref-python", default=sys.executable,
                        help="interpreter that can import the reference (default: this one)")
    parser.add_argument("--dir", default="/tmp/crosscheck-meds")
    parser.add_argument("--nobj", type=int, default=40)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--role", choices=["make-ref", "dump-ref"], help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "make-ref":
        return role_make_reference(args)
    if args.role == "dump-ref":
        return role_dump_reference(args)

    os.makedirs(args.dir, exist_ok=True)
    ref_py = [args.ref_python, HERE, "--ref", os.path.abspath(args.ref), "--dir", args.dir,
              "--nobj", str(args.nobj), "--seed", str(args.seed)]
    env = dict(os.environ, PYTHONPATH=ROOT)
    made = os.path.join(args.dir, "refmaker-meds.fits")
    subprocess.run(ref_py + ["--role", "make-ref", "--out", made], check=True)
    subprocess.run([sys.executable, "-m", "pipeline.cli.sim", args.dir, "--tile", "XC",
                    "--nobj", str(args.nobj), "--bands", "r", "--nepoch", "3", "--seed",
                    str(args.seed), "--blend-frac", "0.6", "--log-level", "WARNING"],
                   check=True, env=env, capture_output=True)
    files = [made, os.path.join(args.dir, "XC-r-meds.fits")]
    if shutil.which("fpack"):
        for path in list(files):
            if os.path.exists(path + ".fz"):
                os.unlink(path + ".fz")
            subprocess.run(["fpack", path], check=True)
            files.append(path + ".fz")
    for path in files:
        out = path + ".refdump.pkl"
        subprocess.run(ref_py + ["--role", "dump-ref", "--file", path, "--out", out], check=True)
        with open(out, "rb") as fobj:
            ref = pickle.load(fobj)
        res = compare_file(path, ref)
        print(f"\n== {os.path.basename(path)} (reference C uberseg: {ref['have_c_uberseg']})")
        for method in sorted(set(res["matched"]) | set(res["differ"])):
            note = res["examples"].get(method, "")
            print(f"  {method:32s} {res['matched'][method]:5d} equal {res['differ'][method]:4d} "
                  f"differ  {note}")
        print("  project's own region rules vs the reference's (differing pixels): "
              + (", ".join(f"{k} {v}" for k, v in sorted(res["own_rules_pixel_diff"].items()))
                 or "none"))
        ncut, total, npix = res["ref_fast_vs_slow"]
        print(f"  reference uberseg fast=True vs fast=False: {ncut} of {total} cutouts differ "
              f"({npix} pixels)")
        checks = [line.strip() for line in res["validate_meds"].splitlines() if line.strip()]
        print("  reference validate_meds: " + " | ".join(checks))


if __name__ == "__main__":
    main()
