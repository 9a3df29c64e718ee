"""PyTorch's batch mean: :class:`BatchMeans` streams ``reduction="mean"`` over consecutive
batches of B rows (the last batch may be shorter, as a DataLoader with ``drop_last=False``
gives it), and says why a batch mean is NaN or infinite. Pure numpy, no I/O.

Over N-d logits (rows of shape ``(B, T, ...)``) a batch counts sequences, as a training batch
does: B sequences are ``B * T * ...`` rows, and a batch is named by its sequences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cecheck.arraytypes import Array


@dataclass(frozen=True)
class BatchIssue:
    """A batch whose mean is NaN or infinite in at least one column."""

    batch: int  # 0-based batch number
    first_row: int  # its first row
    rows: int  # rows in it (the last batch may be shorter)
    ignored: int  # rows with ignore_index
    means: dict[str, float]  # every column's batch mean
    reasons: dict[str, str]  # column -> why, for the non-finite columns only
    sequence: tuple[int, ...] = ()  # a sequence's rows' shape when batches count sequences

    @property
    def span(self) -> str:
        """``batch 6 (rows 24-27)``; ``batch 1 (sequences 2-3)`` when batches count sequences."""
        return span(self.batch, self.first_row, self.rows, self.sequence)

    @property
    def reason(self) -> str:
        """The distinct reasons, joined: often one sentence for every column."""
        return "; ".join(dict.fromkeys(self.reasons.values()))


@dataclass(frozen=True)
class ColumnBatches:
    """One column's batch means over the whole input."""

    nan: int  # batches whose mean is NaN
    inf: int  # batches whose mean is infinite
    worst_batch: int | None  # the finite batch with the largest mean
    worst_mean: float | None

    @property
    def nonfinite(self) -> int:
        return self.nan + self.inf


@dataclass(frozen=True)
class BatchSummary:
    """PyTorch's ``reduction="mean"`` per batch of ``batch_size`` rows, or of ``batch_size``
    sequences (``sequence``: their rows' shape) over N-d logits: plain data."""

    batch_size: int  # as given: rows, or sequences over N-d logits
    batches: int
    rows: int
    columns: dict[str, ColumnBatches]
    issues: list[BatchIssue]  # the first ``max_issues`` non-finite batches, in order
    nonfinite_batches: int  # batches non-finite in at least one column, all of them
    ignore_index: int
    sequence: tuple[int, ...] = ()  # (T, ...) of (B, T, ...) rows; () when batches count rows

    @property
    def truncated(self) -> bool:
        return self.nonfinite_batches > len(self.issues)

    @property
    def unit(self) -> str:
        return "sequences" if self.sequence else "rows"

    @property
    def rows_per_batch(self) -> int:
        return self.batch_size * math.prod(self.sequence)

    @property
    def last_batch_rows(self) -> int:
        return self.rows - (self.batches - 1) * self.rows_per_batch if self.batches else 0

    def size(self, rows: int | None = None) -> str:
        """A batch's size in words: ``4 rows``, or ``2 sequences (16 rows)``; of ``rows``
        rows, or by default a whole batch."""
        return size_words(self.rows_per_batch if rows is None else rows, self.sequence)

    def to_dict(self) -> dict[str, object]:
        """The JSON ``batches`` object (floats raw: the report makes non-finite ones strings)."""
        return {
            "batch_size": self.batch_size,
            "unit": self.unit,
            "rows_per_batch": self.rows_per_batch,
            "count": self.batches,
            "rows": self.rows,
            "last_batch_rows": self.last_batch_rows,
            "reduction": "mean",
            "rule": BATCH_RULE,
            "columns": {
                c: {
                    "nan": s.nan,
                    "inf": s.inf,
                    "worst_batch": s.worst_batch,
                    "worst_mean": s.worst_mean,
                }
                for c, s in self.columns.items()
            },
            "nonfinite_batches": self.nonfinite_batches,
            "nonfinite": [
                {
                    "batch": i.batch,
                    "first_row": i.first_row,
                    "rows": i.rows,
                    **self._sequences(i),
                    "ignored": i.ignored,
                    "means": dict(i.means),
                    "reasons": dict(i.reasons),
                }
                for i in self.issues
            ],
            "truncated": self.truncated,
        }

    def _sequences(self, issue: BatchIssue) -> dict[str, int]:
        """An issue's ``first_sequence`` and ``sequences`` when batches count sequences."""
        if not self.sequence:
            return {}
        n = math.prod(self.sequence)
        return {"first_sequence": issue.first_row // n, "sequences": issue.rows // n}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def size_words(rows: int, sequence: tuple[int, ...] = ()) -> str:
    """``rows`` rows in words: ``4 rows``, or ``2 sequences (16 rows)`` when batches count
    sequences whose rows are shaped ``sequence``."""
    if not sequence:
        return _plural(rows, "row")
    return f"{_plural(rows // math.prod(sequence), 'sequence')} ({_plural(rows, 'row')})"


def span(batch: int, first_row: int, rows: int, sequence: tuple[int, ...] = ()) -> str:
    """A batch named by its rows, ``batch 6 (rows 24-27)``, or by its sequences (their rows'
    shape ``sequence``), ``batch 1 (sequences 2-3)``."""
    if not sequence:
        return f"batch {batch} (rows {first_row}-{first_row + rows - 1})"
    n = math.prod(sequence)
    first, count = first_row // n, rows // n
    if count == 1:
        return f"batch {batch} (sequence {first})"
    return f"batch {batch} (sequences {first}-{first + count - 1})"


BATCH_RULE = (
    "PyTorch reduction='mean' over consecutive batches: the sum of the row losses (class "
    "weight included) over the rows that are not ignore_index, divided by the sum of their "
    "target classes' weights (the row count for soft, binary and multilabel targets); "
    "computed in float64"
)


@dataclass
class _Segments:
    """Per-batch totals of consecutive rows, one entry per batch (or part of one).

    ``rows``, ``ignored``, ``weight``, and per column: ``sums`` of the values of the rows not
    ignored, the number of those rows whose value is NaN (``nan``) or infinite (``inf``), and
    the first such row (``first_nan``, ``first_inf``; ``_NO_ROW`` when there is none).
    """

    rows: Array
    ignored: Array
    weight: Array
    sums: dict[str, Array]
    nan: dict[str, Array]
    inf: dict[str, Array]
    first_nan: dict[str, Array]
    first_inf: dict[str, Array]

    def take(self, sl: slice) -> _Segments:
        def part(d: dict[str, Array]) -> dict[str, Array]:
            return {c: v[sl] for c, v in d.items()}

        return _Segments(
            self.rows[sl],
            self.ignored[sl],
            self.weight[sl],
            part(self.sums),
            part(self.nan),
            part(self.inf),
            part(self.first_nan),
            part(self.first_inf),
        )

    def merge_first(self, other: _Segments) -> None:
        """Add ``other`` (one segment: the open batch) into this one's first segment."""
        self.rows[0] += other.rows[0]
        self.ignored[0] += other.ignored[0]
        self.weight[0] += other.weight[0]
        for c in self.sums:
            self.sums[c][0] += other.sums[c][0]
            self.nan[c][0] += other.nan[c][0]
            self.inf[c][0] += other.inf[c][0]
            self.first_nan[c][0] = min(self.first_nan[c][0], other.first_nan[c][0])
            self.first_inf[c][0] = min(self.first_inf[c][0], other.first_inf[c][0])


_NO_ROW = np.iinfo(np.int64).max


class BatchMeans:
    """Stream PyTorch's per-batch ``reduction="mean"`` over consecutive chunks of rows.

    A batch is ``batch_size`` rows, or ``batch_size`` sequences of rows shaped ``sequence``
    (``(T, ...)`` of N-d logits whose rows are ``(B, T, ...)``): ``per_batch`` rows either
    way. Feed every chunk in row order with :meth:`add`; a batch may straddle chunks. Memory is
    bounded: per column the count of NaN and infinite batches and the worst finite mean, and
    the first ``max_issues`` non-finite batches with a reason for each column. Complete
    batches are handled in numpy, so small batches cost no Python loop per batch.

    The mean is computed in float64 from the per-row values (each already rounded to its
    column's dtype by the path that produced it) and is not rounded back to that dtype. That
    matches PyTorch up to the last bit of the mean: PyTorch sums float16 and bfloat16 losses
    in float32, so no intermediate sum overflows there either, and a mean of finite values
    is never larger than the largest of them.
    """

    def __init__(
        self,
        batch_size: int,
        columns: list[str] | tuple[str, ...],
        *,
        sequence: tuple[int, ...] = (),
        ignore_index: int = -100,
        max_issues: int = 100,
        first_row: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be a positive number of rows, got {batch_size}")
        # ``sequence``: the shape of a sequence's rows, (T, ...) of (B, T, ...) rows, when a
        # batch counts sequences; () when it counts rows
        self.batch_size = int(batch_size)
        self.sequence = tuple(int(n) for n in sequence)
        self.per_batch = self.batch_size * math.prod(self.sequence)  # rows
        if self.per_batch < 1:
            raise ValueError(f"a sequence of shape {self.sequence} holds no rows")
        if first_row % self.per_batch:
            raise ValueError(f"row {first_row} is not the first row of a batch of {self.per_batch}")
        self.columns = tuple(columns)
        self.ignore_index = ignore_index
        self.max_issues = max_issues
        # ``first_row``: the number of the first row fed (a shard's place in its input)
        self.rows = first_row  # the number of the next row
        self.batches = first_row // self.per_batch  # the number of the next batch
        self._open: _Segments | None = None  # the batch not complete yet
        self._nan = dict.fromkeys(self.columns, 0)
        self._inf = dict.fromkeys(self.columns, 0)
        self._worst: dict[str, tuple[int, float] | None] = dict.fromkeys(self.columns)
        self._issues: list[BatchIssue] = []
        self._nonfinite_batches = 0

    def add(self, values: dict[str, Array], weights: Array, ignored: Array) -> dict[str, Array]:
        """Take the next chunk; return the batches it completed, as columns of arrays.

        ``values`` maps each column to its (n,) row losses as PyTorch's ``reduction="none"``
        gives them (class weight included; ignored rows are left out whatever they hold).
        ``weights`` is each row's share of the denominator
        (:func:`~cecheck.frameworks.weighting.row_weights`), ``ignored`` the ``ignore_index``
        rows. The returned dict holds ``batch``, ``first_row``, ``rows``, ``ignored``,
        ``weight`` and one mean per column, one entry per completed batch (for a per-batch
        CSV).
        """
        ignored = np.asarray(ignored, dtype=bool)
        n = ignored.shape[0]
        if n == 0:
            return self._close(None)
        rows = np.arange(self.rows, self.rows + n)
        # Segment k covers rows[starts[k]:starts[k + 1]]: a new one wherever a batch begins.
        starts = np.flatnonzero(rows % self.per_batch == 0)
        if starts.size == 0 or starts[0] != 0:
            starts = np.concatenate(([0], starts))
        used = ~ignored
        seg = _Segments(
            rows=np.diff(np.append(starts, n)),
            ignored=np.add.reduceat(ignored.astype(np.int64), starts),
            weight=np.add.reduceat(np.where(ignored, 0.0, np.asarray(weights, np.float64)), starts),
            sums={},
            nan={},
            inf={},
            first_nan={},
            first_inf={},
        )
        for c in self.columns:
            v = np.asarray(values[c], dtype=np.float64)
            nan, inf = np.isnan(v) & used, np.isinf(v) & used
            seg.sums[c] = np.add.reduceat(np.where(used, v, 0.0), starts)
            seg.nan[c] = np.add.reduceat(nan.astype(np.int64), starts)
            seg.inf[c] = np.add.reduceat(inf.astype(np.int64), starts)
            seg.first_nan[c] = np.minimum.reduceat(np.where(nan, rows, _NO_ROW), starts)
            seg.first_inf[c] = np.minimum.reduceat(np.where(inf, rows, _NO_ROW), starts)
        if self._open is not None:
            seg.merge_first(self._open)
        self.rows += n
        complete = len(starts) if seg.rows[-1] == self.per_batch else len(starts) - 1
        self._open = seg.take(slice(complete, None)) if complete < len(starts) else None
        return self._close(seg.take(slice(0, complete)))

    def flush(self) -> dict[str, Array]:
        """Close the last, shorter batch if one is open; return it as :meth:`add` does."""
        last, self._open = self._open, None
        return self._close(last)

    def merge(self, other: BatchMeans) -> None:
        """Take in ``other``, the batch means of the rows right after this one's.

        Exact only when no batch straddles the two: this one must end on a batch boundary
        (no open batch), as a shard does whose rows are a multiple of the batch size; else a
        ValueError. The worst mean keeps the earlier batch on a tie, as one pass does.
        """
        if self._open is not None and other.rows > self.rows:
            raise ValueError(
                f"batch {self.batches} straddles row {self.rows}: cannot merge batch means "
                "across it"
            )
        if other.rows > self.rows:
            self._open = other._open
        self.rows, self.batches = max(self.rows, other.rows), max(self.batches, other.batches)
        for c in self.columns:
            self._nan[c] += other._nan[c]
            self._inf[c] += other._inf[c]
            mine, theirs = self._worst[c], other._worst[c]
            if theirs is not None and (mine is None or theirs[1] > mine[1]):
                self._worst[c] = theirs
        self._issues = (self._issues + other._issues)[: self.max_issues]
        self._nonfinite_batches += other._nonfinite_batches

    def _close(self, seg: _Segments | None) -> dict[str, Array]:
        """Finish complete batches: their means, the counts, the worst, and the issues."""
        k = 0 if seg is None else len(seg.rows)
        batch = np.arange(self.batches, self.batches + k)
        first = batch * self.per_batch
        done: dict[str, Array] = {"batch": batch, "first_row": first}
        if seg is None or k == 0:
            done |= {"rows": batch, "ignored": batch, "weight": np.zeros(0)}
            return done | {c: np.zeros(0) for c in self.columns}
        done |= {"rows": seg.rows, "ignored": seg.ignored, "weight": seg.weight}
        bad = np.zeros(k, dtype=bool)
        with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 = NaN: PyTorch's answer
            for c in self.columns:
                mean = seg.sums[c] / seg.weight
                done[c] = mean
                finite = np.isfinite(mean)
                self._nan[c] += int(np.isnan(mean).sum())
                self._inf[c] += int(np.isinf(mean).sum())
                bad |= ~finite
                if finite.any():
                    i = int(np.argmax(np.where(finite, mean, -np.inf)))
                    worst = self._worst[c]
                    if worst is None or mean[i] > worst[1]:
                        self._worst[c] = (int(batch[i]), float(mean[i]))
        self._nonfinite_batches += int(bad.sum())
        room = self.max_issues - len(self._issues)
        for i in np.flatnonzero(bad)[: max(room, 0)]:
            means = {c: float(done[c][i]) for c in self.columns}
            reasons = {
                c: self._reason(seg, int(i), c, int(batch[i]), m)
                for c, m in means.items()
                if not np.isfinite(m)
            }
            self._issues.append(
                BatchIssue(
                    int(batch[i]),
                    int(first[i]),
                    int(seg.rows[i]),
                    int(seg.ignored[i]),
                    means,
                    reasons,
                    self.sequence,
                )
            )
        self.batches += k
        return done

    def _reason(self, seg: _Segments, i: int, c: str, b: int, mean: float) -> str:
        """One sentence on why column ``c`` of batch ``b`` (segment ``i``) has a non-finite mean."""
        rows = int(seg.rows[i])
        where = span(b, b * self.per_batch, rows, self.sequence)
        result = "NaN" if np.isnan(mean) else "inf"
        if seg.ignored[i] == rows:
            return (
                f"every label in {where} is {self.ignore_index} (ignore_index): "
                "PyTorch's mean is 0/0 = NaN"
            )
        if seg.nan[c][i]:
            row = self._row(int(seg.first_nan[c][i]))
            return _row_reason(row, int(seg.nan[c][i]), "a NaN loss", where, result)
        if seg.weight[i] == 0:
            return (
                f"every label in {where} that is not ignored has class weight 0: "
                "PyTorch's mean is 0/0 = NaN"
            )
        if seg.inf[c][i]:
            row = self._row(int(seg.first_inf[c][i]))
            return _row_reason(row, int(seg.inf[c][i]), "an infinite loss", where, result)
        return f"the sum of the losses in {where} overflows: the mean is {result}"

    def _row(self, row: int) -> str:
        """A row as the report names it: ``27``, or its index ``(2, 3)`` over N-d logits."""
        if not self.sequence:
            return str(row)
        n = math.prod(self.sequence)
        index = [row // n, *(int(i) for i in np.unravel_index(row % n, self.sequence))]
        return "(" + ", ".join(str(i) for i in index) + ")"

    def result(self) -> BatchSummary:
        """The summary over every batch; closes the last, shorter batch first if open."""
        self.flush()
        columns = {}
        for c in self.columns:
            worst = self._worst[c]
            columns[c] = ColumnBatches(
                nan=self._nan[c],
                inf=self._inf[c],
                worst_batch=None if worst is None else worst[0],
                worst_mean=None if worst is None else worst[1],
            )
        return BatchSummary(
            batch_size=self.batch_size,
            batches=self.batches,
            rows=self.rows,
            columns=columns,
            issues=list(self._issues),
            nonfinite_batches=self._nonfinite_batches,
            ignore_index=self.ignore_index,
            sequence=self.sequence,
        )


def _row_reason(row: str, count: int, what: str, where: str, result: str) -> str:
    more = f" ({count - 1} more row{'s' if count > 2 else ''} too)" if count > 1 else ""
    return f"row {row} in {where} has {what}{more}: the mean is {result}"
