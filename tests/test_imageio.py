"""The MEDS ImageIO: weight regions, masks and bookkeeping against the reader."""

import subprocess
import sys

import numpy as np
import pytest

from pipeline.fitconfig import FIT_SCHEMA
from pipeline.config import validate
from pipeline.imageio.meds_io import MedsImageIO
from pipeline.meds import MEDS


@pytest.fixture(scope="module")
def blended(tmp_path_factory):
    out = tmp_path_factory.mktemp("blend")
    subprocess.run([sys.executable, "-m", "pipeline.cli.sim", str(out), "--tile", "B",
                    "--nobj", "30", "--bands", "g", "--nepoch", "3", "--seed", "3",
                    "--blend-frac", "0.6", "--log-level", "WARNING"], check=True,
                   capture_output=True)
    return out / "B-g-meds.fits"


@pytest.mark.parametrize("region", ["uberseg", "cweight"])
def test_region_weights_match_the_reader(blended, region):
    conf = validate({"region": region, "reject_outliers": False,
                     "max_zero_weight_frac": 1.0}, FIT_SCHEMA)
    io = MedsImageIO([str(blended)], conf)
    nzeroed = 0
    with MEDS(blended) as m:
        for index in range(m.size):
            obj = io.get_object(index, index)
            assert obj.mbobs is not None
            for obs in obj.mbobs[0]:
                icut = obs.meta["cutout_index"]
                ref = (m.get_uberseg(index, icut) if region == "uberseg"
                       else m.get_cweight_cutout(index, icut))
                bmask = m.get_cutout(index, icut, "bmask")
                ref[(bmask & conf["bmask_flags2check"]) != 0] = 0
                np.testing.assert_array_equal(obs.weight, ref)
                raw = obs.meta["weight_raw"]
                assert np.all(raw >= obs.weight)
                nzeroed += int(np.sum((raw > 0) & (obs.weight == 0)))
    assert nzeroed > 0, "the blended tile should hand some pixels to neighbours"
