"""The README's main job, ``megamixer-demo``, on a small tile: every stage runs and
leaves what the README promises (catalogue, links, summary PNG, QA figure)."""
import os
import re
import subprocess
import sys

import numpy as np

from pipeline.fitsfile import read_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_runs_the_whole_pipeline(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "pipeline.demo", str(out), "--nobj", "40",
                           "--chunksize", "10", "--log-level", "WARNING"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = re.search(r"megamixer demo: (\d+) objects, ([\d.]+)% with flags 0, median "
                        r"(\w+) flux error ([-+][\d.]+)", proc.stdout)
    assert summary, proc.stdout
    assert int(summary.group(1)) == 40
    assert float(summary.group(2)) >= 90.0
    tile = "DEMO0001"
    catalogue = out / "runs" / "demo" / tile / f"{tile}-demo.fits"
    cat = read_table(catalogue, ext="model_fits")
    assert len(cat) == 40 and len(np.unique(cat["id"])) == 40
    link = out / "runs" / "demo" / "output" / f"{tile}-demo.fits"
    assert link.is_symlink() and link.resolve() == catalogue.resolve()
    for png in (out / "demo-summary.png", out / "runs" / "demo" / tile / f"{tile}-demo-qa.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert str(png) in proc.stdout
