"""Simulated survey tiles (galsim) written as MEDS files plus a truth catalogue.

- :func:`sim_config` loads/validates a simulation config (``configs/sim.yaml``);
- :func:`plan_tile` draws the truth catalogue and the observing conditions;
- :func:`render_noiseless_coadd`, :func:`render_noiseless_epoch`: one noiseless image
  (for checks against the MEDS pixels);
- :func:`simulate_tile` does it all and writes ``TILE-BAND-meds.fits`` per band and
  ``TILE-truth.fits``.
"""

from .config import SIM_SCHEMA, sim_config
from .tile import (SimSummary, TilePlan, plan_tile, render_noiseless_coadd,
                   render_noiseless_epoch, simulate_tile)

__all__ = ["SIM_SCHEMA", "sim_config", "plan_tile", "render_noiseless_coadd",
           "render_noiseless_epoch", "simulate_tile", "SimSummary", "TilePlan"]
