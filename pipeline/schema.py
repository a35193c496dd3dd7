"""The tables of a fit output and of a collated catalogue, from (config, nband) alone.

Nothing is fitted or read: the columns (name, numpy type code, shape, unit,
meaning; see :class:`pipeline.columns.Column`) come from the declarations
beside the code that fills them. The documentation's column reference and
``bench/ngmixer_columns.py`` are built from here.

``meta_data`` starts with the MEDS metadata columns of the input files (band 0's
layout, as ngmixer), which depend on the MEDS maker and are not listed.
"""

from __future__ import annotations

import os

from .columns import Column, dtype_of
from .fitconfig import load_fit_config
from .fitters.base import get_fitter
from .imageio.base import EPOCH_COLUMNS
from .megamixer.derived import BAND_COLUMN, derived_column_list
from .output import EPOCH_DATA, META_DATA, MODEL_FITS, base_columns, meta_columns


def fit_output_columns(conf: dict, nband: int) -> dict[str, list[Column]]:
    """HDU name -> columns of the file ngmixit writes for a loaded fit config."""
    fitter = get_fitter(conf, nband)
    out = {MODEL_FITS: base_columns(nband) + fitter.model_columns(),
           EPOCH_DATA: EPOCH_COLUMNS + fitter.epoch_columns(),
           META_DATA: meta_columns(nband)}
    out.update(fitter.extra_columns())
    return out


def collated_columns(conf: dict, nband: int) -> dict[str, list[Column]]:
    """HDU name -> columns of a collated catalogue's data tables (model_fits gains
    the derived columns; the fitter's extra tables are not collated)."""
    tables = fit_output_columns(conf, nband)
    model = tables[MODEL_FITS]
    model = model + derived_column_list(dtype_of(model), nband)
    return {MODEL_FITS: model, EPOCH_DATA: tables[EPOCH_DATA] + [BAND_COLUMN],
            META_DATA: tables[META_DATA]}


def columns_for_config(path: str | os.PathLike, nband: int, collated: bool = False
                       ) -> dict[str, list[Column]]:
    """:func:`fit_output_columns` (or :func:`collated_columns`) of a config file."""
    conf = load_fit_config(os.fspath(path))
    return collated_columns(conf, nband) if collated else fit_output_columns(conf, nband)
