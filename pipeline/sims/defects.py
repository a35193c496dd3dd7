"""Detector defects on single-epoch images: bad columns and cosmic rays.

Both are written into the image (a bad column gets a garbage offset, a cosmic
ray a bright thin track), flagged in the bmask and given zero weight, as a
survey's image-reduction would deliver them.
"""

from __future__ import annotations

import numpy as np

# bit values as in the DES bad-pixel convention
BMASK_BADCOL = 1
BMASK_COSMIC = 16


def add_bad_columns(image: np.ndarray, weight: np.ndarray, bmask: np.ndarray,
                    rng: np.random.Generator, nbad: int, frac_range: tuple[float, float],
                    sigma: float) -> None:
    """Add ``nbad`` bad column segments (in place)."""
    nrow, ncol = image.shape
    for _ in range(nbad):
        col = int(rng.integers(ncol))
        length = max(1, int(round(rng.uniform(*frac_range) * nrow)))
        start = int(rng.integers(0, nrow - length + 1))
        rows = slice(start, start + length)
        image[rows, col] += np.float32(rng.uniform(5.0, 50.0) * sigma)
        bmask[rows, col] |= BMASK_BADCOL
        weight[rows, col] = 0.0


def add_cosmic_rays(image: np.ndarray, weight: np.ndarray, bmask: np.ndarray,
                    rng: np.random.Generator, ncr: int, length_range: tuple[float, float],
                    amp_range: tuple[float, float], sigma: float) -> None:
    """Add ``ncr`` straight cosmic-ray tracks (in place), rasterised at half-pixel steps."""
    nrow, ncol = image.shape
    for _ in range(ncr):
        r0, c0 = rng.uniform(0, nrow), rng.uniform(0, ncol)
        length = rng.uniform(*length_range)
        phi = rng.uniform(0.0, np.pi)
        amp = np.float32(rng.uniform(*amp_range) * sigma)
        t = np.linspace(0.0, length, max(2, int(2 * length) + 1))
        rows = np.floor(r0 + t * np.sin(phi)).astype(int)
        cols = np.floor(c0 + t * np.cos(phi)).astype(int)
        keep = (rows >= 0) & (rows < nrow) & (cols >= 0) & (cols < ncol)
        flat = np.unique(rows[keep] * ncol + cols[keep])
        r, c = np.divmod(flat, ncol)
        image[r, c] += amp
        bmask[r, c] |= BMASK_COSMIC
        weight[r, c] = 0.0
