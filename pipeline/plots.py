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


def plot_object_fits(obj, outdir: str) -> bool:
    """Write ``outdir/<id>.png``; returns False when the object has nothing to draw."""
    results = obj.extra.get("results") or {}
    mbobs = obj.extra.get("mbobs_used")
    ok = [(m, r) for m, r in results.items() if r.get("flags") == 0 and m != "cm"]
    if mbobs is None or not ok:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, res = ok[0]
    epochs = [(b, obs) for b, obslist in enumerate(mbobs) for obs in obslist]
    fig, axes = plt.subplots(3, len(epochs), figsize=(2.0 * len(epochs), 6.2), squeeze=False)
    for k, (band, obs) in enumerate(epochs):
        image = np.where(obs.weight > 0, obs.image, np.nan)
        mod = render_model(obs, np.asarray(res["pars"]), model, band, len(mbobs))
        resid = (obs.image - mod) * np.sqrt(obs.weight)
        vmax = np.nanmax(np.abs(mod)) or 1.0
        for row, (data, title, kw) in enumerate((
                (image, f"band {band} epoch {obs.meta.get('cutout_index', k)}",
                 dict(vmin=-0.1 * vmax, vmax=vmax)),
                (mod, f"{model} model", dict(vmin=-0.1 * vmax, vmax=vmax)),
                (resid, "residual/sigma", dict(vmin=-5, vmax=5, cmap="RdBu_r")))):
            ax = axes[row, k]
            ax.imshow(data, origin="lower", interpolation="nearest", **kw)
            ax.set_title(title, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"id {obj.id}  {model}: chi2/dof {res.get('chi2per', np.nan):.2f}", fontsize=9)
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, f"{obj.id}.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    logger.info("wrote %s", path)
    return True
