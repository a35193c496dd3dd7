"""Diagnostic PNGs: data, model and residual mosaics of fitted objects."""

from __future__ import annotations

import logging
import os

import numpy as np

logger = logging.getLogger(__name__)


def render_model(obs, pars: np.ndarray, model: str, band: int, nband: int) -> np.ndarray:
    """Model image of one epoch: the model convolved with the epoch's PSF mixture."""
    from .gmix.gmix import GMixModel
    gm = GMixModel(pars, model, band=band)
    if obs.psf is not None and getattr(obs.psf, "gmix", None) is not None:
        gm = gm.convolve(obs.psf.gmix)
    return gm.make_image(obs.image.shape, jacobian=obs.jacobian)


def band_names(meds_meta: list, nband: int) -> list[str]:
    """Band names from the MEDS metadata's ``band`` column, else ``band 0``, ``band 1``..."""
    names = []
    for i in range(nband):
        meta = meds_meta[i] if i < len(meds_meta) else None
        name = None
        if meta is not None and meta.dtype.names and "band" in meta.dtype.names and len(meta):
            name = str(meta["band"][0]).strip() or None
        names.append(name or f"band {i}")
    return names


def object_figure(obj, bands: list[str] | None = None):
    """A matplotlib figure of one fitted object: per epoch the data, the model and the
    residual in units of the noise, each row with its colour bar; None when the object
    has no successful fit to draw."""
    results = obj.extra.get("results") or {}
    mbobs = obj.extra.get("mbobs_used")
    ok = [(m, r) for m, r in results.items() if r.get("flags") == 0 and m != "cm"]
    if mbobs is None or not ok:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, res = ok[0]
    bands = bands or [f"band {b}" for b in range(len(mbobs))]
    epochs = [(b, obs) for b, obslist in enumerate(mbobs) for obs in obslist]
    fig, axes = plt.subplots(3, len(epochs), figsize=(2.0 * len(epochs) + 1.0, 6.2),
                             squeeze=False)
    rows = [None, None, None]
    for k, (band, obs) in enumerate(epochs):
        image = np.where(obs.weight > 0, obs.image, np.nan)
        mod = render_model(obs, np.asarray(res["pars"]), model, band, len(mbobs))
        resid = (obs.image - mod) * np.sqrt(obs.weight)
        vmax = np.nanmax(np.abs(mod)) or 1.0
        for row, (data, title, kw) in enumerate((
                (image, f"{bands[band]} epoch {obs.meta.get('cutout_index', k)}",
                 dict(vmin=-0.1 * vmax, vmax=vmax)),
                (mod, f"{model} model", dict(vmin=-0.1 * vmax, vmax=vmax)),
                (resid, "(data-model)/sigma", dict(vmin=-5, vmax=5, cmap="RdBu_r")))):
            ax = axes[row, k]
            rows[row] = ax.imshow(data, origin="lower", interpolation="nearest", **kw)
            ax.set_title(title, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    for row, label in enumerate(("counts", "counts", "sigma")):
        fig.colorbar(rows[row], ax=list(axes[row]), fraction=0.02, pad=0.01, label=label)
    fig.suptitle(f"id {obj.id}  {model}: chi2/dof {res.get('chi2per', np.nan):.2f}", fontsize=9)
    return fig


def plot_object_fits(obj, outdir: str, bands: list[str] | None = None) -> bool:
    """Write :func:`object_figure` to ``outdir/<id>.png``; False when nothing to draw."""
    fig = object_figure(obj, bands)
    if fig is None:
        return False
    import matplotlib.pyplot as plt
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, f"{obj.id}.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    logger.info("wrote %s", path)
    return True
