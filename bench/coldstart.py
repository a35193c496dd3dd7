"""Cold and warm start of ngmixit: wall time of a small run with an empty numba
cache folder (every kernel compiled) and again with the folder it filled.

Run: python bench/coldstart.py [--nobj 10] [--configs fit-max fit-metacal fit-mof]
     [--detail]
Per example config it prints the wall and CPU times (a fresh process each, as a
batch job starts; CPU time is the steadier figure on a shared machine), the
kernel specialisations compiled (numba's own internal helpers included) and
the seconds spent compiling them, and the peak memory (max RSS) of each run. --detail lists the
compiled specialisations of each cold run with their own compile seconds.
The simulated tile (2 bands, 3 epochs, half the objects blended) and its
neighbour/FoF files are made first in a temporary folder.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

CONFIGS = ("fit-max", "fit-metacal", "fit-mof")


def child(record: str, ngmixit_args: list) -> None:
    """Run ngmixit in this process, recording what numba compiles."""
    from pipeline.cli.ngmixit import main
    from pipeline.jitlog import CompileRecorder

    with CompileRecorder() as rec:
        main(ngmixit_args)
    with open(record, "w") as fobj:
        json.dump({"seconds": rec.seconds,
                   "compiled": [[c.name, c.signature, c.self_seconds, c.llvm_seconds]
                                for c in rec.compiled]},
                  fobj)


def timed_run(cmd: list, env: dict) -> tuple:
    """(wall seconds, CPU seconds, peak RSS in MB) of a child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"ngmixit failed ({proc.returncode}):\n{err[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0


def make_tile(work: str, nobj: int) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT)
    subprocess.run([sys.executable, "-m", "pipeline.cli.sim", work, "--tile", "C",
                    "--nobj", str(nobj), "--bands", "g,r", "--nepoch", "3", "--seed", "7",
                    "--blend-frac", "0.5", "--log-level", "WARNING"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    meds = [os.path.join(work, f"C-{b}-meds.fits") for b in "gr"]
    nbrs = os.path.join(work, "C-nbrs.fits")
    fofs = os.path.join(work, "C-fofs.fits")
    subprocess.run([sys.executable, "-m", "pipeline.cli.nbrs",
                    os.path.join(ROOT, "configs", "nbrs.yaml"), *meds, "--nbrs-file", nbrs,
                    "--fof-file", fofs, "--log-level", "WARNING"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return {"meds": meds, "nbrs": nbrs, "fofs": fofs}


def main(argv=None):
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "--child":
        return child(sys.argv[2], sys.argv[3:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nobj", type=int, default=10)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    ap.add_argument("--detail", action="store_true",
                    help="list the specialisations each cold run compiled")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="coldstart-") as work:
        tile = make_tile(work, args.nobj)
        print(f"ngmixit on {args.nobj} simulated objects (2 bands x 3 epochs), "
              f"a fresh process per run")
        print(f"{'':<12s} {'cold':>15s} {'warm':>15s} {'compiled cold':>18s} "
              f"{'compiled':>8s} {'peak MB':>17s}")
        print(f"{'config':<12s} {'wall s':>7s} {'cpu s':>7s} {'wall s':>7s} {'cpu s':>7s} "
              f"{'kernels':>8s} {'seconds':>9s} {'warm':>8s} {'cold / warm':>17s}")
        details = {}
        for name in args.configs:
            cache = os.path.join(work, f"cache-{name}")
            env = dict(os.environ, PYTHONPATH=ROOT, NUMBA_CACHE_DIR=cache)
            rows = []
            for phase in ("cold", "warm"):
                record = os.path.join(work, f"{name}-{phase}.json")
                cmd = [sys.executable, os.path.abspath(__file__), "--child", record,
                       os.path.join(ROOT, "configs", f"{name}.yaml"),
                       os.path.join(work, f"{name}-{phase}.fits"), *tile["meds"],
                       "--seed", "1", "--no-progress", "--log-level", "WARNING"]
                if name == "fit-mof":
                    cmd += ["--fof-file", tile["fofs"], "--nbrs-file", tile["nbrs"]]
                wall, cpu, peak = timed_run(cmd, env)
                with open(record) as fobj:
                    rows.append((wall, cpu, peak, json.load(fobj)))
            (cw, cc, cp, crec), (ww, wc, wp, wrec) = rows
            details[name] = crec["compiled"]
            print(f"{name:<12s} {cw:7.1f} {cc:7.1f} {ww:7.1f} {wc:7.1f} "
                  f"{len(crec['compiled']):8d} {crec['seconds']:9.1f} "
                  f"{len(wrec['compiled']):8d} {cp:7.0f} / {wp:<7.0f}")
        if args.detail:
            for name, compiled in details.items():
                print(f"\n{name}: specialisations compiled cold (own seconds, LLVM seconds)")
                for kname, sig, secs, llvm in sorted(compiled, key=lambda c: -c[2]):
                    sig = sig if len(sig) < 70 else sig[:67] + "..."
                    print(f"  {secs:6.2f} {llvm:6.2f}  {kname}{sig}")


if __name__ == "__main__":
    main()
