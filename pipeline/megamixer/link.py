"""``megamixit link``: relative symlinks of collated files into ``<run>/output/``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import PipelineError
from .layout import RunLayout

logger = logging.getLogger(__name__)


def link_tiles(layout: RunLayout, tiles: list[str]) -> list[Path]:
    """Link every tile's collated file; all must be collated (one error naming them)."""
    missing = [t for t in tiles if not layout.collated(t).exists()]
    if missing:
        raise PipelineError(f"{layout.run_dir}: tile(s) not collated: {', '.join(missing)} "
                            f"(run 'megamixit collate' first)")
    layout.output_dir.mkdir(parents=True, exist_ok=True)
    links = []
    for tile in tiles:
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
