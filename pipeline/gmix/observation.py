"""Observation types: one epoch (image, weight, Jacobian, PSF, metadata), the
epochs of one band (ObsList) and the bands (MultiBandObsList).

Bad pixels never raise: non-finite image or weight values get weight 0 (and
image 0), negative weights become 0; the count is kept in ``meta['nbad']``.
Fitters skip zero-weight pixels and return flagged results for unusable data.
"""
import logging
from typing import Optional

import numpy as np

from .jacobian import DiagonalJacobian, Jacobian

log = logging.getLogger(__name__)


def _as_image(a, name: str) -> np.ndarray:
    arr = np.array(a, dtype='f8', copy=True, order='C')
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-d, got shape {arr.shape}")
    return arr


class Observation:
    """One image of one object.

    image, weight (inverse variance; default ones), jacobian (default: unit
    pixels centred at the image centre), psf (an Observation whose ``gmix`` is
    set by a PSF fit), gmix (a model mixture, e.g. the PSF fit), bmask, noise
    (a noise image, e.g. for metacal fixnoise), meta (dict).
    """

    def __init__(self, image, weight=None, jacobian: Optional[Jacobian] = None,
                 psf: Optional["Observation"] = None, gmix=None, bmask=None, noise=None,
                 meta: Optional[dict] = None):
        self.meta = dict(meta) if meta else {}
        image = _as_image(image, "image")
        if weight is None:
            weight = np.ones_like(image)
        else:
            weight = _as_image(weight, "weight")
            if weight.shape != image.shape:
                raise ValueError(f"weight shape {weight.shape} != image shape {image.shape}")
        self._image = image
        self._weight = weight
        self._clean()
        if jacobian is None:
            nrow, ncol = image.shape
            jacobian = DiagonalJacobian(row=(nrow - 1) / 2.0, col=(ncol - 1) / 2.0, scale=1.0)
        self.jacobian = jacobian
        self.psf = psf
        self.gmix = gmix
        self.bmask = None if bmask is None else np.asarray(bmask)
        self.noise = None if noise is None else _as_image(noise, "noise")

    @classmethod
    def from_clean(cls, image: np.ndarray, weight: np.ndarray, jacobian: Jacobian,
                   psf: Optional["Observation"] = None,
                   meta: Optional[dict] = None) -> "Observation":
        """An Observation that takes ownership of arrays the caller has already
        cleaned: float64, 2-d, one shape, finite, weight >= 0. Nothing is copied
        or re-checked beyond dtype and shape (an ImageIO builds thousands per
        second from masks it has computed anyway)."""
        if (image.dtype != np.float64 or weight.dtype != np.float64 or image.ndim != 2
                or weight.shape != image.shape):
            raise ValueError(f"from_clean needs float64 2-d arrays of one shape, got "
                             f"{image.dtype}{image.shape} and {weight.dtype}{weight.shape}")
        obs = cls.__new__(cls)
        obs.meta = dict(meta) if meta else {}
        obs.meta.setdefault("nbad", 0)
        obs._image = image
        obs._weight = weight
        obs.jacobian = jacobian
        obs.psf = psf
        obs.gmix = None
        obs.bmask = None
        obs.noise = None
        return obs

    def _clean(self) -> None:
        bad = ~(np.isfinite(self._image) & np.isfinite(self._weight))
        nbad = int(bad.sum())
        if nbad:
            self._image[bad] = 0.0
            self._weight[bad] = 0.0
            log.debug("%d non-finite pixels given zero weight", nbad)
        neg = self._weight < 0
        if neg.any():
            self._weight[neg] = 0.0
        self.meta['nbad'] = nbad

    # image and weight are re-validated when replaced
    @property
    def image(self) -> np.ndarray:
        return self._image

    @image.setter
    def image(self, value) -> None:
        value = _as_image(value, "image")
        if value.shape != self._weight.shape:
            raise ValueError(f"image shape {value.shape} != weight shape {self._weight.shape}")
        self._image = value
        self._clean()

    @property
    def weight(self) -> np.ndarray:
        return self._weight

    @weight.setter
    def weight(self, value) -> None:
        value = _as_image(value, "weight")
        if value.shape != self._image.shape:
            raise ValueError(f"weight shape {value.shape} != image shape {self._image.shape}")
        self._weight = value
        self._clean()

    @property
    def shape(self):
        return self._image.shape

    def has_psf(self) -> bool:
        return self.psf is not None

    def has_psf_gmix(self) -> bool:
        return self.psf is not None and self.psf.gmix is not None

    def has_gmix(self) -> bool:
        return self.gmix is not None

    def get_gmix(self):
        return self.gmix

    def set_gmix(self, gmix) -> None:
        self.gmix = gmix

    def get_psf_gmix(self):
        return None if self.psf is None else self.psf.gmix

    @property
    def npix_used(self) -> int:
        return int(np.count_nonzero(self._weight > 0))

    def copy(self) -> "Observation":
        return Observation(self._image, weight=self._weight, jacobian=self.jacobian.copy(),
                           psf=None if self.psf is None else self.psf.copy(),
                           gmix=None if self.gmix is None else self.gmix.copy(),
                           bmask=None if self.bmask is None else self.bmask.copy(),
                           noise=self.noise, meta=self.meta)

    def __repr__(self) -> str:
        return f"Observation(shape={self.shape}, {self.jacobian!r}, psf={self.psf is not None})"


#: PSF stamps carry no weight map; a uniform weight at this fraction of the peak
#: keeps the PSF fit well conditioned without pretending the model is perfect.
PSF_REL_NOISE = 1.0e-3


def psf_images_and_weights(stamps: np.ndarray, rel_noise: float = PSF_REL_NOISE
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cleaned float64 images, uniform weights ``1 / (rel_noise * peak)**2`` and the
    count of non-finite pixels (which get weight 0) of a ``(n, nrow, ncol)``
    stack of PSF stamps."""
    from .observation_nb import psf_stack_nb

    stamps = np.asarray(stamps)
    if stamps.ndim != 3:
        raise ValueError(f"PSF stamps must be an (n, nrow, ncol) stack, got {stamps.shape}")
    return psf_stack_nb(stamps, float(rel_noise))


def psf_observation(stamp: np.ndarray, jacobian: Jacobian,
                    rel_noise: float = PSF_REL_NOISE) -> Observation:
    """Observation of a PSF stamp with uniform weight ``1 / (rel_noise * peak)**2``;
    non-finite pixels get weight 0 (an all-bad stamp gives a failed PSF fit)."""
    images, weights, nbad = psf_images_and_weights(np.asarray(stamp)[None], rel_noise)
    return Observation.from_clean(images[0], weights[0], jacobian, meta={"nbad": int(nbad[0])})


class ObsList(list):
    """The epochs (Observations) of one band."""

    def __init__(self, obs=()):
        super().__init__(obs)
        self.meta = {}


class MultiBandObsList(list):
    """One ObsList per band."""

    def __init__(self, obslists=()):
        super().__init__(obslists)
        self.meta = {}


def get_mb_obs(obs) -> MultiBandObsList:
    """Normalise an Observation, a list of epochs or a list of bands (lists of
    epochs) into a MultiBandObsList."""
    if isinstance(obs, MultiBandObsList):
        return obs
    if isinstance(obs, Observation):
        return MultiBandObsList([ObsList([obs])])
    if isinstance(obs, (list, tuple)):
        if len(obs) == 0:
            raise ValueError("empty observation list")
        if all(isinstance(o, Observation) for o in obs):
            return MultiBandObsList([ObsList(obs)])
        if all(isinstance(o, (list, tuple)) for o in obs):
            bands = []
            for b in obs:
                if not all(isinstance(o, Observation) for o in b) or len(b) == 0:
                    raise ValueError("each band must be a non-empty list of Observations")
                bands.append(b if isinstance(b, ObsList) else ObsList(b))
            return MultiBandObsList(bands)
    raise ValueError(f"cannot interpret {type(obs).__name__} as observations")


as_mbobs = get_mb_obs
