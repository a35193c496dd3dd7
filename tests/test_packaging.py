"""A wheel install (not the editable checkout) holds every module of the package,
imports every subpackage and fitter, and finds its configs and job templates.

The wheel is built and installed into a throw-away virtual environment with that
environment's own pip, so the test never changes the environment it runs in (an
install with this interpreter's pip and ``--prefix`` uninstalled the user's
editable install before).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: every package of the checkout: a folder of pipeline/ holding Python modules
PACKAGES = sorted(".".join(d.relative_to(REPO).parts) for d in [REPO / "pipeline",
                  *(REPO / "pipeline").rglob("*")]
                  if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py")))

PROBE = """
import importlib, json
import pipeline, pipeline.demo
from pipeline.fitconfig import check_fit_config
from pipeline.fitters.base import get_fitter
from pipeline.imageio.meds_io import MedsImageIO
from pipeline.megamixer.systems import get_system
from pipeline.megamixer.systems.base import ChunkJob
from pipeline.resources import shipped_dir
print(pipeline.__file__)
print(shipped_dir("jobtemplates"))
print(pipeline.demo.CONFIG_DIR)
job = ChunkJob(name="T-run-000000-000009", run_dir="{run}", chunk_dir="T/chunks/c0",
               command=["ngmixit", "--fof-range", "0,9"], walltime="01:00:00")
print(json.dumps({name: importlib.import_module(name).__file__ for name in {packages}}))
print(json.dumps([type(get_fitter(check_fit_config({"fitter_type": name}, source="probe"), 2)
                  ).__name__ for name in ("max", "metacal", "mof")]))
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
    shipped = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "pipeline").rglob("*.py")}
    assert not modules - shipped, f"modules missing from the wheel: {sorted(modules - shipped)}"
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
    probe = PROBE.replace("{run}", str(tmp_path)).replace("{packages}", repr(PACKAGES))
    out = subprocess.run([str(python), "-c", probe],
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
    imported = json.loads(lines[3])
    assert sorted(imported) == PACKAGES and {"pipeline.fitters", "pipeline.imageio"} <= \
        set(imported)
    for name, path in imported.items():
        assert path.startswith(purelib), f"{name} imported from {path}, not the wheel"
    assert json.loads(lines[4]) == ["MaxLikeFitter", "MetacalFitter", "MOFFitter"]
    script = "\n".join(lines[5:])
    assert "#SBATCH" in script and "--fof-range 0,9" in script and "01:00:00" in script
