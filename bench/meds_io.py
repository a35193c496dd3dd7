"""Benchmark MEDS writing and reading: time and peak memory for a large file.

    python bench/meds_io.py [--gb 1.0] [--box 128] [--nimage 4] [--dir /tmp] [--keep]

Writes a MEDS file of about ``--gb`` GB of cutouts (image + weight) with
``write_meds`` from ``--nimage`` 2000x2000 float32 source images, then times
opening it and reads every cutout back. Each phase runs in its own subprocess so
its peak RSS (ru_maxrss) is its own; the figures printed are the phase's wall
time and its peak RSS above the RSS after imports and setup. ``--box 32 --gb
0.31`` gives a file of about 10,000 objects.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIDE = 2000


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _setup(args):
    from pipeline.meds import AffineWCS, SourceImage

    rng = np.random.default_rng(1)
    wcss = [AffineWCS(10.0, 0.0, SIDE / 2, SIDE / 2, 0.01 * i, 0.263, 0.263, -0.01 * i)
            for i in range(args.nimage)]
    images = [SourceImage(rng.normal(size=(SIDE, SIDE)).astype("f4"), wcs,
                          weight=np.ones((SIDE, SIDE), dtype="f4")) for wcs in wcss]
    # bytes per object: nimage cutouts x (image f4 + weight f4)
    nobj = int(args.gb * 2**30 / (args.nimage * args.box**2 * 8)) + 1
    rows = rng.uniform(args.box, SIDE - args.box, nobj)
    cols = rng.uniform(args.box, SIDE - args.box, nobj)
    cat = np.zeros(nobj, dtype=[("id", "i8"), ("ra", "f8"), ("dec", "f8"), ("box_size", "i8")])
    cat["id"] = np.arange(nobj)
    cat["ra"], cat["dec"] = wcss[0].image_to_sky(rows, cols)
    cat["box_size"] = args.box
    return cat, images


def phase_write(args) -> dict:
    from pipeline.meds import write_meds

    cat, images = _setup(args)
    rss0 = _maxrss_mb()
    t0 = time.perf_counter()
    write_meds(args.path, cat, images, clobber=True)
    return {"seconds": time.perf_counter() - t0, "peak_rss_above_setup_mb": _maxrss_mb() - rss0,
            "setup_rss_mb": rss0, "nobj": int(cat.size)}


def phase_read(args) -> dict:
    from pipeline.meds import MEDS

    opens = []
    for _ in range(10):  # opening reads the tables and checks the layout
        t0 = time.perf_counter()
        MEDS(args.path).close()
        opens.append(time.perf_counter() - t0)
    rss0 = _maxrss_mb()
    t0 = time.perf_counter()
    ncut = 0
    checksum = 0.0
    with MEDS(args.path) as m:
        for i in range(m.size):
            for k in range(int(m["ncutout"][i])):
                checksum += float(m.get_cutout(i, k)[0, 0])
                m.get_cutout(i, k, "weight")
                ncut += 1
    dt = time.perf_counter() - t0
    return {"seconds": dt, "cutouts": ncut, "us_per_cutout_pair": 1e6 * dt / max(ncut, 1),
            "open_ms_median": 1e3 * float(np.median(opens)), "open_ms_min": 1e3 * min(opens),
            "peak_rss_above_setup_mb": _maxrss_mb() - rss0, "setup_rss_mb": rss0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="cutout bytes to write (GB)")
    parser.add_argument("--box", type=int, default=128)
    parser.add_argument("--nimage", type=int, default=4)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--keep", action="store_true", help="keep the MEDS file")
    parser.add_argument("--phase", choices=["write", "read"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        result = phase_write(args) if args.phase == "write" else phase_read(args)
        print(json.dumps(result))
        return

    path = os.path.join(args.dir, f"bench-meds-{os.getpid()}.fits")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    base = [sys.executable, os.path.abspath(__file__), "--gb", str(args.gb), "--box",
            str(args.box), "--nimage", str(args.nimage), "--path", path]
    try:
        for phase in ("write", "read"):
            out = subprocess.run(base + ["--phase", phase], capture_output=True, text=True,
                                 env=env, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            if phase == "write":
                size_mb = os.path.getsize(path) / 2**20
                print(f"write: {size_mb:.0f} MB file, {res['nobj']} objects x {args.nimage} "
                      f"images, box {args.box}: {res['seconds']:.1f} s "
                      f"({size_mb / res['seconds']:.0f} MB/s); peak RSS +"
                      f"{res['peak_rss_above_setup_mb']:.1f} MB above setup "
                      f"({res['setup_rss_mb']:.0f} MB incl. source images)")
            else:
                print(f"open:  MEDS(path) {res['open_ms_median']:.1f} ms median, "
                      f"{res['open_ms_min']:.1f} ms min of 10 (tables read, layout checked)")
                print(f"read:  {res['cutouts']} image+weight cutout pairs in "
                      f"{res['seconds']:.1f} s ({res['us_per_cutout_pair']:.0f} us per pair); "
                      f"peak RSS +{res['peak_rss_above_setup_mb']:.1f} MB above imports "
                      f"({res['setup_rss_mb']:.0f} MB)")
    finally:
        if not args.keep and os.path.exists(path):
            os.unlink(path)
    print("(timings on a shared 2-core machine are noisy)")


if __name__ == "__main__":
    main()
