"""Walk the rows in bounded chunks, compute every path in every dtype, diagnose, summarise.

Memory is bounded by the chunk size: the engine keeps running totals per path and dtype,
counts per flag and cause, and the ``top`` worst flagged rows, never all rows. Per-row
results are available as a stream of DataFrames, one per chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from cecheck import fast, headroom, inputs, pipeline, sigmoid_headroom
from cecheck import precision as prec
from cecheck.arraytypes import Array
from cecheck.inputs import Source, from_arrays  # by name: compare() has an ``inputs`` argument
from cecheck.inputs.arrays import unpack
from cecheck.partial import Partial
from cecheck.pipeline import ChunkResult
from cecheck.report import Report
from cecheck.rows import chunk_frame
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
    start = source.first_row
    for logits, labels in source.chunks(chunk_rows(source.n_classes)):
        yield plan.evaluate(logits, labels, start)
        start += labels.shape[0]
        if progress is not None:
            progress(start - source.first_row)


def _pipelined(
    source: inputs.Source, plan: pipeline.Plan, progress: Callable[[int], None] | None
) -> Iterator[ChunkResult]:
    """:func:`iter_chunks` on the fast path: the kernel computes a chunk on its threads while
    this thread diagnoses the chunk before it (numpy, on one core), so neither waits for the
    other. Memory: two chunks' results instead of one."""
    from concurrent.futures import ThreadPoolExecutor

    start = source.first_row
    done: tuple[pipeline.Masked, Array, Array] | None = None  # computed, not yet diagnosed
    # bfloat16 logits as stored (the kernel reads them so; numpy widens the rows it reads)
    chunks = source.chunks(fast.chunk_rows(source.n_classes), lazy=True)
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
                    progress(start - source.first_row)
            # before the reader moves on (and releases this chunk's pages)
            done = (computing.result(), logits, labels)
    if done is not None:
        yield plan.diagnosed(*done, start)
        if progress is not None:
            progress(start + done[2].shape[0] - source.first_row)


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
    totals = accumulate(source, s, plan, on_chunk=on_chunk, progress=progress)
    ran = plan  # the same choices for every later pass over the rows
    return totals.report(source, lambda: frames(source, s, plan=ran))


def accumulate(
    source: inputs.Source,
    s: Settings,
    plan: pipeline.Plan,
    *,
    on_chunk: Callable[[ChunkResult], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Partial:
    """One pass over ``source`` (planned by ``plan``): its :class:`~cecheck.partial.Partial`,
    which merges with the partials of the rows before and after it."""
    totals = Partial(s, cliffs=_running(plan))
    batches = pipeline.Batches.start(plan, source.lead_shape, source.first_row)
    for chunk in iter_chunks(source, s, progress, plan=plan):
        totals.add(chunk, source)
        if batches is not None:
            batches.add(chunk.values, chunk.labels)
        if on_chunk is not None:
            on_chunk(chunk)
    totals.batches = None if batches is None else batches.means
    return totals


def covers(plan: pipeline.Plan) -> bool:
    """Whether headroom covers the run: multiclass logits with index labels
    (:mod:`cecheck.headroom`) or binary and multilabel logits with PyTorch's paths
    (:mod:`cecheck.sigmoid_headroom`), the plain paths (no label smoothing or class weights)."""
    f, s = plan.family, plan.settings
    if s.changes_losses:
        return False
    if f.softmax:
        return f.label_form == "index"
    return s.framework == "torch"


def _running(plan: pipeline.Plan) -> headroom.Running | sigmoid_headroom.Running | None:
    """The headroom's running minima for the run, when :func:`covers` it."""
    if not covers(plan):
        return None
    if plan.family.softmax:
        return headroom.Running(plan.settings.dtypes)
    return sigmoid_headroom.Running(plan.settings.dtypes)


def frames(
    source: inputs.Source, s: Settings, *, plan: pipeline.Plan | None = None
) -> Iterator[pd.DataFrame]:
    """Per-row results as DataFrames, one per chunk (see :func:`chunk_frame`)."""
    for chunk in iter_chunks(source, s, plan=plan):
        yield chunk_frame(chunk, source, s)


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
        rows, or of this many sequences (the first axis) over N-d logits such as
        ``(B, T, V)`` (``Report.batches``).
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
