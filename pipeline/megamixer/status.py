"""``megamixit status``: chunk states per tile, from the adapter and the chunk files."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .chunkcheck import ChunkOutput, check_chunk
from .layout import RunLayout
from .tilerecord import TileRecord

COLUMNS = ("done", "failed", "running", "pending", "stuck", "not_submitted", "unknown")
LOG_TAIL = 15


@dataclass
class TileStatus:
    tile: str
    nchunks: int
    collated: str            # "yes", "incomplete", "stale", "no" or "archived"
    states: dict[str, str] = field(default_factory=dict)   # job name -> state value
    logs: dict[str, Path] = field(default_factory=dict)    # job name -> log path
    problems: dict[str, str] = field(default_factory=dict)  # job name -> invalid output

    def counts(self) -> Counter:
        return Counter(self.states.values())

    @property
    def failed(self) -> list[str]:
        return [n for n, s in self.states.items() if s == "failed"]


def chunk_state(state, output: ChunkOutput) -> str:
    """The adapter's state corrected by the chunk file: a finished job counts as done
    only if its output is valid (:func:`~.chunkcheck.check_chunk`); an output that
    exists but is damaged or stale makes the chunk failed."""
    value = str(state)
    if value in ("pending", "running"):
        return value
    if output.valid:
        return "done"
    return "failed" if value == "done" or output.exists else value


def collation_state(layout: RunLayout, rec: TileRecord) -> str:
    """How the tile's catalogue stands, from the tile record (no file read)."""
    if layout.archive(rec.tile).exists() and rec.complete_catalogue:
        return "archived"
    if not layout.collated(rec.tile).exists() or not rec.collation:
        return "no"
    if rec.collation.get("setup_id") != rec.setup_id:
        return "stale"
    return "yes" if rec.collation.get("complete") else "incomplete"


def all_done(statuses: list[TileStatus]) -> bool:
    """True when every chunk of every tile is done."""
    return all(set(st.states.values()) <= {"done"} for st in statuses)


def exit_code(statuses: list[TileStatus]) -> int:
    """0: every chunk done; 1: some failed or stuck (need action); 3: work still
    queued, running or not submitted."""
    states = {s for st in statuses for s in st.states.values()}
    if states <= {"done"}:
        return 0
    if states & {"failed", "stuck", "unknown"}:
        return 1
    return 3


def tile_statuses(layout: RunLayout, recs: list[TileRecord], system, jobs_by_tile: dict
                  ) -> list[TileStatus]:
    """One :class:`TileStatus` per record; the adapter is asked once for all jobs."""
    all_jobs = [j for rec in recs for j in jobs_by_tile[rec.tile]]
    states = system.query(all_jobs) if all_jobs else {}
    out = []
    for rec in recs:
        st = TileStatus(rec.tile, len(rec.chunks), collation_state(layout, rec))
        held = st.collated in ("yes", "archived")
        for job, (first, last) in zip(jobs_by_tile[rec.tile], rec.ranges):
            output = check_chunk(layout, rec, int(first), int(last))
            if held and not output.exists:
                st.states[job.name] = "done"   # results live in the collated file
                continue
            if output.problem:
                st.problems[job.name] = output.problem
            st.states[job.name] = chunk_state(states.get(job.name, "unknown"), output)
            st.logs[job.name] = job.path / job.log
        out.append(st)
    return out


def tail(path: Path, nlines: int = LOG_TAIL) -> list[str]:
    try:
        with open(path, errors="replace") as fobj:
            return fobj.read().splitlines()[-nlines:]
    except OSError:
        return ["(no log)"]


def format_status(statuses: list[TileStatus], logs: bool = False) -> str:
    """The status table (and, with ``logs``, the failed chunks' log tails)."""
    head = f"{'tile':<20} {'chunks':>6} " + " ".join(f"{c:>13}" for c in COLUMNS) + \
        f" {'collated':>9}"
    lines = [head]
    total: Counter = Counter()
    for st in statuses:
        c = st.counts()
        total.update(c)
        col = st.collated
        lines.append(f"{st.tile:<20} {st.nchunks:>6} " +
                     " ".join(f"{c.get(k, 0):>13}" for k in COLUMNS) + f" {col:>9}")
    if len(statuses) > 1:
        lines.append(f"{'total':<20} {sum(s.nchunks for s in statuses):>6} " +
                     " ".join(f"{total.get(k, 0):>13}" for k in COLUMNS))
    if logs:
        for st in statuses:
            for name in st.failed:
                lines.append(f"--- failed chunk {name}: {st.logs.get(name)} (last lines)")
                if name in st.problems:
                    lines.append(f"    output rejected: {st.problems[name]}")
                lines.extend("    " + ln for ln in tail(st.logs.get(name, Path("/nonexistent"))))
    else:
        for st in statuses:
            for name, problem in st.problems.items():
                lines.append(f"{name}: output rejected: {problem}")
    return "\n".join(lines)
