"""Broken MEDS inputs give a one-line error naming the file (also through a CLI-style call)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import fitsio
import numpy as np
import pytest

from pipeline.errors import InputFileError
from pipeline.meds import MEDS, AffineWCS, SourceImage, write_meds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    rng = np.random.default_rng(1)
    wcs = AffineWCS(0.5, 1.0, 50.0, 50.0)
    cat = np.zeros(30, dtype=[("id", "i8"), ("ra", "f8"), ("dec", "f8"), ("box_size", "i8")])
    cat["id"] = np.arange(30)
    cat["ra"], cat["dec"] = wcs.image_to_sky(rng.uniform(0, 99, 30), rng.uniform(0, 99, 30))
    cat["box_size"] = 32
    images = [SourceImage(rng.normal(size=(100, 100)), wcs, weight=np.ones((100, 100)))
              for _ in range(3)]
    path = tmp_path_factory.mktemp("bad") / "good-meds.fits"
    write_meds(path, cat, images)
    return path


def _broken(good, tmp_path, kind):
    path = tmp_path / f"{kind}.fits"
    data = good.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) * 2 // 3])
    elif kind == "truncated_tables":
        with fitsio.FITS(str(good)) as f:
            cut = f["image_info"].get_offsets()["data_start"] + 100
        path.write_bytes(data[:cut])
    elif kind == "nonfits":
        path.write_text("id ra dec\n1 2 3\n" * 200)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind in ("no_object_data", "past_end", "no_image_cutouts"):
        with fitsio.FITS(str(good)) as f:
            hdus = {h.get_extname(): h.read() for h in f if h.get_extname()}
        if kind == "past_end":
            hdus["object_data"]["start_row"][7, 1] = hdus["image_cutouts"].size - 10
        with fitsio.FITS(str(path), "rw", clobber=True) as f:
            for name, arr in hdus.items():
                if (kind, name) in (("no_object_data", "object_data"),
                                    ("no_image_cutouts", "image_cutouts")):
                    continue
                f.write(arr, extname=name)
    elif kind == "missing":
        pass
    elif kind == "directory":
        path.mkdir()
    return path


CASES = {
    "truncated": "truncated file",
    "truncated_tables": "",  # the exact problem depends on where the cut falls
    "nonfits": "not a readable FITS file",
    "empty": "not a readable FITS file",
    "no_object_data": "no 'object_data' HDU",
    "no_image_cutouts": "no 'image_cutouts' HDU",
    "past_end": "object 7 (id 7) cutout 1: start_row",
    "missing": "file not found",
    "directory": "is a directory",
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_bad_file_gives_one_line_error(good, tmp_path, kind):
    path = _broken(good, tmp_path, kind)
    with pytest.raises(InputFileError) as err:
        MEDS(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    assert CASES[kind] in msg


def test_good_file_opens(good):
    with MEDS(good) as m:
        assert m.size == 30 and m.get_cutout(0, 0).shape == (32, 32)


def test_cli_reports_single_line(good, tmp_path):
    """Through run_cli (what every entry point uses): exit 2, 'error: <path>: ...' on one line."""
    script = textwrap.dedent("""
        import sys
        from pipeline.cli.common import run_cli
        from pipeline.meds import MEDS

        def main(argv):
            with MEDS(argv[0]) as m:
                m.get_cutout(0, 0)
        sys.exit(run_cli(main, sys.argv[1:]))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    for kind in ("truncated", "nonfits", "past_end"):
        path = _broken(good, tmp_path, kind)
        out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                             text=True, env=env, timeout=120)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert lines == [f"error: {path}: " + lines[0].split(f"{path}: ", 1)[1]], out.stderr
        assert CASES[kind] in lines[0]
