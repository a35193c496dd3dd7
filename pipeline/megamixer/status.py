"""``megamixit status``: chunk states per tile, from the adapter and the chunk files."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .layout import RunLayout
from .tilerecord import TileRecord

COLUMNS = ("done", "failed", "running", "pending", "stuck", "not_submitted", "unknown")
LOG_TAIL = 15


@dataclass
class TileStatus:
    tile: str
    nchunks: int
    collated: bool
    archived: bool
    states: dict[str, str] = field(default_factory=dict)   # job name -> state value
    logs: dict[str, Path] = field(default_factory=dict)    # job name -> log path

    def counts(self) -> Counter:
        return Counter(self.states.values())

    @property
    def failed(self) -> list[str]:
        return [n for n, s in self.states.items() if s == "failed"]


def chunk_state(state, has_output: bool) -> str:
    """The adapter's state corrected by the chunk file: a finished job counts as done
    only if its output exists (ngmixit writes it atomically at the very end)."""
    value = str(state)
    if value in ("pending", "running"):
        return value
    if has_output:
        return "done"
    return "failed" if value == "done" else value


def tile_statuses(layout: RunLayout, recs: list[TileRecord], system, jobs_by_tile: dict
                  ) -> list[TileStatus]:
    """One :class:`TileStatus` per record; the adapter is asked once for all jobs."""
    all_jobs = [j for rec in recs for j in jobs_by_tile[rec.tile]]
    states = system.query(all_jobs) if all_jobs else {}
    out = []
    for rec in recs:
        archived = layout.archive(rec.tile).exists()
        st = TileStatus(rec.tile, len(rec.chunks), layout.collated(rec.tile).exists(), archived)
        for job, (first, last) in zip(jobs_by_tile[rec.tile], rec.ranges):
            has_output = layout.chunk_file(rec.tile, first, last).exists()
            if archived and not job.path.exists():
                st.states[job.name] = "done"   # results live in the collated file
                continue
            st.states[job.name] = chunk_state(states.get(job.name, "unknown"), has_output)
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
        col = "archived" if st.archived else ("yes" if st.collated else "no")
        lines.append(f"{st.tile:<20} {st.nchunks:>6} " +
                     " ".join(f"{c.get(k, 0):>13}" for k in COLUMNS) + f" {col:>9}")
    if len(statuses) > 1:
        lines.append(f"{'total':<20} {sum(s.nchunks for s in statuses):>6} " +
                     " ".join(f"{total.get(k, 0):>13}" for k in COLUMNS))
    if logs:
        for st in statuses:
            for name in st.failed:
                lines.append(f"--- failed chunk {name}: {st.logs.get(name)} (last lines)")
                lines.extend("    " + ln for ln in tail(st.logs.get(name, Path("/nonexistent"))))
    return "\n".join(lines)
