"""One row's loss walked through step by step, in every precision, first bad step marked.

"Why is my loss NaN?" has a classic answer: logits [1000, 2000, 2500]; exp overflows to inf;
inf / inf is NaN; while shifting by the max gives [-1500, -500, 0] and a loss of 500.
:func:`trace` gives that walk for any row: every intermediate value of the naive, stable and
reference paths in each dtype, with the first step that produced inf, NaN, or an exact 0 or 1
that matters marked, and one sentence on why.

The steps are computed with the operations of :mod:`cecheck.losses`, in the same order and
with the same :class:`~cecheck.precision.Precision` rounding, so the last step of each path
is exactly the loss ``compare`` reports for that row (the tests check this bit for bit).

What counts as bad, so that the mark points at a cause rather than at harmless rounding:

- any step whose value holds inf or NaN (the first one only: the rest follow from it);
- a probability rounding to exactly 0 (``log`` then gives -inf), a sigmoid rounding to
  exactly 0 or 1 (one of the two logs gives -inf);
- a probability, or the stable path's ``sum exp(z - max)``, rounding to exactly 1 when that
  makes the loss exactly 0 although the reference loss is a normal number of the dtype (the
  case ``compare`` flags as ``inaccurate``).

``exp(z - max)`` underflowing to 0, or the target's shifted logit being 0, is not bad.

Steps hold every class's value while they are computed; a :class:`Trace` keeps only the
classes worth showing (all of them up to :data:`ALL_CLASSES`, else the target(s), the top
:data:`TOP` logits and any class where a path first went wrong) and one summary of the rest,
so a 32,000-class row stays small.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import ml_dtypes
import numpy as np
import numpy.typing as npt

from cecheck import inputs, losses
from cecheck import precision as prec
from cecheck.diagnose import bits_correct
from cecheck.precision import Precision

if TYPE_CHECKING:
    from cecheck.engine import Settings

Array = npt.NDArray

PATHS = ("naive", "stable", "reference")
ALL_CLASSES = 8  # rows with at most this many classes show every class
TOP = 5  # otherwise: the target(s), the TOP largest logits, and the classes that went wrong


# ---------------------------------------------------------------------- the data


@dataclass(frozen=True)
class Rest:
    """A summary of the classes a vector step does not show: how many, their range, NaNs."""

    count: int
    low: float  # smallest non-NaN value (NaN if all are NaN)
    high: float  # largest non-NaN value
    nan: int  # how many are NaN


@dataclass(frozen=True)
class Step:
    """One intermediate value of a path.

    A scalar step has ``value``; a per-class step has ``values`` (class, value) for the shown
    classes and ``rest`` for the others. Values are the dtype's numbers held as Python floats
    (exactly: every value of these formats is a float64).
    """

    name: str  # a stable identifier: "exp", "sum", "p", "loss", ...
    formula: str  # what it computes, as a person reads it: "exp(z)", "Σ exp(z)"
    value: float | None = None
    values: tuple[tuple[int, float], ...] = ()
    rest: Rest | None = None
    first_bad: bool = False
    note: str | None = None  # why the step is bad: one sentence; only on the first bad step

    @property
    def per_class(self) -> bool:
        return self.value is None


@dataclass(frozen=True)
class PathTrace:
    """One path in one dtype: its steps, the last of which is the loss."""

    path: str  # naive, stable or reference
    dtype: str  # the reference is always float64
    steps: tuple[Step, ...]
    loss: float

    @property
    def first_bad(self) -> int | None:
        """The 0-based position of the first bad step, None if no step went wrong."""
        return next((i for i, s in enumerate(self.steps) if s.first_bad), None)


@dataclass(frozen=True)
class Trace:
    """One row's walk through every path and dtype (see :func:`trace`)."""

    task: str
    label_form: str
    n_classes: int
    label: int | float | None  # class index or binary target; None for per-class targets
    classes: tuple[int, ...]  # the classes shown, in display order
    logits: tuple[tuple[int, float], ...]  # the shown classes' logits as given (binary: class 0)
    logits_dtype: str  # the dtype the logits were given in (float64 if not one of DTYPES)
    targets: tuple[tuple[int, float], ...]  # per-class targets of the shown classes, or ()
    rest: Rest | None  # the logits not shown
    reference: float  # the accurate loss (float64)
    dtypes: tuple[str, ...]
    paths: tuple[PathTrace, ...]
    partings: tuple[str, ...]  # per dtype: where the paths part ways, one sentence each
    row: int | None = None  # flat row number, when the row came from an input
    index: tuple[int, ...] | None = None  # the row's index over the leading axes
    origin: str | None = None  # how the row was chosen, e.g. "the worst flagged row"

    def path(self, path: str, dtype: str = "float64") -> PathTrace:
        """The trace of ``path`` in ``dtype`` (the reference is float64)."""
        for p in self.paths:
            if p.path == path and (path == "reference" or p.dtype == dtype):
                return p
        raise KeyError(f"{path} in {dtype} was not traced")


# ---------------------------------------------------------------------- the public entry


def trace(
    logits_row: Any,
    label: Any,
    *,
    task: str = "auto",
    label_form: str | None = None,
    dtypes: str | Sequence[str] = ("float32", "float64"),
    paths: Sequence[str] = PATHS,
) -> Trace:
    """Walk one row's cross-entropy loss step by step along each path in each dtype.

    Parameters
    ----------
    logits_row
        The row's logits: ``(C,)`` for multiclass and multilabel, a scalar for binary; a
        numpy array, a list or a torch tensor (read as :func:`cecheck.inputs.as_array` reads
        it: bfloat16 and float16 at their exact values).
    label
        A class index, a binary target, or a ``(C,)`` vector of per-class targets
        (one-hot, soft or multi-hot).
    task, label_form
        As :class:`cecheck.inputs.Source` names them. ``task="auto"`` or no ``label_form``:
        inferred as :func:`cecheck.inputs.from_arrays` infers them for a one-row input.
    dtypes
        The precisions the naive and stable paths are walked in: a sequence of names, or
        a comma string such as ``"float16,float32"``.
    paths
        Any of ``naive``, ``stable``, ``reference``.

    Returns
    -------
    Trace
        Per path and dtype the steps, the first bad one marked with a sentence on why, and
        per dtype a sentence on where the paths part ways.

    Raises
    ------
    ValueError
        An unknown dtype or path, or a class-index label outside ``0..C-1`` or not a whole
        number (such a row has no loss).
    InputError
        Logits and label whose shapes do not fit together (from
        :func:`cecheck.inputs.from_arrays`, when the task or label form is inferred).

    Examples
    --------
    >>> t = trace([1000.0, 2000.0, 2500.0], 1, dtypes=["float32"])
    >>> t.path("naive", "float32").loss, t.path("stable", "float32").loss
    (nan, 500.0)
    >>> [s.note for s in t.path("naive", "float32").steps if s.first_bad]
    ['exp(1000) is above 3.4e38, the largest float32: it overflows to inf']
    """
    dts = _dtypes(dtypes)
    paths = [paths] if isinstance(paths, str) else paths
    wanted = tuple(p for p in PATHS if p in set(paths))
    unknown = set(paths) - set(PATHS)
    if unknown or not wanted:
        raise ValueError(f"paths must be among {', '.join(PATHS)}, got {list(paths)}")
    z, y, task, label_form = _row(logits_row, label, task, label_form)
    kind = losses.family(task, label_form)
    n_classes = 1 if kind == "binary" else z.shape[1]
    if kind == "index" and int(y[0]) == inputs.INVALID_LABEL:
        raise ValueError(
            "the class label is not a whole number (a fraction, NaN or an empty cell), "
            "so the row has no loss to trace"
        )
    if kind == "index" and not 0 <= int(y[0]) < n_classes:
        raise ValueError(
            f"label {int(y[0])} is not a class of this row (0..{n_classes - 1}), "
            "so the row has no loss to trace"
        )
    ref = float(_REFERENCE[kind](z, y)[0])
    walks: list[tuple[str, str, list[_Raw]]] = []
    for d in dts:
        p = prec.get(d)
        for path in ("naive", "stable"):
            if path in wanted:
                walks.append((path, d, _BUILDERS[(path, kind)](z, y, p, ref)))
    if "reference" in wanted:
        walks.append(("reference", "float64", _BUILDERS[("reference", kind)](z, y, _F64, ref)))

    marked = [(path, d, raw, *_mark(raw)) for path, d, raw in walks]
    classes = _shown(kind, z, y, [c for *_, bad in marked for c in bad])
    traces = tuple(
        PathTrace(
            path,
            d,
            tuple(_step(r, i == at, note, classes) for i, r in enumerate(raw)),
            _loss(raw[-1].value),
        )
        for path, d, raw, at, note, _ in marked
    )
    z64 = np.asarray(z, dtype=np.float64).reshape(1, -1)
    given = (0,) if kind == "binary" else classes  # a binary row's one logit is "class 0"
    logit_vals = tuple((c, float(z64[0, c])) for c in given)
    targets: tuple[tuple[int, float], ...] = ()
    if kind in ("soft", "multilabel"):
        t64 = np.asarray(y, dtype=np.float64)
        targets = tuple((c, float(t64[0, c])) for c in classes)
    scalar_label: int | float | None = None
    if kind == "index":
        scalar_label = int(y[0])
    elif kind == "binary":
        scalar_label = float(y[0])
    return Trace(
        task=task,
        label_form=label_form,
        n_classes=n_classes,
        label=scalar_label,
        classes=classes,
        logits=logit_vals,
        logits_dtype=z.dtype.name if z.dtype.name in prec.DTYPES else "float64",
        targets=targets,
        rest=_rest(z64, given),
        reference=ref,
        dtypes=dts,
        paths=traces,
        partings=tuple(_partings(traces, ref, dts)),
    )


# ---------------------------------------------------------------------- rows of an input


@dataclass(frozen=True)
class RowPick:
    """A row of a Source: its flat number, index tuple, and how it was chosen."""

    row: int
    index: tuple[int, ...]
    origin: str | None = None


def _plural_axes(n: int) -> str:
    return "1 axis" if n == 1 else f"{n} axes"


def parse_row(text: str, lead_shape: tuple[int, ...]) -> RowPick:
    """``--row`` as a flat row number (``"17"``) or an index tuple (``"3,17"``).

    Raises ValueError with one sentence when the text is not numbers, the tuple has the
    wrong length, or the row is out of range.
    """
    n_rows = math.prod(lead_shape)
    parts = [s.strip() for s in text.split(",")]
    try:
        numbers = [int(s) for s in parts]
    except ValueError:
        raise ValueError(
            f"--row {text!r} is not a row number or an index tuple such as 3,17"
        ) from None
    if len(numbers) == 1:
        row = numbers[0]
        if not 0 <= row < n_rows:
            raise ValueError(
                f"row {row} is out of range: the input has {n_rows} rows (0..{n_rows - 1})"
            )
        index = tuple(int(i) for i in np.unravel_index(row, lead_shape))
        return RowPick(row, index)
    if len(numbers) != len(lead_shape):
        raise ValueError(
            f"row index {text} has {len(numbers)} numbers but the rows have "
            f"{_plural_axes(len(lead_shape))} (shape {_shape(lead_shape)}): give {len(lead_shape)} "
            "numbers, or one flat row number"
        )
    for i, (n, size) in enumerate(zip(numbers, lead_shape, strict=True)):
        if not 0 <= n < size:
            raise ValueError(
                f"row index {text} is out of range: axis {i} has size {size} (0..{size - 1})"
            )
    return RowPick(int(np.ravel_multi_index(numbers, lead_shape)), tuple(numbers))


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def read_row(source: inputs.Source, row: int) -> tuple[Array, Array]:
    """The logits and label of flat row ``row``, reading chunk by chunk (bounded memory)."""
    from cecheck.engine import chunk_rows  # the engine imports inputs; keep this module light

    start = 0
    chunks = source.chunks(chunk_rows(source.n_classes))
    try:
        for logits, labels in chunks:
            n = labels.shape[0]
            if row < start + n:
                return np.array(logits[row - start]), np.array(labels[row - start])
            start += n
    finally:
        close = getattr(chunks, "close", None)  # release the file of a generator left early
        if close is not None:
            close()
    raise ValueError(f"row {row} is out of range: the input has {start} rows")


def pick_row(
    source: inputs.Source, settings: Settings, progress: Callable[[int], None] | None = None
) -> RowPick:
    """The worst flagged row that has a loss (a class label in range), or row 0 if none is
    flagged.

    One pass of :func:`cecheck.engine.run` over ``source`` with ``settings`` (so the same
    rows are flagged as by ``compare``); ``progress`` as there.
    """
    from cecheck import engine

    report = engine.run(source, replace(settings, top=max(settings.top, 50)), progress=progress)
    for r in report.top:
        if "label_out_of_range" in r.flags or r.label is None:  # None: not a whole number
            continue
        flags = ", ".join(r.flags)
        causes = f" (cause: {', '.join(r.causes)})" if r.causes else ""
        return RowPick(r.row, r.index, f"the worst flagged row: {flags}{causes}")
    index = tuple(0 for _ in source.lead_shape)
    if report.flagged_rows:
        return RowPick(
            0, index, "every flagged row has a label out of range or not a whole number, so row 0"
        )
    return RowPick(0, index, "no row is flagged, so row 0")


# ---------------------------------------------------------------------- inputs of one row


def _dtypes(dtypes: str | Sequence[str]) -> tuple[str, ...]:
    dtypes = prec.names(dtypes)
    for d in dtypes:
        prec.get(d)
    if not dtypes:
        raise ValueError("dtypes is empty: name at least one of " + ", ".join(prec.DTYPES))
    return tuple(d for d in prec.DTYPES if d in set(dtypes))


def _row(
    logits_row: Any, label: Any, task: str, label_form: str | None
) -> tuple[Array, Array, str, str]:
    """The row as losses.py takes a chunk of one row: logits (1, C) or (1,), labels (1, ...)."""
    z = inputs.as_array(logits_row, "logits_row")
    y = inputs.as_array(label, "label")
    if task == "auto" or label_form is None:
        src = inputs.from_arrays(z[None], y[None], task=task)
        task, label_form = src.task, src.label_form
        z, y = next(iter(src.chunks(1)))
        return z, y, task, label_form
    if task not in inputs.TASKS or label_form not in inputs.LABEL_FORMS:
        raise ValueError(f"unknown task {task!r} or label form {label_form!r}")
    if losses.family(task, label_form) == "binary":
        return z.reshape(1), y.astype(np.float64).reshape(1), task, label_form
    z = z.reshape(1, -1)
    if label_form == "index":
        y = y.reshape(1)  # a fraction or NaN becomes INVALID_LABEL; integers stay as they are
        y = y.astype(np.int64) if y.dtype.kind in "iu" else inputs.class_indices(y)
        return z, y, task, label_form
    y = y.astype(np.float64).reshape(1, -1)
    if y.shape != z.shape:
        raise ValueError(f"the label has {y.shape[1]} values but the row {z.shape[1]} logits")
    return z, y, task, label_form


# ---------------------------------------------------------------------- building the steps


_F64 = prec.get("float64")


@dataclass
class _Raw:
    """A step while it is built: every class's value, and a lazy check of whether it is bad."""

    name: str
    formula: str
    value: Array  # (1, C) per class, or (1,) one value
    why: Callable[[], _Bad | None] | None = None


@dataclass(frozen=True)
class _Bad:
    note: str
    classes: tuple[int, ...] = ()  # the classes where it happened, to be shown


def _mark(raw: list[_Raw]) -> tuple[int | None, str | None, tuple[int, ...]]:
    """The first bad step of a path: its position, note and classes (None, None, () if none)."""
    for i, r in enumerate(raw):
        bad = (r.why() if r.why is not None else None) or _nonfinite(r)
        if bad is not None:
            return i, bad.note, bad.classes
    return None, None, ()


def _nonfinite(r: _Raw) -> _Bad | None:
    """The catch-all: a step whose value holds inf or NaN, when no specific check explained it."""
    v = r.value
    bad = ~np.isfinite(v)
    if not bad.any():
        return None
    if v.ndim == 2:
        j = int(np.argmax(bad[0]))
        return _Bad(f"{r.formula} gives {_fmt(v[0, j])} for class {j}", (j,))
    return _Bad(f"{r.formula} gives {_fmt(v[0])}")


def _loss(value: Array) -> float:
    return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


def _step(r: _Raw, first_bad: bool, note: str | None, classes: tuple[int, ...]) -> Step:
    v = np.asarray(r.value, dtype=np.float64)
    common = {"name": r.name, "formula": r.formula, "first_bad": first_bad}
    if first_bad:
        common["note"] = note
    if v.ndim == 2:
        values = tuple((c, float(v[0, c])) for c in classes)
        return Step(values=values, rest=_rest(v, classes), **common)  # type: ignore[arg-type]
    return Step(value=float(v[0]), **common)  # type: ignore[arg-type]


def _rest(v: Array, classes: tuple[int, ...]) -> Rest | None:
    """The summary of the classes of ``v`` (1, C) not in ``classes``; None if all are shown."""
    if v.ndim != 2 or v.shape[1] == len(classes):
        return None
    mask = np.ones(v.shape[1], dtype=bool)
    mask[list(classes)] = False
    others = v[0, mask]
    finite = others[~np.isnan(others)]
    low = float(finite.min()) if finite.size else math.nan
    high = float(finite.max()) if finite.size else math.nan
    return Rest(int(others.size), low, high, int(others.size - finite.size))


def _shown(kind: str, z: Array, y: Array, bad: list[int]) -> tuple[int, ...]:
    """The classes to show: all for a small row, else targets, top logits, bad classes."""
    if kind == "binary":
        return ()
    c = z.shape[1]
    if c <= ALL_CLASSES:
        return tuple(range(c))
    z64 = np.asarray(z[0], dtype=np.float64)
    key = np.abs(z64) if kind == "multilabel" else z64
    key = np.where(np.isnan(key), np.inf, key)  # NaN logits count among the largest
    order = [int(i) for i in np.argsort(-key, kind="stable")]
    first: list[int] = []
    if kind == "index":
        first = [int(y[0])]
    elif kind == "soft":
        t = np.asarray(y[0], dtype=np.float64)
        first = [int(i) for i in np.argsort(-t, kind="stable")[:3] if t[i] > 0]
    chosen = set(first) | set(order[:TOP]) | set(bad[:3])
    return tuple(first + [i for i in order if i in chosen and i not in first])


# Each builder takes the row as losses.py takes a chunk (z (1, C) or (1,), labels), a
# Precision and the reference loss, and returns the path's steps. The operations and their
# rounding are those of the losses.py function named in the docstring, in the same order.


def _naive_index(z: Array, y: Array, p: Precision, ref: float) -> list[_Raw]:
    """Steps of :func:`cecheck.losses.naive_multiclass`."""
    r = p.round
    with np.errstate(all="ignore"):  # overflow, log(0), inf/inf: the failures we trace
        zc = p.cast(z)
        e = r(np.exp(zc))
        s = r(e.sum(axis=1))
        prob = r(e[:, y[0]] / s)
        logp = r(np.log(prob))
        loss = losses.negate(logp)
    return [
        _Raw("z", f"z as {p.name}", zc, lambda: _cast_bad(z, zc, p)),
        _Raw("exp", "exp(z)", e, lambda: _exp_bad(zc, e, p)),
        _Raw("sum", "Σ exp(z)", s, lambda: _sum_bad("Σ exp(z)", e, s, p)),
        _Raw("p", "p = exp(z_y) / Σ", prob, lambda: _prob_bad(zc, e, prob, p, ref, loss, y)),
        _Raw("log_p", "log p", logp),
        _Raw("loss", "loss = -log p", loss),
    ]


def _stable_index(z: Array, y: Array, p: Precision, ref: float) -> list[_Raw]:
    """Steps of :func:`cecheck.losses.stable_multiclass`."""
    r = p.round
    with np.errstate(all="ignore"):  # a value beyond the format's range, inf - inf
        zc = p.cast(z)
        m = zc.max(axis=1, keepdims=True)
        d = r(zc - m)
        e = r(np.exp(d))
        s = r(e.sum(axis=1))
        lse = r(np.log(s))
        loss = r(lse - d[:, y[0]])
    return [
        _Raw("z", f"z as {p.name}", zc, lambda: _cast_bad(z, zc, p)),
        _Raw("max", "max(z)", m[:, 0]),
        _Raw("shifted", "z - max", d, lambda: _shift_bad(zc, m, d, p)),
        _Raw("exp", "exp(z - max)", e),
        _Raw("sum", "Σ exp(z - max)", s, lambda: _sum_one_bad(zc, s, p, ref, loss)),
        _Raw("lse", "lse = log Σ", lse),
        _Raw("loss", "loss = lse - (z_y - max)", loss),
    ]


def _naive_soft(z: Array, t: Array, p: Precision, ref: float) -> list[_Raw]:
    """Steps of :func:`cecheck.losses.naive_soft`."""
    r = p.round
    with np.errstate(all="ignore"):  # overflow, log(0), 0 * -inf: the failures we trace
        tc = p.cast(t)
        zc = p.cast(z)
        e = r(np.exp(zc))
        s = r(e.sum(axis=1, keepdims=True))
        prob = r(e / s)
        logp = r(np.log(prob))
        tl = r(tc * logp)
        total = r(tl.sum(axis=1))
        loss = losses.negate(total)
    return [
        _Raw("z", f"z as {p.name}", zc, lambda: _cast_bad(z, zc, p)),
        _Raw("exp", "exp(z)", e, lambda: _exp_bad(zc, e, p)),
        _Raw("sum", "Σ exp(z)", s[:, 0], lambda: _sum_bad("Σ exp(z)", e, s, p)),
        _Raw("p", "p = exp(z) / Σ", prob, lambda: _probs_bad(zc, e, prob, tc, p, ref, loss)),
        _Raw("log_p", "log p", logp),
        _Raw("t_log_p", "t · log p", tl),
        _Raw("sum_t_log_p", "Σ t · log p", total),
        _Raw("loss", "loss = -Σ t · log p", loss),
    ]


def _stable_soft(z: Array, t: Array, p: Precision, ref: float) -> list[_Raw]:
    """Steps of :func:`cecheck.losses.stable_soft`."""
    r = p.round
    with np.errstate(all="ignore"):  # a value beyond the format's range, inf - inf
        zc, tc = p.cast(z), p.cast(t)
        m = zc.max(axis=1, keepdims=True)
        d = r(zc - m)
        e = r(np.exp(d))
        s = r(e.sum(axis=1, keepdims=True))
        lse = r(np.log(s))
        ls = r(d - lse)
        tl = r(tc * ls)
        total = r(tl.sum(axis=1))
        loss = losses.negate(total)
    return [
        _Raw("z", f"z as {p.name}", zc, lambda: _cast_bad(z, zc, p)),
        _Raw("max", "max(z)", m[:, 0]),
        _Raw("shifted", "z - max", d, lambda: _shift_bad(zc, m, d, p)),
        _Raw("exp", "exp(z - max)", e),
        _Raw("sum", "Σ exp(z - max)", s[:, 0], lambda: _sum_one_bad(zc, s[:, 0], p, ref, loss)),
        _Raw("lse", "lse = log Σ", lse[:, 0]),
        _Raw("log_softmax", "z - max - lse", ls),
        _Raw("t_log_softmax", "t · (z - max - lse)", tl),
        _Raw("sum_t_log_softmax", "Σ t · (z - max - lse)", total),
        _Raw("loss", "loss = -Σ", loss),
    ]


def _naive_sigmoid(z: Array, t: Array, p: Precision, ref: float) -> list[_Raw]:
    """Steps of :func:`cecheck.losses.naive_binary` and ``naive_multilabel``."""
    r = p.round
    with np.errstate(all="ignore"):  # overflow, log(0), 0 * -inf: the failures we trace
        zc, tc = p.cast(z), p.cast(t)
        en = r(np.exp(-zc))
        prob = r(1 / r(1 + en))
        log_p = r(np.log(prob))
        q = r(1 - prob)
        log_q = r(np.log(q))
        a = r(tc * log_p)
        b = r(r(1 - tc) * log_q)
        total = r(a + b)
        loss = losses.negate(total)
    steps = [
        _Raw("z", f"z as {p.name}", zc, lambda: _cast_bad(z, zc, p)),
        _Raw(
            "sigmoid",
            "s = sigmoid(z) = 1 / (1 + exp(-z))",
            prob,
            lambda: _sigmoid_bad(zc, en, prob, p),
        ),
        _Raw("one_minus_sigmoid", "1 - s", q),
        _Raw("log_sigmoid", "log s", log_p),
        _Raw("log_one_minus_sigmoid", "log(1 - s)", log_q),
        _Raw("t_log_sigmoid", "t · log s", a),
        _Raw("one_minus_t_log", "(1 - t) · log(1 - s)", b),
        _Raw("sum", "t · log s + (1 - t) · log(1 - s)", total),
        _Raw("loss" if z.ndim == 1 else "class_loss", "loss = -sum", loss),
    ]
    return steps + _class_mean(loss, p)


def _stable_sigmoid(z: Array, t: Array, p: Precision, ref: float) -> list[_Raw]:
    """Steps of :func:`cecheck.losses.stable_binary` and ``stable_multilabel``."""
    r = p.round
    with np.errstate(all="ignore"):  # a value beyond the format's range, inf - inf
        zc, tc = p.cast(z), p.cast(t)
        mz = np.maximum(zc, 0)
        tz = r(tc * zc)
        a = r(mz - tz)
        e = r(np.exp(-np.abs(zc)))
        lg = r(np.log1p(e))
        loss = r(a + lg)
    steps = [
        _Raw("z", f"z as {p.name}", zc, lambda: _cast_bad(z, zc, p)),
        _Raw("max_z_0", "max(z, 0)", mz),
        _Raw("t_z", "t · z", tz),
        _Raw("linear", "max(z, 0) - t · z", a),
        _Raw("exp", "exp(-|z|)", e),
        _Raw("log1p", "log1p(exp(-|z|))", lg),
        _Raw("loss" if z.ndim == 1 else "class_loss", "loss = max(z, 0) - t · z + log1p", loss),
    ]
    return steps + _class_mean(loss, p)


def _class_mean(loss: Array, p: Precision) -> list[_Raw]:
    """The multilabel row loss: :func:`cecheck.losses._class_mean` of the per-class losses."""
    if loss.ndim == 1:  # binary: the loss is already the row's
        return []
    with np.errstate(all="ignore"):  # a sum beyond the format's range
        total = p.round(loss.sum(axis=1))
        mean = p.round(total / loss.shape[1])
    return [
        _Raw("sum_classes", "Σ over classes", total, lambda: _sum_bad("Σ", loss, total, p)),
        _Raw("loss", f"loss = Σ / {loss.shape[1]}", mean),
    ]


def _reference_index(z: Array, y: Array, p: Precision, ref: float) -> list[_Raw]:
    """Steps of :func:`cecheck.losses.reference_multiclass` (float64, log1p form)."""
    z64 = np.asarray(z, dtype=np.float64)
    ks, m, rest = losses.max_and_rest(z64)
    k = int(ks[0])
    with np.errstate(all="ignore"):  # inf - inf on a non-finite row gives NaN, as it should
        l1 = np.log1p(rest)
        gap = m - z64[:, y[0]]
        loss = gap + l1
    return [
        _Raw("z", "z as float64", z64, lambda: _cast_bad(z, z64, p)),
        _Raw("max", f"max = z[{k}]", m),
        _Raw("rest", f"Σ exp(z - max), all but class {k}", rest),
        _Raw("log1p", "log1p(that)", l1),
        _Raw("gap", "max - z_y", gap),
        _Raw("loss", "loss = (max - z_y) + log1p", loss),
    ]


def _reference_soft(z: Array, t: Array, p: Precision, ref: float) -> list[_Raw]:
    """Steps of :func:`cecheck.losses.reference_soft` (float64, log1p form)."""
    z64 = np.asarray(z, dtype=np.float64)
    t64 = np.asarray(t, dtype=np.float64)
    ks, m, rest = losses.max_and_rest(z64)
    k = int(ks[0])
    with np.errstate(all="ignore"):  # inf - inf on a non-finite row gives NaN, as it should
        l1 = np.log1p(rest)
        gaps = (t64 * (m[:, None] - z64)).sum(axis=1)
        mass = t64.sum(axis=1)
        loss = gaps + l1 * mass
    return [
        _Raw("z", "z as float64", z64, lambda: _cast_bad(z, z64, p)),
        _Raw("max", f"max = z[{k}]", m),
        _Raw("rest", f"Σ exp(z - max), all but class {k}", rest),
        _Raw("log1p", "log1p(that)", l1),
        _Raw("gaps", "Σ t · (max - z)", gaps),
        _Raw("mass", "Σ t", mass),
        _Raw("loss", "loss = Σ t · (max - z) + log1p · Σ t", loss),
    ]


def _reference_sigmoid(z: Array, t: Array, p: Precision, ref: float) -> list[_Raw]:
    """Steps of :func:`cecheck.losses.reference_binary` and ``reference_multilabel``."""
    z64 = np.asarray(z, dtype=np.float64)
    t64 = np.asarray(t, dtype=np.float64)
    with np.errstate(all="ignore"):  # 0 * inf for an infinite logit
        lg = np.log1p(np.exp(-np.abs(z64)))
        sp = np.maximum(z64, 0) + lg
        sn = np.maximum(-z64, 0) + lg
        loss = (1 - t64) * sp + t64 * sn
    steps = [
        _Raw("z", "z as float64", z64, lambda: _cast_bad(z, z64, p)),
        _Raw("log1p", "log1p(exp(-|z|))", lg),
        _Raw("softplus", "softplus(z) = max(z, 0) + log1p", sp),
        _Raw("softplus_neg", "softplus(-z) = max(-z, 0) + log1p", sn),
        _Raw(
            "loss" if z.ndim == 1 else "class_loss",
            "(1 - t) · softplus(z) + t · softplus(-z)",
            loss,
        ),
    ]
    if z.ndim == 2:
        steps.append(_Raw("loss", f"loss = mean over {z.shape[1]} classes", loss.mean(axis=1)))
    return steps


_Builder = Callable[[Array, Array, Precision, float], list[_Raw]]
_BUILDERS: dict[tuple[str, str], _Builder] = {
    ("naive", "index"): _naive_index,
    ("stable", "index"): _stable_index,
    ("reference", "index"): _reference_index,
    ("naive", "soft"): _naive_soft,
    ("stable", "soft"): _stable_soft,
    ("reference", "soft"): _reference_soft,
    ("naive", "binary"): _naive_sigmoid,
    ("stable", "binary"): _stable_sigmoid,
    ("reference", "binary"): _reference_sigmoid,
    ("naive", "multilabel"): _naive_sigmoid,
    ("stable", "multilabel"): _stable_sigmoid,
    ("reference", "multilabel"): _reference_sigmoid,
}
_REFERENCE: dict[str, Callable[[Array, Array], Array]] = {
    "index": losses.reference_multiclass,
    "soft": losses.reference_soft,
    "binary": losses.reference_binary,
    "multilabel": losses.reference_multilabel,
}


# ---------------------------------------------------------------------- why a step is bad


def _fmt(x: Any, dtype: str = "float64") -> str:
    return format_value(float(x), dtype)


def _zname(j: int | None) -> str:
    return "z" if j is None else f"z[{j}]"


def _at(v: Array, mask: Array) -> tuple[int | None, float]:
    """The first position where ``mask`` holds (class or None for a one-value step), value."""
    j = int(np.argmax(mask.reshape(-1)))
    return (j if v.ndim == 2 else None), float(v.reshape(-1)[j])


def _cls(j: int | None) -> tuple[int, ...]:
    return () if j is None else (j,)


def _cast_bad(z: Array, zc: Array, p: Precision) -> _Bad | None:
    """A logit that is not finite as given, or beyond the dtype's range once stored in it."""
    bad = ~np.isfinite(zc)
    if not bad.any():
        return None
    j, stored = _at(zc, bad)
    given = float(np.asarray(z, dtype=np.float64).reshape(-1)[0 if j is None else j])
    if not math.isfinite(given):
        return _Bad(
            f"the input logit {_zname(j)} is {_fmt(given)}: no loss can come of it", _cls(j)
        )
    return _Bad(
        f"{_zname(j)} = {_fmt(given)} is beyond {_big(p.max)}, the largest {p.name}: "
        f"stored as {p.name} it becomes {_fmt(stored)}",
        _cls(j),
    )


def _exp_bad(zc: Array, e: Array, p: Precision) -> _Bad | None:
    """exp of a finite logit overflowing; the smallest such logit is named."""
    over = np.isinf(e) & np.isfinite(zc)
    if not over.any():
        return None
    j = int(np.argmin(np.where(over[0], zc[0], np.inf)))
    return _Bad(
        f"exp({_fmt(zc[0, j], p.name)}) is above {_big(p.max)}, the largest {p.name}: "
        "it overflows to inf",
        (j,),
    )


def _sum_bad(what: str, terms: Array, s: Array, p: Precision) -> _Bad | None:
    """A sum of finite terms overflowing."""
    if not (np.isinf(s).any() and np.isfinite(terms).all()):
        return None
    with np.errstate(over="ignore"):
        total = float(np.sum(np.asarray(terms, dtype=np.float64)))
    size = f", {_big(total)}," if math.isfinite(total) else ""
    return _Bad(
        f"the sum {what}{size} is above {_big(p.max)}, the largest {p.name}: it overflows to inf"
    )


def _shift_bad(zc: Array, m: Array, d: Array, p: Precision) -> _Bad | None:
    """``z - max`` of finite logits beyond the dtype's range (float16 logits far apart)."""
    over = np.isinf(d) & np.isfinite(zc)
    if not over.any():
        return None
    j = int(np.argmax(over[0]))
    true = float(zc[0, j]) - float(m[0, 0])
    return _Bad(
        f"z[{j}] - max = {_fmt(zc[0, j], p.name)} - {_fmt(m[0, 0], p.name)} = {_big(true)} "
        f"is beyond -{_big(p.max)}, the most negative {p.name}: it overflows to -inf",
        (j,),
    )


def _log_softmax64(zc: Array) -> Array:
    """``z - lse(z)`` in float64 of the logits as the dtype stores them (finite row)."""
    z = np.asarray(zc, dtype=np.float64)
    k = int(np.argmax(z[0]))
    e = np.exp(z - z[0, k])
    e[0, k] = 0.0
    return z - (z[0, k] + np.log1p(e.sum()))


def _matters(loss: Array, ref: float, p: Precision) -> bool:
    """A loss of exactly 0 where the reference is a normal number of the dtype."""
    return bool(np.asarray(loss).reshape(-1)[0] == 0) and ref >= p.tiny


def _prob_bad(
    zc: Array, e: Array, prob: Array, p: Precision, ref: float, loss: Array, y: Array
) -> _Bad | None:
    """The naive target probability rounding to 0, or to 1 when that zeroes the loss."""
    v = float(prob[0])
    c = int(y[0])
    if v == 0 and np.isfinite(zc).all():
        if e[0, c] == 0:
            return _Bad(
                f"exp({_fmt(zc[0, c], p.name)}) is below {_small(p)}, the smallest {p.name}: "
                "it underflows to 0, so p = 0 and log(0) = -inf follows",
                (c,),
            )
        true = _from_log(float(_log_softmax64(zc)[0, c]))
        return _Bad(
            f"p, truly {true}, is below {_small(p)}, the smallest {p.name}: it rounds to 0, "
            "and log(0) = -inf follows",
            (c,),
        )
    if v == 1 and zc.shape[1] > 1 and _matters(loss, ref, p):
        return _Bad(_one_note("p", p, ref), (c,))
    return None


def _probs_bad(
    zc: Array, e: Array, prob: Array, tc: Array, p: Precision, ref: float, loss: Array
) -> _Bad | None:
    """A naive softmax probability rounding to 0, or to 1 when that zeroes the loss."""
    if not np.isfinite(prob).all():
        return None
    zero = prob[0] == 0
    if zero.any():
        j = int(np.argmin(np.where(zero, zc[0], np.inf)))
        then = (
            "and t = 0 there makes 0 · (-inf) = NaN"
            if tc[0, j] == 0
            else f"and t = {_fmt(tc[0, j], p.name)} there makes the loss inf"
        )
        if e[0, j] == 0:
            how = (
                f"exp({_fmt(zc[0, j], p.name)}) is below {_small(p)}, the smallest {p.name}: "
                f"it underflows to 0, so p[{j}] = 0"
            )
        else:
            true = _from_log(float(_log_softmax64(zc)[0, j]))
            how = (
                f"p[{j}], truly {true}, is below {_small(p)}, the smallest {p.name}: it rounds to 0"
            )
        return _Bad(f"{how}; log p[{j}] = -inf, {then}", (j,))
    one = prob[0] == 1
    if one.any() and zc.shape[1] > 1 and _matters(loss, ref, p):
        j = int(np.argmax(one))
        return _Bad(_one_note(f"p[{j}]", p, ref), (j,))
    return None


def _one_note(what: str, p: Precision, ref: float) -> str:
    below = _sci(float(ml_dtypes.finfo(p.storage).epsneg))
    return (
        f"{what}, truly 1 - {_sci(-math.expm1(-ref))}, rounds to exactly 1 in {p.name} "
        f"(the nearest {p.name} below 1 is 1 - {below}): log(1) = 0, so the loss, "
        f"truly {_sci(ref)}, comes out as 0"
    )


def _sum_one_bad(zc: Array, s: Array, p: Precision, ref: float, loss: Array) -> _Bad | None:
    """The stable sum rounding to exactly 1 while the other classes add something: loss 0."""
    if not (float(s[0]) == 1 and zc.shape[1] > 1 and _matters(loss, ref, p)):
        return None
    z = np.asarray(zc, dtype=np.float64)
    k = int(np.argmax(z[0]))
    e = np.exp(z - z[0, k])
    e[0, k] = 0.0
    eps = _sci(float(ml_dtypes.finfo(p.storage).eps))
    return _Bad(
        f"Σ exp(z - max) rounds to exactly 1: the other classes add {_sci(float(e.sum()))}, "
        f"too little to move 1 in {p.name} (the next {p.name} above 1 is 1 + {eps}); "
        f"log(1) = 0, so the loss, truly {_sci(ref)}, comes out as 0",
        (k,),
    )


def _softplus64(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _sigmoid_bad(zc: Array, en: Array, prob: Array, p: Precision) -> _Bad | None:
    """A naive sigmoid rounding to exactly 0 or 1: one of the two logs becomes log(0)."""
    hit = ((prob == 0) | (prob == 1)) & np.isfinite(zc)
    if not hit.any():
        return None
    j, v = _at(prob, hit)
    zj = float(zc.reshape(-1)[0 if j is None else j])
    ej = float(en.reshape(-1)[0 if j is None else j])
    z_txt, mz_txt = _fmt(zj, p.name), _fmt(-zj, p.name)
    where = "" if j is None else f" (class {j})"
    if v == 0:
        true = _from_log(-_softplus64(-zj))
        if math.isinf(ej):
            how = (
                f"exp({mz_txt}) is above {_big(p.max)}, the largest {p.name}, so it overflows "
                f"to inf and sigmoid({z_txt}) = 1 / (1 + inf)"
            )
        else:
            how = f"sigmoid({z_txt}) is below {_small(p)}, the smallest {p.name}, so it"
        return _Bad(
            f"{how}, truly {true}, comes out as exactly 0{where}; log s = log(0) = -inf follows",
            _cls(j),
        )
    true = _from_log(-_softplus64(zj))
    if ej == 0:
        how = (
            f"exp({mz_txt}) is below {_small(p)}, the smallest {p.name}: it underflows to 0, "
            f"so sigmoid({z_txt}) = 1 / (1 + 0)"
        )
    else:
        eps = _sci(float(ml_dtypes.finfo(p.storage).eps))
        how = (
            f"1 + exp({mz_txt}) = 1 + {_fmt(ej, p.name)} rounds to 1 in {p.name} (the next "
            f"{p.name} above 1 is 1 + {eps}), so sigmoid({z_txt})"
        )
    return _Bad(
        f"{how}, truly 1 - {true}, comes out as exactly 1{where}; "
        "log(1 - s) = log(0) = -inf follows",
        _cls(j),
    )


# ---------------------------------------------------------------------- where paths part


def _partings(traces: tuple[PathTrace, ...], ref: float, dtypes: tuple[str, ...]) -> list[str]:
    """Per dtype, one sentence: where naive and stable part ways, or that they agree."""
    out = []
    for d in dtypes:
        here = {t.path: t for t in traces if t.dtype == d and t.path != "reference"}
        if not here:
            continue
        bits = prec.get(d).bits
        refs = f"the reference {_fmt(ref)}"
        wrong = {k: t for k, t in here.items() if t.first_bad is not None}
        values = {k: _fmt(t.loss, d) for k, t in here.items()}
        if len(here) == 1:
            ((k, t),) = here.items()
            if t.first_bad is None:
                out.append(f"{d}: {k} gives {values[k]}; {refs}.")
            else:
                out.append(f"{d}: {k} goes wrong at {_where(t)} and ends at {values[k]}; {refs}.")
            continue
        naive, stable = here["naive"], here["stable"]
        if len(wrong) == 2:
            out.append(
                f"{d}: both paths go wrong, naive at {_where(naive)} and stable at "
                f"{_where(stable)}: {values['naive']} and {values['stable']}; {refs}."
            )
        elif wrong:
            ((k, t),) = wrong.items()
            other = "stable" if k == "naive" else "naive"
            out.append(
                f"{d}: {k} parts ways with {other} at {_where(t)}: it ends at {values[k]} "
                f"where {other} gives {values[other]}; {refs}."
            )
        else:
            kept = {k: _bits(t.loss, ref, bits) for k, t in here.items()}
            poor = [k for k, b in kept.items() if b < bits / 2]
            if poor:
                detail = ", ".join(f"{k} keeps {kept[k]:.0f} of {bits} bits" for k in poor)
                out.append(
                    f"{d}: no step overflows or rounds to 0 or 1, but rounding errors part the "
                    f"paths: naive {values['naive']}, stable {values['stable']}; {refs} "
                    f"({detail})."
                )
            else:
                out.append(
                    f"{d}: naive and stable agree within rounding: {values['naive']} and "
                    f"{values['stable']}; "
                    f"{refs}."
                )
    return out


def _where(t: PathTrace) -> str:
    i = t.first_bad
    assert i is not None
    return f"step {i + 1}, {t.steps[i].formula}"


def _bits(value: float, ref: float, bits: int) -> float:
    b = bits_correct(np.array([value]), np.array([ref]), bits)[0]
    return float(b) if np.isfinite(b) else 0.0


# ---------------------------------------------------------------------- numbers as text


def format_value(x: float, dtype: str) -> str:
    """``x``, a value of ``dtype``, in the fewest significant digits that read back to it.

    float16 needs up to 5 digits, bfloat16 4, float32 9 and float64 17; a value of a narrow
    format therefore shows exactly the digits that format holds. Positional between 1e-4
    and 1e6, scientific otherwise; non-finite as ``NaN``, ``inf``, ``-inf``.
    """
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    storage = prec.get(dtype).storage
    target = np.array(x).astype(storage)
    with np.errstate(over="ignore"):  # a shorter text may round past the format's largest
        for digits in range(1, 18):
            if np.array(float(f"{x:.{digits - 1}e}")).astype(storage) == target:
                break
    if 1e-4 <= abs(x) < 1e6:
        return np.format_float_positional(
            x, precision=digits, unique=False, fractional=False, trim="-"
        )
    return np.format_float_scientific(x, precision=digits - 1, unique=False, trim="-", exp_digits=1)


def _sci(x: float) -> str:
    """Two significant digits: ``3.4e38``, ``6.0e-8``; plain between 0.01 and 1e5."""
    if not math.isfinite(x) or x == 0:
        return _fmt(x)
    if 1e-2 <= abs(x) < 1e5:
        return f"{x:.2g}"
    mant, exp = f"{x:.1e}".split("e")
    return f"{mant}e{int(exp)}"


def _big(x: float) -> str:
    """A format's largest number as people quote it: 65504, 3.4e38, 1.8e308."""
    return _fmt(x) if abs(x) < 1e5 else _sci(x)


def _small(p: Precision) -> str:
    """The smallest positive (subnormal) number of the format."""
    return _sci(float(ml_dtypes.finfo(p.storage).smallest_subnormal))


def _from_log(log_value: float) -> str:
    """``exp(log_value)`` as two significant digits, even far below float64's range."""
    if log_value > -700:
        return _sci(math.exp(log_value))
    exp10 = log_value / math.log(10)
    e = math.floor(exp10)
    mant = round(10 ** (exp10 - e), 1)
    if mant >= 10:
        mant, e = mant / 10, e + 1
    return f"{mant:.1f}e{e}"
