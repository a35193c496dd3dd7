"""megamixit benchmarks; prints figures.

    python bench/megamixit.py collate [--rows 100000 --chunks 200]
    python bench/megamixit.py overhead [--chunks 40 --workers 2]
    python bench/megamixit.py sched [--sched-chunks 20 --workers 2 --systems local,slurm]
    python bench/megamixit.py run [--nobj 100 --workers 1,2]
    python bench/megamixit.py all      # everything, then one table

collate:  collate time for a tile of N rows in synthetic chunk files (model_fits
          with ~60 columns like a 3-model fit, epoch_data with 4 rows per object).
overhead: local scheduling overhead per chunk: jobs whose "fit" is a no-op
          stand-in that writes the chunk file, so the time is job-script start,
          python start and bookkeeping.
sched:    scheduling overhead per chunk through the megamixit CLI, local and SLURM
          (one job per chunk, and one job array):
          N chunks whose "fit" is a shell builtin writing an empty output file;
          each job stamps its own start and end, so
          overhead per chunk = (submit-to-all-done x slots - sum of the jobs' own
          runtimes) / N, where slots = workers (local) or the node's CPUs (SLURM).
          SLURM uses the project's test cluster (tests/slurm/cluster.sh, started
          here if it is not up, and stopped again after).
run:      wall time of a 2-tile run (ngmixer-sim tiles, real ngmixit jobs,
          local system) for each worker count, and the speed-up.
Timings on a shared machine are noisy: repeat and take the best.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fitsio
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.cli.common import run_cli  # noqa: E402
from pipeline.cli.megamixit import main as megamixit  # noqa: E402
from pipeline.megamixer.collate import collate_tile  # noqa: E402
from pipeline.megamixer.layout import RunLayout  # noqa: E402
from pipeline.megamixer.tilerecord import TileRecord  # noqa: E402
from pipeline.output import write_fit_output  # noqa: E402
from tests.test_megamixit_support import (chunk_provenance, epoch_rows,  # noqa: E402
                                          fake_ngmixit_cmds, make_inputs, meta_row,
                                          model_rows)

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
#: (benchmark, figure, detail) rows for the final table
TABLE: list[tuple[str, str, str]] = []


def _wide_rows(ids: np.ndarray, nband: int) -> np.ndarray:
    """model_fits rows with the columns of a real exp+dev+cm fit (configs/fit-max.yaml)."""
    from pipeline.columns import dtype_of
    from pipeline.schema import columns_for_config
    base = model_rows(ids, nband)
    dtype = dtype_of(columns_for_config(REPO / "configs" / "fit-max.yaml",
                                        nband)["model_fits"])
    out = np.zeros(len(ids), dtype=dtype)
    for n in out.dtype.names:
        if n in base.dtype.names:
            out[n] = base[n]
        elif not n.endswith("flags"):
            out[n] = 1.0
    return out


def bench_collate(rows: int, nchunks: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inp = make_inputs(tmp, {"BIG": rows}, chunksize=-(-rows // nchunks))
        assert run_cli(megamixit, ["setup", str(inp["run_config"]), str(inp["tiles"]),
                                   "--log-level", "WARNING"]) == 0
        layout = RunLayout(inp["run_dir"], "run1")
        rec = TileRecord.load(layout.tile_record("BIG"))
        ids = inp["ids"]["BIG"]
        t0 = time.perf_counter()
        for a, b in rec.ranges:
            # what ngmixit writes: provenance header and checksums
            write_fit_output(str(layout.chunk_file("BIG", a, b)), _wide_rows(ids[a:b + 1], 2),
                             epoch_rows(ids[a:b + 1], 2), meta_row(["g", "r"]), None,
                             chunk_provenance(rec, a, b))
        t_write = time.perf_counter() - t0
        best = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            s = collate_tile(layout, rec)
            best = min(best, time.perf_counter() - t0)
        size = layout.collated("BIG").stat().st_size / 2**20
        ncol = len(fitsio.FITS(str(layout.collated("BIG")))["model_fits"].get_colnames())
        print(f"collate: {s.nobj} rows x {ncol} columns from {len(rec.chunks)} chunks "
              f"({size:.0f} MB): best of 3 {best:.2f} s "
              f"({best / len(rec.chunks) * 1e3:.1f} ms/chunk); writing the chunks took "
              f"{t_write:.1f} s")
        TABLE.append((f"collate {s.nobj} rows", f"{best:.2f} s",
                      f"{ncol} columns, {len(rec.chunks)} chunks, {size:.0f} MB, best of 3"))


def bench_overhead(nchunks: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inp = make_inputs(tmp, {"T": nchunks}, chunksize=1,
                          extra={"extra_cmds": fake_ngmixit_cmds(tmp), "workers": workers})
        args = [str(inp["run_config"]), str(inp["tiles"]), "--log-level", "WARNING"]
        assert run_cli(megamixit, ["setup"] + args) == 0
        t0 = time.perf_counter()
        assert run_cli(megamixit, ["run"] + args) == 0
        dt = time.perf_counter() - t0
        # the stand-in's own cost: python start + numpy/fitsio import + one small write
        script = tmp / "fake_ngmixit.py"
        env = dict(os.environ, MMX_REPO=str(REPO))
        chunk = tmp / "one"
        chunk.mkdir()
        t1 = time.perf_counter()
        subprocess.run([sys.executable, str(script), "c", "o.fits",
                        str(inp["inputs"] / "T-g-meds.fits"), "--fof-range", "0,0"],
                       cwd=chunk, env=env, check=True)
        single = time.perf_counter() - t1
        print(f"local overhead: {nchunks} trivial chunks on {workers} worker(s): {dt:.2f} s "
              f"= {dt / nchunks * workers * 1e3:.0f} ms per chunk per worker; of which the "
              f"stand-in process itself takes {single * 1e3:.0f} ms")
        TABLE.append(("local, python stand-in chunks",
                      f"{dt / nchunks * workers * 1e3:.0f} ms/chunk/worker",
                      f"{nchunks} chunks, {workers} workers; stand-in alone "
                      f"{single * 1e3:.0f} ms"))


def bench_run(nobj: int, workers: list[int]) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    os.environ.update(env)
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sim = tmp / "sim"
        for k, tile in enumerate(("TA", "TB")):
            subprocess.run([sys.executable, "-m", "pipeline.cli.sim", str(sim), "--tile", tile,
                            "--nobj", str(nobj), "--bands", "g,r", "--nepoch", "2",
                            "--seed", str(10 + k), "--log-level", "WARNING"],
                           check=True, env=env)
        (tmp / "fit.yaml").write_text((REPO / "configs" / "fit-max.yaml").read_text())
        (tmp / "tiles.txt").write_text("TA\nTB\n")
        for w in workers:
            conf = {"run": f"w{w}", "fit_config": "fit.yaml", "bands": ["g", "r"],
                    "input_dir": "sim", "output_dir": "out", "chunksize": max(1, nobj // 4),
                    "seed": 5, "workers": w}
            (tmp / f"run{w}.yaml").write_text(yaml.safe_dump(conf))
            args = [str(tmp / f"run{w}.yaml"), str(tmp / "tiles.txt"), "--log-level",
                    "WARNING"]
            assert run_cli(megamixit, ["setup"] + args) == 0
            t0 = time.perf_counter()
            assert run_cli(megamixit, ["run"] + args) == 0
            times[w] = time.perf_counter() - t0
            assert run_cli(megamixit, ["collate"] + args) == 0
        same = True
        for tile in ("TA", "TB"):
            cats = [fitsio.read(str(tmp / "out" / f"w{w}" / tile / f"{tile}-w{w}.fits"),
                                ext="model_fits") for w in workers]
            names = [n for n in cats[0].dtype.names if "time" not in n]
            same &= all(np.array_equal(c[n], cats[0][n], equal_nan=c[n].dtype.kind == "f")
                        for c in cats[1:] for n in names)
    print(f"catalogues identical across worker counts (time columns aside): {same}")
    for w, t in times.items():
        print(f"2-tile run, {nobj} objects per tile, 8 chunks, {w} worker(s): {t:.1f} s "
              f"(speed-up vs {workers[0]} worker(s): {times[workers[0]] / t:.2f}x)")
        TABLE.append((f"2-tile run, {w} worker(s)", f"{t:.1f} s",
                      f"{nobj} obj/tile, 8 chunks, speed-up {times[workers[0]] / t:.2f}x; "
                      f"identical catalogues: {same}"))


# ---------------------------------------------------------------- scheduling overhead

# The chunk's "fit": a shell function shadowing python3 in the job script only; it
# writes an empty chunk file ($4 of "python3 -m pipeline.cli.ngmixit CONFIG OUT ...")
# and stamps its end; the extra command before it stamps the start.
TRIVIAL_CMDS = ["date +%s.%N > bench_t0",
                'python3() { : > "$4"; date +%s.%N > bench_t1; }']


def _start_slurm() -> tuple[Path, bool]:
    """The test cluster's folder, and whether this call started it."""
    folder = Path(os.environ.get("MEGAMIXER_SLURM_DIR", "/tmp/megamixer-slurm"))
    was_up = subprocess.run(["bash", str(CLUSTER), "status", str(folder)],
                            capture_output=True).returncode == 0
    subprocess.run(["bash", str(CLUSTER), "start", str(folder)], check=True,
                   capture_output=True)
    os.environ["SLURM_CONF"] = str(folder / "etc" / "slurm.conf")
    return folder, not was_up


def _slurm_cpus() -> int:
    out = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split()[0])


def _sched_one(label: str, nchunks: int, workers: int, tmp: Path) -> dict:
    """Submit ``nchunks`` trivial chunks with ``label`` (local, slurm or slurm-array);
    times from the chunk files."""
    system = label.split("-")[0]
    inp = make_inputs(tmp / label, {"S": nchunks}, chunksize=1,
                      extra={"system": system, "workers": workers,
                             "array": label.endswith("-array"),
                             "extra_cmds": TRIVIAL_CMDS})
    args = [str(inp["run_config"]), str(inp["tiles"]), "--log-level", "WARNING"]
    assert run_cli(megamixit, ["setup"] + args) == 0
    layout = RunLayout(inp["run_dir"], "run1")
    rec = TileRecord.load(layout.tile_record("S"))
    dirs = [layout.chunk_dir("S", a, b) for a, b in rec.ranges]
    t0 = time.time()
    assert run_cli(megamixit, ["run"] + args) == 0   # local: blocks until done
    t_submit = time.time() - t0
    deadline = time.monotonic() + 600
    while not all((d / "exit_status").exists() for d in dirs):   # slurm: poll files
        if time.monotonic() > deadline:
            raise SystemExit(f"{system}: chunks not done after 600 s")
        time.sleep(0.02)
    codes = [(d / "exit_status").read_text().strip() for d in dirs]
    if set(codes) != {"0"}:
        raise SystemExit(f"{system}: chunks failed: {codes}")
    t_done = max((d / "exit_status").stat().st_mtime for d in dirs) - t0
    own = [float((d / "bench_t1").read_text()) - float((d / "bench_t0").read_text())
           for d in dirs]
    first_start = min(float((d / "bench_t0").read_text()) for d in dirs) - t0
    slots = workers if system == "local" else _slurm_cpus()
    return {"t_submit": t_submit, "t_done": t_done, "own": float(np.sum(own)),
            "slots": slots, "first_start": first_start,
            "overhead": (t_done * slots - float(np.sum(own))) / nchunks}


def bench_sched(nchunks: int, workers: int, systems: list[str]) -> None:
    stop = None
    with tempfile.TemporaryDirectory(prefix="bench-mmx-sched-") as tmp:
        try:
            for system in systems:
                if system.startswith("slurm"):
                    if shutil.which("sbatch") is None or os.geteuid() != 0:
                        print("slurm: skipped (SLURM not installed or not root)")
                        continue
                    folder, started = _start_slurm()
                    stop = folder if started else stop
                r = _sched_one(system, nchunks, workers, Path(tmp))
                print(f"{system} scheduling: {nchunks} trivial chunks on {r['slots']} "
                      f"slot(s): run call {r['t_submit']:.2f} s, submit to all done "
                      f"{r['t_done']:.2f} s, first job started after "
                      f"{r['first_start'] * 1e3:.0f} ms, jobs' own time "
                      f"{r['own'] * 1e3:.0f} ms in total -> overhead "
                      f"{r['overhead'] * 1e3:.0f} ms per chunk per slot")
                TABLE.append((f"{system} scheduling overhead",
                              f"{r['overhead'] * 1e3:.0f} ms/chunk/slot",
                              f"{nchunks} trivial chunks, {r['slots']} slots, submit to "
                              f"all done {r['t_done']:.2f} s"))
        finally:
            if stop is not None:
                subprocess.run(["bash", str(CLUSTER), "stop", str(stop)],
                               capture_output=True)


def print_table() -> None:
    if not TABLE:
        return
    w0 = max(len(r[0]) for r in TABLE)
    w1 = max(len(r[1]) for r in TABLE)
    print(f"\nmegamixit benchmarks ({os.cpu_count()} cores, shared machine: noisy)")
    print(f"{'benchmark':<{w0}}  {'figure':>{w1}}  detail")
    for name, fig, detail in TABLE:
        print(f"{name:<{w0}}  {fig:>{w1}}  {detail}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("collate", "overhead", "sched", "run", "all"))
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--chunks", type=int, default=200)
    p.add_argument("--nobj", type=int, default=100)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--sched-chunks", type=int, default=20)
    p.add_argument("--systems", default="local,slurm,slurm-array",
                   help="for sched: local, slurm, slurm-array")
    a = p.parse_args()
    ws = [int(w) for w in a.workers.split(",")]
    if a.what in ("collate", "all"):
        bench_collate(a.rows, a.chunks)
    if a.what in ("overhead", "all"):
        bench_overhead(min(a.chunks, 40), ws[-1])
    if a.what in ("sched", "all"):
        bench_sched(a.sched_chunks, ws[-1], a.systems.split(","))
    if a.what in ("run", "all"):
        bench_run(a.nobj, ws)
    print_table()


if __name__ == "__main__":
    main()
