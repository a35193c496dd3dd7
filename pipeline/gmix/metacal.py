"""Metacalibration: deconvolve by the PSF, shear, reconvolve with a round dilated PSF.

The image operations are done with our own FFTs, in pixel coordinates of each
epoch (world = Jacobian x pixel offset, world in (v, u) arcsec):

* the stamp and the PSF stamp are zero padded to an M x M grid (M ~ 1.5 N) and
  transformed; the PSF transform is taken about the PSF's Jacobian centre and
  normalised to unit flux;
* a sheared image is ``f(p) = h(B p)`` with ``B = J^-1 A^-1 J`` (A the world
  shear matrix) and ``h = I * (Gamma'/P)``, where ``Gamma'(k) = Gamma(B^T k)``
  is the target PSF (including the pixel) sheared by A^-1.  This equals
  shear(I / P) * Gamma, but needs the deconvolved image only on the regular
  FFT grid;
* ``h`` is band limited (the target PSF has no power at Nyquist), so the
  resampling at ``B p`` is done exactly with trigonometric interpolation:
  ``B = Sx(s) diag(a, d) Sy(t)`` becomes two passes, each a 1-d rfft, a
  per-column (per-row) phase for the shift and one small matrix product for
  the rescale.

The same linear operator is applied to a 90-degree rotated noise field
(``fixnoise``), which is rotated back and added, and the weight is halved.
Against galsim drawings of the sheared, reconvolved truth the images agree to
< 1e-4 of the peak (tests/test_metacal.py).

Target PSFs: ``fitgauss`` - round Gaussian from an LM gauss fit to the PSF,
``gauss`` - the same from adaptive moments; both get T multiplied by
1 + 2 (sqrt(lambda_max / (T/2)) - 1) (cover the major axis, capped at 1.1, as
metacal does) and sigma dilated by 1 + 2 step, then are convolved with the
pixel.  ``dilate`` - the PSF image itself dilated by 1 + 2 step.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any

import numpy as np

from ..errors import PipelineError
from .flags import METACAL_FAILURE
from .roundstats import psf_means, round_measures

logger = logging.getLogger(__name__)

METACAL_TYPES = ("noshear", "1p", "1m", "2p", "2m")
PSF_MODES = ("fitgauss", "gauss", "dilate")
METACAL_LM_PARS = {"ftol": 1.0e-8, "xtol": 1.0e-8}

# the target PSF / deconvolution ratio is set to zero where |P| is below this
# fraction of its peak: the reconvolved image has no information there anyway
_PSF_FLOOR = 1.0e-10


class MetacalError(Exception):
    """Internal: this epoch cannot be metacalibrated (reason in the message)."""


# --------------------------------------------------------------------------
# small helpers on 2x2 matrices and frequency grids
# --------------------------------------------------------------------------

def shear_matrix_vu(g1: float, g2: float) -> np.ndarray:
    """World shear matrix acting on (v, u) = (row-like, col-like) offsets.

    g1 > 0 stretches along u, g2 > 0 along the u = v diagonal (galsim's
    convention with x = u, y = v); det = 1.
    """
    norm = 1.0 / math.sqrt(1.0 - g1 * g1 - g2 * g2)
    return norm * np.array([[1.0 - g1, g2], [g2, 1.0 + g1]])


def _inv2(a: np.ndarray) -> np.ndarray:
    """Inverse of a 2x2 matrix (cheaper than numpy.linalg for this size)."""
    det = a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]
    return np.array([[a[1, 1], -a[0, 1]], [-a[1, 0], a[0, 0]]]) / det


def _fft_size(n: int, pad: float) -> int:
    import scipy.fft
    m = scipy.fft.next_fast_len(int(math.ceil(n * pad)), real=True)
    return m + (m % 2)


def _freqs(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Angular pixel frequencies for an rfft2 grid: axis 0 full, axis 1 half."""
    kr = 2.0 * math.pi * np.fft.fftfreq(m)
    kc = 2.0 * math.pi * np.fft.rfftfreq(m)
    return kr, kc


def _sinc(x: np.ndarray) -> np.ndarray:
    """sin(x)/x (x = 0 maps to 1)."""
    x = np.where(x == 0.0, 1e-300, x)
    return np.sin(x) / x


def gauss_pixel_ft(kr: np.ndarray, kc: np.ndarray, sigma2_world: float,
                   jmat: np.ndarray, amat: np.ndarray | None = None) -> np.ndarray:
    """FT of (round Gaussian of variance sigma2 per axis in world) x (unit pixel),
    sheared by A^-1 in world (``amat`` = A), on the (kr, kc) pixel grid.

    Pixel-space covariance is J^-1 S J^-T; the sheared profile's FT at k is the
    unsheared FT at q = A_pix^-T k with A_pix = J^-1 A J.
    """
    jinv = _inv2(jmat)
    cov = sigma2_world * (jinv @ jinv.T)
    KR = kr[:, None]
    KC = kc[None, :]
    if amat is not None:
        apix = jinv @ amat @ jmat
        mt = _inv2(apix).T
        qr = mt[0, 0] * KR + mt[0, 1] * KC
        qc = mt[1, 0] * KR + mt[1, 1] * KC
    else:
        qr = KR + 0.0 * KC
        qc = KC + 0.0 * KR
    quad = cov[0, 0] * qr * qr + 2.0 * cov[0, 1] * qr * qc + cov[1, 1] * qc * qc
    return np.exp(-0.5 * quad) * _sinc(0.5 * qr) * _sinc(0.5 * qc)


def stamp_ft_at(image: np.ndarray, centre: tuple[float, float],
                qr: np.ndarray, qc: np.ndarray) -> np.ndarray:
    """Continuous DFT sum_p I[p] exp(-i q.(p - centre)) at arbitrary frequencies."""
    r = np.arange(image.shape[0]) - centre[0]
    c = np.arange(image.shape[1]) - centre[1]
    shape = np.broadcast(qr, qc).shape
    qr = np.broadcast_to(qr, shape).ravel()
    qc = np.broadcast_to(qc, shape).ravel()
    er = np.exp(-1j * qr[:, None] * r[None, :])
    ec = np.exp(-1j * qc[:, None] * c[None, :])
    return ((er @ image) * ec).sum(axis=1).reshape(shape)


def stamp_ft_scaled(image: np.ndarray, centre: tuple[float, float],
                    kr: np.ndarray, kc: np.ndarray, scale: float) -> np.ndarray:
    """Continuous DFT at the grid (scale*kr) x (scale*kc): separable, two matmuls."""
    r = np.arange(image.shape[0]) - centre[0]
    c = np.arange(image.shape[1]) - centre[1]
    er = np.exp(-1j * scale * kr[:, None] * r[None, :])
    ec = np.exp(-1j * scale * kc[:, None] * c[None, :])
    return er @ image @ ec.T


def _psf_transform(psf_image: np.ndarray, centre: tuple[float, float], m: int) -> np.ndarray:
    """rfft2 of the PSF stamp on an m x m grid, about ``centre``, unit flux."""
    nr, nc = psf_image.shape
    if nr > m or nc > m:
        raise MetacalError("PSF stamp larger than the padded image")
    flux = float(psf_image.sum())
    if not np.isfinite(flux) or flux <= 0.0:
        raise MetacalError("PSF image has no positive flux")
    ir = int(round(centre[0]))
    ic = int(round(centre[1]))
    buf = np.zeros((m, m))
    buf[:nr, :nc] = psf_image
    # index of the (rounded) centre moves to 0; the sub-pixel rest is a phase
    buf = np.roll(buf, (-ir, -ic), axis=(0, 1))
    kr, kc = _freqs(m)
    phase = np.exp(1j * (kr[:, None] * (centre[0] - ir) + kc[None, :] * (centre[1] - ic)))
    return np.fft.rfft2(buf) * phase / flux


# --------------------------------------------------------------------------
# exact resampling of band-limited periodic images
# --------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _eval_matrix(m: int, factor: float) -> np.ndarray:
    """C with Re(C @ rfft(h))[j] = h(factor * j) for a band-limited periodic h of
    even length m (trigonometric interpolation).  Independent of the centre, so
    it is shared by all objects: the centre enters as a phase on rfft(h)."""
    k = 2.0 * math.pi * np.fft.rfftfreq(m)
    w = np.full(k.size, 2.0 / m)
    w[0] = w[-1] = 1.0 / m  # DC and Nyquist appear once in the real series
    x = factor * np.arange(m)
    return np.exp(1j * x[:, None] * k[None, :]) * w[None, :]


def _centre_phase(m: int, centre: float, factor: float) -> np.ndarray:
    """Phase turning evaluation at factor*j into centre + factor*(j - centre)."""
    k = 2.0 * math.pi * np.fft.rfftfreq(m)
    return np.exp(1j * k * centre * (1.0 - factor))


def resample_linear(h: np.ndarray, bmat: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """out(p) = h(centre + B (p - centre)) for band-limited periodic h (..., M, M), det B = 1.

    B = [[1, s], [0, 1]] diag(a - b c/d, d) [[1, 0], [t, 1]] with s = b/d, t = c/d:
    a per-column shift and rescale along rows (one rfft, phase, one matrix
    product), then a per-row rescale and shift along columns (the same).
    """
    (a, b), (c, d) = bmat
    r0, c0 = centre
    m = h.shape[-1]
    s = b / d
    t = c / d
    k = 2.0 * math.pi * np.fft.rfftfreq(m)
    pos = np.arange(m)
    fr = a - b * c / d
    hr = np.fft.rfft(h, axis=-2)
    ph = _centre_phase(m, r0, fr)[:, None]
    if s != 0.0:
        ph = ph * np.exp(1j * k[:, None] * (s * (pos - c0))[None, :])
    h1 = _re_left(_eval_matrix(m, fr), hr * ph)
    hc = np.fft.rfft(h1, axis=-1)
    ph = _centre_phase(m, c0, d)[None, :]
    if t != 0.0:
        ph = ph * np.exp(1j * (d * t * (pos - r0))[:, None] * k[None, :])
    return _re_right(hc * ph, _eval_matrix(m, d))


def _re_left(cmat: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Re(C @ h) over the last two axes of a stack, as two real 2-d BLAS products."""
    kdim, mdim = h.shape[-2:]
    lead = h.shape[:-2]
    hs = np.moveaxis(h, -2, 0).reshape(kdim, -1)
    out = cmat.real @ np.ascontiguousarray(hs.real) - cmat.imag @ np.ascontiguousarray(hs.imag)
    return np.moveaxis(out.reshape((cmat.shape[0],) + lead + (mdim,)), 0, -2)


def _re_right(h: np.ndarray, cmat: np.ndarray) -> np.ndarray:
    """Re(h @ C^T) over the last two axes of a stack."""
    lead = h.shape[:-1]
    hs = h.reshape(-1, h.shape[-1])
    out = np.ascontiguousarray(hs.real) @ cmat.real.T - np.ascontiguousarray(hs.imag) @ cmat.imag.T
    return out.reshape(lead[:-1] + (lead[-1], cmat.shape[0]))


# --------------------------------------------------------------------------
# per-epoch image operations
# --------------------------------------------------------------------------

class EpochShearer:
    """Deconvolve/shear/reconvolve one epoch's image stack (image, noise...).

    ``images``: (B, N, N) stack processed by the same linear operator;
    ``centre``: image Jacobian centre (row, col); ``jmat``: [[dvdrow, dvdcol],
    [dudrow, dudcol]]; ``psf_image``/``psf_centre``: the PSF stamp.
    """

    def __init__(self, images: np.ndarray, centre: tuple[float, float], jmat: np.ndarray,
                 psf_image: np.ndarray, psf_centre: tuple[float, float], pad: float = 1.5):
        self.n = images.shape[-1]
        self.m = _fft_size(max(images.shape[-2:]), pad)
        self.m = max(self.m, _fft_size(max(psf_image.shape), 1.0))
        m = self.m
        buf = np.zeros(images.shape[:-2] + (m, m))
        buf[..., :images.shape[-2], :images.shape[-1]] = images
        self.shape = images.shape[-2:]
        self.ift = np.fft.rfft2(buf)
        self.pft = _psf_transform(psf_image, psf_centre, m)
        self.kr, self.kc = _freqs(m)
        self.centre = centre
        self.jmat = np.asarray(jmat, dtype=float)
        self.psf_image = psf_image
        self.psf_centre = psf_centre
        absp = np.abs(self.pft)
        self.pbad = absp < _PSF_FLOOR * absp.max()
        self.pft_safe = np.where(self.pbad, 1.0, self.pft)

    def target_ft(self, mode: str, sigma2: float, dilation: float, amat: np.ndarray | None):
        """FT of the target PSF sheared by A^-1 on the padded image grid."""
        if mode == "dilate":
            if amat is None:
                return stamp_ft_scaled(self.psf_image, self.psf_centre, self.kr, self.kc,
                                       dilation) / self.psf_image.sum()
            jinv = _inv2(self.jmat)
            mt = _inv2(jinv @ amat @ self.jmat).T
            KR = self.kr[:, None]
            KC = self.kc[None, :]
            qr = dilation * (mt[0, 0] * KR + mt[0, 1] * KC)
            qc = dilation * (mt[1, 0] * KR + mt[1, 1] * KC)
            return stamp_ft_at(self.psf_image, self.psf_centre, qr, qc) / self.psf_image.sum()
        return gauss_pixel_ft(self.kr, self.kc, sigma2, self.jmat, amat)

    def sheared(self, g1: float, g2: float, mode: str, sigma2: float,
                dilation: float) -> np.ndarray:
        """Images sheared by (g1, g2) and reconvolved with the target PSF.

        mode "dilate" uses the PSF stamp itself, dilated, as the target; that
        assumes the PSF stamp shares the image's pixel grid (true for MEDS).
        """
        if g1 == 0.0 and g2 == 0.0:
            amat = None
        else:
            amat = shear_matrix_vu(g1, g2)
        tft = self.target_ft(mode, sigma2, dilation, amat)
        kern = np.where(self.pbad, 0.0, tft / self.pft_safe)
        h = np.fft.irfft2(self.ift * kern, s=(self.m, self.m))
        if amat is not None:
            jinv = _inv2(self.jmat)
            bmat = jinv @ _inv2(amat) @ self.jmat
            h = resample_linear(h, bmat, self.centre)
        return h[..., :self.shape[0], :self.shape[1]]


def draw_target_psf(mode: str, shape: tuple[int, int], centre: tuple[float, float],
                    jmat: np.ndarray, sigma2: float, dilation: float, flux: float,
                    psf_image: np.ndarray | None = None) -> np.ndarray:
    """Image of the (unsheared) target PSF on a PSF stamp grid, total ``flux``."""
    m = _fft_size(max(shape), 2.0)
    kr, kc = _freqs(m)
    if mode == "dilate":
        ft = stamp_ft_scaled(psf_image, centre, kr, kc, dilation) / psf_image.sum()
    else:
        ft = gauss_pixel_ft(kr, kc, sigma2, jmat, None)
    ft = ft * np.exp(-1j * (kr[:, None] * centre[0] + kc[None, :] * centre[1]))
    img = np.fft.irfft2(ft, s=(m, m))[:shape[0], :shape[1]]
    return img * flux


# --------------------------------------------------------------------------
# the target (reconvolution) PSF
# --------------------------------------------------------------------------

def step_shears(step: float) -> dict:
    return {"noshear": (0.0, 0.0), "1p": (step, 0.0), "1m": (-step, 0.0),
            "2p": (0.0, step), "2m": (0.0, -step)}


def ellip_dilation(irr: float, irc: float, icc: float) -> float:
    """Size factor (on T) making a round Gaussian cover the PSF's major axis:
    1 + 2 (sqrt(lambda_max / (T/2)) - 1), capped at 1.1 as metacal does."""
    T = irr + icc
    half_diff = math.sqrt(0.25 * (irr - icc) ** 2 + irc * irc)
    lam = 0.5 * T + half_diff
    d = 1.0 + 2.0 * (math.sqrt(lam / (0.5 * T)) - 1.0)
    return min(d, 1.1)


def target_psf_pars(mode: str, psf_obs: Any, step: float, rng=None) -> tuple[float, float]:
    """(sigma^2 per axis of the round Gaussian in arcsec^2, dilation) of the
    reconvolution PSF; for "dilate" only the dilation 1 + 2 step is used."""
    from .admom import admom
    from .psf import fit_psf

    dil = 1.0 + 2.0 * step
    if mode == "dilate":
        return 0.0, dil
    if mode == "fitgauss":
        tmp = type(psf_obs)(psf_obs.image, weight=psf_obs.weight, jacobian=psf_obs.jacobian)
        res = fit_psf(tmp, "gauss", ntry=2, rng=rng)
        if res["flags"] != 0:
            raise MetacalError("gauss fit to the PSF failed")
        irr, irc, icc = res["gmix"].get_moments()
    elif mode == "gauss":
        am = admom(psf_obs)
        if am["flags"] != 0:
            raise MetacalError("adaptive moments of the PSF failed")
        irr, irc, icc = am["Irr"], am["Irc"], am["Icc"]
    else:
        raise MetacalError(f"unknown metacal psf '{mode}' (use {', '.join(PSF_MODES)})")
    T = irr + icc
    if not (T > 0) or not np.isfinite(T):
        raise MetacalError("PSF size is not positive")
    T_round = T * ellip_dilation(irr, irc, icc)
    return 0.5 * T_round * dil * dil, dil


def _jmat(jac) -> np.ndarray:
    return np.array([[jac.dvdrow, jac.dvdcol], [jac.dudrow, jac.dudcol]])


# --------------------------------------------------------------------------
# one epoch
# --------------------------------------------------------------------------

def metacal_epoch(obs: Any, psf: str = "fitgauss", step: float = 0.01,
                  types=METACAL_TYPES, fixnoise: bool = True, rng=None,
                  psf_model: str = "gauss", psf_ntry: int = 2) -> dict:
    """Metacal versions of one Observation: {type: Observation}, each with a PSF
    Observation (the target PSF image) whose gmix is a ``psf_model`` fit.

    Raises MetacalError (caught by the callers) when the epoch is unusable.
    """
    from .observation import Observation
    from .psf import fit_psf

    if rng is None:
        rng = np.random.default_rng()
    psf_obs = obs.psf
    if psf_obs is None:
        raise MetacalError("epoch has no PSF observation")
    if not obs.jacobian.is_valid() or not psf_obs.jacobian.is_valid():
        raise MetacalError("singular or non-finite Jacobian")
    image = obs.image
    weight = obs.weight
    if not (weight > 0).any():
        raise MetacalError("no pixel with positive weight")
    psf_image = psf_obs.image
    psf_flux = float(psf_image.sum())
    if not np.isfinite(psf_flux) or psf_flux <= 0:
        raise MetacalError("PSF image has no positive flux")

    shears = step_shears(step)
    for t in types:
        if t not in shears:
            raise MetacalError(f"unknown metacal type '{t}'")
    sigma2, dil = target_psf_pars(psf, psf_obs, step, rng=rng)

    square = image.shape[0] == image.shape[1]
    do_noise = fixnoise and square
    if fixnoise and not square:
        logger.warning("fixnoise needs square stamps; skipped for shape %s", image.shape)
    if do_noise:
        sig = np.zeros_like(weight)
        good = weight > 0
        sig[good] = 1.0 / np.sqrt(weight[good])
        noise = rng.standard_normal(image.shape) * sig
        stack = np.stack([image, np.rot90(noise, 1)])
        new_weight = 0.5 * weight
    else:
        stack = image[None]
        new_weight = weight

    jm = _jmat(obs.jacobian)
    shearer = EpochShearer(stack, obs.jacobian.get_cen(), jm, psf_image,
                           psf_obs.jacobian.get_cen())
    target = draw_target_psf(psf, psf_image.shape, psf_obs.jacobian.get_cen(),
                             _jmat(psf_obs.jacobian), sigma2, dil, psf_flux, psf_image)
    tpsf = Observation(target, weight=psf_obs.weight, jacobian=psf_obs.jacobian.copy())
    pres = fit_psf(tpsf, psf_model, ntry=psf_ntry, rng=rng)
    if pres["flags"] != 0:
        raise MetacalError(f"{psf_model} fit to the target PSF failed")

    out = {}
    for t in types:
        g1, g2 = shears[t]
        ims = shearer.sheared(g1, g2, psf, sigma2, dil)
        new = ims[0] + np.rot90(ims[1], -1) if do_noise else ims[0]
        p = Observation(target, weight=psf_obs.weight, jacobian=psf_obs.jacobian.copy(),
                        gmix=pres["gmix"].copy())
        out[t] = Observation(new, weight=new_weight, jacobian=obs.jacobian.copy(), psf=p,
                             meta=obs.meta)
    return out


# --------------------------------------------------------------------------
# whole objects
# --------------------------------------------------------------------------

def _mirror(template: Any, mb) -> Any:
    """Give ``mb`` (a MultiBandObsList) the structure of the caller's input."""
    from .observation import Observation, ObsList
    if isinstance(template, Observation):
        return mb[0][0]
    if isinstance(template, (list, tuple)) and len(template) and isinstance(template[0],
                                                                           Observation):
        return mb[0] if isinstance(mb[0], ObsList) else ObsList(mb[0])
    return mb


def make_metacal_obs(obs: Any, psf: str = "fitgauss", step: float = 0.01,
                     types=METACAL_TYPES, fixnoise: bool = True, rng=None,
                     psf_model: str = "gauss", drop_bad_epochs: bool = True) -> dict:
    """{type: observations} with the input's structure (Observation, list of
    epochs, or list of bands).  Each epoch is processed with its own PSF.

    Unusable epochs are dropped (logged); raises MetacalError if a band is
    left without epochs (``metacal`` turns that into a flagged result).
    """
    from .observation import MultiBandObsList, ObsList, get_mb_obs

    if rng is None:
        rng = np.random.default_rng()
    mb = get_mb_obs(obs)
    per_type = {t: MultiBandObsList() for t in types}
    for iband, obslist in enumerate(mb):
        bands = {t: ObsList() for t in types}
        for iep, ep in enumerate(obslist):
            try:
                res = metacal_epoch(ep, psf=psf, step=step, types=types, fixnoise=fixnoise,
                                    rng=rng, psf_model=psf_model)
            except MetacalError as err:
                if not drop_bad_epochs:
                    raise
                logger.info("metacal: band %d epoch %d dropped: %s", iband, iep, err)
                continue
            for t in types:
                bands[t].append(res[t])
        if len(bands[types[0]]) == 0:
            raise MetacalError(f"band {iband} has no usable epoch")
        for t in types:
            per_type[t].append(bands[t])
    return {t: _mirror(obs, per_type[t]) for t in types}


class MetacalResult(dict):
    """{type: fit result}; ``flags`` attribute is 0, or METACAL_FAILURE when the
    images could not be made or any type's fit failed, with ``message``."""

    flags: int = 0
    message: str = ""


def _failed_result(message: str, types) -> MetacalResult:
    out = MetacalResult()
    for t in types:
        out[t] = {"flags": METACAL_FAILURE, "pars": None, "g": np.full(2, np.nan),
                  "g_cov": np.full((2, 2), np.nan), "T": np.nan, "T_r": np.nan,
                  "s2n_r": np.nan, "gpsf": np.full(2, np.nan), "Tpsf": np.nan}
    out.flags = METACAL_FAILURE
    out.message = message
    return out


def metacal(obs: Any, model: str = "gauss", psf: str = "fitgauss", step: float = 0.01,
            types=METACAL_TYPES, fixnoise: bool = True, rng=None, prior=None,
            psf_model: str = "gauss", **fit_kw) -> MetacalResult:
    """Metacalibrate and fit: {type: FitResult} plus T_r, s2n_r, gpsf, Tpsf.

    The sheared types start from the noshear fit's parameters.  Never raises for
    bad data: an unusable object gives ``result.flags = METACAL_FAILURE``.
    """
    from .maxlike import fit_model
    from .observation import get_mb_obs

    types = tuple(types)
    if rng is None:
        rng = np.random.default_rng()
    try:
        mcal = make_metacal_obs(obs, psf=psf, step=step, types=types, fixnoise=fixnoise,
                                rng=rng, psf_model=psf_model)
    except (MetacalError, ValueError) as err:
        return _failed_result(str(err), types)

    # the response is a difference of shapes over 2 step = 0.02: LM must converge
    # far below the noise or the stopping point (which depends on the start)
    # leaks into R; the tighter tolerance costs ~1-2 extra iterations
    fit_kw.setdefault("lm_pars", dict(METACAL_LM_PARS))
    out = MetacalResult()
    guess = None
    order = sorted(types, key=lambda t: t != "noshear")
    for t in order:
        mb = get_mb_obs(mcal[t])
        res = fit_model(mb, model, prior=prior, guess=guess, rng=rng, **fit_kw)
        if t == "noshear" and res["flags"] == 0:
            guess = np.array(res["pars"], copy=True)
        gpsf, Tpsf = psf_means(mb)
        res["gpsf"] = gpsf
        res["Tpsf"] = Tpsf
        res["T_r"], res["s2n_r"] = np.nan, np.nan
        if res["flags"] == 0:
            try:
                rnd = round_measures(res["pars"], mb, model, fracdev=fit_kw.get("fracdev"),
                                     TdByTe=fit_kw.get("TdByTe"))
            except PipelineError as err:
                logger.debug("round stats of %s failed: %s", t, err)
            else:
                if rnd["flags"] == 0:
                    res["T_r"], res["s2n_r"] = rnd["T_r"], rnd["s2n_r"]
        out[t] = res
    result = MetacalResult({t: out[t] for t in types})
    bad = [t for t in types if result[t]["flags"] != 0]
    if bad:
        result.flags = METACAL_FAILURE
        result.message = f"{model} fit failed for {', '.join(bad)}"
    return result
