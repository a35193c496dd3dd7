"""Large metacal shear-recovery study: prints m and c with errors.

Same simulation and estimator as tests/test_metacal.py (exponential galaxies
convolved with a Moffat PSF, 48x48, 0.263"/pix, T_gal = 1.5 T_psf, S/N 50,
applied shear 0.02, 90-degree rotated pairs and +-shear pairs sharing noise),
with enough objects to reach sigma_m <= 0.004 (about 1000; ~0.12 per object):

    python bench/metacal_shear.py [--nobj 1200] [--nproc 2] [--seed 1]
        [--psf fitgauss|gauss|dilate] [--model gauss]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.test_metacal import format_study, shear_estimate, shear_rows  # noqa: E402


def _chunk(args):
    nobj, seed, kw = args
    return shear_rows(nobj, seed, **kw)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nobj", type=int, default=1200)
    ap.add_argument("--nproc", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--psf", default="fitgauss", choices=["fitgauss", "gauss", "dilate"])
    ap.add_argument("--model", default="gauss")
    ap.add_argument("--s2n", type=float, default=50.0)
    args = ap.parse_args(argv)

    kw = dict(psf_mode=args.psf, model=args.model, s2n=args.s2n)
    nchunk = max(1, args.nproc) * 4
    sizes = [args.nobj // nchunk + (i < args.nobj % nchunk) for i in range(nchunk)]
    jobs = [(n, args.seed * 1000 + i, kw) for i, n in enumerate(sizes) if n > 0]
    t0 = time.time()
    if args.nproc > 1:
        with ProcessPoolExecutor(args.nproc) as ex:
            parts = list(ex.map(_chunk, jobs))
    else:
        parts = [_chunk(j) for j in jobs]
    rows = np.concatenate([p[0] for p in parts if len(p[0])])
    res = shear_estimate(rows)
    res.update(nfail=sum(p[1] for p in parts), seconds=time.time() - t0)
    print(f"metacal psf={args.psf} model={args.model} S/N={args.s2n:g}: {format_study(res)}")
    print(f"  |m| < 0.01: {abs(res['m']) < 0.01}; sigma_m <= 0.004: {res['sigma_m'] <= 0.004}; "
          f"c1, c2 within 3 sigma of 0: "
          f"{abs(res['c1']) < 3 * res['sigma_c1'] and abs(res['c2']) < 3 * res['sigma_c2']}")


if __name__ == "__main__":
    main()
