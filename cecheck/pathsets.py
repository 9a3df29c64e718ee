"""Path sets: what computes a chunk's paths, chosen once per run (:func:`choose`).

Each path set's ``compute(logits, labels, target)`` returns every path in every dtype and
the reference of one chunk (:class:`Computed`), before any masking or diagnosis:

- :class:`NumpyPaths`: the naive and stable logit paths of :mod:`cecheck.losses`, the
  specification;
- :class:`KernelPaths`: the same paths on the fused C kernel of :mod:`cecheck.fast`;
- :class:`ProbPaths`: probability input (``inputs="probs"``), the naive path and the
  conventions of :mod:`cecheck.frameworks.probs`, with the flags ``invalid_probability`` and
  ``target_prob_zero``;
- :class:`PytorchPaths`: PyTorch's ``cross_entropy(weight=, label_smoothing=,
  reduction="none")`` on the naive and stable paths (multiclass logits).

``target`` is ``labels`` with a valid class in place of an ignored or out-of-range index
label (those rows are masked afterwards); ``labels`` are the labels as read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from cecheck import families, fast, losses
from cecheck import frameworks as fw
from cecheck import precision as prec
from cecheck.arraytypes import Array
from cecheck.families import Family
from cecheck.losses import PathResult
from cecheck.settings import Settings

Results = dict[tuple[str, str], PathResult]


@dataclass
class Computed:
    """A chunk's losses in every path and dtype, before the masks and the diagnosis."""

    results: Results
    reference: Array
    nonfinite: Array  # rows with an input problem: NaN or inf (softmax logits: NaN or +inf)
    nan: Array  # the rows of ``nonfinite`` holding a NaN (the others hold an inf)
    masked_target: Array  # softmax rows whose target weight falls on a -inf logit
    extra_flags: dict[str, Array] = field(default_factory=dict)
    evidence: dict[tuple[str, str], dict[str, Array]] = field(default_factory=dict)


class PathSet(Protocol):
    """Computes every path of a chunk."""

    # Whether it runs on the C kernel (the engine then computes a chunk ahead on a thread).
    kernel: bool
    # Whether the input holds logits (checked for a cast to a narrower dtype overflowing).
    logits: bool
    # Whether a -0.0 loss shows as 0 (a log of exactly 1 under the framework conventions).
    positive_zero: bool

    def compute(self, values: Array, labels: Array, target: Array) -> Computed: ...


def nonfinite_rows(values: Array, *, masks: bool = False) -> Array:
    """The rows holding a NaN or inf value; with ``masks``, a -inf does not count (a masked
    class of a softmax row)."""
    if masks:
        with np.errstate(invalid="ignore"):  # NaN compares False
            bad = np.isnan(values) | (values == np.inf)
    else:
        bad = ~np.isfinite(values)
    rows: Array = np.any(bad, axis=1) if bad.ndim == 2 else bad
    return rows


def nan_rows(values: Array, nonfinite: Array) -> Array:
    """The rows of ``nonfinite`` that hold a NaN (read on those rows only)."""
    out = np.zeros(nonfinite.shape, dtype=bool)
    rows = np.flatnonzero(nonfinite)
    if rows.size:
        bad = np.isnan(values[rows])
        out[rows] = bad.any(axis=1) if bad.ndim == 2 else bad
    return out


def masked_target_rows(
    family: Family, values: Array, target: Array, reference: Array, nonfinite: Array
) -> Array:
    """Softmax rows without an input problem whose target falls on a masked (-inf) class:
    the index target's logit is -inf, or a soft target puts weight on a -inf logit (every
    class masked is such a row). Their loss is inf (NaN when every class is masked), so only
    the rows with a non-finite reference are read."""
    out = np.zeros(nonfinite.shape, dtype=bool)
    if not family.softmax:
        return out
    rows = np.flatnonzero(~np.isfinite(reference) & ~nonfinite)
    if rows.size:
        z = values[rows]
        if family.class_labels:
            out[rows] = z[np.arange(rows.size), target[rows]] == -np.inf
        else:
            out[rows] = ((z == -np.inf) & (np.asarray(target)[rows] > 0)).any(axis=1)
    return out


def input_rows(
    family: Family, values: Array, target: Array, reference: Array
) -> tuple[Array, Array, Array]:
    """(nonfinite, nan, masked_target) rows of a chunk of logits (see :class:`Computed`)."""
    nonfinite = nonfinite_rows(values, masks=family.softmax)
    nan = nan_rows(values, nonfinite)
    return nonfinite, nan, masked_target_rows(family, values, target, reference, nonfinite)


@dataclass(frozen=True)
class NumpyPaths:
    """The naive and stable logit paths of :mod:`cecheck.losses` and its reference."""

    family: Family
    dtypes: tuple[str, ...]
    kernel = False
    logits = True
    positive_zero = False

    def compute(self, values: Array, labels: Array, target: Array) -> Computed:
        naive, stable, reference = self.family.paths
        results: Results = {}
        for d in self.dtypes:
            p = prec.get(d)
            results[("naive", d)] = naive(values, target, p)
            results[("stable", d)] = stable(values, target, p)
        ref = reference(values, target)
        return Computed(results, ref, *input_rows(self.family, values, target, ref))


@dataclass(frozen=True)
class KernelPaths:
    """The logit paths on the fused kernel of :mod:`cecheck.fast` (float32 and float64)."""

    family: Family
    dtypes: tuple[str, ...]
    kernel = True
    logits = True
    positive_zero = False

    def compute(self, values: Array, labels: Array, target: Array) -> Computed:
        f = self.family
        results, ref, nonfinite = fast.compute(f.task, f.label_form, values, target, self.dtypes)
        masked = masked_target_rows(f, values, target, ref, nonfinite)
        return Computed(results, ref, nonfinite, nan_rows(values, nonfinite), masked)


@dataclass(frozen=True)
class ProbPaths:
    """Probability input: the naive path and the conventions of PyTorch, Keras and
    scikit-learn; the reference is the exact ``-log p`` of the stored values."""

    task: str
    dtypes: tuple[str, ...]
    kernel = False
    logits = False
    positive_zero = True

    def compute(self, values: Array, labels: Array, target: Array) -> Computed:
        task, nonfinite = self.task, nonfinite_rows(values)
        precisions = {d: prec.get(d) for d in self.dtypes}
        results = {
            (path, d): fw.probs_loss(path, task, values, target, p)
            for path in fw.PROB_PATHS
            for d, p in precisions.items()
        }
        extra = {
            "invalid_probability": fw.invalid_probabilities(task, values) & ~nonfinite,
            "target_prob_zero": fw.zero_target_probability(task, values, target),
        }
        evidence = {
            (path, d): {"clipped": fw.clipped_rows(path, task, values, target, p)}
            for path in fw.PROB_PATHS
            for d, p in precisions.items()
        }
        return Computed(
            results,
            fw.probs_reference(task, values, target),
            nonfinite,
            nan_rows(values, nonfinite),
            np.zeros(nonfinite.shape, dtype=bool),
            extra,
            evidence,
        )


@dataclass(frozen=True)
class PytorchPaths:
    """The naive and stable paths and the reference of multiclass logits with PyTorch's
    label smoothing and class weights (``cross_entropy(..., reduction="none")``).

    Smoothing, or weights on one-hot or soft labels: the soft-label paths on
    :func:`~cecheck.frameworks.smoothed_targets`. Index labels with weights and no smoothing:
    the index paths times ``w[y]``, as PyTorch's ``nll_loss`` (the soft form would turn the
    other classes' ``0 * log 0`` into NaN where PyTorch stays finite).
    """

    family: Family
    n_classes: int
    s: Settings
    kernel = False
    logits = True
    positive_zero = True

    def compute(self, values: Array, labels: Array, target: Array) -> Computed:
        s, z, form, c = self.s, values, self.family.label_form, self.n_classes
        w = None if s.class_weights is None else np.asarray(s.class_weights, dtype=np.float64)
        results: Results = {}
        if s.label_smoothing > 0 or not self.family.class_labels:
            t = fw.smoothed_targets(labels, form, c, s.label_smoothing, w)
            for d in s.dtypes:
                p = prec.get(d)
                results[("naive", d)] = losses.naive_soft(z, t, p)
                results[("stable", d)] = losses.stable_soft(z, t, p)
            ref = losses.reference_soft(z, t)
            soft = families.get("multiclass", "soft")
            return Computed(results, ref, *input_rows(soft, z, t, ref))
        rw = fw.row_weights(labels, form, c, w, s.ignore_index)
        for d in s.dtypes:
            p = prec.get(d)
            naive = losses.naive_multiclass(z, target, p)
            stable = losses.stable_multiclass(z, target, p)
            results[("naive", d)] = fw.apply_row_weights(naive, rw, p)
            results[("stable", d)] = fw.apply_row_weights(stable, rw, p)
        with np.errstate(invalid="ignore"):  # 0 * inf of a NaN/inf logit row: NaN, as PyTorch
            ref = losses.reference_multiclass(z, target) * rw
        return Computed(results, ref, *input_rows(self.family, z, target, ref))


def choose(family: Family, n_classes: int, s: Settings, *, use_fast: bool) -> PathSet:
    """The path set of a run: probabilities, PyTorch's weighting, the kernel (``use_fast``
    and :func:`cecheck.fast.covers` the family and dtypes) or numpy."""
    if s.inputs == "probs":
        return ProbPaths(family.task, s.dtypes)
    if s.weighted:
        return PytorchPaths(family, n_classes, s)
    if use_fast and fast.covers(family.task, family.label_form, s.dtypes):
        return KernelPaths(family, s.dtypes)
    return NumpyPaths(family, s.dtypes)
