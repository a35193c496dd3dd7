"""Per-tile QA figure written by ``megamixit verify``: ``<tile>/<tile>-<run>-qa.png``.

Panels: objects per flag bit (run-level ``flags`` and the model's ``{m}_flags``),
flux and size against S/N, a sky map of the flagged objects, the chi2/dof of the
good fits, and the chunks' run times (from the catalogue's ``chunks`` table).
The model drawn is the first of cm, bdf, exp, dev, gauss the catalogue holds.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from pathlib import Path

import numpy as np

from ..fitsfile import open_fits
from ..fileio import atomic_path
from ..gmix import flags as F

logger = logging.getLogger(__name__)

MODELS = ("cm", "bdf", "exp", "dev", "gauss")
_STAMP = re.compile(r"^== megamixer job \S+ (start|exit status -?\d+) "
                    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")


def job_wall_seconds(log: Path) -> float:
    """Wall time of the last attempt recorded in a chunk's job log (-1 if unknown)."""
    start = end = None
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return -1.0
    for line in lines:
        m = _STAMP.match(line)
        if m:
            when = datetime.strptime(m.group(2), "%Y-%m-%dT%H:%M:%SZ")
            if m.group(1) == "start":
                start, end = when, None
            else:
                end = when
    if start is None or end is None:
        return -1.0
    return (end - start).total_seconds()


def _bit_names() -> dict[int, str]:
    names = {}
    for name in dir(F):
        value = getattr(F, name)
        if name.isupper() and isinstance(value, int) and value > 0 \
                and value & (value - 1) == 0 and value not in names:
            names[value] = name
    return names


def _bits(flags: np.ndarray) -> dict[int, int]:
    flags = np.asarray(flags, dtype=np.int64)
    return {1 << b: int(np.count_nonzero(flags & (1 << b))) for b in range(63)
            if np.any(flags & (1 << b))}


def write_qa(catalogue: Path, out: Path, title: str) -> Path:
    """Draw the QA figure of a collated catalogue into ``out`` (atomically)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open_fits(catalogue) as fits:
        cat = fits["model_fits"].read()
        chunks = fits["chunks"].read() if "chunks" in fits else None
    names = cat.dtype.names
    model = next((m for m in MODELS if f"{m}_flux" in names), None)
    flags = cat["flags"]
    bad = flags != 0
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))

    ax = axes[0, 0]
    labels = _bit_names()
    rows = [("flags", _bits(flags))]
    if model and f"{model}_flags" in names:
        rows.append((f"{model}_flags", _bits(cat[f"{model}_flags"][~bad])))
    ypos, ticks = 0, []
    for col, (name, counts) in enumerate(rows):
        for bit, n in sorted(counts.items()):
            ax.barh(ypos, 100.0 * n / len(cat), color=f"C{col}")
            ticks.append(f"{name} {bit} {labels.get(bit, '')}".strip())
            ypos += 1
    ax.set_yticks(range(len(ticks)), ticks, fontsize=7)
    ax.set_xlabel("% of objects")
    ax.set_title(f"{100 * bad.mean():.1f}% of {len(cat)} objects flagged")
    if not ticks:
        ax.text(0.5, 0.5, "no flags set", ha="center", transform=ax.transAxes)

    good = ~bad
    if model:
        if f"{model}_flags" in names:
            good &= cat[f"{model}_flags"] == 0
        s2n = cat[f"{model}_s2n_w"] if f"{model}_s2n_w" in names else None
        flux = np.asarray(cat[f"{model}_flux"]).reshape(len(cat), -1)[:, 0]
        panels = [(axes[0, 1], flux, f"{model}_flux (band 0)")]
        if f"{model}_T" in names:
            panels.append((axes[0, 2], cat[f"{model}_T"], f"{model}_T [arcsec^2]"))
        for ax, val, label in panels:
            if s2n is not None:
                ok = good & (s2n > 0) & (val > 0)
                ax.loglog(s2n[ok], val[ok], ".", ms=2)
                ax.set_xlabel(f"{model}_s2n_w")
            ax.set_ylabel(label)
            ax.set_title(f"{label} vs S/N ({good.sum()} good fits)")
        chi2 = cat[f"{model}_chi2per"][good] if f"{model}_chi2per" in names else []
        ax = axes[1, 1]
        chi2 = np.asarray(chi2)[np.isfinite(chi2) & (np.asarray(chi2) > 0)]
        ax.hist(np.clip(chi2, 0, 5), bins=50)
        ax.set_xlabel(f"{model}_chi2per (clipped at 5)")
        ax.set_title(f"chi2/dof: median {np.median(chi2) if chi2.size else np.nan:.3f}")

    ax = axes[1, 0]
    ax.plot(cat["ra"][~bad], cat["dec"][~bad], ".", ms=1.5, color="0.7", label="flags 0")
    ax.plot(cat["ra"][bad], cat["dec"][bad], "x", ms=4, color="C3",
            label=f"flagged ({bad.sum()})")
    ax.invert_xaxis()
    ax.set_xlabel("RA [deg]")
    ax.set_ylabel("Dec [deg]")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("where the failures are")

    ax = axes[1, 2]
    if chunks is not None and "wall_seconds" in chunks.dtype.names:
        wall = chunks["wall_seconds"][chunks["wall_seconds"] >= 0]
        fit = chunks["fit_seconds"][chunks["fit_seconds"] >= 0]
        ax.hist([wall, fit], bins=30, label=["job wall time", "fitting"])
        ax.set_xlabel("seconds per chunk")
        ax.legend(fontsize=8)
        ax.set_title(f"{len(chunks)} chunks: median wall "
                     f"{np.median(wall) if wall.size else np.nan:.1f} s")
    fig.suptitle(title)
    # fixed margins: tight_layout measured every tick label (~2 s per tile)
    fig.subplots_adjust(left=0.17, right=0.98, bottom=0.07, top=0.92, wspace=0.3,
                        hspace=0.32)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    logger.info("QA figure %s", out)
    return out
