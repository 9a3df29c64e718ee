"""Label smoothing and class weights: PyTorch's ``cross_entropy`` with ``weight`` and
``label_smoothing``, row by row and in its mean. Pure numpy, no I/O (the options' values are
read and checked in :mod:`cecheck.frameworks.options`).

PyTorch's ``cross_entropy(weight=w, label_smoothing=eps, reduction="none")`` is, per row,
the soft-label loss ``-sum_c t'_c log_softmax(z)_c`` with targets

    ``t'_c = w_c * ((1 - eps) * t_c + eps / C)``

where ``t`` is the one-hot row of an index label, or the given soft row: PyTorch smooths soft
targets too, mixing them with the uniform distribution just like hard ones. The ``stable``
path computes that as PyTorch's own composite does, in the input's dtype
(:mod:`cecheck.frameworks.torch_fused`); this module gives the paths that have no such
options, the ``textbook`` and ``naive`` ones, the targets a user writes by hand: because
their soft-label forms are linear in the targets, :func:`smoothed_targets` lets the engine
reuse them unchanged. With ``eps = 0`` and index labels the user's ``nll_loss`` multiplies by
``w[y]``: use :func:`apply_row_weights` on the textbook index path (the soft form would turn
``0 * log 0`` of the other classes into NaN where ``nll_loss`` gives a finite value).

What ``reduction="mean"`` divides by differs: the sum of the target classes' weights over
the rows that are not ``ignore_index`` for index labels, but the number of rows for soft
targets, whatever the weights. :func:`row_weights` gives each row's share of that
denominator.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cecheck import families
from cecheck.arraytypes import Array
from cecheck.families import Family
from cecheck.losses import PathResult, Recorder, ignore
from cecheck.precision import Precision

SOFT_SMOOTHING_NOTE = (
    "Like PyTorch, label smoothing is applied to soft targets too: they are mixed with the "
    "uniform distribution, (1 - eps) * t + eps / C, even though they are already soft."
)


def smoothing_notes(label_smoothing: float, soft_targets: bool) -> list[str]:
    """The notes a report prints about label smoothing: :data:`SOFT_SMOOTHING_NOTE` when it
    is on and the targets are soft."""
    return [SOFT_SMOOTHING_NOTE] if label_smoothing > 0 and soft_targets else []


def _valid_index(labels: Array, n_classes: int) -> Array:
    return (labels >= 0) & (labels < n_classes)


def _weighted_family(label_form: str) -> Family:
    """The family of ``label_form`` if PyTorch's smoothing and weights apply to it."""
    family = families.find_form(label_form)
    if family is None or not family.weighting:
        raise ValueError(
            "label smoothing and class weights apply to multiclass labels (index, one-hot or "
            f"soft), not to {label_form} labels"
        )
    return family


def smoothed_targets(
    labels: Array,
    label_form: str,
    n_classes: int,
    eps: float = 0.0,
    weights: Array | None = None,
) -> Array:
    """The (N, C) float64 targets ``t'_c = w_c * ((1 - eps) * t_c + eps / C)``.

    Fed to the soft-label paths of :mod:`cecheck.losses`, they give PyTorch's
    ``cross_entropy(weight=w, label_smoothing=eps, reduction="none")`` row by row, for index
    labels (``t`` one-hot) and for one-hot or soft rows (smoothed too, as PyTorch does).
    Index labels that are not a class (``ignore_index``, out of range) get a row of zeros, so
    their loss is 0; the engine masks them as usual.
    """
    family = _weighted_family(label_form)
    labels = np.asarray(labels)
    if family.class_labels:
        valid = _valid_index(labels, n_classes)
        t = np.zeros((labels.shape[0], n_classes))
        t[np.flatnonzero(valid), labels[valid]] = 1.0
    else:
        valid = np.ones(labels.shape[0], dtype=bool)
        t = np.asarray(labels, dtype=np.float64)
    out = (1.0 - eps) * t + eps / n_classes
    if weights is not None:
        out = out * np.asarray(weights, dtype=np.float64)
    out[~valid] = 0.0
    return out


def row_weights(
    labels: Array,
    label_form: str,
    n_classes: int,
    weights: Array | None = None,
    ignore_index: int = -100,
) -> Array:
    """Each row's share of the denominator of PyTorch's ``reduction="mean"``: (N,) float64.

    Index labels: ``w[y]`` (1 without weights), 0 for ``ignore_index`` and out-of-range
    labels. Every other label form: 1 (PyTorch divides soft-target, binary and multilabel
    means by the number of rows, with or without weights). For index labels with
    ``eps = 0`` this is also the factor PyTorch's ``nll_loss`` puts on each row's loss.
    """
    labels = np.asarray(labels)
    if not families.of_form(label_form).class_labels:
        return np.ones(labels.shape[0])
    valid = (labels != ignore_index) & _valid_index(labels, n_classes)
    out = np.zeros(labels.shape[0])
    out[valid] = 1.0 if weights is None else np.asarray(weights, dtype=np.float64)[labels[valid]]
    return out


def smoothed_formula(eps: float, weighted: bool, n_classes: int) -> str:
    """How a trace names the targets of :func:`smoothed_targets`:
    ``t' = (1 - 0.1) · t + 0.1 / 3``."""
    mixed = f"(1 - {eps:g}) · t + {eps:g} / {n_classes}" if eps > 0 else "t"
    return f"t' = w · ({mixed})" if weighted else f"t' = {mixed}"


def apply_row_weights(
    result: PathResult, row_w: Array, p: Precision, rec: Recorder = ignore
) -> PathResult:
    """``w[y] * loss``, the product rounded to ``p`` (PyTorch's weighted ``nll_loss`` row)."""
    with np.errstate(invalid="ignore"):  # 0 * inf = NaN, as PyTorch gives it
        loss = rec("weighted_loss", "loss = w_y · loss", p.round(p.cast(row_w) * result.loss))
    return dataclasses.replace(result, loss=loss)  # the evidence as the path found it


def apply_reference_weights(loss: Array, row_w: Array, rec: Recorder = ignore) -> Array:
    """``w[y] * loss`` of the float64 reference, unrounded beyond float64."""
    with np.errstate(invalid="ignore"):  # 0 * inf of a NaN/inf logit row: NaN, as PyTorch
        weighted: Array = rec("weighted_loss", "loss = w_y · loss", loss * row_w)
    return weighted
