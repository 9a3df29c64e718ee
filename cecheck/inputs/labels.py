"""Task and label-form inference, label conversion, and the warnings about what was read.

Inference looks only at the shapes and the first :data:`~cecheck.inputs.source.HEAD_ROWS`
rows (the head); :func:`finish` makes the :class:`~cecheck.inputs.source.Source` of two parts.
Row-level problems (NaN logits, labels out of range, class indices that are not whole
numbers, soft labels not summing to 1) pass through for the engine to flag per row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cecheck.arraytypes import Array
from cecheck.errors import InputError
from cecheck.inputs.source import HEAD_ROWS, HEAD_VALUES, PairReader, Pairs, Part, Source

TASKS = ("binary", "multiclass", "multilabel")
LABEL_FORMS = ("index", "onehot", "soft", "multihot", "binary")
# The class-index label of a row whose label is not a whole number (a fraction, NaN, an
# empty CSV cell): the row is flagged ``invalid_label``. No stored label reads as it (an
# integer label is clipped to +-2^62, out of range but still itself).
INVALID_LABEL = int(np.iinfo(np.int64).min)


@dataclass(frozen=True)
class _Shape:
    task: str | None  # None: decided from the label values (onehot, soft or multihot)
    lead: tuple[int, ...]
    n_classes: int
    per_row: bool  # one label per row (index or binary) rather than one per class


def _infer_shape(lg: Part, lb: Part, task: str) -> _Shape:
    """Task, rows and classes from the shapes alone, as DESIGN.md describes."""
    ls, ys = lg.shape, lb.shape
    if not ls:
        raise InputError(f"{lg.name} is a single number: give one logit (or C) per row")
    if len(ls) == 1 or ls[-1] == 1:  # one logit per row
        lead = ls if len(ls) == 1 else ls[:-1]
        if task == "multilabel" and len(ls) > 1 and ys == ls:  # (N, 1): one sigmoid per row
            return _Shape(task, lead, 1, per_row=False)
        if task == "multiclass":  # one class: every loss is 0, cecheck.pipeline warns
            _check_rows(lg, lb, (lead, (*lead, 1)))
            per_row = len(ls) == 1 or lb.shape == lead
            return _Shape(task, lead, 1, per_row)
        if task == "multilabel":
            raise InputError(
                f"{lg.name} has one logit per row (shape {ls}), fewer than the 2 classes "
                f"{task} needs: give one logit per class, or use the binary task"
            )
        _check_rows(lg, lb, (lead, (*lead, 1)))
        return _Shape("binary", lead, 1, per_row=True)
    lead, c = ls[:-1], ls[-1]
    if task == "binary":
        if ys != ls:
            raise InputError(
                f"{lg.name} has {c} logits per row (shape {ls}) but the binary task needs one: "
                "choose the multiclass or multilabel task"
            )
        return _Shape("binary", ls, 1, per_row=True)  # (B, T) logits, (B, T) targets
    if c < 2:
        raise InputError(f"{lg.name} has shape {ls}, fewer than 2 classes: check the logits")
    if task == "multilabel":
        _check_rows(lg, lb, (ls,))
        return _Shape(task, lead, c, per_row=False)
    _check_rows(lg, lb, (lead, (*lead, 1), ls))
    per_row = ys != ls
    return _Shape("multiclass" if per_row else (None if task == "auto" else task), lead, c, per_row)


def _check_rows(lg: Part, lb: Part, allowed: Sequence[tuple[int, ...]]) -> None:
    if lb.shape not in allowed:
        want = " or ".join(str(s) for s in allowed)
        raise InputError(
            f"{lg.name} has shape {lg.shape} but {lb.name} has shape {lb.shape}: "
            f"give labels of shape {want}"
        )


def _label_form(shape: _Shape, head: np.ndarray) -> tuple[str, str]:
    """(task, label form): index/binary from the shape, the others from the first chunk."""
    if shape.per_row:
        return ("binary", "binary") if shape.task == "binary" else ("multiclass", "index")
    if shape.task == "multilabel":
        return "multilabel", "multihot"
    with np.errstate(all="ignore"):  # NaN and inf labels are row problems, not ours
        y = head.astype(np.float64)
        zero_one = bool(np.all((y == 0) | (y == 1)))
        onehot = zero_one and bool(np.all(y.sum(axis=1) == 1))
    if shape.task == "multiclass" or onehot or not zero_one:
        return "multiclass", "onehot" if onehot else "soft"
    return "multilabel", "multihot"


def _logits_out(dtype: np.dtype) -> np.dtype:
    """The dtype logits are handed over in: the stored float, or the nearest one."""
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        native: np.dtype[Any] = dtype.newbyteorder("=")
        return native
    if dtype.kind == "f" or dtype.kind in "biu":  # long double, integers, booleans
        return np.dtype(np.float64)
    return np.dtype(np.float32)  # bfloat16 and the float8 formats fit float32 exactly


def class_indices(y: Array) -> Array:
    """Class-index labels as int64; a fraction, NaN or inf becomes :data:`INVALID_LABEL`."""
    out: Array
    if y.dtype.kind in "biu":
        if y.dtype == np.uint64:  # only uint64 holds values beyond int64
            out = np.minimum(y, 2**62).astype(np.int64)
        elif y.dtype.itemsize == 8:  # only int64 holds INVALID_LABEL
            out = np.maximum(y, -(2**62)).astype(np.int64)
        else:
            out = y.astype(np.int64)
        return out
    y = y.astype(np.float64)
    with np.errstate(invalid="ignore"):  # NaN and inf are the invalid labels
        bad = ~np.isfinite(y) | (y != np.floor(y))
        out = np.clip(y, -(2**62), 2**62).astype(np.int64)  # out of range stays out of range
    if bad.any():
        out[bad] = INVALID_LABEL
    return out


def _check_fractions(lb: Part, labels: np.ndarray) -> None:
    """Refuse per-row labels that are mostly fractions: they are not class indices.

    With C >= 2 logits a row's one label can only be a class index, so a few fractions (or
    NaN) are bad rows, flagged ``invalid_label``; but when most of the first rows hold
    fractions the labels are something else, such as one class's probability.
    """
    if labels.dtype.kind not in "fV":
        return
    y = labels.astype(np.float64).reshape(-1)
    with np.errstate(invalid="ignore"):
        fractions = np.isfinite(y) & (y != np.floor(y))
    n = int(np.count_nonzero(fractions))
    if 2 * n > len(y):
        example = f"{y[np.argmax(fractions)]:g}"
        if len(y) == 1:
            what = f"the label {example} is a fraction, not a class index (a whole number 0..C-1)"
        else:
            what = (f"{n} of the first {len(y)} labels are fractions such as {example}, so "
                    "they are not class indices (whole numbers 0..C-1)")  # fmt: skip
        raise InputError(
            f"{lb.name}: {what}: give class indices, or soft labels as one probability per "
            "class (shape (N, C))"
        )


def _converter(
    shape: _Shape, form: str, lg: Part
) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    out = _logits_out(lg.dtype)

    def convert(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(logits)
        x = logits.astype(out, copy=False)
        x = x.reshape(n) if shape.task == "binary" else x.reshape(n, shape.n_classes)
        if form == "index":
            return x, class_indices(labels.reshape(n))
        y = labels.astype(np.float64)
        return x, y.reshape(n) if form == "binary" else y.reshape(n, shape.n_classes)

    return convert


def _multihot_warning(name: str, task: str, form: str, labels: np.ndarray) -> str | None:
    """A sentence when 0/1 labels were read as multi-hot though nearly every row is one-hot.

    Inference follows the rule (a row with no 1 or several 1s makes the labels multi-hot),
    but a one-hot file with a few broken rows is more likely than a multilabel file whose
    rows nearly all hold exactly one class: say so, and how to choose.
    """
    if task != "auto" or form != "multihot" or labels.ndim != 2:
        return None
    one_class = float(np.mean(labels.sum(axis=1) == 1))
    if one_class < 0.9:
        return None
    return (
        f"{name}: {one_class:.0%} of the label rows hold exactly one 1, so these may be "
        "one-hot labels with a few bad rows, yet the others made cecheck read them as "
        "multi-hot (task multilabel); pass --task multiclass to treat them as one-hot, and the "
        "bad rows are flagged invalid_label"
    )


# The words every looks-like-probabilities warning holds (with inputs="probs" it is dropped).
LOOKS_LIKE_PROBABILITIES = "probabilities, not logits"


def _probability_warning(name: str, task: str, logits: np.ndarray) -> str | None:
    """A warning when the first chunk of logits looks like probabilities (softmax/sigmoid).

    The range is checked on the logits' minimum and maximum in their own dtype (exact: 0 and
    1 are in every format; a NaN fails it), so logits, nearly always outside [0, 1], are
    never copied to float64 for it."""
    with np.errstate(all="ignore"):
        if logits.size and not (logits.min() >= 0 and logits.max() <= 1):
            return None
        x = logits.astype(np.float64)
        n = len(x)
        if task != "multiclass":
            return (
                f"{name}: every logit in the first {n} rows lies in [0, 1], so these look like "
                f"sigmoid {LOOKS_LIKE_PROBABILITIES}: cecheck treats them as logits, so the "
                "losses are not your training loss; export the values before the sigmoid, or "
                "give --inputs probs to check them as probabilities"
            )
        tol = 1e-2 if logits.dtype.itemsize <= 2 else 1e-4
        if not np.allclose(x.sum(axis=1), 1.0, rtol=0, atol=tol):
            return None
    return (
        f"{name}: every row of the first {n} lies in [0, 1] and sums to 1, so these look like "
        f"softmax {LOOKS_LIKE_PROBABILITIES}: cecheck treats them as logits, so the losses are "
        "not your training loss and nothing can overflow; export the values before the "
        "softmax, or give --inputs probs to check them as probabilities"
    )


def finish(lg: Part, lb: Part, pairs: PairReader, task: str, names: tuple[str, str]) -> Source:
    """Infer the task and label form from shapes and the first chunk; build the Source."""
    if task not in ("auto", *TASKS):
        raise ValueError(f"task must be 'auto' or one of {TASKS}, got {task!r}")
    shape = _infer_shape(lg, lb, task)
    n_rows = math.prod(shape.lead)
    if n_rows == 0:
        raise InputError(f"{lg.name} holds no rows (shape {lg.shape}): give at least one row")
    head_rows = max(1, min(HEAD_ROWS, HEAD_VALUES // max(1, shape.n_classes)))
    head = pairs(head_rows, len(shape.lead))
    try:
        head_logits, head_labels = next(head)
    finally:
        close = getattr(head, "close", None)  # release the file of a generator left early
        if close is not None:
            close()
    task_, form = _label_form(shape, head_labels)
    if form == "index":
        _check_fractions(lb, head_labels)
    shape = _Shape(task_, shape.lead, shape.n_classes, shape.per_row)
    convert = _converter(shape, form, lg)
    first_logits, _ = convert(head_logits, head_labels)
    found = (
        *dict.fromkeys((*lg.notes, *lb.notes)),  # one file: the same notes in both parts
        _probability_warning(lg.name, task_, first_logits),
        _multihot_warning(lb.name, task, form, head_labels),
    )

    def read(rows: int) -> Pairs:
        start = 0
        for logits, labels in pairs(rows, len(shape.lead)):
            yield convert(logits, labels)
            start += len(logits)
        if start != n_rows:
            raise InputError(f"{lg.name} held {start} rows, not {n_rows}: was it changed?")

    return Source(
        logits_name=names[0],
        labels_name=names[1],
        logits_shape=lg.shape,
        labels_shape=lb.shape,
        lead_shape=shape.lead,
        n_classes=shape.n_classes,
        task=task_,
        label_form=form,
        logits_dtype=lg.stored or lg.dtype.name,
        warnings=tuple(w for w in found if w),
        _read=read,
        ragged=lg.ragged,
    )
