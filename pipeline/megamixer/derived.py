"""Columns a collated catalogue adds to model_fits: the DES collation's, plus the project's.

For every model M the DES collation knew (each ``M`` with ``M_pars`` and
``M_flags``: the fitted models, their ``M_max`` twins, and ``mcal``; metacal
outputs drop the ``M_max`` ones, as DES did):

* ``M_flux``, ``M_flux_cov`` (per band; from the flux block of ``M_pars`` /
  ``M_pars_cov``) when model_fits has no such column;
* ``M_flux_s2n = M_flux / sqrt(diag M_flux_cov)``, ``M_mag = magzp_ref - 2.5
  log10(M_flux)``, ``M_logsb = log10|M_flux / M_T|`` per band;
* ``M_T``, ``M_T_err`` (from ``M_pars`` / ``M_pars_cov``) and
  ``M_T_s2n = M_T / M_T_err``;
* ``M_weight = 1 / (2 * 0.2^2 + g_cov[0,0] + g_cov[1,1])``, the shape weight
  with shape noise 0.2;
* ``psf_mag`` per band from ``psf_flux``;

and in epoch_data the band's name, ``band``.

Values are computed for usable rows only (``M_flags == 0``; ``psf_flags == 0``
per band for ``psf_mag``) and where defined (positive flux for magnitudes,
positive variance for S/N); elsewhere -9999 (errors 9999, weights 0). With one
band the per-band columns are scalars, as in the DES catalogues.
"""

from __future__ import annotations

import numpy as np

from .. import columns as C
from ..columns import Column, mat, vec

DEFAULT = -9999.0
DEFAULT_ERR = 9999.0
SHAPE_NOISE = 0.2


def des_models(names: tuple[str, ...]) -> list[str]:
    """Models the DES collation derives columns for, in column order."""
    models = [n[:-5] for n in names if n.endswith("_pars") and f"{n[:-5]}_flags" in names]
    if "mcal" in models:
        models = [m for m in models if not m.endswith("_max")]
    return models


def _band_shape(nband: int) -> tuple[int, ...]:
    return vec(nband) if nband > 1 else ()


def _as_bands(values: np.ndarray, nband: int) -> np.ndarray:
    return values.reshape(values.shape[0], nband).astype(np.float64)


def _out(values: np.ndarray, nband: int) -> np.ndarray:
    return values if nband > 1 else values[:, 0]


def _nband(model: np.ndarray) -> int:
    names = model.dtype.names
    for name in ("psf_flux", "mcal_flux"):
        if name in names:
            return int(np.prod(model.dtype[name].shape, dtype=int))
    flux = [n for n in names if n.endswith("_flux")]
    return int(np.prod(model.dtype[flux[0]].shape, dtype=int)) if flux else 1


def _model_columns(model: np.ndarray, m: str, nband: int, zp: np.ndarray | None
                   ) -> list[tuple[Column, np.ndarray]]:
    names = model.dtype.names
    n = model.size
    usable = (np.asarray(model[f"{m}_flags"]) == 0)
    npars = int(np.prod(model.dtype[f"{m}_pars"].shape, dtype=int))
    pars = np.asarray(model[f"{m}_pars"], dtype=np.float64).reshape(n, npars)
    cov = (np.asarray(model[f"{m}_pars_cov"], dtype=np.float64).reshape(n, npars, npars)
           if f"{m}_pars_cov" in names else None)
    out: list[tuple[Column, np.ndarray]] = []
    what = f"of {m}"
    bshape = _band_shape(nband)

    if f"{m}_flux" in names:
        flux = _as_bands(np.asarray(model[f"{m}_flux"]), nband)
    else:
        flux = np.where(usable[:, None], pars[:, -nband:], DEFAULT)
        out.append((Column(f"{m}_flux", "f8", bshape, C.FLUX, f"flux per band {what} "
                           f"(from {m}_pars)"), _out(flux, nband)))
    if cov is not None:
        fcov = np.where(usable[:, None, None], cov[:, -nband:, -nband:], DEFAULT)
        var = np.diagonal(fcov, axis1=1, axis2=2)
        if f"{m}_flux_cov" not in names:
            out.append((Column(f"{m}_flux_cov", "f8", mat(nband) if nband > 1 else (),
                               C.FLUX2, f"covariance of the fluxes {what} (from "
                               f"{m}_pars_cov)"), fcov if nband > 1 else fcov[:, 0, 0]))
    elif f"{m}_flux_err" in names:
        err = _as_bands(np.asarray(model[f"{m}_flux_err"]), nband)
        var = np.where(err != DEFAULT_ERR, err * err, 0.0)
    else:
        var = np.zeros_like(flux)
    ok = usable[:, None] & (var > 0) & np.isfinite(var)
    s2n = np.where(ok, flux / np.sqrt(np.where(ok, var, 1.0)), DEFAULT)
    out.append((Column(f"{m}_flux_s2n", "f8", bshape, C.NONE, f"flux S/N per band {what}: "
                       "flux / sqrt(flux variance)"), _out(s2n, nband)))
    if zp is not None:
        pos = usable[:, None] & (flux > 0)
        mag = np.where(pos, zp[None, :nband] - 2.5 * np.log10(np.where(pos, flux, 1.0)),
                       DEFAULT)
        out.append((Column(f"{m}_mag", "f8", bshape, C.MAG, f"magnitude per band {what}: "
                           "magzp_ref - 2.5 log10(flux)"), _out(mag, nband)))

    if f"{m}_T" in names:
        T = np.asarray(model[f"{m}_T"], dtype=np.float64)
        T_err = (np.asarray(model[f"{m}_T_err"], dtype=np.float64)
                 if f"{m}_T_err" in names else None)
    else:
        Tvar = cov[:, 4, 4] if cov is not None else np.zeros(n)
        has = usable & (Tvar > 0) & np.isfinite(Tvar)
        T = np.where(has, pars[:, 4], DEFAULT)
        T_err = np.where(has, np.sqrt(np.where(has, Tvar, 1.0)), DEFAULT_ERR)
        out.append((Column(f"{m}_T", "f8", (), C.ARCSEC2, f"T {what} (from {m}_pars)"), T))
        out.append((Column(f"{m}_T_err", "f8", (), C.ARCSEC2, f"error on T {what}"), T_err))
    sb_ok = usable[:, None] & (T[:, None] != 0) & (flux != 0) & (T[:, None] != DEFAULT)
    logsb = np.where(sb_ok, np.log10(np.abs(np.where(sb_ok, flux, 1.0)
                                            / np.where(sb_ok, T[:, None], 1.0))), DEFAULT)
    out.append((Column(f"{m}_logsb", "f8", bshape, "log10(image counts / arcsec^2)",
                       f"log10 |flux / T| per band {what} (a surface brightness)"),
                _out(logsb, nband)))
    if T_err is not None and f"{m}_T_s2n" not in names:
        t_ok = usable & (T_err > 0) & (T_err != DEFAULT_ERR) & (T != DEFAULT)
        out.append((Column(f"{m}_T_s2n", "f8", (), C.NONE, f"T / T_err {what}"),
                    np.where(t_ok, T / np.where(t_ok, T_err, 1.0), DEFAULT)))
    if f"{m}_g_cov" in names and f"{m}_weight" not in names:
        gc = np.asarray(model[f"{m}_g_cov"], dtype=np.float64).reshape(n, 2, 2)
        csum = gc[:, 0, 0] + gc[:, 1, 1]
        w_ok = usable & np.isfinite(csum) & (csum >= 0)
        weight = np.where(w_ok, 1.0 / (2.0 * SHAPE_NOISE ** 2 + np.where(w_ok, csum, 0.0)),
                          0.0)
        out.append((Column(f"{m}_weight", "f8", (), C.NONE, f"shape weight {what}: 1 / "
                           f"(2 * {SHAPE_NOISE}^2 + g_cov[0,0] + g_cov[1,1]); 0 when not "
                           "usable"), weight))
    return out


def derive(model: np.ndarray, zp: np.ndarray | None) -> list[tuple[Column, np.ndarray]]:
    """Every derived column (see the module docstring) with its values."""
    names = model.dtype.names
    nband = _nband(model)
    out: list[tuple[Column, np.ndarray]] = []
    if zp is not None and "psf_flux" in names:
        flux = _as_bands(np.asarray(model["psf_flux"]), nband)
        ok = flux > 0
        if "psf_flags" in names:
            ok &= _as_bands(np.asarray(model["psf_flags"]), nband) == 0
        mag = np.where(ok, zp[None, :nband] - 2.5 * np.log10(np.where(ok, flux, 1.0)),
                       DEFAULT)
        out.append((Column("psf_mag", "f8", _band_shape(nband), C.MAG, "PSF magnitude per "
                           "band: magzp_ref - 2.5 log10(psf_flux)"), _out(mag, nband)))
    for m in des_models(names):
        out += _model_columns(model, m, nband, zp)
    seen = set(names)
    return [(c, v) for c, v in out if not (c.name in seen or seen.add(c.name))]


def derived_columns(model: np.ndarray, zp: np.ndarray | None) -> dict[str, np.ndarray]:
    """Name -> values of the columns a collated catalogue adds to ``model``."""
    return {c.name: v for c, v in derive(model, zp)}


BAND_COLUMN = Column("band", "U", (), C.NONE, "band name of the epoch (the run's bands, "
                     "in band_num order)")


def epoch_columns(epoch: np.ndarray, bands: list[str]) -> dict[str, np.ndarray]:
    """The DES collation's ``band`` column of epoch_data (name of ``band_num``)."""
    if "band_num" not in (epoch.dtype.names or ()) or "band" in epoch.dtype.names:
        return {}
    names = np.array([str(b) for b in bands] + [""], dtype=f"U{max([1] + [len(b) for b in bands])}")
    num = np.asarray(epoch["band_num"], dtype=np.int64)
    return {"band": names[np.where((num >= 0) & (num < len(bands)), num, len(bands))]}


def derived_column_list(model_dtype: np.dtype, nband: int) -> list[Column]:
    """The columns collate adds to a model_fits table of this dtype (for the docs)."""
    return [c for c, _ in derive(np.zeros(0, dtype=model_dtype), np.full(nband, 30.0))]
