"""ngmixit end to end on a simulated tile: accuracy, chunking, resume, bad input."""

from __future__ import annotations

import os
import subprocess
import sys

import fitsio
import numpy as np
import pytest

from pipeline.output import NONDETERMINISTIC_COLUMNS

from .ngmixit_runs import kill_after_checkpoint, ngmixit

NOBJ = 200
BANDS = "g,r"
SEED = 31415

FIT_CONFIG = """\
fitter_type: max
region: weight
psf_pars: {model: coellip3, ntry: 4}
max_pars: {ntry: 2}
models: [bdf]
model_pars:
  bdf:
    cen: {type: normal2d, width: 0.263}
    g: {type: ba, sigma: 0.3}
    fracdev: {type: normal, mean: 0.5, sigma: 0.5}
checkpoint_seconds: 600
"""


@pytest.fixture(scope="module")
def tile(tmp_path_factory):
    """A 200-object, 2-band, 3-epoch simulated tile without blends.

    The galaxies are a mix of exp, dev and bulge+disk profiles, so the fits use
    bdf, whose family contains all three.
    """
    outdir = tmp_path_factory.mktemp("tile")
    subprocess.run([sys.executable, "-m", "pipeline.cli.sim", str(outdir), "--tile", "T1",
                    "--nobj", str(NOBJ), "--bands", BANDS, "--nepoch", "3", "--seed", "7",
                    "--blend-frac", "0", "--star-frac", "0.05"], check=True)
    conf = outdir / "fit.yaml"
    conf.write_text(FIT_CONFIG)
    meds = [outdir / f"T1-{b}-meds.fits" for b in BANDS.split(",")]
    return {"dir": outdir, "conf": conf, "meds": meds, "truth": outdir / "T1-truth.fits"}


@pytest.fixture(scope="module")
def full_run(tile):
    out = tile["dir"] / "full.fits"
    ngmixit(tile["conf"], out, *tile["meds"], "--seed", SEED)
    return out


def comparable(table: np.ndarray) -> np.ndarray:
    names = [n for n in table.dtype.names if n not in NONDETERMINISTIC_COLUMNS]
    return table[names]


def test_accuracy_against_truth(tile, full_run):
    cat = fitsio.read(full_run, ext="model_fits")
    truth = fitsio.read(tile["truth"])
    assert np.array_equal(cat["id"], truth["id"])
    ok = cat["flags"] == 0
    assert ok.mean() >= 0.97, f"only {ok.mean():.3f} of objects have flags 0"

    gal = ok & (truth["is_star"] == 0)
    s2n = cat["bdf_s2n_w"]
    sel = gal & (s2n > 30)
    assert sel.sum() >= 30, "too few bright galaxies to test"
    nband = len(BANDS.split(","))
    for band in range(nband):
        frac = cat["bdf_flux"][sel, band] / truth["flux"][sel, band] - 1
        err = 1.2533 * np.std(frac) / np.sqrt(sel.sum())
        med = np.median(frac)
        assert abs(med) <= 0.02, f"band {band}: median flux error {med:+.4f} +- {err:.4f}"
    tfrac = cat["bdf_T"][sel] / truth["T"][sel] - 1
    assert abs(np.median(tfrac)) <= 0.05, f"median T error {np.median(tfrac):+.4f}"


def test_outputs_have_reference_tables(full_run):
    with fitsio.FITS(full_run) as fits:
        names = {hdu.get_extname() for hdu in fits}
        assert {"model_fits", "epoch_data", "meta_data"} <= names
        cols = set(fits["model_fits"].get_colnames())
        for col in ("id", "number", "fofid", "flags", "time_last_fit", "nimage_tot",
                    "nimage_use", "mask_frac", "psfrec_T", "psfrec_g", "psf_flux",
                    "psf_flux_err", "psf_flux_s2n", "bdf_flags", "bdf_pars", "bdf_pars_cov",
                    "bdf_g", "bdf_g_cov", "bdf_T", "bdf_T_err", "bdf_flux", "bdf_flux_err",
                    "bdf_s2n_w", "bdf_chi2per", "bdf_dof", "bdf_T_r"):
            assert col in cols, col
        epochs = fits["epoch_data"].read()
        models = fits["model_fits"].read()
        meta = fits["meta_data"].read()
    # every used epoch is listed once per object, and matches nimage_use
    counts = np.bincount(np.searchsorted(models["id"], epochs["id"]), minlength=len(models))
    assert np.array_equal(counts, models["nimage_use"].sum(axis=1))
    # the coellip3 mixtures hold ~99% of the Moffat PSF stamps' light
    frac = epochs["psf_fit_flux_frac"][epochs["psf_fit_flags"] == 0]
    assert 0.985 < np.median(frac) < 1.0, np.median(frac)
    assert meta["fit_seed"][0] == SEED
    assert "models:" in meta["fit_config"][0]
    assert not os.path.exists(str(full_run).replace(".fits", "-checkpoint.fits"))


def test_chunks_concatenate_to_single_run(tile, full_run):
    parts = []
    for rng in ("0,99", "100,199"):
        out = tile["dir"] / f"chunk-{rng.replace(',', '-')}.fits"
        ngmixit(tile["conf"], out, *tile["meds"], "--seed", SEED, "--fof-range", rng)
        parts.append(fitsio.read(out, ext="model_fits"))
    joined = np.concatenate(parts)
    whole = fitsio.read(full_run, ext="model_fits")
    assert joined.dtype.names == whole.dtype.names
    assert np.array_equal(comparable(joined), comparable(whole))


def test_resume_after_sigkill(tile, full_run):
    out = tile["dir"] / "killed.fits"
    ckpt = tile["dir"] / "killed-checkpoint.fits"
    args = [tile["conf"], out, *tile["meds"], "--seed", SEED, "--checkpoint-seconds", "0"]
    kill_after_checkpoint(args, ckpt)
    assert not out.exists(), "the killed run left an output file"
    rerun = ngmixit(*args)
    assert "resuming from checkpoint" in rerun.stderr
    resumed_at = int(rerun.stderr.split("at group ")[1].split()[0])
    assert 0 < resumed_at < NOBJ
    assert np.array_equal(comparable(fitsio.read(out, ext="model_fits")),
                          comparable(fitsio.read(full_run, ext="model_fits")))
    assert np.array_equal(fitsio.read(out, ext="epoch_data"),
                          fitsio.read(full_run, ext="epoch_data"))
    assert not ckpt.exists()


@pytest.mark.parametrize("case", ["bad_key", "band_mismatch", "missing_meds", "bad_range"])
def test_bad_input_one_line_no_output(tile, tmp_path, case):
    conf, meds = tile["conf"], list(tile["meds"])
    extra = []
    if case == "bad_key":
        conf = tmp_path / "bad.yaml"
        conf.write_text(FIT_CONFIG.replace("models:", "modles:"))
        expect = "unknown key 'modles' (did you mean 'models'?)"
    elif case == "band_mismatch":
        small = tmp_path / "small"
        subprocess.run([sys.executable, "-m", "pipeline.cli.sim", str(small), "--tile", "S",
                        "--nobj", "10", "--bands", "g", "--nepoch", "1", "--seed", "1"],
                       check=True)
        meds = [meds[0], small / "S-g-meds.fits"]
        expect = "band files must match"
    elif case == "missing_meds":
        meds = [meds[0], tmp_path / "nope-meds.fits"]
        expect = "nope-meds.fits: MEDS file not found"
    else:
        extra = ["--fof-range", f"150,{NOBJ + 5}"]
        expect = "is outside the"
    out = tmp_path / "out.fits"
    proc = ngmixit(conf, out, *meds, "--seed", 1, *extra, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], lines
    assert not out.exists()


def test_fitter_exception_flags_object_and_run_goes_on(tile, tmp_path, monkeypatch):
    """The engine raising inside one object's model fit flags it; the rest go on."""
    import pipeline.fitters.maxlike as maxlike
    from pipeline.gmix import flags as F
    from pipeline.runner import Run, RunOptions

    calls = []
    original = maxlike.fit_model

    def exploding(*args, **kw):
        calls.append(1)
        if len(calls) == 4:  # the 4th object's bdf fit
            raise RuntimeError("boom in the model fit")
        return original(*args, **kw)

    monkeypatch.setattr(maxlike, "fit_model", exploding)
    out = tmp_path / "diag.fits"
    Run(str(tile["conf"]), str(out), [str(m) for m in tile["meds"]],
        RunOptions(fof_range=(0, 9), seed=SEED, progress=False)).execute()
    cat = fitsio.read(out, ext="model_fits")
    assert len(cat) == 10
    bad_id = int(cat["id"][3])
    bad = cat["id"] == bad_id
    assert cat["flags"][bad][0] & F.UTTER_FAILURE
    assert np.mean(cat["flags"][~bad] == 0) >= 0.8
    diag = (tmp_path / "diag-diagnostics.jsonl").read_text().strip().splitlines()
    assert len(diag) == 1
    assert f'"id": {bad_id}' in diag[0] and "boom in the model fit" in diag[0]
    assert '"stage": "model:bdf"' in diag[0] and "Traceback" in diag[0]


def test_make_plots_profile_and_work_dir(tile, tmp_path):
    """--make-plots draws PNG mosaics, --profile writes stats, --work-dir stages output."""
    out = tmp_path / "final" / "plots.fits"
    work = tmp_path / "work"
    ngmixit(tile["conf"], out, *tile["meds"], "--seed", SEED, "--fof-range", "0,5",
            "--make-plots", "--profile", "--work-dir", work)
    assert out.exists() and not (work / "plots.fits").exists()
    pngs = sorted((tmp_path / "final" / "plots-plots").glob("*.png"))
    assert 1 <= len(pngs) <= 5
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    profile = (tmp_path / "final" / "plots-profile.txt").read_text()
    assert "fit_group" in profile



def test_plot_mosaic_names_bands_and_has_colour_bars(tile, tmp_path):
    """--make-plots mosaics: band names from the MEDS metadata, one colour bar per row."""
    from pipeline.plots import band_names, object_figure
    from pipeline.runner import Run, RunOptions

    run = Run(str(tile["conf"]), str(tmp_path / "p.fits"), [str(m) for m in tile["meds"]],
              RunOptions(fof_range=(0, 3), seed=SEED, progress=False))
    bands = band_names(run.io.meta_data()["meds_meta"], run.nband)
    assert bands == BANDS.split(",")
    run.execute()
    obj = next(o for o in run._last_objects if o.extra.get("results"))
    fig = object_figure(obj, bands)
    nepoch = sum(len(obslist) for obslist in obj.extra["mbobs_used"])
    assert len(fig.axes) == 3 * nepoch + 3                   # three colour bars
    titles = [ax.get_title() for ax in fig.axes[:nepoch]]
    assert titles[0].startswith("g epoch") and titles[-1].startswith("r epoch")
    labels = [ax.get_ylabel() for ax in fig.axes[3 * nepoch:]]
    assert labels == ["counts", "counts", "sigma"]
