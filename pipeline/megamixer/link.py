"""``megamixit link``: relative symlinks of collated files into ``<run>/output/``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import PipelineError
from .layout import RunLayout
from .tilerecord import TileRecord

logger = logging.getLogger(__name__)


def link_tiles(layout: RunLayout, recs: list[TileRecord]) -> list[Path]:
    """Link every tile's catalogue; each must be complete and of the current set-up
    (one error naming the others)."""
    missing = [r.tile for r in recs
               if not (r.complete_catalogue and layout.collated(r.tile).exists())]
    if missing:
        raise PipelineError(f"{layout.run_dir}: tile(s) without a complete catalogue: "
                            f"{', '.join(missing)} (run 'megamixit collate' first)")
    layout.output_dir.mkdir(parents=True, exist_ok=True)
    links = []
    for tile in (r.tile for r in recs):
        link = layout.link(tile)
        target = os.path.relpath(layout.collated(tile), layout.output_dir)
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            raise PipelineError(f"{link}: exists and is not a symlink; not replacing it")
        link.symlink_to(target)
        logger.info("linked %s -> %s", link, target)
        links.append(link)
    return links
