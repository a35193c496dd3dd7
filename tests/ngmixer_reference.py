"""The columns ngmixer wrote, written out by hand (no tests here).

Transcribed from ngmixer's dtype code (``ngmixing._get_dtype``,
``imageio/medsio.get_meta_data_dtype`` / ``get_epoch_meta_data_dtype``,
``bootfit._get_fit_data_dtype`` / ``get_epoch_fit_data_dtype`` /
``get_nbrs_data_dtype`` / ``_get_metacal_dtype``, ``mofngmixing._get_dtype``)
and its DES collation (``megamixer/desconcat.pick_fields``), as facts: each
entry is (name, numpy type code, shape). A reader written for ngmixer's files
finds these columns; the project's outputs must hold every one of them with
the same type and shape.
"""

from __future__ import annotations

Entry = tuple[str, str, tuple]


def _band(nband: int) -> tuple:
    return (nband,)


def model_fits(models: list[str], nband: int, mof: bool = False,
               metacal_types: list[str] | None = None) -> list[Entry]:
    """ngmixer's model_fits for fitted ``models`` (fit_me_galaxy, no coadd fit)."""
    nb = _band(nband)
    np_ = 5 + nband
    out: list[Entry] = [
        ("id", "i8", ()), ("number", "i4", ()), ("ra", "f8", ()), ("dec", "f8", ()),
        ("nimage_tot", "i4", nb), ("fofid", "i8", ()), ("flags", "i4", ()),
        ("time_last_fit", "f8", ()), ("box_size", "i2", ()), ("obj_flags", "i4", ()),
        ("psf_flags", "i4", nb), ("psf_flux", "f8", nb), ("psf_flux_err", "f8", nb),
        ("psf_flux_s2n", "f8", nb), ("nimage_use", "i4", nb), ("mask_frac", "f8", ()),
        ("psfrec_T", "f8", ()), ("psfrec_g", "f8", (2,)),
    ]
    for m in models:
        out += [
            (f"{m}_flags", "i4", ()), (f"{m}_pars", "f8", (np_,)),
            (f"{m}_pars_cov", "f8", (np_, np_)), (f"{m}_g", "f8", (2,)),
            (f"{m}_g_cov", "f8", (2, 2)), (f"{m}_max_flags", "i4", ()),
            (f"{m}_max_pars", "f8", (np_,)), (f"{m}_max_pars_cov", "f8", (np_, np_)),
            (f"{m}_s2n_w", "f8", ()), (f"{m}_chi2per", "f8", ()), (f"{m}_dof", "f8", ()),
            (f"{m}_flags_r", "i4", ()), (f"{m}_s2n_r", "f8", ()), (f"{m}_T_r", "f8", ()),
            (f"{m}_psf_T_r", "f8", ()),
        ]
        if "cm" in m:
            out += [(f"{m}_fracdev", "f4", ()), (f"{m}_fracdev_noclip", "f4", ()),
                    (f"{m}_fracdev_err", "f4", ()), (f"{m}_TdByTe", "f4", ()),
                    (f"{m}_TdByTe_noclip", "f4", ())]
    if metacal_types:
        out.append(("mcal_flags", "i8", ()))
        for t in metacal_types:
            s = "" if t == "noshear" else f"_{t}"
            out += [(f"mcal_g{s}", "f8", (2,)), (f"mcal_g_cov{s}", "f8", (2, 2)),
                    (f"mcal_pars{s}", "f8", (np_,)), (f"mcal_pars_cov{s}", "f8", (np_, np_))]
            if t == "noshear":
                out += [("mcal_gpsf", "f8", (2,)), ("mcal_Tpsf", "f8", ())]
            out += [(f"mcal_T{s}", "f8", ()), (f"mcal_T_err{s}", "f8", ()),
                    (f"mcal_T_r{s}", "f8", ()), (f"mcal_s2n_r{s}", "f8", ())]
    if mof:
        for m in models:
            out += [(f"{m}_mof_flags", "i4", ()), (f"{m}_mof_num_itr", "i4", ()),
                    (f"{m}_mof_abs_diff", "f8", (np_,)), (f"{m}_mof_frac_diff", "f8", (np_,)),
                    (f"{m}_mof_err_diff", "f8", (np_,))]
        out.append(("fofind", "i8", ()))
    return out


EPOCH_META: list[Entry] = [
    ("id", "i8", ()), ("number", "i4", ()), ("band_num", "i2", ()),
    ("cutout_index", "i4", ()), ("orig_row", "f8", ()), ("orig_col", "f8", ()),
    ("file_id", "i4", ()), ("pixel_scale", "f8", ()),
]

#: Gaussians of ngmixer's PSF models (its npdict / 6)
PSF_NGAUSS = {"em1": 1, "em2": 2, "em3": 3, "coellip2": 2, "coellip3": 3, "turb": 3,
              "gauss": 1}


def epoch_data(psf_model: str) -> list[Entry]:
    npars = 6 * PSF_NGAUSS[psf_model]
    return EPOCH_META + [
        ("npix", "i4", ()), ("wsum", "f8", ()), ("wmax", "f8", ()),
        ("psf_fit_flags", "i4", ()), ("psf_model_s2n", "f8", ()), ("psf_counts", "f8", ()),
        ("psf_fit_g", "f8", (2,)), ("psf_fit_T", "f8", ()), ("psf_fit_pars", "f8", (npars,)),
    ]


def nbrs_data(psf_model: str) -> list[Entry]:
    npars = 6 * PSF_NGAUSS[psf_model]
    return EPOCH_META + [
        ("nbr_id", "i8", ()), ("nbr_flags", "i4", ()), ("nbr_jac_row0", "f8", ()),
        ("nbr_jac_col0", "f8", ()), ("nbr_jac_dudrow", "f8", ()), ("nbr_jac_dudcol", "f8", ()),
        ("nbr_jac_dvdrow", "f8", ()), ("nbr_jac_dvdcol", "f8", ()),
        ("nbr_psf_fit_pars", "f8", (npars,)),
    ]


#: meta_data: the MEDS metadata columns, then these; one row per band
META_DATA: list[Entry] = [("ngmixer_config", "S", ()), ("meds_file", "S", ())]


#: what the DES collation adds to epoch_data: the band's name
DES_EPOCH: list[Entry] = [("band", "S", ())]


def des_collated(models: list[str], nband: int, metacal: bool = False) -> list[Entry]:
    """Columns the DES collation adds to model_fits (per band: scalars for one band)."""
    nb = _band(nband) if nband > 1 else ()
    cov = (nband, nband) if nband > 1 else ()
    names = list(models) + (["mcal"] if metacal else [f"{m}_max" for m in models])
    out: list[Entry] = [("psf_mag", "f8", nb)]
    for m in names:
        if not m.endswith("_max"):
            out.append((f"{m}_weight", "f8", ()))
        out += [(f"{m}_flux", "f8", nb), (f"{m}_flux_cov", "f8", cov)]
        out += [(f"{m}_flux_s2n", "f8", nb), (f"{m}_mag", "f8", nb), (f"{m}_logsb", "f8", nb)]
        if m != "mcal":
            out += [(f"{m}_T", "f8", ()), (f"{m}_T_err", "f8", ()), (f"{m}_T_s2n", "f8", ())]
    return out
