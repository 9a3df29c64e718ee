"""What the labels of each label form say about a row: its problems and how it is shown.

One function per label form and question; :mod:`cecheck.families` names, for each family,
the ones that apply. Pure numpy on a chunk of labels.
"""

from __future__ import annotations

import numpy as np

from cecheck.arraytypes import Array
from cecheck.inputs import INVALID_LABEL

# How far a one-hot or soft label row may sum from 1 and still be a distribution.
SOFT_SUM_TOLERANCE = 1e-3


def index_problems(labels: Array, n_classes: int, ignore_index: int) -> dict[str, Array]:
    """Row masks ``ignored``, ``label_out_of_range`` and ``invalid_label`` of class numbers.

    And ``no_loss``: the rows with no loss to compute (a label out of range, or
    :data:`~cecheck.inputs.INVALID_LABEL`, a label that was not a whole number), whose
    losses are NaN.
    """
    n = labels.shape[0]
    none = np.zeros(n, dtype=bool)
    # Two cheap reductions settle the common chunk: every label a class, and the
    # ignore_index (outside the classes) none of them.
    outside = n > 0 and not 0 <= ignore_index < n_classes
    if outside and labels.min() >= 0 and labels.max() < n_classes:
        return {"ignored": none, "label_out_of_range": none, "invalid_label": none,
                "no_loss": none}  # fmt: skip
    ignored = labels == ignore_index
    invalid = labels == INVALID_LABEL
    out = ~(ignored | invalid) & ((labels < 0) | (labels >= n_classes))
    return {"ignored": ignored, "label_out_of_range": out, "invalid_label": invalid,
            "no_loss": out | invalid}  # fmt: skip


def distribution_problems(labels: Array, n_classes: int, ignore_index: int) -> dict[str, Array]:
    """Row masks of one-hot or soft (N, C) label rows: ``invalid_label`` for a row that is not
    a probability distribution. An invalid row still has a formula value (``no_loss`` none)."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(labels) | (labels < 0)
        bad = bad.any(axis=1) | ~(np.abs(labels.sum(axis=1) - 1) <= SOFT_SUM_TOLERANCE)
    return _only_invalid(bad)


def target_problems(labels: Array, n_classes: int, ignore_index: int) -> dict[str, Array]:
    """Row masks of binary (N,) or multi-hot (N, C) targets: ``invalid_label`` for a target
    outside [0, 1] or not finite. An invalid row still has a formula value."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(labels) | (labels < 0) | (labels > 1)
        bad = np.any(bad, axis=1) if bad.ndim == 2 else bad
    return _only_invalid(bad)


def _only_invalid(bad: Array) -> dict[str, Array]:
    none = np.zeros(bad.shape[0], dtype=bool)
    return {"ignored": none, "label_out_of_range": none, "invalid_label": bad, "no_loss": none}


def show_index(labels: Array) -> list[object]:
    """Class numbers; None for a label that was not a whole number."""
    return [None if v == INVALID_LABEL else int(v) for v in labels.tolist()]


def show_target(labels: Array) -> list[object]:
    """Binary targets as floats."""
    return [float(v) for v in labels]


def show_onehot(labels: Array) -> list[object]:
    """The class of each one-hot row."""
    return [int(v) for v in labels.argmax(axis=1)]


def show_soft(labels: Array) -> list[object]:
    """Where each soft row peaks."""
    return [f"soft, max at {int(v)}" for v in labels.argmax(axis=1)]


def show_multihot(labels: Array) -> list[object]:
    """The positive classes of each multi-hot row (a count beyond four)."""
    return [_positives(row) for row in labels]


def _positives(row: Array) -> str:
    on = np.flatnonzero(row > 0.5)
    if len(on) <= 4:
        return "{" + ",".join(str(int(i)) for i in on) + "}"
    return f"{len(on)} classes"
