"""pytest fixture ``slurm_cluster``: the project's private single-node SLURM cluster.

Use it from a test module (or a conftest) with
``from tests.slurm.fixtures import slurm_cluster  # noqa: F401`` and mark the tests
``@pytest.mark.slurm``. The fixture starts ``tests/slurm/cluster.sh`` once per session
(reusing a cluster that is already up), exports ``SLURM_CONF`` so subprocesses such
as ``sbatch`` and ``megamixit`` find it, and stops the cluster at the end if this
session started it. Tests are skipped, with the reason, only when the SLURM or munge
binaries are missing or the session is not root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("cluster.sh")
BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munged", "mungekey")


@dataclass
class SlurmCluster:
    dir: Path
    conf: Path
    started_here: bool

    @property
    def env(self) -> dict[str, str]:
        """Environment for subprocesses that talk to this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}


def cluster_dir() -> Path:
    return Path(os.environ.get("MEGAMIXER_SLURM_DIR", "/tmp/megamixer-slurm"))


def _run(cmd: str, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), cmd, str(folder)], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="session")
def slurm_cluster():
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip(f"SLURM not installed (missing {', '.join(missing)}); "
                    "install with .ci/install")
    if os.geteuid() != 0:
        pytest.skip("the test SLURM cluster runs its daemons as root")
    folder = cluster_dir()
    was_up = _run("status", folder).returncode == 0
    proc = _run("start", folder)
    if proc.returncode != 0:
        raise RuntimeError(f"tests/slurm/cluster.sh start failed: {proc.stderr.strip()}")
    cluster = SlurmCluster(folder, folder / "etc" / "slurm.conf", started_here=not was_up)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        if cluster.started_here:
            _run("stop", folder)
