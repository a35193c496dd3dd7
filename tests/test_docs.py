"""The documentation: the Sphinx site builds without a warning (in under a minute),
its generated reference tables cover the code, the column reference is what ngmixit
writes, and a column or flag bit without a description fails the build."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import fitsio
import numpy as np
import pytest
import yaml

from pipeline.columns import Column
from pipeline.config import Key, Range
from pipeline.docgen import generate
from pipeline.docgen.columnref import (FITTERS, NBANDS, added_by_collate, column_reference,
                                       fit_tables, group_rows, meaning_text, table_spec,
                                       template)
from pipeline.docgen.configref import SCHEMAS, config_rows, flatten, schema_of
from pipeline.fitconfig import GALAXY_MODELS, load_fit_config
from pipeline.gmix import flags as F
from pipeline.megamixer.catalogue import CHUNK_COLUMNS
from pipeline.megamixer.derived import derived_columns

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


def sphinx_build(src: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """``sphinx-build -W`` (warnings are errors) as CI runs it."""
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q",
                           "-b", "html", *extra, str(src), str(out)],
                          capture_output=True, text=True, env=_env(), timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The whole site, built from scratch; returns (html folder, seconds taken)."""
    pytest.importorskip("sphinx", reason="sphinx not installed (pip install '.[docs]')")
    pytest.importorskip("numpydoc", reason="numpydoc not installed (pip install '.[docs]')")
    out = tmp_path_factory.mktemp("html")
    start = time.perf_counter()
    proc = sphinx_build(DOCS, out)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, f"sphinx-build -W failed:\n{proc.stderr[-5000:]}"
    return out, seconds


def test_site_builds_in_under_a_minute(site):
    assert site[1] < 60, f"the -W build took {site[1]:.0f} s"


def test_every_page_is_listed_in_the_index(site):
    """Every page is built and listed deliberately in the index's own toctrees (not
    only by the extension's safety net), and the pages link the new ones."""
    html_dir = site[0]
    pages = sorted(p.stem for p in DOCS.glob("*.rst"))
    assert {"index", "getting-started", "configs", "outputs", "columns-and-flags",
            "neighbours", "numba-cache", "meds", "ngmixer-configs", "batch-systems",
            "integrity", "troubleshooting"} <= set(pages)
    listed = re.findall(r"^   ([\w/-]+)$", (DOCS / "index.rst").read_text(), flags=re.M)
    index = (html_dir / "index.html").read_text()
    assert "More" not in _text(html_dir / "index.html")
    for page in pages:
        assert (html_dir / f"{page}.html").is_file(), page
        if page != "index":
            assert page in listed, f"{page} is not in index.rst's toctree"
            assert f'href="{page}.html' in index, page
    for api in ("gmix", "meds", "runner", "megamixer", "support"):
        assert "pipeline." in _text(html_dir / "api" / f"{api}.html")
    for page, target in (("getting-started", "numba-cache"), ("troubleshooting", "numba-cache"),
                         ("configs", "neighbours"), ("outputs", "columns-and-flags"),
                         ("batch-systems", "numba-cache")):
        assert f'href="{target}.html' in (html_dir / f"{page}.html").read_text(), (page, target)


def test_config_reference_lists_every_key_of_every_schema(site):
    text = _text(site[0] / "configs.html")
    for kind in SCHEMAS:
        schema, _ = schema_of(kind)
        for name, _spec in flatten(schema):
            assert name in text, f"{kind} config key {name} missing from configs.html"
    # a default, an allowed range and a meaning, as the schema states them
    assert "uberseg" in text and "in [0, 1]" in text and "FoF groups per chunk" in text


def _documented_names() -> dict[str, set[str]]:
    """Every column of every documented table, by the page's table key."""
    out: dict[str, set[str]] = {}
    for fitter in FITTERS:
        for hdu, cols in fit_tables(fitter, NBANDS[0]).items():
            out.setdefault(hdu, set()).update(c.name for c in cols)
        for hdu in ("model_fits", "epoch_data"):
            out.setdefault(f"collate {hdu}", set()).update(
                c.name for c in added_by_collate(fitter, hdu, NBANDS[0]))
    out["chunks"] = {c.name for c in CHUNK_COLUMNS}
    return out


def test_column_page_lists_every_declared_column_with_its_meaning(site):
    text = _text(site[0] / "columns-and-flags.html")
    for table, names in _documented_names().items():
        for name in names:
            shown, _ = template(name, tuple(GALAXY_MODELS), names)   # or alone: itself
            assert shown in text or name in text, f"{table}: {name} ({shown}) missing"
    for fitter in FITTERS:
        for hdu in ("model_fits", "nbrs_data"):
            spec = table_spec((hdu, fitter)) if hdu in fit_tables(fitter, 3) else None
            if spec is None:
                continue
            for row in group_rows([spec.columns(nb) for nb in NBANDS], None, spec.mof_model):
                assert meaning_text(row).replace("\\", "") in text, row.name
    # shapes in terms of nband, per-model differences, unmeasured values, units
    for snippet in ("(5+nband, 5+nband) (bdf: (6+nband, 6+nband))", "(nband, nband)",
                    "NO_ATTEMPT", "arcsec^2", "fingerprint", "{m}_mof_flags", "mcal_g_cov{s}",
                    "psf_fit_flux_frac", "{m}_T_s2n", "{m}_max_flux_s2n", "nbr_jac_row0",
                    "mof_pairs", "wall_seconds"):
        assert snippet in text, snippet
    outputs = _text(site[0] / "outputs.html")
    for snippet in ("MMXCONF", "MMXCOMPL", "mof_pairs", "-qa.png", "-diagnostics.jsonl"):
        assert snippet in outputs, snippet


def test_flag_page_lists_every_bit_of_every_family(site):
    text = _text(site[0] / "columns-and-flags.html")
    for family, rows in F.FLAG_DOCS.items():
        title, columns = F.FLAG_FAMILIES[family]
        assert title in text and columns in text, family
        for name, value, meaning, where in rows:
            assert re.search(rf"{value} \(2\*\*\d+\)\s*{name}\s*{re.escape(meaning)}"
                             rf"\s*{re.escape(where)}", text), name
    for new_bit in ("BAD_ERRORS", "NO_CHI2PER", "AT_SIZE_BOUND", "MOF_UNCONVERGED"):
        assert new_bit in text


@pytest.mark.parametrize("broken", [
    "from pipeline.megamixer import catalogue\n"
    "catalogue.CHUNK_COLUMNS.append(Column('mystery', 'i4', (), '', ''))\n",
    "from pipeline.gmix import flags\nflags.MYSTERY_BIT = 2**20\n",
    "from pipeline.gmix import flags\n"
    "flags.FLAG_DOCS['mof'].append(('MYSTERY_BIT', 2**11, '', 'nowhere'))\n",
], ids=["column", "flag-not-in-FLAG_DOCS", "flag-without-meaning"])
def test_an_undescribed_column_or_flag_fails_the_build(tmp_path, broken):
    """A real -W build of the column and flag tables fails when the declarations
    miss a meaning, and passes without the defect."""
    pytest.importorskip("sphinx", reason="sphinx not installed (pip install '.[docs]')")
    src = tmp_path / "src"
    src.mkdir()
    conf = (f"import sys\nsys.path.insert(0, {str(DOCS / '_ext')!r})\n"
            "from pipeline.columns import Column\nextensions = ['megamixer_sphinx']\n")
    (src / "conf.py").write_text(conf)
    (src / "index.rst").write_text("Tables\n======\n\n.. megamixer-generated:: columns chunks"
                                   "\n\n.. megamixer-generated:: flags\n")
    good = sphinx_build(src, tmp_path / "good")
    assert good.returncode == 0, good.stderr
    assert "fingerprint" in _text(tmp_path / "good" / "index.html")
    (src / "conf.py").write_text(conf + broken)
    bad = sphinx_build(src, tmp_path / "bad")
    assert bad.returncode != 0
    assert "mystery" in bad.stderr.lower(), bad.stderr


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


def _shape(text: str, nband: int) -> tuple[int, ...]:
    """A shape as the reference writes it ("—", "(5+nband,)") for ``nband`` bands."""
    text = re.sub(r"<[^>]+>|``", "", text).strip()
    return () if text in ("", "—") else tuple(eval(text, {"nband": nband}))  # noqa: S307


@pytest.mark.parametrize("fitter", ["max", "metacal", "mof"])
def test_column_reference_is_what_ngmixit_writes(fitted, fitter):
    """Every column of a real ngmixit output (every HDU; meta_data after the MEDS
    metadata) and every column collate adds to it is in the rendered reference, with
    the type and the shape (evaluated for its 3 bands) the reference states."""
    conf, path = fitted[fitter]
    with fitsio.FITS(str(path)) as fits:
        tables = {fits[i].get_extname(): fits[i].read() for i in range(1, len(fits))}
    assert list(tables) == list(fit_tables(fitter, 3))[:len(tables)]
    model = tables["model_fits"]
    added = derived_columns(model, np.full(3, 30.0))
    checks = [((hdu, fitter), table.dtype) for hdu, table in tables.items()]
    checks.append((("collate", "model_fits", fitter),
                   np.dtype([(n, v.dtype, v.shape[1:]) for n, v in added.items()])))
    for args, dtype in checks:
        spec = table_spec(args)
        documented = {c.name: c for c in spec.columns(3)}
        if args[0] != "collate" and fitter != "max" and "those of ``max``" in spec.intro:
            documented.update({c.name: c for c in table_spec((args[0], "max")).columns(3)})
        rows = group_rows([spec.columns(nb) for nb in NBANDS], None, spec.mof_model)
        shape_of = {c.name: s for r in rows for c, s in zip(r.members, r.shapes)}
        if args[0] == "meta_data":      # after the MEDS metadata columns
            assert set(documented) <= set(dtype.names)
            continue
        for name in dtype.names:
            assert name in documented, (args, name)
            col = documented[name]
            assert dtype[name].base.kind == np.dtype(col.fmt).kind, (args, name)
            if name in shape_of:
                want = _shape(shape_of[name], 3)
                assert dtype[name].shape == want, (args, name, dtype[name].shape, want)


def test_grouped_columns_name_their_model_or_metacal_type():
    names = {"exp_flux", "mcal_g", "mcal_g_1p", "exp_max_flux"}
    models = tuple(GALAXY_MODELS)
    assert template("exp_flux", models, names) == ("{m}_flux", "exp")
    assert template("exp_max_flux", models, names) == ("{m}_max_flux", "exp")
    assert template("mcal_g_1p", models, names) == ("mcal_g{s}", "1p")
    assert template("mcal_g", models, names) == ("mcal_g{s}", "noshear")
    assert template("psf_flux", models, names) == ("psf_flux", "")
    cols = [Column("exp_x", "f8", (), "", "x of exp (from exp_pars)"),
            Column("dev_x", "f8", (), "", "x of dev (from dev_pars)"),
            Column("bdf_x", "f8", (), "", "x of bdf, differently")]
    row, = group_rows([cols, cols], None)
    assert row.name == "{m}_x"
    assert meaning_text(row) == "x of {m} (from {m}\\_pars) (bdf: x of {m}, differently)"
    lines, missing, _ = column_reference("collate", "model_fits", "metacal")
    text = "\n".join(lines)
    assert not missing and "mcal_flux_s2n" in text and "{m}_max_flux" not in text


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


def test_flag_reference_reports_bits_without_a_description():
    out = generate("flags")
    assert out.undocumented == []
    assert any("``NO_ATTEMPT``" in line for line in out.lines)
    assert any("``2**14``" in line for line in out.lines)     # MOF_UNCONVERGED


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
