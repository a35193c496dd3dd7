"""ngmix's exp fit of the stamps bench/engine.py --lowsn writes, for comparison.

    PY bench/ngmix_lowsn.py STAMPS.npz OUT.npz

Run by bench/engine.py with ``--ngmix-python PY``, an interpreter that can
import ngmix (e.g. a scratch venv with ngmix built from a checkout of
esheldon/ngmix; never a dependency of this repository).  Imports nothing from
this repository.  The fit is ngmix's usual maximum-likelihood setup for a
galaxy: ``Fitter("exp")`` with its default LM pars, ``TPSFFluxGuesser`` (T at
the PSF's T, flux at the PSF flux, centre and shape jittered around 0) and a
``Runner`` with ntry 2, on the same PSF mixture megamixer fitted.  Writes
flux, flux_err, chi2, g, T, flags and the wall seconds per fit.
"""
import sys
import time

import numpy as np


def main(stamps: str, out: str) -> None:
    import ngmix

    d = dict(np.load(stamps))     # every array read once
    scale = float(d["scale"])
    psf_gm = ngmix.GMix(pars=d["psf_pars"])
    pcen = (d["psf_image"].shape[0] - 1) / 2.0
    pjac = ngmix.DiagonalJacobian(row=pcen, col=pcen, scale=scale)
    cen = float(d["cen"])
    jac = ngmix.DiagonalJacobian(row=cen, col=cen, scale=scale)
    n = d["images"].shape[0]
    cols = {k: np.full(n, np.nan) for k in ("flux", "flux_err", "chi2", "T", "g1", "g2")}
    flags = np.zeros(n, dtype=np.int64)
    t0 = time.perf_counter()
    for i in range(n):
        psf = ngmix.Observation(d["psf_image"], jacobian=pjac, gmix=psf_gm.copy())
        obs = ngmix.Observation(d["images"][i], weight=d["weights"][i], jacobian=jac, psf=psf)
        guesser = ngmix.guessers.TPSFFluxGuesser(rng=np.random.RandomState(i),
                                                 T=psf_gm.get_T())
        runner = ngmix.runners.Runner(fitter=ngmix.fitting.Fitter(model="exp"),
                                      guesser=guesser, ntry=2)
        res = runner.go(obs)
        flags[i] = res["flags"]
        if res["flags"] == 0:
            cols["flux"][i] = res["flux"]
            cols["flux_err"][i] = res["flux_err"]
            cols["chi2"][i] = res["chi2per"] * res["dof"]
            cols["T"][i] = res["T"]
            cols["g1"][i], cols["g2"][i] = res["g"]
    seconds = (time.perf_counter() - t0) / n
    np.savez(out, flags=flags, seconds=seconds, version=ngmix.__version__, **cols)


if __name__ == "__main__":
    main(*sys.argv[1:3])
