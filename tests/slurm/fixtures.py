"""pytest fixture ``slurm_cluster``: the project's private single-node SLURM cluster.

Use it from a test module (or a conftest) with
``from tests.slurm.fixtures import slurm_cluster  # noqa: F401`` and mark the tests
``@pytest.mark.slurm``. The fixture starts ``tests/slurm/cluster.sh`` once per session
(reusing a cluster that is already up), exports ``SLURM_CONF`` so subprocesses such
as ``sbatch`` and ``megamixit`` find it, and stops the cluster at the end if this
session started it.

Tests are skipped, with the reason shown in pytest's summary, when the SLURM or
munge binaries are missing, the session is not root, or the cluster cannot be
started (with ``MEGAMIXER_REQUIRE_SLURM=1``, as CI sets it, a failed start is an
error instead). ``MEGAMIXER_SLURM_DIR`` (default ``/tmp/megamixer-slurm``) is the
cluster's folder and ``MEGAMIXER_SLURM_PORT`` (default 6817, slurmd uses the next
port) its ports; when the default ports are taken by something else, a free pair
is chosen and a warning says which.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import warnings
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


DEFAULT_PORT = 6817


def _ports_free(port: int) -> bool:
    """True if ``port`` and ``port + 1`` (slurmctld, slurmd) can be bound on loopback."""
    for p in (port, port + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def _choose_port() -> None:
    """Keep a port given in MEGAMIXER_SLURM_PORT; else the default pair if free, else
    the next free pair (said in one warning line)."""
    if os.environ.get("MEGAMIXER_SLURM_PORT"):
        return
    port = DEFAULT_PORT
    while not _ports_free(port):
        port += 2
    if port != DEFAULT_PORT:
        warnings.warn(f"tests/slurm: ports {DEFAULT_PORT}-{DEFAULT_PORT + 1} are taken; the "
                      f"test cluster uses {port}-{port + 1} (set MEGAMIXER_SLURM_PORT to "
                      f"choose)")
    os.environ["MEGAMIXER_SLURM_PORT"] = str(port)


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
    if not was_up:
        _choose_port()
    proc = _run("start", folder)
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        if os.environ.get("MEGAMIXER_REQUIRE_SLURM"):
            raise RuntimeError(f"tests/slurm/cluster.sh start failed: {why}")
        pytest.skip(f"the test SLURM cluster did not start ({why})")
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
