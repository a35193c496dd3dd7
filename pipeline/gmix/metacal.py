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
  resampling at ``B p`` is done exactly with trigonometric interpolation,
  factorising ``B = Sx(s) diag(a, d) Sy(t)`` into two per-row/column Fourier
  shifts and one separable Dirichlet-kernel rescale (two small matrix products).

The same linear operator is applied to a 90-degree rotated noise field
(``fixnoise``), which is rotated back and added, and the weight is halved.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

METACAL_TYPES = ("noshear", "1p", "1m", "2p", "2m")
PSF_MODES = ("fitgauss", "gauss", "dilate")

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
    """sin(x)/x."""
    return np.sinc(x / math.pi)


def gauss_pixel_ft(kr: np.ndarray, kc: np.ndarray, sigma2_world: float,
                   jmat: np.ndarray, amat: np.ndarray | None = None) -> np.ndarray:
    """FT of (round Gaussian of variance sigma2 per axis in world) x (unit pixel),
    sheared by A^-1 in world (``amat`` = A), on the (kr, kc) pixel grid.

    Pixel-space covariance is J^-1 S J^-T; the sheared profile's FT at k is the
    unsheared FT at q = A_pix^-T k with A_pix = J^-1 A J.
    """
    jinv = np.linalg.inv(jmat)
    cov = sigma2_world * (jinv @ jinv.T)
    KR = kr[:, None]
    KC = kc[None, :]
    if amat is not None:
        apix = jinv @ amat @ jmat
        mt = np.linalg.inv(apix).T
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

def _dirichlet(x: np.ndarray, m: int) -> np.ndarray:
    """Periodic interpolation kernel of an even-length m trigonometric series."""
    s = np.sin(math.pi * x)
    t = np.tan(math.pi * x / m)
    out = np.empty_like(x)
    small = np.abs(t) < 1e-12
    out[~small] = s[~small] / (m * t[~small])
    out[small] = np.cos(math.pi * x[small])  # limit at integer multiples of m
    return out


def _scale_matrix(m: int, centre: float, factor: float) -> np.ndarray:
    """R with (R h)[j] = h(centre + factor*(j - centre)) for periodic band-limited h."""
    j = np.arange(m)
    x = centre + factor * (j - centre)
    return _dirichlet(x[:, None] - j[None, :], m)


def _shift_rows(h: np.ndarray, s: float, c0: float) -> np.ndarray:
    """out(r, c) = h(r + s*(c - c0), c) along axis -2 (each column its own shift)."""
    m = h.shape[-2]
    kr = 2.0 * math.pi * np.fft.rfftfreq(m)
    c = np.arange(h.shape[-1]) - c0
    ph = np.exp(1j * kr[:, None] * (s * c)[None, :])
    return np.fft.irfft(np.fft.rfft(h, axis=-2) * ph, n=m, axis=-2)


def _shift_cols(h: np.ndarray, t: float, r0: float) -> np.ndarray:
    """out(r, c) = h(r, c + t*(r - r0)) along axis -1 (each row its own shift)."""
    m = h.shape[-1]
    kc = 2.0 * math.pi * np.fft.rfftfreq(m)
    r = np.arange(h.shape[-2]) - r0
    ph = np.exp(1j * (t * r)[:, None] * kc[None, :])
    return np.fft.irfft(np.fft.rfft(h, axis=-1) * ph, n=m, axis=-1)


def resample_linear(h: np.ndarray, bmat: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """out(p) = h(centre + B (p - centre)) for band-limited periodic h (..., M, M), det B = 1.

    B = [[1, s], [0, 1]] diag(1/d, d) [[1, 0], [t, 1]] with s = b/d, t = c/d.
    """
    (a, b), (c, d) = bmat
    r0, c0 = centre
    m = h.shape[-1]
    s = b / d
    t = c / d
    out = h
    if s != 0.0:
        out = _shift_rows(out, s, c0)
    rr = _scale_matrix(m, r0, a - b * c / d)
    rc = _scale_matrix(m, c0, d)
    out = rr @ out @ rc.T
    if t != 0.0:
        out = _shift_cols(out, t, r0)
    return out


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
            jinv = np.linalg.inv(self.jmat)
            mt = np.linalg.inv(jinv @ amat @ self.jmat).T
            KR = self.kr[:, None]
            KC = self.kc[None, :]
            qr = dilation * (mt[0, 0] * KR + mt[0, 1] * KC)
            qc = dilation * (mt[1, 0] * KR + mt[1, 1] * KC)
            return stamp_ft_at(self.psf_image, self.psf_centre, qr, qc) / self.psf_image.sum()
        return gauss_pixel_ft(self.kr, self.kc, sigma2, self.jmat, amat)

    def sheared(self, g1: float, g2: float, mode: str, sigma2: float, dilation: float) -> np.ndarray:
        """Images sheared by (g1, g2) and reconvolved with the target PSF."""
        if g1 == 0.0 and g2 == 0.0:
            amat = None
        else:
            amat = shear_matrix_vu(g1, g2)
        tft = self.target_ft(mode, sigma2, dilation, amat)
        kern = np.where(self.pbad, 0.0, tft / self.pft_safe)
        h = np.fft.irfft2(self.ift * kern, s=(self.m, self.m))
        if amat is not None:
            jinv = np.linalg.inv(self.jmat)
            bmat = jinv @ np.linalg.inv(amat) @ self.jmat
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
