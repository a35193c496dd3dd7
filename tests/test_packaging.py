"""A wheel install (not the editable checkout) finds its configs and job templates.

The wheel is built and installed into a throw-away virtual environment with that
environment's own pip, so the test never changes the environment it runs in (an
install with this interpreter's pip and ``--prefix`` uninstalled the user's
editable install before).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import pipeline, pipeline.demo
from pipeline.megamixer.systems import get_system
from pipeline.megamixer.systems.base import ChunkJob
from pipeline.resources import shipped_dir
print(pipeline.__file__)
print(shipped_dir("jobtemplates"))
print(pipeline.demo.CONFIG_DIR)
job = ChunkJob(name="T-run-000000-000009", run_dir="{run}", chunk_dir="T/chunks/c0",
               command=["ngmixit", "--fof-range", "0,9"], walltime="01:00:00")
print(get_system("slurm").render_script(job))
"""


def _installed_megamixer() -> str | None:
    """Where this interpreter's pip sees megamixer installed (None: not installed)."""
    proc = subprocess.run([sys.executable, "-m", "pip", "show", "-f", "megamixer"],
                          capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def test_wheel_ships_configs_and_job_templates(tmp_path):
    # build from a copy: an in-tree build would leave build/ in the checkout
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", "demo", ".venv", ".pytest_cache"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(wheels), str(source)],
                   check=True, capture_output=True, cwd=tmp_path)
    before = _installed_megamixer()
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)        # ensurepip: offline
    python = env_dir / "bin" / "python"
    wheel = next(wheels.glob("megamixer-*.whl"))
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig."
                              "get_paths()['purelib'])"], capture_output=True, text=True,
                             check=True).stdout.strip()
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--no-warn-script-location", str(wheel)],
                   check=True, capture_output=True, env={"PATH": "/usr/bin:/bin"})
    assert _installed_megamixer() == before, "the test changed the running environment"
    # dependencies from this interpreter via PYTHONPATH: its .pth files (the
    # editable install's finder) are not run, so the wheel's copy is imported
    deps = sysconfig.get_paths()["purelib"]
    out = subprocess.run([str(python), "-c", PROBE.replace("{run}", str(tmp_path))],
                         capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": deps, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(purelib) and not lines[0].startswith(str(REPO))
    share = env_dir / "share" / "megamixer"
    assert lines[1] == str(share / "jobtemplates")
    assert lines[2] == str(share / "configs")
    assert sorted(p.name for p in (share / "configs").iterdir()) == \
        sorted(p.name for p in (REPO / "configs").iterdir())
    script = "\n".join(lines[3:])
    assert "#SBATCH" in script and "--fof-range 0,9" in script and "01:00:00" in script
