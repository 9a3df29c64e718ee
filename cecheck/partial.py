"""A run's mergeable partial result: what the engine keeps of the rows it has seen.

A :class:`Partial` holds running totals per loss column (counts, an exact sum for the mean,
the largest relative error), counts per flag and cause, the ``top`` worst flagged rows, the
headroom's minima and sums (:class:`cecheck.headroom.Running`) and PyTorch's batch means
(:class:`cecheck.frameworks.BatchMeans`). Its size does not depend on the number of rows.

Two partials of consecutive parts of one input merge (:meth:`Partial.merge`, the earlier on
the left): the merge is associative and exact, so a report merged from shards, however they
are grouped, equals the report on the concatenated rows. Counts add; sums are exact
(:class:`cecheck.exactsum.ExactSum`), so means agree to the last bit; maxima and minima keep
the earlier row on a tie, as one pass does; the top rows are the ``top`` first by (rank,
-error, row), a total order, whichever part they came from. A batch mean merges only when no
batch straddles the two parts (the part on the left ends on a batch boundary).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from cecheck import precision as prec
from cecheck import sigmoid_headroom
from cecheck.arraytypes import Array
from cecheck.diagnose import CAUSES, NOT_FLAGGED
from cecheck.exactsum import ExactSum
from cecheck.frameworks import BatchMeans
from cecheck.report import PathSummary, Report, RowRecord
from cecheck.rows import chunk_records
from cecheck.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from cecheck.inputs import Source
    from cecheck.pipeline import ChunkResult


@dataclass
class ColumnTotals:
    """Running totals of one loss column over the scored rows."""

    rows: int = 0
    finite: int = 0
    nan: int = 0
    inf: int = 0
    total: ExactSum = field(default_factory=ExactSum)  # of the finite losses, exact
    worst: float | None = None  # largest relative error against the reference

    def add(self, values: Array, worst: float | None) -> None:
        """Count the scored ``values`` of a chunk; ``worst`` is its largest relative error."""
        self.rows += values.size
        with np.errstate(over="ignore", invalid="ignore"):  # a NaN or inf is handled below
            total = values.sum()
        if np.isfinite(total):  # every value is finite: no pass for the mask
            self.finite += values.size
            self.total.add(values)
        else:
            finite = np.isfinite(values)
            n_finite = int(np.count_nonzero(finite))
            n_nan = int(np.count_nonzero(np.isnan(values)))
            self.finite += n_finite
            self.nan += n_nan
            self.inf += values.size - n_finite - n_nan
            self.total.add(values[finite])
        if worst is not None:
            self.worst = max(self.worst or 0.0, worst)

    def merge(self, other: ColumnTotals) -> None:
        self.rows += other.rows
        self.finite += other.finite
        self.nan += other.nan
        self.inf += other.inf
        self.total.merge(other.total)
        if other.worst is not None:
            self.worst = max(self.worst or 0.0, other.worst)

    @property
    def mean(self) -> float:
        """The mean of the finite losses, rounded once from their exact sum."""
        return self.total.mean(self.finite)


@dataclass
class Partial:
    """Running totals over chunks: per-path summaries, flag and cause counts, top-K rows."""

    s: Settings
    rows: int = 0
    scored: int = 0
    n: dict[str, ColumnTotals] = field(default_factory=dict)
    flag_counts: Array | None = None
    cause_counts: Array = field(default_factory=lambda: np.zeros(len(CAUSES), dtype=np.int64))
    path_causes: dict[str, Array] = field(default_factory=dict)
    flagged_rows: int = 0
    flag_names: tuple[str, ...] = ()
    top: list[RowRecord] = field(default_factory=list)
    cliffs: sigmoid_headroom.AnyRunning | None = None  # the headroom so far (if it covers the run)
    batches: BatchMeans | None = None  # PyTorch's batch means (with a batch size)
    shards: int = 0  # the shards whose rows are in (0: one input, not sharded)

    def __post_init__(self) -> None:
        self.n = {c: ColumnTotals() for c in self.s.columns}

    def add(self, chunk: ChunkResult, source: Source) -> None:
        diag = chunk.diagnosis
        scored = diag.scored
        every_row = bool(scored.all())  # the common case: no copy of the values
        for c in self.s.columns:
            values = chunk.values[c] if every_row else chunk.values[c][scored]
            self.n[c].add(values, diag.worst_error.get(c))
        self.rows += chunk.labels.shape[0]
        self.scored += int(np.count_nonzero(scored))
        counts = diag.flag_counts
        self.flag_counts = counts if self.flag_counts is None else self.flag_counts + counts
        self.flag_names = diag.flag_names
        self.cause_counts += diag.cause_counts
        for path, counts in diag.path_cause_counts.items():
            self.path_causes[path] = self.path_causes.get(path, 0) + counts
        candidates = np.flatnonzero(diag.severity < NOT_FLAGGED)
        self.flagged_rows += candidates.size
        self._keep_top(chunk, source, candidates)
        if self.cliffs is not None:
            reference = chunk.values["reference"]  # lse - z_y: headroom's lse without exp
            self.cliffs.add(chunk.logits, chunk.labels, scored, chunk.start, reference, chunk.ends)

    def merge(self, other: Partial) -> Partial:
        """Take in ``other``, the partial of the rows right after this one's; returns self."""
        for c, t in other.n.items():
            self.n[c].merge(t)
        self.rows += other.rows
        self.scored += other.scored
        if other.flag_counts is not None:
            mine = self.flag_counts
            self.flag_counts = other.flag_counts if mine is None else mine + other.flag_counts
            self.flag_names = other.flag_names
        self.cause_counts = self.cause_counts + other.cause_counts
        for path, counts in other.path_causes.items():
            self.path_causes[path] = self.path_causes.get(path, 0) + counts
        self.flagged_rows += other.flagged_rows
        self.top = sorted(self.top + other.top, key=_order)[: self.s.top]
        if self.cliffs is not None and other.cliffs is not None:
            self.cliffs.merge(other.cliffs)  # type: ignore[arg-type]  # the same kind: one task
        if self.batches is not None and other.batches is not None:
            self.batches.merge(other.batches)
        self.shards += other.shards
        return self

    def _keep_top(self, chunk: ChunkResult, source: Source, candidates: Array) -> None:
        """Merge the chunk's flagged rows (``candidates``) into the ``top`` worst rows kept.

        Rows are ranked by (rank, -error, row): the rank orders the severities and, within
        one, the framework's paths and wider dtypes first (:attr:`Diagnosis.rank`). Only the
        rows that can still enter are ranked, and only the k best of those become records: on
        an overconfident model nearly every row is flagged, and sorting them all, chunk after
        chunk, would cost more than the diagnosis itself.
        """
        k = self.s.top
        if k == 0 or candidates.size == 0:
            return
        diag = chunk.diagnosis
        if len(self.top) == k:  # full: a row enters only by beating the last row kept
            last = self.top[-1]
            rank, error = diag.rank[candidates], diag.error[candidates]
            same = rank == last.rank
            tied = same & (error == last.error)
            beats = (rank < last.rank) | (same & (error > last.error))
            beats |= tied & (chunk.start + candidates < last.row)
            candidates = candidates[beats]
        best = best_rows(candidates, diag.rank, diag.error, k)
        self.top += chunk_records(chunk, source, self.s, best)
        self.top.sort(key=_order)
        del self.top[k:]

    def report(self, source: Source, frames: Callable[[], Iterator[pd.DataFrame]]) -> Report:
        summary = []
        for c in self.s.columns:
            t = self.n[c]
            path, _, dtype = c.partition("_")
            bits = prec.get(dtype).bits if dtype else 53
            summary.append(
                PathSummary(
                    path=path,
                    dtype=dtype or "float64",
                    rows=t.rows,
                    finite=t.finite,
                    nan=t.nan,
                    inf=t.inf,
                    mean=t.mean,
                    worst_rel_error=t.worst,
                    bits_correct=None if t.worst is None else _bits(t.worst, bits),
                )
            )
        counts = {}
        if self.flag_counts is not None:
            counts = {
                f: int(n) for f, n in zip(self.flag_names, self.flag_counts, strict=True) if n
            }
        return Report(
            source=source,
            settings=self.s,
            rows=self.rows,
            scored_rows=self.scored,
            summary=summary,
            counts=counts,
            cause_counts={c: int(n) for c, n in zip(CAUSES, self.cause_counts, strict=True) if n},
            path_causes={
                path: {c: int(n) for c, n in zip(CAUSES, counts, strict=True) if n}
                for path, counts in self.path_causes.items()
            },
            flagged_rows=self.flagged_rows,
            top=list(self.top),
            frames=frames,
            headroom=None if self.cliffs is None else self.cliffs.result(),
            batches=None if self.batches is None else self.batches.result(),
            shards=self.shards or None,
        )


def _order(r: RowRecord) -> tuple[int, float, int]:
    return (r.rank, -r.error, r.row)


def best_rows(rows: Array, severity: Array, error: Array, k: int) -> Array:
    """The (at most) ``k`` best of ``rows`` (ascending) by (severity, -error, row), in order;
    ``severity`` is any integer order, such as :attr:`Diagnosis.rank`.

    Selects before it sorts: the k-th severity bounds the rows that can make the cut, and
    within that severity the error of the last place left bounds them again; rows tied with
    that error go by row number, which is their order in ``rows``. Then only k rows are
    sorted, whatever the number of flagged rows. ``error`` holds no NaN.
    """
    if rows.size > k:
        sev = severity[rows]
        cut = np.partition(sev, k - 1)[k - 1]  # the k-th smallest severity
        keep = sev < cut  # fewer than k rows: all in
        level = np.flatnonzero(sev == cut)
        places = k - int(np.count_nonzero(keep))
        err = error[rows[level]]
        bar = np.partition(err, err.size - places)[err.size - places]  # places-th largest
        above = err > bar
        ties = np.flatnonzero(err == bar)[: places - int(np.count_nonzero(above))]
        keep[level[above]] = True
        keep[level[ties]] = True
        rows = rows[keep]
    order = np.lexsort((rows, -error[rows], severity[rows]))
    return rows[order]


def _bits(rel: float, bits: int) -> float:
    if rel == 0:
        return float(bits)
    if not np.isfinite(rel):
        return 0.0
    return float(min(bits, max(0.0, -np.log2(rel))))
