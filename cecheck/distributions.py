"""What the HTML report plots, gathered chunk by chunk in bounded memory.

:class:`Distributions` takes each computed chunk (:meth:`Distributions.add`) and keeps, whatever
the number of rows:

- per loss column, a histogram of its bits correct against the float64 reference
  (:func:`cecheck.diagnose.bits_correct`, one bin per bit) and its count of NaN/inf values;
- for multiclass logits with index labels, histograms on fixed bins of each row's margin
  ``lse - z_y`` (the float64 reference loss: the naive path's probability underflows past
  :func:`cecheck.headroom.underflow_threshold`) and of each row's largest logit (one ``exp``
  overflows past :func:`cecheck.headroom.overflow_threshold`);
- for logits of more than one leading axis, ``(B, T, C)``, the flagged rows per position along
  the last leading axis (at most :data:`MAX_POSITIONS` bins);
- with a batch size, PyTorch's batch means (:class:`cecheck.pipeline.Batches`) per column as
  at most :data:`MAX_BATCH_BINS` bins of consecutive batches: the smallest and largest finite
  mean of each bin and its batches whose mean is NaN or inf.

Plain numpy: the figures are drawn by :mod:`cecheck.output.html`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cecheck import families, pipeline
from cecheck import frameworks as fw
from cecheck import precision as prec
from cecheck.arraytypes import Array
from cecheck.diagnose import NOT_FLAGGED, bits_correct
from cecheck.inputs import Source
from cecheck.settings import Settings

MAX_POSITIONS = 512  # bins of the sequence strip (positions are pooled beyond)
MAX_BATCH_BINS = 1024  # bins of the batch-mean figure (consecutive batches are pooled beyond)


def log_edges(low: float = 1e-3, high: float = 1e5, per_decade: int = 10) -> Array:
    """Fixed bin edges over both signs: ``-high .. -low, 0, low .. high`` spaced evenly in
    log scale; values beyond ``high`` fall in the outermost bins."""
    decades = round(np.log10(high / low))
    positive = np.geomspace(low, high, decades * per_decade + 1)
    return np.concatenate((-positive[::-1], [0.0], positive))


EDGES = log_edges()


@dataclass
class Histogram:
    """Counts on fixed ``edges``; values beyond the edges go to the end bins, non-finite
    values are counted apart."""

    edges: Array
    counts: Array = field(init=False)
    nonfinite: int = 0

    def __post_init__(self) -> None:
        self.counts = np.zeros(self.edges.size - 1, dtype=np.int64)

    def add(self, values: Array) -> None:
        finite = np.isfinite(values)
        kept = values if finite.all() else values[finite]
        self.nonfinite += values.size - kept.size
        at = np.searchsorted(self.edges, kept, side="right") - 1
        np.clip(at, 0, self.counts.size - 1, out=at)
        self.counts += np.bincount(at, minlength=self.counts.size)

    @property
    def total(self) -> int:
        return int(self.counts.sum()) + self.nonfinite


@dataclass
class BatchBins:
    """One column's batch means pooled into bins of ``stride`` consecutive batches."""

    low: list[float] = field(default_factory=list)  # smallest finite mean (NaN: none)
    high: list[float] = field(default_factory=list)  # largest finite mean
    bad: list[int] = field(default_factory=list)  # batches with a NaN or inf mean


@dataclass
class BatchTrace:
    """Batch means over the run, at most :data:`MAX_BATCH_BINS` bins per column."""

    size: str  # a batch's size in words: "4 rows", "2 sequences (16 rows)"
    columns: dict[str, BatchBins]
    stride: int = 1  # batches per bin
    batches: int = 0

    def add(self, done: dict[str, Array]) -> None:
        """The batches :meth:`cecheck.frameworks.BatchMeans.add` completed."""
        k = done["batch"].size
        for i in range(k):  # a Python loop per batch: batches are few next to rows
            b = self.batches + i
            new = b % self.stride == 0
            for c, bins in self.columns.items():
                m = float(done[c][i])
                finite = bool(np.isfinite(m))
                if new:
                    bins.low.append(m if finite else np.nan)
                    bins.high.append(m if finite else np.nan)
                    bins.bad.append(0 if finite else 1)
                elif finite:
                    bins.low[-1] = float(np.fmin(bins.low[-1], m))
                    bins.high[-1] = float(np.fmax(bins.high[-1], m))
                else:
                    bins.bad[-1] += 1
            if new and len(next(iter(self.columns.values())).low) > MAX_BATCH_BINS:
                self._pool()
        self.batches += k

    def _pool(self) -> None:
        """Merge bins pairwise: half as many bins, each of twice as many batches."""
        for bins in self.columns.values():
            low, high = np.array(bins.low), np.array(bins.high)
            n = low.size - low.size % 2
            pooled_low = list(np.fmin(low[0:n:2], low[1:n:2])) + list(low[n:])
            pooled_high = list(np.fmax(high[0:n:2], high[1:n:2])) + list(high[n:])
            bad = np.array(bins.bad)
            pooled_bad = list(bad[0:n:2] + bad[1:n:2]) + list(bad[n:])
            bins.low = [float(v) for v in pooled_low]
            bins.high = [float(v) for v in pooled_high]
            bins.bad = [int(v) for v in pooled_bad]
        self.stride *= 2


@dataclass
class Distributions:
    """The figures' data of one run, in memory that does not grow with the rows."""

    source: Source
    settings: Settings
    bits: dict[str, Histogram] = field(init=False)  # loss column -> bits correct
    margin: Histogram | None = field(init=False)  # lse - z_y (softmax, index labels)
    max_logit: Histogram | None = field(init=False)
    positions: Array | None = field(init=False)  # flagged rows per position bin
    position_rows: Array | None = field(init=False)  # rows per position bin
    batch_trace: BatchTrace | None = field(init=False)
    _batches: pipeline.Batches | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        s, src = self.settings, self.source
        self.bits = {}
        for c in s.columns:
            if c == "reference":
                continue
            bits = prec.get(c.rpartition("_")[2]).bits
            self.bits[c] = Histogram(np.arange(bits + 2, dtype=np.float64))
        family = families.get(src.task, src.label_form)
        softmax_index = family.softmax and family.label_form == "index"
        margins = softmax_index and s.inputs == "logits" and not s.changes_losses
        self.margin = Histogram(EDGES) if margins else None
        self.max_logit = Histogram(EDGES) if margins else None
        self.positions = self.position_rows = None
        if len(src.lead_shape) > 1:
            self.positions = np.zeros(self.position_bins, dtype=np.int64)
            self.position_rows = np.zeros(self.position_bins, dtype=np.int64)
        self._batches, self.batch_trace = None, None
        if s.batch_size is not None:
            plan = pipeline.chunk_plan(src.task, src.label_form, src.n_classes, s)
            self._batches = pipeline.Batches(plan, s.batch_size, src.lead_shape)
            means = self._batches.means
            columns = {c: BatchBins() for c in s.columns}
            self.batch_trace = BatchTrace(fw.size_words(means.per_batch, means.sequence), columns)

    @property
    def sequence_length(self) -> int:
        """Positions along the last leading axis (T of ``(B, T, C)``; 1 for ``(N, C)``)."""
        return int(self.source.lead_shape[-1]) if self.source.lead_shape else 1

    @property
    def position_bins(self) -> int:
        return min(self.sequence_length, MAX_POSITIONS)

    def position_edges(self) -> Array:
        """The first position of each bin, then the sequence length."""
        t, n = self.sequence_length, self.position_bins
        return np.arange(n + 1) * t // n

    def add(self, chunk: pipeline.ChunkResult) -> None:
        """One computed chunk, in row order."""
        diag = chunk.diagnosis
        scored = diag.scored
        ref = chunk.values["reference"]
        for c, hist in self.bits.items():
            bits = prec.get(c.rpartition("_")[2]).bits
            values = chunk.values[c][scored]
            hist.add(bits_correct(values, ref[scored], bits))
        if self.margin is not None and self.max_logit is not None:
            self.margin.add(ref[scored])
            if chunk.logits.shape[0]:
                with np.errstate(invalid="ignore"):
                    self.max_logit.add(np.max(chunk.logits[scored], axis=1).astype(np.float64))
        if self.positions is not None and self.position_rows is not None:
            rows = np.arange(chunk.start, chunk.start + chunk.labels.shape[0])
            t, n = self.sequence_length, self.position_bins
            at = (rows % t) * n // t
            self.position_rows += np.bincount(at, minlength=n)
            self.positions += np.bincount(at[diag.severity < NOT_FLAGGED], minlength=n)
        if self._batches is not None and self.batch_trace is not None:
            self.batch_trace.add(self._batches.add(chunk.values, chunk.labels))

    def finish(self) -> None:
        """Close the last, shorter batch (call once, after the last chunk)."""
        if self._batches is not None and self.batch_trace is not None:
            self.batch_trace.add(self._batches.means.flush())
