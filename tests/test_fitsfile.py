"""FITS files are opened under names cfitsio cannot reinterpret."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from pipeline.errors import InputFileError
from pipeline.fileio import remove_stale_temporaries, temporary_name
from pipeline.fitsfile import atomic_fits, open_fits, read_header, read_table

HOSTILE = ["survey(y6)", "a[1]", "!bang", "plus+2", "$HOME", "~tilde", "sp ace",
           "mem:", "new\nline"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_write_and_read_only_where_asked(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    final = folder / f"{name}.fits"
    data = np.zeros(5, dtype=[("x", "i8")])
    data["x"] = np.arange(5)
    with atomic_fits(final) as fits:
        fits.write(data, extname="t", header={"K": 7})
    # exactly one file, where asked; nothing beside the folder
    assert os.listdir(folder) == [final.name]
    assert sorted(os.listdir(tmp_path)) == [name]
    assert np.array_equal(read_table(final, ext="t"), data)
    assert read_header(final, ext="t")["K"] == 7
    with open_fits(final, "rw") as fits:
        fits["t"].write_key("K", 8)
    assert read_header(final, ext="t")["K"] == 8


def test_failed_write_leaves_nothing(tmp_path):
    final = tmp_path / "out(1).fits"
    with pytest.raises(RuntimeError):
        with atomic_fits(final) as fits:
            fits.write(np.zeros(3, dtype=[("x", "f8")]))
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []


def test_fifo_and_folder_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.fits"
    os.mkfifo(fifo)
    result = {}

    def attempt():
        try:
            open_fits(fifo).__enter__()
        except InputFileError as err:
            result["err"] = str(err)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "opening a FIFO blocked"
    assert "not a regular file" in result["err"]
    with pytest.raises(InputFileError, match="is a directory"):
        read_table(tmp_path)
    with pytest.raises(InputFileError, match="file not found"):
        read_table(tmp_path / "missing.fits")


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    final = tmp_path / "cat.fits"
    mine = temporary_name(final)
    mine.write_text("in progress")
    dead = tmp_path / mine.name.replace(f"-{os.getpid()}-", "-999999999-")
    dead.write_text("left by a killed writer")
    other = temporary_name(tmp_path / "other.fits").name.replace(f"-{os.getpid()}-",
                                                                 "-999999999-")
    (tmp_path / other).write_text("another file's temporary")
    assert remove_stale_temporaries(final) == 1
    assert mine.exists() and not dead.exists() and (tmp_path / other).exists()
