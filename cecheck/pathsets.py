"""Path sets: what computes a chunk's paths, chosen once per run (:func:`choose`).

Each path set's ``compute(logits, labels, target)`` returns every path in every dtype and
the reference of one chunk (:class:`Computed`), before any masking or diagnosis:

- :class:`NumpyPaths`: the textbook path of :mod:`cecheck.losses` and the chosen
  framework's naive and stable paths (:mod:`cecheck.frameworks.registry`), the
  specification;
- :class:`KernelPaths`: the textbook path and the reference on the fused C kernel of
  :mod:`cecheck.fast` (and the framework's paths it computes as the framework does), the
  rest as :class:`NumpyPaths`;
- :class:`ProbPaths`: probability input (``inputs="probs"``), the naive path and the
  conventions of :mod:`cecheck.frameworks.probs`, with the flags ``invalid_probability`` and
  ``target_prob_zero``;
- :class:`WeightedPaths`: label smoothing and class weights (multiclass logits): the
  framework's own on its naive and stable paths, the smoothed and weighted targets of
  :func:`~cecheck.frameworks.smoothed_targets` on the textbook path.

``target`` is ``labels`` with a valid class in place of an ignored or out-of-range index
label (those rows are masked afterwards); ``labels`` are the labels as read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from cecheck import families, fast, losses
from cecheck import frameworks as fw
from cecheck import precision as prec
from cecheck.arraytypes import Array
from cecheck.families import Family
from cecheck.frameworks import registry
from cecheck.frameworks.registry import Framework
from cecheck.losses import PathResult, Recorder, ignore
from cecheck.precision import Precision
from cecheck.rowends import RowEnds
from cecheck.settings import WEIGHTING_OPTIONS, Settings

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
    # each row's ends, when the kernel read them (cecheck.rowends); else they are read again
    ends: RowEnds | None = None


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


# The paths a framework gives (cecheck.frameworks.registry); textbook and reference are ours.
_FRAMEWORK = ("naive", "stable")


def framework_paths(
    fw_: Framework,
    kind: str,
    z: Array,
    target: Array,
    dtypes: tuple[str, ...],
    paths: tuple[str, ...],
) -> Results:
    """The framework's ``paths`` (naive, stable) of a family's ``kind``, in every dtype."""
    return {
        (path, d): fw_.path(path, kind)(z, target, prec.get(d)) for d in dtypes for path in paths
    }


@dataclass(frozen=True)
class NumpyPaths:
    """The textbook path of :mod:`cecheck.losses`, the framework's naive and stable paths and
    the reference."""

    family: Family
    dtypes: tuple[str, ...]
    framework: Framework
    kernel = False
    logits = True
    positive_zero = False

    def compute(self, values: Array, labels: Array, target: Array) -> Computed:
        textbook, reference = self.family.paths
        kind = self.family.kind
        ours = framework_paths(self.framework, kind, values, target, self.dtypes, _FRAMEWORK)
        results: Results = {}
        for d in self.dtypes:
            results[("textbook", d)] = textbook(values, target, prec.get(d))
            results[("naive", d)] = ours["naive", d]
            results[("stable", d)] = ours["stable", d]
        ref = reference(values, target)
        return Computed(results, ref, *input_rows(self.family, values, target, ref))


@dataclass(frozen=True)
class KernelPaths:
    """The textbook path and the reference on the fused kernel of :mod:`cecheck.fast`
    (float32 and float64), with the framework's naive and stable paths where the kernel
    computes them as the framework does (:func:`cecheck.fast.emulates`); its other paths on
    numpy."""

    family: Family
    dtypes: tuple[str, ...]
    framework: Framework
    kernel = True
    logits = True
    positive_zero = False

    def compute(self, values: Array, labels: Array, target: Array) -> Computed:
        f, fw_ = self.family, self.framework
        functions = {path: fw_.path(path, f.kind) for path in _FRAMEWORK}
        on_kernel = {p: fn for p, fn in functions.items() if fast.emulates(p, f.kind, fn)}
        kernel, ref, nonfinite, ends = fast.compute(
            f.task, f.label_form, values, target, self.dtypes, framework=on_kernel
        )
        numpy_paths = tuple(path for path in _FRAMEWORK if path not in on_kernel)
        ours = framework_paths(fw_, f.kind, values, target, self.dtypes, numpy_paths)
        results: Results = {}
        for d in self.dtypes:
            for path in ("textbook", *_FRAMEWORK):
                results[(path, d)] = kernel[(path, d)] if (path, d) in kernel else ours[path, d]
        masked = masked_target_rows(f, values, target, ref, nonfinite)
        nan = nan_rows(values, nonfinite)
        return Computed(results, ref, nonfinite, nan, masked, ends=ends)


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


# A path of one chunk's labels: f(z, p, rec) for textbook, naive and stable; the reference
# is f(z, rec).
ChunkPath = Callable[..., PathResult]


@dataclass(frozen=True)
class WeightedFunctions:
    """The paths of :class:`WeightedPaths` for one chunk's labels (``functions``): what
    ``compare`` computes and ``cecheck trace`` walks with its recorder."""

    paths: dict[str, ChunkPath]  # textbook, naive, stable: f(z, p, rec=ignore) -> PathResult
    reference: Callable[..., Array]  # f(z, rec=ignore) -> (N,) float64
    kinds: dict[str, str]  # the kind of loss each path computes (its steps' names)
    family: Family  # the family whose input rows they are (soft targets: multiclass soft)
    target: Array  # the targets those rows are read with


@dataclass(frozen=True)
class WeightedPaths:
    """Multiclass logits with label smoothing or class weights (``cross_entropy(weight=,
    label_smoothing=, reduction="none")``).

    The stable path is the framework's fused loss with those options, as it computes them.
    The naive path is the framework's ``log(softmax)`` with ``nll_loss``'s weights for index
    labels without smoothing; otherwise, as a user writes smoothing by hand, its soft-label
    form on the targets of :func:`~cecheck.frameworks.smoothed_targets`. The textbook path
    and the reference take those targets too, or the index paths times ``w[y]`` for index
    labels without smoothing (the soft form would turn the other classes' ``0 * log 0`` into
    NaN where ``nll_loss`` stays finite).
    """

    family: Family
    n_classes: int
    s: Settings
    framework: Framework
    kernel = False
    logits = True
    positive_zero = True

    def compute(self, values: Array, labels: Array, target: Array) -> Computed:
        f = self.functions(labels, target)
        results: Results = {}
        for d in self.s.dtypes:
            p = prec.get(d)
            for path in ("stable", "textbook", "naive"):
                results[(path, d)] = f.paths[path](values, p)
        ref = f.reference(values)
        return Computed(results, ref, *input_rows(f.family, values, f.target, ref))

    def functions(self, labels: Array, target: Array) -> WeightedFunctions:
        """The chunk's paths, each with an optional recorder (:class:`cecheck.losses.Recorder`)
        that receives every step, the smoothed targets and the ``w[y]`` product included."""
        s, form, c, fw_ = self.s, self.family.label_form, self.n_classes, self.framework
        w = None if s.class_weights is None else np.asarray(s.class_weights, dtype=np.float64)
        kind, eps = self.family.kind, s.label_smoothing
        stable_fn = fw_.path("stable", kind)

        def stable(z: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
            return stable_fn(z, target, p, rec, weight=w, label_smoothing=eps)

        if eps > 0 or not self.family.class_labels:
            t = fw.smoothed_targets(labels, form, c, eps, w)
            naive_soft = fw_.path("naive", "soft")

            def smoothed(rec: Recorder) -> Array:
                return rec("t_smoothed", fw.smoothed_formula(eps, w is not None, c), t)

            def textbook(z: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
                return losses.textbook_soft(z, smoothed(rec), p, rec)

            def naive(z: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
                return naive_soft(z, smoothed(rec), p, rec)

            def reference(z: Array, rec: Recorder = ignore) -> Array:
                return losses.reference_soft(z, smoothed(rec), rec)

            paths = {"stable": stable, "textbook": textbook, "naive": naive}
            kinds = {"stable": kind, "textbook": "soft", "naive": "soft", "reference": "soft"}
            soft = families.get("multiclass", "soft")
            return WeightedFunctions(paths, reference, kinds, soft, t)
        rw = fw.row_weights(labels, form, c, w, s.ignore_index)
        naive_fn = fw_.path("naive", kind)

        def weighted_textbook(z: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
            textbook = losses.textbook_multiclass(z, target, p, rec)
            return fw.apply_row_weights(textbook, rw, p, rec)

        def weighted_naive(z: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
            return naive_fn(z, target, p, rec, weight=w)

        def weighted_reference(z: Array, rec: Recorder = ignore) -> Array:
            return fw.apply_reference_weights(losses.reference_multiclass(z, target, rec), rw, rec)

        paths = {"stable": stable, "textbook": weighted_textbook, "naive": weighted_naive}
        kinds = dict.fromkeys(("stable", "textbook", "naive", "reference"), kind)
        return WeightedFunctions(paths, weighted_reference, kinds, self.family, target)


def check_weighting_framework(s: Settings, options: str = WEIGHTING_OPTIONS) -> None:
    """ValueError if label smoothing or class weights are asked of a framework whose paths
    do not take them (``options``: how the caller names them)."""
    if s.weighted and not registry.get(s.framework).weighting:
        raise ValueError(
            f"{options} follow PyTorch's cross_entropy: use them with the torch framework, "
            f"not {s.framework}"
        )


def choose(family: Family, n_classes: int, s: Settings, *, use_fast: bool) -> PathSet:
    """The path set of a run: probabilities, the framework's weighting, the kernel
    (``use_fast`` and :func:`cecheck.fast.covers` the family and dtypes) or numpy."""
    if s.inputs == "probs":
        return ProbPaths(family.task, s.dtypes)
    framework = registry.get(s.framework)
    if s.weighted:
        return WeightedPaths(family, n_classes, s, framework)
    if use_fast and fast.covers(family.task, family.label_form, s.dtypes):
        return KernelPaths(family, s.dtypes, framework)
    return NumpyPaths(family, s.dtypes, framework)
