"""The framework view in the engine: what the user's own framework does with the rows.

:mod:`cecheck.frameworks` holds the numerics; this module applies them to the engine's chunks
for the settings that ask for them (:class:`~cecheck.engine.Settings` ``inputs``,
``label_smoothing``, ``class_weights``, ``batch_size``), and checks those settings against
the input:

- ``inputs="probs"``: the file holds probabilities. The paths are the conventions of
  :data:`~cecheck.frameworks.PROB_PATHS` (``naive``, ``torch``, ``keras``, ``sklearn``), the
  reference is the exact ``-log p`` of the stored values, and two flags are added:
  ``invalid_probability`` (an input problem) and ``target_prob_zero``.
- ``label_smoothing`` and ``class_weights`` (multiclass logits only): PyTorch's
  ``cross_entropy(weight=, label_smoothing=, reduction="none")`` row by row, on both paths.
- ``batch_size``: PyTorch's ``reduction="mean"`` over consecutive batches of rows.

The fast path covers none of this: the engine asks :func:`active` before taking it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from cecheck import frameworks as fw
from cecheck import losses
from cecheck import precision as prec
from cecheck.diagnose import Diagnosis, cast_overflow_rows, diagnose, label_problems
from cecheck.inputs import LOOKS_LIKE_PROBABILITIES
from cecheck.losses import PathResult
from cecheck.report import PATH_ORDER

if TYPE_CHECKING:
    from cecheck.engine import Settings
    from cecheck.inputs import Source

Array = npt.NDArray

INPUT_KINDS = ("logits", "probs")


def active(s: Settings) -> bool:
    """Whether any setting of this view is on (then the fast path stays off)."""
    return s.batch_size is not None or changes_losses(s)


def changes_losses(s: Settings) -> bool:
    """Whether the per-row losses differ from the plain logit paths."""
    return s.inputs == "probs" or s.label_smoothing > 0 or s.class_weights is not None


def paths(inputs: str) -> tuple[str, ...]:
    """The paths computed for ``inputs``, in the order the report shows them."""
    return fw.PROB_PATHS if inputs == "probs" else PATH_ORDER


def check_settings(s: Settings) -> None:
    """The checks that need no input: ValueError with one sentence."""
    if s.inputs not in INPUT_KINDS:
        raise ValueError(f"inputs must be 'logits' or 'probs', got {s.inputs!r}")
    if s.batch_size is not None and s.batch_size < 1:
        raise ValueError(f"batch size must be a positive number of rows, got {s.batch_size}")
    fw.check_label_smoothing(s.label_smoothing)
    if s.class_weights is not None:
        w = np.asarray(s.class_weights, dtype=np.float64)
        if w.ndim != 1 or w.size == 0:
            raise ValueError("class weights must be a flat list of numbers, one per class")
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("class weights must be finite numbers >= 0")
        if not (w > 0).any():
            raise ValueError("class weights are all 0, so every mean would be 0/0")
    if s.inputs == "probs" and (s.label_smoothing > 0 or s.class_weights is not None):
        raise ValueError(
            "label smoothing and class weights follow PyTorch's cross_entropy, which takes "
            "logits: they do not apply to probability input"
        )


def prepare(source: Source, s: Settings) -> Source:
    """Check the settings against ``source`` (ValueError with one sentence) and return the
    source to run: with probability input, without the warning that the values look like
    probabilities."""
    if (s.label_smoothing > 0 or s.class_weights is not None) and source.task != "multiclass":
        raise ValueError(
            "label smoothing and class weights apply to multiclass inputs (PyTorch's "
            f"cross_entropy), not to this {source.task} input"
        )
    if s.class_weights is not None and len(s.class_weights) != source.n_classes:
        raise ValueError(
            f"expected {source.n_classes} class weights (one per class), got {len(s.class_weights)}"
        )
    if s.inputs != "probs":
        return source
    # with inputs="probs" the values are what the user said they are: no warning
    kept = tuple(w for w in source.warnings if LOOKS_LIKE_PROBABILITIES not in w)
    return dataclasses.replace(source, warnings=kept)


def notes(source: Source, s: Settings) -> list[str]:
    """Sentences the report prints about these settings (the soft-target smoothing note)."""
    if s.label_smoothing > 0 and source.label_form == "soft":
        return [fw.SOFT_SMOOTHING_NOTE]
    return []


# ---------------------------------------------------------------- one chunk


def evaluate(
    values_in: Array,
    labels: Array,
    task: str,
    label_form: str,
    n_classes: int,
    s: Settings,
) -> tuple[dict[str, Array], Diagnosis]:
    """Every path and dtype of one chunk under these settings, and its diagnosis.

    ``values_in`` are the logits, or the probabilities with ``inputs="probs"``. Returns the
    loss columns (``<path>_<dtype>`` and ``reference``, float64, ignored rows 0 and
    out-of-range rows NaN, as the engine's) and the :class:`Diagnosis`.
    """
    masks = label_problems(label_form, labels, n_classes, s.ignore_index)
    if label_form == "index":
        usable = ~(masks["ignored"] | masks["no_loss"])
        target = np.where(usable, labels, 0)
    else:
        target = labels
    precisions = {d: prec.get(d) for d in s.dtypes}
    nonfinite = ~np.isfinite(values_in)
    nonfinite = nonfinite.any(axis=1) if nonfinite.ndim == 2 else nonfinite
    extra: dict[str, Array] = {}
    evidence: dict[tuple[str, str], dict[str, Array]] = {}
    overflow = None
    if s.inputs == "probs":
        results = {
            (path, d): fw.probs_loss(path, task, values_in, target, p)
            for path in fw.PROB_PATHS
            for d, p in precisions.items()
        }
        ref = fw.probs_reference(task, values_in, target)
        extra = {
            "invalid_probability": fw.invalid_probabilities(task, values_in) & ~nonfinite,
            "target_prob_zero": fw.zero_target_probability(task, values_in, target),
        }
        evidence = {
            (path, d): {"clipped": fw.clipped_rows(path, task, values_in, target, p)}
            for path in fw.PROB_PATHS
            for d, p in precisions.items()
        }
    else:
        results, ref = _pytorch_paths(values_in, labels, target, label_form, n_classes, s)
        overflow = cast_overflow_rows(values_in, precisions.values())
    values = {f"{path}_{d}": _mask(r.loss, masks) for (path, d), r in results.items()}
    values["reference"] = _mask(ref, masks)
    diag = diagnose(
        nonfinite,
        masks,
        results,
        ref,
        precisions,
        s.rtol,
        s.atol,
        overflow,
        extra_flags=extra,
        evidence=evidence,
    )
    return values, diag


def _pytorch_paths(
    z: Array, labels: Array, target: Array, label_form: str, n_classes: int, s: Settings
) -> tuple[dict[tuple[str, str], PathResult], Array]:
    """The naive and stable paths and the reference of multiclass logits with PyTorch's
    label smoothing and class weights (``cross_entropy(..., reduction="none")``).

    Smoothing, or weights on one-hot or soft labels: the soft-label paths on
    :func:`~cecheck.frameworks.smoothed_targets`. Index labels with weights and no smoothing:
    the index paths times ``w[y]``, as PyTorch's ``nll_loss`` (the soft form would turn the
    other classes' ``0 * log 0`` into NaN where PyTorch stays finite).
    """
    w = None if s.class_weights is None else np.asarray(s.class_weights, dtype=np.float64)
    results: dict[tuple[str, str], PathResult] = {}
    if s.label_smoothing > 0 or label_form != "index":
        t = fw.smoothed_targets(labels, label_form, n_classes, s.label_smoothing, w)
        for d in s.dtypes:
            p = prec.get(d)
            results[("naive", d)] = losses.naive_soft(z, t, p)
            results[("stable", d)] = losses.stable_soft(z, t, p)
        return results, losses.reference_soft(z, t)
    rw = fw.row_weights(labels, "index", n_classes, w, s.ignore_index)
    for d in s.dtypes:
        p = prec.get(d)
        results[("naive", d)] = fw.apply_row_weights(losses.naive_multiclass(z, target, p), rw, p)
        results[("stable", d)] = fw.apply_row_weights(losses.stable_multiclass(z, target, p), rw, p)
    with np.errstate(invalid="ignore"):  # 0 * inf of a NaN/inf logit row: NaN, as PyTorch
        return results, losses.reference_multiclass(z, target) * rw


def _mask(loss: Array, masks: dict[str, Array]) -> Array:
    """float64 losses with ignored rows at 0 (as PyTorch) and rows without a class (index
    label out of range or not a whole number) at NaN; the engine's rule for its own columns."""
    out = np.asarray(loss, dtype=np.float64) + 0.0  # -0.0 (a log of exactly 1) shows as 0
    out = np.where(masks["ignored"], 0.0, out)
    return np.where(masks["no_loss"], np.nan, out)


# ---------------------------------------------------------------- batch means


class Batches:
    """PyTorch's ``reduction="mean"`` over batches of ``s.batch_size`` rows, chunk by chunk.

    Each chunk's loss columns go to :class:`~cecheck.frameworks.BatchMeans` with each row's
    share of the denominator (``w[y]`` for index labels, 0 when ignored; 1 for other forms).
    """

    def __init__(self, source: Source, s: Settings) -> None:
        if s.batch_size is None:
            raise ValueError("no batch size")
        self.label_form = source.label_form
        self.n_classes = source.n_classes
        self.ignore_index = s.ignore_index
        self.weights = None if s.class_weights is None else np.asarray(s.class_weights)
        self.means = fw.BatchMeans(s.batch_size, s.columns, ignore_index=s.ignore_index)

    @classmethod
    def start(cls, source: Source, s: Settings) -> Batches | None:
        """The batch means of a run, or None without a batch size."""
        return None if s.batch_size is None else cls(source, s)

    def add(self, values: dict[str, Array], labels: Array) -> None:
        """One chunk's loss columns and labels, in row order."""
        if self.label_form == "index":
            ignored = labels == self.ignore_index
        else:
            ignored = np.zeros(labels.shape[0], dtype=bool)
        share = fw.row_weights(
            labels, self.label_form, self.n_classes, self.weights, self.ignore_index
        )
        self.means.add(values, share, ignored)

    def result(self) -> fw.BatchSummary:
        return self.means.result()
