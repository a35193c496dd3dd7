"""megamixit end to end on dask: the SLURM tests' tile through ``run --system dask``.

The same tile (48 objects, 2 bands, 2 epochs) is run with the local system in 2
chunks and with ``--system dask`` in 4 chunks on a dask ``LocalCluster`` of two
worker processes (and, on the test SLURM cluster, on dask-jobqueue workers that
are SLURM jobs). Same seed: the collated catalogues must be identical
(``time_last_fit``, a wall-clock stamp, aside) whatever the system and chunking.
"""

from __future__ import annotations

import pytest

pytest.importorskip("distributed")

from pipeline.megamixer.layout import RunLayout  # noqa: E402
from pipeline.megamixer.tilerecord import TileRecord  # noqa: E402

from .test_megamixit_slurm import (TILE, assert_same_catalogue, mmx,  # noqa: E402
                                   sim_tile, status_rows, submit_records,
                                   write_run_config)
from .test_megamixit_support import python_path_env  # noqa: E402


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The tile through the local system, 2 chunks, collated: the reference."""
    root = sim_tile(tmp_path_factory)
    folder = tmp_path_factory.mktemp("mmx_dask_local")
    mp = pytest.MonkeyPatch()
    python_path_env(mp)
    try:
        conf = write_run_config(root, folder, "g2local", chunksize=24, workers=2)
        for cmd in ("setup", "run", "collate"):
            assert mmx(cmd, conf, root / "tiles.txt") == 0
    finally:
        mp.undo()
    return root, RunLayout(folder / "out" / "g2local", "g2local").collated(TILE)


def _dask_run(root, folder, name, capsys, **conf_kw):
    """setup with the default system, then ``run --system dask``; returns the layout."""
    conf = write_run_config(root, folder, name, **conf_kw)
    args = (conf, root / "tiles.txt")
    assert mmx("setup", *args) == 0
    capsys.readouterr()
    assert mmx("run", *args, "--system", "dask", "--workers", "2") == 0
    assert "submitted 4 chunk(s) with system 'dask' in" in capsys.readouterr().out
    layout = RunLayout(folder / "out" / name, name)
    rec = TileRecord.load(layout.tile_record(TILE))
    assert len(rec.chunks) == 4
    assert {r["system"] for r in submit_records(layout, rec).values()} == {"dask"}
    # a later status (another adapter instance) reads the chunk files
    rows, out = status_rows(capsys, *args, "--system", "dask", logs=True)
    assert (rows[TILE]["done"], rows[TILE]["failed"]) == (4, 0), out
    assert mmx("collate", *args) == 0
    return layout


def test_dask_local_cluster_same_catalogue_as_local(local_run, tmp_path, monkeypatch,
                                                    capsys):
    root, reference = local_run
    python_path_env(monkeypatch)
    layout = _dask_run(root, tmp_path, "g2dask", capsys)
    assert_same_catalogue(reference, layout.collated(TILE))


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_dask_jobqueue_on_slurm_same_catalogue(local_run, tmp_path, monkeypatch, capsys):
    """``dask_cluster: slurm``: the dask workers are SLURM jobs of the test cluster."""
    pytest.importorskip("dask_jobqueue")
    root, reference = local_run
    python_path_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    layout = _dask_run(root, tmp_path, "g2dasks", capsys, dask_cluster="slurm",
                       queue="debug", walltime="00:10:00", mem="1G",
                       extra_cmds=['echo "in slurm job ${SLURM_JOB_ID:-none}"'])
    assert_same_catalogue(reference, layout.collated(TILE))
    # every chunk ran inside a SLURM job (a worker's), as its log says
    for chunk in sorted(layout.chunks_dir(TILE).glob("chunk*")):
        words = (chunk / "job.log").read_text().split("in slurm job ", 1)[1].split()
        assert words[0].isdigit(), chunk
    # the worker jobs' SLURM logs land in the run tree, not the submitting directory
    assert list((layout.run_dir / "dask-logs").glob("*.out"))
    assert not list(tmp_path.glob("slurm-*.out"))
