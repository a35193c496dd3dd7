"""Multi-object fitting (MOF): fit every member of a FoF group with the others
modelled (the method and its keys: docs/configs.rst, ``mof``).

Iterative mode (``mof.method: iterate``), per group:

1. PSF fits of every member's epochs (the PSF mixtures are also the
   neighbours' PSFs when they are drawn on other members' stamps);
2. first pass without neighbours, largest box first; weights are the region
   (uberseg) for groups of 2+ members, the raw weight for single objects;
3. Gauss-Seidel sweeps: members in a random order (from the group's first
   member's random stream, so the order does not depend on the chunking), each
   fitted to its stamps with every other member drawn from its current
   parameters and removed (``model_nbrs_method``: subtract | frac); raw
   weights from sweep ``min_useg_itr`` on; the guess is the previous solution;
4. stop after ``max_itr`` sweeps or when every member passed the convergence
   test (pipeline.mof.convergence) after at least ``min_itr`` sweeps;
5. final pass: models not needed for the neighbours, PSF fluxes, output rows,
   all on the stamps corrected with the final neighbour models.

Only the "MOF model" (``mof.convergence_model``, default the first listed
non-cm model; cm iterates exp, dev and cm) is iterated and drawn for
neighbours; other listed models are fitted once, in step 5.

Joint mode (``mof.method: joint``): after the first pass all members are fitted
together in one least-squares problem (pipeline.mof.joint); groups larger than
``mof.joint_max_group`` fall back to iterating.  ``--mof-file``: the members
are drawn from an earlier MOF output and every object is fitted once.

Output: ngmixer's MOF columns per model (``M_mof_flags``, bits in gmix.flags;
``M_mof_num_itr``, passes with the neighbours modelled: sweeps, joint LM
iterations, 1 with ``--mof-file``, 0 for a group of one; ``M_mof_abs_diff``,
``M_mof_frac_diff``, ``M_mof_err_diff``: the change of the parameters in the
last such pass), MOF_UNCONVERGED in ``M_flags`` of an object that did not
converge, AT_SIZE_BOUND for fits at the size bound, and ngmixer's
``nbrs_data`` table (per object, epoch used and neighbour: where and with
which PSF the neighbour was drawn). With ``mof.write_convergence_data: true``
also ``mof_pairs`` (one row per ordered pair of group members) and
``mof_convergence`` (parameters after every pass).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .. import columns as C
from ..columns import Column, dtype_of, vec
from ..diagnostics import diagnostic
from ..errors import InputFileError
from ..gmix import flags as F
from ..gmix.maxlike import fit_model
from ..gmix.psf import psf_ngauss
from ..imageio.base import EPOCH_META_COLUMNS
from ..interrupts import reraise_if_interrupted
from ..mof.convergence import ConvergenceTest, parameter_diffs
from ..mof.render import MemberModel, epoch_key, psf_for, reference_vu
from ..mof.subtract import correct_mbobs, uncorrected_mbobs
from .base import register
from .composite import fit_composite
from .maxlike import MaxLikeFitter, model_npars

logger = logging.getLogger(__name__)

NBRS_DATA = "nbrs_data"


@dataclass
class _Member:
    """Working state of one group member."""

    obj: object
    rng: np.random.Generator
    row: np.ndarray
    erows: np.ndarray
    mm: MemberModel
    mbobs: object = None              # observations with fitted PSFs
    results: dict = field(default_factory=dict)
    guesses: dict = field(default_factory=dict)
    err: np.ndarray | None = None
    converged: bool = False
    skipped: bool = False
    ever_ok: bool = False
    diffs: dict = field(default_factory=dict)   # model -> (abs, frac, err) of the last pass

    @property
    def usable(self) -> bool:
        return self.mbobs is not None


def mof_model_of(conf: dict) -> str:
    """The model iterated and drawn for neighbours."""
    name = conf["mof"].get("convergence_model")
    if name:
        if name not in conf["models"]:
            from ..errors import ConfigError
            raise ConfigError(f"fit config: mof.convergence_model {name!r} is not in models "
                              f"{conf['models']}")
        return name
    plain = [m for m in conf["models"] if m != "cm"]
    return plain[0] if plain else conf["models"][0]


class MOFFitter(MaxLikeFitter):
    """Max-likelihood fits of FoF groups with neighbours modelled."""

    def __init__(self, conf: dict, nband: int):
        super().__init__(conf, nband)
        self.mof = conf["mof"]
        self.method = conf["model_nbrs_method"]
        self.var_fac = float(conf.get("intr_prof_var_fac") or 0.0)
        self.mof_model = mof_model_of(conf)
        self.sweep_models = ["exp", "dev", "cm"] if self.mof_model == "cm" else [self.mof_model]
        self.final_models = [m for m in self.models if m not in self.sweep_models]
        self.conv = ConvergenceTest(self.mof, model_npars(self.mof_model, nband))
        self.io = None
        self.mof_pars: dict | None = None
        self.extra_nbrs: dict[int, np.ndarray] = {}
        self._nbrs_rows: list = []
        self._conv_rows: list = []
        self._ngmixer_nbrs_rows: list = []
        self._id_of_number: dict[int, int] = {}

    # -- columns -------------------------------------------------------------
    def model_columns(self) -> list[Column]:
        cols = super().model_columns()
        for m in self.models:
            n = model_npars(m, self.nband)
            last = "in the last pass with neighbours modelled (-9999: no such pass)"
            cols += [
                Column(f"{m}_mof_flags", "i4", (), C.BITS, "MOF flags of the object and its "
                       "group (ngmixer's bits)"),
                Column(f"{m}_mof_num_itr", "i4", (), C.NONE, "passes with the neighbours "
                       "modelled: sweeps (iterate), joint LM iterations (joint), 1 with "
                       "--mof-file, 0 for a group of one"),
                Column(f"{m}_mof_abs_diff", "f8", vec(n), C.pars_unit(m), f"|change| of the "
                       f"parameters {last}"),
                Column(f"{m}_mof_frac_diff", "f8", vec(n), C.NONE, f"|fractional change| "
                       f"of the parameters {last}"),
                Column(f"{m}_mof_err_diff", "f8", vec(n), C.NONE, f"|change| of the "
                       f"parameters over their errors {last}"),
            ]
        return cols

    def _npars(self) -> int:
        return model_npars(self.mof_model, self.nband)

    def extra_columns(self) -> dict[str, list[Column]]:
        out = {NBRS_DATA: nbrs_data_columns(self.psf_model)}
        if not self.mof.get("write_convergence_data"):
            return out
        npars = self._npars()
        out["mof_pairs"] = [
            Column("id", "i8", (), C.NONE, "id of the object"),
            Column("nbr_id", "i8", (), C.NONE, "id of the other member (-1: a neighbour "
                   "from --nbrs-file outside the group)"),
            Column("nbr_number", "i8", (), C.NONE, "number of the other member"),
            Column("fofid", "i8", (), C.NONE, "FoF group"),
            Column("nbr_flags", "i4", (), C.BITS, "neighbour flags: NBR_NOT_MODELLED when "
                   "the other member had no usable fit and was masked"),
            Column("nepoch", "i4", (), C.NONE, "epochs of the object used"),
            Column("nepoch_offchip", "i4", (), C.NONE, "of those, epochs where the other "
                   "member has no cutout"),
            Column("nbr_pars", "f8", vec(npars), C.pars_unit(self.mof_model), "the other member's final "
                   f"parameters ({self.mof_model})"),
        ]
        out["mof_convergence"] = [
            Column("id", "i8", (), C.NONE, "id of the object"),
            Column("fofid", "i8", (), C.NONE, "FoF group"),
            Column("itr", "i4", (), C.NONE, "pass (1 = the first pass, without "
                   "neighbours)"),
            Column("flags", "i4", (), C.NONE, "1: no usable model after this pass"),
            Column("pars", "f8", vec(npars), C.pars_unit(self.mof_model), f"{self.mof_model} parameters after "
                   "this pass"),
        ]
        return out

    def extra_tables(self) -> dict[str, np.ndarray]:
        cols = self.extra_columns()
        rows = {NBRS_DATA: self._ngmixer_nbrs_rows, "mof_pairs": self._nbrs_rows,
                "mof_convergence": self._conv_rows}
        out = {}
        for name, columns in cols.items():
            dtype = dtype_of(columns)
            out[name] = (np.concatenate(rows[name]) if name == NBRS_DATA and rows[name]
                         else np.array(rows[name], dtype=dtype))
        return out

    def resume_extra(self, tables: dict[str, np.ndarray | None]) -> None:
        def rows(name: str) -> list:
            table = tables.get(name)
            return [] if table is None else [tuple(r) for r in table.tolist()]
        nbrs = tables.get(NBRS_DATA)
        dtype = dtype_of(nbrs_data_columns(self.psf_model))
        self._ngmixer_nbrs_rows = [] if nbrs is None else [nbrs.astype(dtype)]
        self._nbrs_rows = rows("mof_pairs")
        self._conv_rows = rows("mof_convergence")

    # -- setup -----------------------------------------------------------------
    def setup(self, run) -> None:
        """Keep the ImageIO (neighbour centres) and read --mof-file / --nbrs-file."""
        self.io = run.io
        opts = run.opts
        if opts.mof_file:
            self.mof_pars = read_mof_pars(opts.mof_file, self.mof_model)
            if opts.nbrs_file and not opts.fof_file:
                from ..nbrs import read_nbrs
                nb = read_nbrs(opts.nbrs_file)
                nb = nb[nb["nbr_number"] >= 0]
                order = np.argsort(nb["number"], kind="stable")
                nums, starts = np.unique(nb["number"][order], return_index=True)
                ends = np.append(starts[1:], len(order))
                self.extra_nbrs = {int(n): nb["nbr_number"][order][s:e]
                                   for n, s, e in zip(nums, starts, ends)}
        elif not opts.fof_file:
            logger.warning("MOF without --fof-file: every object is its own group, so no "
                           "neighbour is modelled")

    # -- driver ------------------------------------------------------------------
    def fit_group(self, objects: list, rngs: list, rows: np.ndarray, epoch_rows: list,
                  diagnostics: list) -> None:
        if not objects:
            return
        # drawn before any fit so the sweep order depends on the group only
        order_rng = np.random.default_rng(int(rngs[0].integers(2**62)))
        members = [self._prepare(obj, rng, row, erows, diagnostics)
                   for obj, rng, row, erows in zip(objects, rngs, rows, epoch_rows)]
        group = [m.mm for m in members]
        full = group
        try:
            # nsweep: passes with the neighbours modelled (ngmixer's mof_num_itr)
            if self.mof_pars is not None:
                full = group + self._outside_neighbours(members)
                nsweep = self._from_mof_file(members, full)
            elif len(members) == 1:
                self._first_pass(members, raw=True)
                nsweep = 0
            elif self.mof["method"] == "joint" and len(members) <= self.mof["joint_max_group"]:
                from ..mof.joint import joint_fit
                self._first_pass(members, raw=False)
                nsweep = joint_fit(self, members, group)
            else:
                nsweep = self._iterate(members, group, order_rng)
            for m in members:
                if m.usable:
                    self._finish(m, members, full, nsweep)
        except Exception as err:  # noqa: BLE001 - the run must go on
            reraise_if_interrupted(err)
            for m in members:
                m.row["flags"] |= F.UTTER_FAILURE
                diagnostics.append(diagnostic(m.obj, m.obj.extra.get("stage", "mof"), err))
            logger.warning("group fofid=%d failed: %s", objects[0].fofid, err)

    def _prepare(self, obj, rng, row, erows, diagnostics) -> _Member:
        mm = MemberModel(number=obj.number, ra=obj.ra, dec=obj.dec, model=self.mof_model)
        m = _Member(obj=obj, rng=rng, row=row, erows=erows, mm=mm)
        self._catalogue_centres(obj.index, mm)
        if obj.mbobs is None:
            return m
        try:
            obj.extra["stage"] = "psf"
            mbobs = self.fit_psfs(obj.mbobs, rng, row, erows)
        except Exception as err:  # noqa: BLE001
            reraise_if_interrupted(err)
            row["flags"] |= F.UTTER_FAILURE
            diagnostics.append(diagnostic(obj, "psf", err))
            return m
        if mbobs is None:
            row["flags"] |= F.PSF_FIT_FAILURE
            return m
        obj.extra["mbobs_used"] = mbobs
        m.mbobs = mbobs
        for obslist in mbobs:
            for obs in obslist:
                key = epoch_key(obs)
                mm.psf[key] = obs.psf.gmix
                mm.centre[key] = (obs.meta["orig_row"], obs.meta["orig_col"])
        return m

    def _catalogue_centres(self, index: int, mm: MemberModel) -> None:
        """Centres on every source image the object was cut out of (not only used ones)."""
        meds = getattr(self.io, "meds", None)
        if meds is None or index < 0:
            return
        for band, m in enumerate(meds):
            for icut in range(int(m["ncutout"][index])):
                key = (band, int(m["file_id"][index, icut]))
                mm.centre[key] = (float(m["orig_row"][index, icut]),
                                  float(m["orig_col"][index, icut]))

    # -- fitting steps ---------------------------------------------------------------
    def fit_sweep_models(self, m: _Member, mbobs, use_guess: bool) -> None:
        """Fit the MOF model (and its prerequisites) and update the member's model."""
        mpars = self.conf["max_pars"]
        results: dict = {}
        for model in self.sweep_models:
            m.obj.extra["stage"] = f"mof:{model}"
            guess = m.guesses.get(model) if use_guess else None
            if model == "cm":
                res = fit_composite(mbobs, results, prior=self.priors[model], rng=m.rng,
                                    ntry=mpars["ntry"], lm_pars=mpars["lm_pars"])
            else:
                # from a previous solution the random perturbation only slows the sweeps
                res = fit_model(mbobs, model, prior=self.priors[model], guess=guess,
                                rng=None if guess is not None else m.rng, ntry=mpars["ntry"],
                                lm_pars=mpars["lm_pars"] or None,
                                bounds=self.size_bounds(m, model))
            results[model] = res
            old = m.guesses.get(model)
            m.diffs.pop(model, None)
            if res["flags"] == 0:
                new = np.asarray(res["pars"], dtype="f8").copy()
                if old is not None and old.size == new.size:
                    m.diffs[model] = parameter_diffs(old, new, res.get("pars_err"))
                m.guesses[model] = new
        m.results.update(results)
        self.set_member_model(m, results[self.mof_model])

    def size_bounds(self, m: _Member, model: str):
        """Upper bound on T: Gaussian sigma at most half the stamp side.

        A faint member next to a bright one can otherwise fit a huge, flat
        profile to the neighbour's wings, which, drawn on the other stamps, wrecks
        every other fit of the group.
        """
        npars = model_npars(model, self.nband)
        hi = np.full(npars, np.nan)
        hi[4] = self.max_T(m)
        return np.full(npars, np.nan), hi

    @staticmethod
    def max_T(m: _Member) -> float:
        scale = m.mbobs[0][0].jacobian.get_scale()
        half = 0.5 * m.obj.box_size * scale
        return 2.0 * half * half

    def set_member_model(self, m: _Member, res: dict) -> None:
        pars = res.get("pars")
        # a fit at the size bound is not a usable model of the object
        at_bound = pars is not None and pars[4] >= 0.99 * self.max_T(m)
        if res.get("flags", 1) == 0 and pars is not None and not at_bound:
            m.mm.pars = np.asarray(res["pars"], dtype="f8").copy()
            m.mm.ok = True
            m.ever_ok = True
            m.err = np.asarray(res.get("pars_err", np.sqrt(np.abs(np.diag(res["pars_cov"])))))
            if self.mof_model == "cm":
                m.mm.fracdev, m.mm.TdByTe = res["fracdev"], res["TdByTe"]
        else:
            m.mm.ok = False

    def _first_pass(self, members: list[_Member], raw: bool) -> int:
        usable = [m for m in members if m.usable]
        for m in sorted(usable, key=lambda x: -x.obj.box_size):
            self.fit_sweep_models(m, uncorrected_mbobs(m.mbobs, raw), use_guess=False)
        self._record_pass(members, 1)
        return 1

    def _iterate(self, members: list[_Member], group: list[MemberModel],
                 order_rng: np.random.Generator) -> int:
        nitr = self._first_pass(members, raw=False)
        usable = [m for m in members if m.usable]
        for itr in range(1, self.mof["max_itr"] + 1):
            raw = itr >= self.mof["min_useg_itr"]
            for k in order_rng.permutation(len(usable)):
                m = usable[k]
                old = None if m.mm.pars is None or not m.mm.ok else m.mm.pars.copy()
                mb = correct_mbobs(m.mm, m.mbobs, group, self.method, raw, self.var_fac)
                self.fit_sweep_models(m, mb, use_guess=True)
                m.skipped = old is None or not m.mm.ok
                m.converged = (not m.skipped) and self.conv(old, m.mm.pars, m.err)
            nitr = itr + 1
            self._record_pass(members, nitr)
            if itr >= self.mof["min_itr"] and all(m.converged or m.skipped for m in usable) \
                    and any(m.converged for m in usable):
                break
            if not any(m.mm.ok for m in usable):
                break
        return nitr - 1

    def _from_mof_file(self, members: list[_Member], full: list[MemberModel]) -> int:
        """One pass with the neighbours drawn from an earlier MOF output."""
        for m in members:
            self._load_mof_pars(m.mm)
        new = {}
        for m in members:
            if not m.usable:
                continue
            if m.mm.ok:
                m.guesses[self.mof_model] = m.mm.pars.copy()
            mb = correct_mbobs(m.mm, m.mbobs, full, self.method, True, self.var_fac)
            saved = (m.mm.pars, m.mm.ok, m.mm.fracdev, m.mm.TdByTe)
            self.fit_sweep_models(m, mb, use_guess=True)
            # the neighbours of later members keep the file's parameters
            new[id(m)] = (m.mm.pars, m.mm.ok, m.mm.fracdev, m.mm.TdByTe)
            m.mm.pars, m.mm.ok, m.mm.fracdev, m.mm.TdByTe = saved
            m.converged = True
        for m in members:
            if id(m) in new:
                m.mm.pars, m.mm.ok, m.mm.fracdev, m.mm.TdByTe = new[id(m)]
        return 1

    def _load_mof_pars(self, mm: MemberModel) -> None:
        entry = self.mof_pars.get(mm.number)
        if entry is None:
            mm.ok = False
            return
        mm.pars, mm.ok, mm.fracdev, mm.TdByTe = entry

    def _outside_neighbours(self, members: list[_Member]) -> list[MemberModel]:
        """Neighbours from --nbrs-file that are not in the group (no PSF fit of their own)."""
        if not self.extra_nbrs:
            return []
        inside = {m.obj.number for m in members}
        cat = self.io.object_table()
        numbers = (cat["number"] if "number" in cat.dtype.names
                   else np.arange(1, len(cat) + 1))
        index_of = {int(n): i for i, n in enumerate(numbers)}
        out = []
        for m in members:
            for num in self.extra_nbrs.get(m.obj.number, ()):
                num = int(num)
                if num in inside or num not in index_of:
                    continue
                inside.add(num)
                i = index_of[num]
                mm = MemberModel(number=num, ra=float(cat["ra"][i]), dec=float(cat["dec"][i]),
                                 model=self.mof_model)
                self._catalogue_centres(i, mm)
                self._load_mof_pars(mm)
                out.append(mm)
        return out

    # -- output ------------------------------------------------------------------
    def _finish(self, m: _Member, members: list[_Member], group: list[MemberModel],
                nsweep: int) -> None:
        """Final models and PSF fluxes on the corrected stamps; fill the row."""
        row = m.row
        full = group
        single = len(full) == 1
        mb = correct_mbobs(m.mm, m.mbobs, full, self.method, True, self.var_fac) \
            if not single else uncorrected_mbobs(m.mbobs, True)
        m.obj.extra["mbobs_corrected"] = mb
        m.obj.extra["stage"] = "psf_flux"
        self.fit_psf_fluxes(mb, row)
        mpars = self.conf["max_pars"]
        for model in self.final_models:
            m.obj.extra["stage"] = f"model:{model}"
            if model == "cm":
                res = fit_composite(mb, m.results, prior=self.priors[model], rng=m.rng,
                                    ntry=mpars["ntry"], lm_pars=mpars["lm_pars"])
            else:
                res = fit_model(mb, model, prior=self.priors[model], rng=m.rng,
                                ntry=mpars["ntry"], lm_pars=mpars["lm_pars"] or None,
                                bounds=self.size_bounds(m, model))
            m.results[model] = res
        mof_flags = self._mof_flags(m, members)
        unconverged = mof_flags & (F.MOF_NOT_CONVERGED | F.MOF_SKIPPED_IN_CONV_CHECK)
        for model in self.models:
            res = m.results.get(model, {"flags": F.GAL_FIT_FAILURE, "pars": None})
            pars = res.get("pars")
            at_bound = (res.get("flags", 1) == 0 and pars is not None
                        and pars[4] >= 0.99 * self.max_T(m))
            self.fill_fit(row, model, res, mb, F.AT_SIZE_BOUND if at_bound else 0)
            if unconverged:
                row[f"{model}_flags"] |= F.MOF_UNCONVERGED
            row[f"{model}_mof_flags"] = mof_flags
            row[f"{model}_mof_num_itr"] = nsweep
            if model in m.diffs:
                for name, value in zip(("abs", "frac", "err"), m.diffs[model]):
                    row[f"{model}_mof_{name}_diff"] = np.where(np.isfinite(value), value,
                                                               F.DEFVAL)
        m.obj.extra["results"] = m.results
        if not single:
            self._ngmixer_nbrs_rows.append(self._nbrs_data(m, full))
        if self.mof.get("write_convergence_data"):
            self._record_nbrs(m, members, full)

    def _nbrs_data(self, m: _Member, full: list[MemberModel]) -> np.ndarray:
        """ngmixer's nbrs_data rows of one member: for every epoch used, each
        neighbour (where and with which PSF it is drawn), then the member itself."""
        rows = []
        dtype = dtype_of(nbrs_data_columns(self.psf_model))
        npsf = dtype["nbr_psf_fit_pars"].shape[0]
        erow_of = {(int(e["band_num"]), int(e["cutout_index"])): e for e in m.erows}
        if not self._id_of_number:
            cat = self.io.object_table()
            self._id_of_number = {int(n): int(i) for n, i in zip(cat["number"], cat["id"])}
        ids = {id(mm): self._id_of_number.get(mm.number, -1) for mm in full}
        for obslist in m.mbobs:
            for obs in obslist:
                erow = erow_of[(int(obs.meta["band"]), int(obs.meta["cutout_index"]))]
                key = epoch_key(obs)
                for nb in [x for x in full if x is not m.mm] + [m.mm]:
                    rows.append(nbrs_data_row(erow, ids[id(nb)], nb, m.mm, obs, key, full,
                                              npsf))
        return np.array(rows, dtype=dtype)

    def _mof_flags(self, m: _Member, members: list[_Member]) -> int:
        flags = 0
        if not m.converged and not m.skipped and len(members) > 1 and self.mof_pars is None:
            flags |= F.MOF_NOT_CONVERGED
        if m.skipped:
            flags |= F.MOF_SKIPPED_IN_CONV_CHECK
        for other in members:
            if other is m:
                continue
            if not other.usable:
                flags |= F.NBR_NOT_FIT
            elif not other.mm.ok:
                flags |= F.NBR_BAD_FIT
            if other.usable and other.skipped:
                flags |= F.NBR_SKIPPED_IN_CONV_CHECK
            if other.usable and not other.converged and not other.skipped \
                    and self.mof_pars is None:
                flags |= F.NBR_NOT_CONVERGED
        # the whole group's state, this member included (ngmixer's FOFMEM bits)
        own = {F.MOF_NOT_CONVERGED: F.FOFMEM_NOT_CONVERGED,
               F.MOF_SKIPPED_IN_CONV_CHECK: F.FOFMEM_SKIPPED_IN_CONV_CHECK}
        for nbr_bit, fof_bit in ((F.NBR_NOT_CONVERGED, F.FOFMEM_NOT_CONVERGED),
                                 (F.NBR_BAD_FIT, F.FOFMEM_BAD_FIT),
                                 (F.NBR_NOT_FIT, F.FOFMEM_NOT_FIT),
                                 (F.NBR_SKIPPED_IN_CONV_CHECK, F.FOFMEM_SKIPPED_IN_CONV_CHECK)):
            if flags & nbr_bit:
                flags |= fof_bit
        for bit, fof_bit in own.items():
            if flags & bit:
                flags |= fof_bit
        if not m.mm.ok and len(members) > 1:
            flags |= F.FOFMEM_BAD_FIT
        return flags

    def _record_pass(self, members: list[_Member], itr: int) -> None:
        if not self.mof.get("write_convergence_data"):
            return
        npars = self._npars()
        for m in members:
            pars = m.mm.pars if m.mm.pars is not None else np.full(npars, F.DEFVAL)
            self._conv_rows.append((m.obj.id, m.obj.fofid, itr, 0 if m.mm.ok else 1,
                                    np.asarray(pars)[:npars]))

    def _record_nbrs(self, m: _Member, members: list[_Member], full: list[MemberModel]) -> None:
        npars = self._npars()
        keys = [epoch_key(o) for ol in m.mbobs for o in ol]
        ids = {id(x.mm): x.obj.id for x in members}
        for nb in full:
            if nb is m.mm:
                continue
            offchip = sum(1 for k in keys if k not in nb.centre)
            pars = nb.pars if nb.pars is not None else np.full(npars, F.DEFVAL)
            nbr_id = ids.get(id(nb), -1)
            self._nbrs_rows.append((m.obj.id, nbr_id, nb.number, m.obj.fofid,
                                    0 if nb.ok else F.NBR_NOT_MODELLED, len(keys), offchip,
                                    np.asarray(pars)[:npars]))


def nbrs_data_columns(psf_model: str) -> list[Column]:
    """ngmixer's nbrs_data: the epoch's identification, then one neighbour."""
    npsf = 6 * psf_ngauss(psf_model)
    jac = "of the Jacobian placing the neighbour on this stamp"
    return EPOCH_META_COLUMNS + [
        Column("nbr_id", "i8", (), C.NONE, "id of the neighbour (the object's own id in "
               "the last row of each epoch)"),
        Column("nbr_flags", "i4", (), C.BITS, "neighbour flags (NBR_NOT_MODELLED, "
               "NBR_OFF_EPOCH, NBR_HAS_NO_PSF_FIT)"),
        Column("nbr_jac_row0", "f8", (), C.PIXEL, "row of the neighbour's reference "
               "position (its cutout centre, or its sky position) in this stamp"),
        Column("nbr_jac_col0", "f8", (), C.PIXEL, "column of that position"),
        Column("nbr_jac_dudrow", "f8", (), "arcsec/pixel", f"du/drow {jac}"),
        Column("nbr_jac_dudcol", "f8", (), "arcsec/pixel", f"du/dcol {jac}"),
        Column("nbr_jac_dvdrow", "f8", (), "arcsec/pixel", f"dv/drow {jac}"),
        Column("nbr_jac_dvdcol", "f8", (), "arcsec/pixel", f"dv/dcol {jac}"),
        Column("nbr_psf_fit_pars", "f8", vec(npsf), C.PSF_FULL, "the PSF mixture the "
               "neighbour is drawn with on this stamp (full parameters)"),
    ]


def nbrs_data_row(erow: np.ndarray, nbr_id: int, nb: MemberModel, central: MemberModel,
                  obs, key: tuple[int, int], group: list[MemberModel], npsf: int) -> tuple:
    """One nbrs_data row: where and with which PSF ``nb`` is drawn on ``obs``."""
    jac = obs.jacobian
    flags = 0
    if nb is central:
        row0, col0 = jac.get_cen()
        psf = obs.psf.gmix if obs.psf is not None else None
    else:
        if key not in nb.centre or key not in nb.psf:
            flags |= F.NBR_OFF_EPOCH
        v, u = reference_vu(nb, central, obs)
        row0, col0 = (float(x) for x in jac.get_rowcol(v, u))
        psf = psf_for(nb, key, group)
        if not nb.ok or psf is None:
            flags |= F.NBR_NOT_MODELLED
    if psf is None:
        flags |= F.NBR_HAS_NO_PSF_FIT
        row0 = col0 = F.DEFVAL
        derivs = (F.DEFVAL,) * 4
        pars = np.full(npsf, F.DEFVAL)
    else:
        derivs = (jac.dudrow, jac.dudcol, jac.dvdrow, jac.dvdcol)
        pars = psf.get_full_pars()
    meta = tuple(erow[c.name] for c in EPOCH_META_COLUMNS)
    return meta + (nbr_id, flags, row0, col0) + derivs + (pars,)


def read_mof_pars(path: str, model: str) -> dict:
    """number -> (pars, ok, fracdev, TdByTe) of ``model`` from an earlier MOF output."""
    from ..fitsfile import read_table
    data = read_table(path, ext="model_fits")
    need = ("number", f"{model}_pars", f"{model}_flags")
    missing = [c for c in need if c not in data.dtype.names]
    if missing:
        raise InputFileError(path, f"not a MOF output for model {model!r}: missing "
                                   f"columns {', '.join(missing)}")
    out = {}
    for row in data:
        fd = float(row["cm_fracdev"]) if model == "cm" else None
        td = float(row["cm_TdByTe"]) if model == "cm" else None
        # the fit's own bits: an unconverged group's fits still model the neighbours
        ok = int(row[f"{model}_flags"]) & F.FIT_BITS == 0
        out[int(row["number"])] = (np.array(row[f"{model}_pars"], dtype="f8"), ok, fd, td)
    return out


register("mof")(MOFFitter)

__all__ = ["MOFFitter", "read_mof_pars", "mof_model_of", "nbrs_data_columns",
           "NBRS_DATA"]
