"""The documentation: the Sphinx site builds without a warning, its generated
reference tables cover the code, and the column reference is what ngmixit writes."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import fitsio
import numpy as np
import pytest
import yaml

from pipeline.config import Key, Range
from pipeline.docgen import generate
from pipeline.docgen.columnref import collate_columns, column_reference, describe, fitter_tables
from pipeline.docgen.configref import SCHEMAS, config_rows, flatten, schema_of
from pipeline.docgen.flagref import families, parse_families
from pipeline.fitconfig import load_fit_config
from pipeline.gmix import flags as F
from pipeline.megamixer.collate import derived_columns

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _text(page: Path) -> str:
    """The visible text of an HTML page."""
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


# ---------------------------------------------------------------- the site


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built as CI builds it: sphinx-build -W (warnings are errors)."""
    pytest.importorskip("sphinx", reason="sphinx not installed (pip install '.[docs]')")
    pytest.importorskip("numpydoc", reason="numpydoc not installed (pip install '.[docs]')")
    out = tmp_path_factory.mktemp("html")
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q",
                           "-b", "html", str(DOCS), str(out)],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, f"sphinx-build -W failed:\n{proc.stderr[-5000:]}"
    return out


def test_every_page_is_built_and_in_the_site(site):
    pages = sorted(p.stem for p in DOCS.glob("*.rst"))
    assert {"index", "getting-started", "configs", "outputs", "meds", "ngmixer-configs",
            "batch-systems", "integrity", "troubleshooting"} <= set(pages)
    index = (site / "index.html").read_text()
    for page in pages:
        assert (site / f"{page}.html").is_file(), page
        if page != "index":
            assert f'href="{page}.html' in index, f"{page} is not in the table of contents"
    for api in ("gmix", "meds", "runner", "megamixer", "support"):
        assert "pipeline." in _text(site / "api" / f"{api}.html")


def test_config_reference_lists_every_key_of_every_schema(site):
    text = _text(site / "configs.html")
    for kind in SCHEMAS:
        schema, _ = schema_of(kind)
        for name, _spec in flatten(schema):
            assert name in text, f"{kind} config key {name} missing from configs.html"
    # a default, an allowed range and a meaning, as the schema states them
    assert "uberseg" in text and "in [0, 1]" in text and "FoF groups per chunk" in text


def test_output_reference_lists_columns_and_flags(site):
    text = _text(site / "outputs.html")
    for name in ("psf_flux_s2n", "{m}_pars_cov", "{m}_mof_flags", "mcal_g_cov{s}",
                 "psf_fit_flux_frac", "{m}_T_s2n", "fingerprint", "MMXCONF", "MMXCOMPL"):
        assert name in text, name
    for fam in families():
        for flag in fam.flags:
            assert flag.name in text and flag.meaning in text, flag.name
    assert "(5+nband, 5+nband)" in text and "(bdf: (6+nband,))" in text


def test_undocumented_columns_fail_the_build_when_required(tmp_path):
    """megamixer_require_column_docs turns an undocumented column into a -W failure."""
    pytest.importorskip("sphinx", reason="sphinx not installed (pip install '.[docs]')")
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(f"import sys\nsys.path.insert(0, {str(DOCS / '_ext')!r})\n"
                                 "extensions = ['megamixer_sphinx']\n")
    (src / "index.rst").write_text("Chunks\n======\n\n.. megamixer-generated:: columns chunks\n")

    def build(*extra):
        return subprocess.run([sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html",
                               *extra, str(src), str(tmp_path / "out")],
                              capture_output=True, text=True, env=_env(), timeout=120)

    relaxed = build()
    assert relaxed.returncode == 0, relaxed.stderr
    assert "fingerprint" in _text(tmp_path / "out" / "index.html")
    strict = build("-E", "-D", "megamixer_require_column_docs=1")
    assert strict.returncode != 0
    assert "column fingerprint has no COLUMN_DOCS entry" in strict.stderr


# ---------------------------------------------------------------- generators


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Real ngmixit outputs of a small simulated tile, one per example fit config
    (MOF with its convergence tables on)."""
    root = tmp_path_factory.mktemp("fits")
    subprocess.run([sys.executable, "-m", "pipeline.cli.sim", str(root), "--tile", "D1",
                    "--nobj", "4", "--bands", "g,r,i", "--nepoch", "1", "--seed", "5"],
                   check=True, capture_output=True, env=_env())
    meds = [str(root / f"D1-{b}-meds.fits") for b in "gri"]
    out = {}
    for fitter in ("max", "metacal", "mof"):
        conf = yaml.safe_load((REPO / "configs" / f"fit-{fitter}.yaml").read_text())
        if fitter == "mof":
            conf["mof"]["write_convergence_data"] = True
        path = root / f"fit-{fitter}.yaml"
        path.write_text(yaml.safe_dump(conf))
        result = root / f"D1-{fitter}.fits"
        proc = subprocess.run([sys.executable, "-m", "pipeline.cli.ngmixit", str(path),
                               str(result), *meds, "--fof-range", "0,1", "--seed", "9",
                               "--log-level", "WARNING"],
                              capture_output=True, text=True, env=_env())
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[fitter] = (load_fit_config(path), result)
    return out


def _layout(dtype: np.dtype) -> list:
    return [(name, dtype[name].base.str.lstrip("<>|="), dtype[name].shape) for name in dtype.names]


@pytest.mark.parametrize("fitter", ["max", "metacal", "mof"])
def test_column_reference_is_what_ngmixit_writes(fitted, fitter):
    """The dtypes the reference is generated from, computed without fitting, are those
    of a real output: same names, order, dtypes and shapes in every table."""
    conf, path = fitted[fitter]
    predicted = fitter_tables(conf, nband=3)
    with fitsio.FITS(str(path)) as fits:
        hdus = [fits[i].get_extname() for i in range(1, len(fits))]
        assert hdus == list(predicted)
        for hdu in ("model_fits", "epoch_data"):
            assert _layout(fits[hdu].read().dtype) == _layout(predicted[hdu]), hdu
        for hdu in hdus[2:]:
            assert fits[hdu].get_colnames() == list(predicted[hdu].names), hdu
        model = fits["model_fits"].read()
    added = derived_columns(model, np.full(3, 30.0))
    assert list(added) == list(collate_columns(conf, 3).names)
    assert [v.shape[1:] for v in added.values()] == \
        [collate_columns(conf, 3)[n].shape for n in added]


def test_column_docs_are_picked_up_by_name_and_pattern(monkeypatch):
    import pipeline.output as output
    import pipeline.megamixer.catalogue as catalogue

    docs = [{"{m}_flux": ("counts", "flux"), "{m}_flux_err": ("counts", "flux error"),
             "psf_flux": ("counts", "PSF flux"), "mcal_g{s}": ("", "shape")}]
    assert describe(["{m}_flux_err", "exp_flux_err"], docs) == ("counts", "flux error")
    assert describe(["{m}_flux", "dev_flux"], docs) == ("counts", "flux")
    assert describe(["psf_flux"], docs) == ("counts", "PSF flux")
    assert describe(["mcal_g_1p"], docs) == ("", "shape")
    assert describe(["nothing"], docs) is None

    lines, missing, _ = column_reference("chunks")
    assert "fingerprint" in missing
    monkeypatch.setattr(catalogue, "COLUMN_DOCS",
                        {"fingerprint": ("", "sha256 of the chunk file")}, raising=False)
    monkeypatch.setattr(output, "MODEL_COLUMN_DOCS", {"id": ("", "catalogue id")},
                        raising=False)
    lines, missing, _ = column_reference("chunks")
    assert "fingerprint" not in missing and "sha256 of the chunk file" in "\n".join(lines)
    lines, missing, _ = column_reference("model_fits", "max")
    assert "id" not in missing and "catalogue id" in "\n".join(lines)


def test_config_rows_show_type_default_allowed_and_meaning():
    schema = {"n": Key(int, 3, "how many", check=Range(1, 5)),
              "mode": Key(str, "a", "which mode", choices=("a", "b")),
              "sub": Key(dict, {}, "nested", schema={"x": Key(float, 0.5, "a fraction")}),
              "req": Key(list, None, "things", items=Key(str, choices=("p", "q")), unique=True)}
    rows = {row[0]: row for row in config_rows(schema)}
    assert rows["``n``"] == ["``n``", "int", "``3``", "in [1, 5]", "how many"]
    assert rows["``mode``"][3] == "one of ``a``, ``b``"
    assert rows["``sub.x``"][1:3] == ["float", "``0.5``"]
    assert rows["``req``"][1] == "list of string"
    assert "each element: one of ``p``, ``q``" in rows["``req``"][3]
    assert "no element twice" in rows["``req``"][3]


def test_flag_tables_cover_every_constant_and_report_uncommented_ones():
    names = {flag.name for fam in families() for flag in fam.flags}
    constants = {k for k, v in vars(F).items()
                 if k.isupper() and isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert names == constants
    source = "# --- a family ---\nA = 2**0   # the first bit\nB = 2**1\n# a note\n"
    namespace: dict = {}
    exec(source, namespace)
    fams = parse_families(source, namespace)
    assert [(f.name, f.meaning) for f in fams[0].flags] == [("A", "the first bit"), ("B", "")]
    assert fams[0].notes == ["a note"]
    out = generate("flags")
    assert out.undocumented == [] and any("``NO_ATTEMPT``" in line for line in out.lines)


def test_no_citation_of_documents_outside_the_repository():
    """Code, configs and tests cite only the project's own docs, and those exist."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    external = re.compile(r"\b(DESIGN|MEDS|REFERENCE)\.md\b|\.\./shared/")
    cited = re.compile(r"\bdocs/([\w./-]+\.rst)\b")
    for name in tracked:
        path = REPO / name
        if path.suffix not in {".py", ".yaml", ".sh", ".md", ".rst", ".cfg", ".toml", ""} \
                or not path.is_file() or name == "tests/test_docs.py":
            continue
        text = path.read_text(errors="replace")
        assert not external.search(text), f"{name} cites a document outside the repository"
        for page in cited.findall(text):
            assert (DOCS / page).is_file(), f"{name} cites docs/{page}, which does not exist"
