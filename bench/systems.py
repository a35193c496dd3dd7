"""Scheduling overhead per chunk of the batch-system adapters.

Runs N trivial chunks (``true``) through local, slurm (one job per chunk and one
array), dask (starting its own LocalCluster, and on one already running) and prints milliseconds per chunk: the submit call
alone and submit-to-all-done. SLURM uses the project's test cluster
(tests/slurm/cluster.sh), started here if it is not up and stopped again after.

    python bench/systems.py [--chunks 20] [--workers 2] [--systems local,slurm,...]
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.megamixer.systems import JobState, get_system  # noqa: E402
from tests.slurm.chunkjobs import make_jobs  # noqa: E402

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"


def measure(label: str, system, jobs) -> tuple[str, float, float]:
    t0 = time.perf_counter()
    system.submit(jobs)
    t_submit = time.perf_counter() - t0
    states = system.wait(jobs, poll=0.5, timeout=600)
    t_done = time.perf_counter() - t0
    bad = [n for n, s in states.items() if s is not JobState.DONE]
    if bad:
        raise SystemExit(f"{label}: chunks not done: {bad[:3]}")
    return label, 1e3 * t_submit / len(jobs), 1e3 * t_done / len(jobs)


def start_slurm() -> bool:
    """Start the test cluster if needed; returns True if this call started it."""
    folder = os.environ.get("MEGAMIXER_SLURM_DIR", "/tmp/megamixer-slurm")
    was_up = subprocess.run(["bash", str(CLUSTER), "status", folder],
                            capture_output=True).returncode == 0
    subprocess.run(["bash", str(CLUSTER), "start", folder], check=True, capture_output=True)
    os.environ["SLURM_CONF"] = f"{folder}/etc/slurm.conf"
    return not was_up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--systems", default="local,slurm,slurm-array,dask,dask-running")
    args = ap.parse_args()
    wanted = args.systems.split(",")
    results = []
    stop_slurm = False
    with tempfile.TemporaryDirectory(prefix="bench-systems-") as tmp:
        try:
            for label in wanted:
                jobs = make_jobs(Path(tmp) / label, args.chunks, command="true")
                if label == "local":
                    system = get_system("local", workers=args.workers)
                elif label in ("slurm", "slurm-array"):
                    if shutil.which("sbatch") is None:
                        print(f"{label}: skipped (SLURM not installed)")
                        continue
                    stop_slurm = start_slurm() or stop_slurm
                    system = get_system("slurm", array=label == "slurm-array", poll=0.5)
                elif label == "dask":  # includes starting and closing a LocalCluster
                    system = get_system("dask", workers=args.workers)
                elif label == "dask-running":  # a scheduler that is already up
                    from distributed import LocalCluster
                    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                           dashboard_address=None)
                    system = get_system("dask", scheduler_address=cluster.scheduler_address)
                    try:
                        results.append(measure(label, system, jobs))
                    finally:
                        cluster.close()
                    continue
                else:
                    raise SystemExit(f"unknown system {label}")
                results.append(measure(label, system, jobs))
        finally:
            if stop_slurm:
                subprocess.run(["bash", str(CLUSTER), "stop"], capture_output=True)
    print(f"\nscheduling overhead, {args.chunks} trivial chunks, {args.workers} workers "
          f"(local/dask), {os.cpu_count()} cores; shared machine, timings are noisy")
    print(f"{'system':<12} {'submit ms/chunk':>16} {'to done ms/chunk':>17}")
    for label, sub, done in results:
        print(f"{label:<12} {sub:>16.1f} {done:>17.1f}")


if __name__ == "__main__":
    main()
