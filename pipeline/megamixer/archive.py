"""``megamixit archive`` and ``clean``: tidy chunk work files of collated tiles."""

from __future__ import annotations

import logging
import shutil
import tarfile
from pathlib import Path


from ..errors import PipelineError
from ..fileio import atomic_path
from ..fitsfile import open_fits
from .layout import RunLayout
from .tilerecord import TileRecord

logger = logging.getLogger(__name__)

# Files a job leaves in its chunk dir besides the job script.
_WORK_NAMES = ("exit_status", "submit.json")


def _is_output(path: Path) -> bool:
    """Chunk results (and ngmixit checkpoints/temporaries) rather than logs/scripts."""
    name = path.name
    return ".fits" in name or "checkpoint" in name


def _check_collated(layout: RunLayout, tile: str, what: str) -> None:
    path = layout.collated(tile)
    if not path.exists():
        raise PipelineError(f"tile {tile}: not collated; refusing to {what} "
                            f"(run 'megamixit collate' first)")
    try:
        with open_fits(path) as fits:
            fits["model_fits"].get_nrows()
    except Exception as err:
        raise PipelineError(f"{path}: unreadable ({str(err).strip().splitlines()[0]}); "
                            f"refusing to {what}") from None


def _chunk_dirs(layout: RunLayout, rec: TileRecord) -> list[Path]:
    dirs = [layout.chunk_dir(rec.tile, a, b) for a, b in rec.ranges]
    return [d for d in dirs if d.is_dir()]


def archive_tile(layout: RunLayout, rec: TileRecord) -> Path | None:
    """Tar.gz the logs and job scripts of a collated tile, then remove the chunk dirs.

    Returns the archive path, or None when the tile was already archived.
    """
    _check_collated(layout, rec.tile, "archive")
    dirs = _chunk_dirs(layout, rec)
    out = layout.archive(rec.tile)
    if not dirs:
        if out.exists():
            logger.info("tile %s: already archived in %s", rec.tile, out)
            return None
        raise PipelineError(f"tile {rec.tile}: no chunk dirs to archive")
    base = layout.chunks_dir(rec.tile)
    with atomic_path(out) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            for d in dirs:
                for f in sorted(d.iterdir()):
                    if f.is_file() and not _is_output(f):
                        tar.add(f, arcname=str(f.relative_to(base)))
    for d in dirs:
        shutil.rmtree(d)
    logger.info("tile %s: archived %d chunk dirs into %s", rec.tile, len(dirs), out)
    return out


def clean_tile(layout: RunLayout, rec: TileRecord, clobber: bool = False) -> int:
    """Remove chunk outputs, logs and job records (job scripts stay).

    Without ``clobber`` the tile must be collated: chunk files are then the only
    copy of the results. Returns the number of files removed.
    """
    if not clobber:
        _check_collated(layout, rec.tile, "clean without --clobber")
    nrm = 0
    for d in _chunk_dirs(layout, rec):
        for f in d.iterdir():
            if f.is_file() and (_is_output(f) or f.suffix == ".log" or f.name in _WORK_NAMES):
                f.unlink()
                nrm += 1
    logger.info("tile %s: removed %d chunk work files", rec.tile, nrm)
    return nrm
