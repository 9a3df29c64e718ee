"""Walk the rows in bounded chunks, compute every path in every dtype, diagnose, summarise.

Memory is bounded by the chunk size: the engine keeps running totals per path and dtype,
counts per flag and cause, and the ``top`` worst flagged rows, never all rows. Per-row
results are available as a stream of DataFrames, one per chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from cecheck import fast, headroom, inputs, pipeline
from cecheck import precision as prec
from cecheck.arraytypes import Array
from cecheck.diagnose import CAUSES, NOT_FLAGGED
from cecheck.inputs import Source, from_arrays  # by name: compare() has an ``inputs`` argument
from cecheck.inputs.arrays import unpack
from cecheck.pipeline import ChunkResult
from cecheck.report import PathSummary, Report, RowRecord
from cecheck.rows import chunk_frame, chunk_records
from cecheck.settings import Settings

if TYPE_CHECKING:
    import pandas as pd


# Elements of one chunk: ~2 MB of float64 per temporary, so a chunk's work stays in cache.
CHUNK_ELEMENTS = 1 << 18


def evaluate(
    logits: Array,
    labels: Array,
    task: str,
    label_form: str,
    n_classes: int,
    s: Settings,
    start: int = 0,
    *,
    use_fast: bool = False,
) -> ChunkResult:
    """Compute every path and dtype for one chunk and diagnose it.

    ``use_fast``: compute the paths with the fused kernel of :mod:`cecheck.fast` where it
    covers the family and dtypes (same flags and causes; losses within a few ulp); the numpy
    functions of :mod:`cecheck.losses` otherwise, and always by default. With probability
    input, label smoothing or class weights, the framework view's path sets compute the chunk
    (``logits`` then holds what the input holds: the probabilities for ``inputs="probs"``).
    """
    p = pipeline.chunk_plan(task, label_form, n_classes, s, use_fast=use_fast)
    return p.evaluate(logits, labels, start)


def chunk_rows(n_classes: int) -> int:
    """Rows per chunk for ``n_classes`` logits a row."""
    return max(1, CHUNK_ELEMENTS // max(1, n_classes))


def iter_chunks(
    source: inputs.Source,
    s: Settings,
    progress: Callable[[int], None] | None = None,
    *,
    plan: pipeline.Plan | None = None,
) -> Iterator[ChunkResult]:
    """Evaluate ``source`` chunk by chunk, in row order (by ``plan``, made here by default)."""
    if plan is None:
        plan, source = pipeline.plan(source, s)
    if plan.paths.kernel:
        yield from _pipelined(source, plan, progress)
        return
    start = 0
    for logits, labels in source.chunks(chunk_rows(source.n_classes)):
        yield plan.evaluate(logits, labels, start)
        start += labels.shape[0]
        if progress is not None:
            progress(start)


def _pipelined(
    source: inputs.Source, plan: pipeline.Plan, progress: Callable[[int], None] | None
) -> Iterator[ChunkResult]:
    """:func:`iter_chunks` on the fast path: the kernel computes a chunk on its threads while
    this thread diagnoses the chunk before it (numpy, on one core), so neither waits for the
    other. Memory: two chunks' results instead of one."""
    from concurrent.futures import ThreadPoolExecutor

    start = 0
    done: tuple[pipeline.Masked, Array, Array] | None = None  # computed, not yet diagnosed
    chunks = source.chunks(fast.chunk_rows(source.n_classes))
    with ThreadPoolExecutor(1, thread_name_prefix="cecheck-ahead") as ahead:
        while True:
            try:
                logits, labels = next(chunks)
            except StopIteration:
                break
            except Exception:  # a bad chunk: the rows before it first, as without the kernel
                if done is not None:
                    yield plan.diagnosed(*done, start)
                raise
            computing = ahead.submit(plan.compute, logits, labels)
            if done is not None:
                yield plan.diagnosed(*done, start)
                start += done[2].shape[0]
                if progress is not None:
                    progress(start)
            # before the reader moves on (and releases this chunk's pages)
            done = (computing.result(), logits, labels)
    if done is not None:
        yield plan.diagnosed(*done, start)
        if progress is not None:
            progress(start + done[2].shape[0])


def run(
    source: inputs.Source,
    s: Settings,
    *,
    on_chunk: Callable[[ChunkResult], None] | None = None,
    progress: Callable[[int], None] | None = None,
    plan: pipeline.Plan | None = None,
) -> Report:
    """One pass over ``source``: the Report (totals and top rows); ``on_chunk`` sees each chunk.

    ``plan``: the run's plan, when the caller made it with :func:`cecheck.pipeline.plan`
    (which returned ``source``); else it is made here. Raises ValueError when a
    framework-view setting does not fit the input (class weights for a binary input, or not
    one per class).
    """
    if plan is None:
        plan, source = pipeline.plan(source, s)
    totals = _Totals(s, cliffs=headroom.Running(s.dtypes) if covers(plan) else None)
    batches = pipeline.Batches.start(plan)
    for chunk in iter_chunks(source, s, progress, plan=plan):
        totals.add(chunk, source)
        if batches is not None:
            batches.add(chunk.values, chunk.labels)
        if on_chunk is not None:
            on_chunk(chunk)
    ran = plan  # the same choices for every later pass over the rows
    report = totals.report(source, lambda: frames(source, s, plan=ran))
    report.batches = None if batches is None else batches.result()
    return report


def covers(plan: pipeline.Plan) -> bool:
    """Whether :mod:`cecheck.headroom` covers the run: multiclass logits with index labels,
    the plain paths (no label smoothing or class weights)."""
    f, s = plan.family, plan.settings
    return f.softmax and f.label_form == "index" and not s.changes_losses


def frames(
    source: inputs.Source, s: Settings, *, plan: pipeline.Plan | None = None
) -> Iterator[pd.DataFrame]:
    """Per-row results as DataFrames, one per chunk (see :func:`chunk_frame`)."""
    for chunk in iter_chunks(source, s, plan=plan):
        yield chunk_frame(chunk, source, s)


@dataclass
class _ColumnTotals:
    """Running totals of one loss column over the scored rows."""

    rows: int = 0
    finite: int = 0
    nan: int = 0
    inf: int = 0
    total: float = 0.0  # sum of the finite losses
    worst: float | None = None  # largest relative error against the reference

    def add(self, values: Array, worst: float | None) -> None:
        """Count the scored ``values`` of a chunk; ``worst`` is its largest relative error."""
        self.rows += values.size
        with np.errstate(over="ignore", invalid="ignore"):  # a NaN or inf is handled below
            total = values.sum()
        if np.isfinite(total):
            # A finite sum has no NaN or inf among its terms: every value is finite, and this
            # is the total over the finite ones (an all-True ``where`` adds in the same order
            # as no mask), without a pass for the mask.
            self.finite += values.size
            self.total += float(total)
        else:
            finite = np.isfinite(values)
            n_finite = int(np.count_nonzero(finite))
            n_nan = int(np.count_nonzero(np.isnan(values)))
            self.finite += n_finite
            self.nan += n_nan
            self.inf += values.size - n_finite - n_nan
            self.total += float(values.sum(where=finite))
        if worst is not None:
            self.worst = max(self.worst or 0.0, worst)


@dataclass
class _Totals:
    """Running totals over chunks: per-path summaries, flag and cause counts, top-K rows."""

    s: Settings
    rows: int = 0
    scored: int = 0
    n: dict[str, _ColumnTotals] = field(default_factory=dict)
    flag_counts: Array | None = None
    cause_counts: Array = field(default_factory=lambda: np.zeros(len(CAUSES), dtype=np.int64))
    path_causes: dict[str, Array] = field(default_factory=dict)
    flagged_rows: int = 0
    flag_names: tuple[str, ...] = ()
    top: list[RowRecord] = field(default_factory=list)
    cliffs: headroom.Running | None = None  # the headroom so far (when it covers the run)

    def __post_init__(self) -> None:
        self.n = {c: _ColumnTotals() for c in self.s.columns}

    def add(self, chunk: ChunkResult, source: inputs.Source) -> None:
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
            self.cliffs.add(chunk.logits, chunk.labels, scored, chunk.start, reference)

    def _keep_top(self, chunk: ChunkResult, source: inputs.Source, candidates: Array) -> None:
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
        best = _best_rows(candidates, diag.rank, diag.error, k)
        self.top += chunk_records(chunk, source, self.s, best)
        self.top.sort(key=lambda r: (r.rank, -r.error, r.row))
        del self.top[k:]

    def report(self, source: inputs.Source, frames: Callable[[], Iterator[pd.DataFrame]]) -> Report:
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
                    mean=t.total / t.finite if t.finite else float("nan"),
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
        )


def _best_rows(rows: Array, severity: Array, error: Array, k: int) -> Array:
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


def compare(
    logits: object,
    labels: object = None,
    *,
    task: str = "auto",
    dtypes: str | Sequence[str] = ("float32", "float64"),
    ignore_index: int = -100,
    rtol: float | None = None,
    atol: float | None = None,
    top: int = 20,
    progress: Callable[[int], None] | None = None,
    inputs: str = "logits",
    batch_size: int | None = None,
    label_smoothing: float = 0.0,
    class_weights: Sequence[float] | None = None,
    framework: str = "torch",
) -> Report:
    """Every row's cross-entropy along the textbook, naive, stable and reference paths,
    diagnosed.

    Parameters
    ----------
    logits, labels
        numpy arrays, lists or torch tensors (detached and read on the CPU, bfloat16 and
        float16 at their exact values; see :func:`cecheck.inputs.as_array`), or a dict with
        the keys ``logits`` and ``labels`` as ``logits`` with ``labels`` omitted (what
        ``safetensors.torch.load_file`` and ``torch.load`` return), or an
        :class:`~cecheck.inputs.Source` as ``logits`` with ``labels`` omitted (from
        :func:`cecheck.inputs.open_inputs`, which opens files: a path here is an InputError).
    task
        ``auto`` (inferred from the shapes and labels), ``binary``, ``multiclass`` or
        ``multilabel``.
    dtypes
        The precisions the paths are emulated in: a sequence of names, or a comma string
        such as ``"float16,float32"``.
    ignore_index
        Index labels equal to it are skipped, as in PyTorch.
    rtol, atol
        ``diverged``: ``|L - L64| > atol + rtol * |L64|``. None (the default): 64 times each
        dtype's machine epsilon, what its own rounding explains; a number: that tolerance
        for every dtype.
    top
        How many flagged rows the Report keeps, worst first.
    inputs
        ``logits``, or ``probs`` when ``logits`` holds probabilities (softmax or sigmoid
        outputs): the paths are then the framework conventions ``naive``, ``torch``, ``keras``
        and ``sklearn`` (see :mod:`cecheck.frameworks`).
    batch_size
        Also compute PyTorch's ``reduction="mean"`` over consecutive batches of this many
        rows (``Report.batches``).
    label_smoothing, class_weights
        PyTorch's ``cross_entropy(label_smoothing=, weight=)``, multiclass logits only.
    framework
        Whose idioms the naive path (softmax, then log) and the stable path (the fused loss)
        emulate, as its CPU kernels compute them: one of :data:`cecheck.choices.FRAMEWORKS`.

    Returns
    -------
    Report
        Totals per path and dtype, counts per flag, and the ``top`` worst flagged rows.

    Examples
    --------
    >>> import numpy as np
    >>> r = compare(np.array([[1000.0, 2000.0, 2500.0]]), np.array([1]))
    >>> v = r.top[0].values
    >>> v["textbook_float32"], v["naive_float32"], v["naive_float64"], v["stable_float32"]
    (nan, inf, 500.0, 500.0)
    >>> r.top[0].causes
    ['exp_overflow', 'prob_underflow']
    """
    settings = Settings(
        prec.names(dtypes),
        ignore_index,
        rtol,
        atol,
        top,
        inputs=inputs,
        batch_size=batch_size,
        label_smoothing=label_smoothing,
        class_weights=None if class_weights is None else tuple(class_weights),
        framework=framework,
    )
    if isinstance(logits, Source):
        source = logits
    else:
        source = from_arrays(*unpack(logits, labels), task=task)
    return run(source, settings, progress=progress)
