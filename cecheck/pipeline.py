"""One chunk's way through cecheck: label masks, the run's path set, masks, diagnosis.

A run is planned once (:func:`plan`): the settings are checked against the input, and its
family (:mod:`cecheck.families`) and path set (:mod:`cecheck.pathsets`) are chosen. Then
every chunk takes the same two steps, which the engine may run on different threads:

1. :meth:`Plan.compute`: the label masks, the targets, and the path set's losses;
2. :meth:`Plan.diagnosed`: the loss columns masked (ignored rows 0, rows without a class
   NaN) and the chunk's diagnosis (:func:`cecheck.diagnose.diagnose`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from cecheck import families, fast
from cecheck import frameworks as fw
from cecheck import precision as prec
from cecheck.arraytypes import Array
from cecheck.casts import cast_overflow_rows
from cecheck.diagnose import Diagnosis, diagnose
from cecheck.families import Family
from cecheck.inputs import LOOKS_LIKE_PROBABILITIES, Source
from cecheck.pathsets import Computed, PathSet, check_weighting_framework, choose
from cecheck.rowends import RowEnds
from cecheck.settings import WEIGHTING_OPTIONS, Settings

# The warning of a multiclass input with one class (its losses are 0 in every path).
ONE_CLASS_WARNING = (
    "one class: the softmax of a single logit is 1, so every loss is 0 (as in PyTorch and "
    "TensorFlow); check the task and the logits' last axis"
)


@dataclass
class ChunkResult:
    """Everything computed for one chunk of rows."""

    start: int
    logits: Array  # what the input holds: the probabilities with inputs="probs"
    labels: Array
    values: dict[str, Array]  # column name -> float64 losses
    diagnosis: Diagnosis
    ends: RowEnds | None = None  # each row's ends, when the kernel read them (cecheck.rowends)


@dataclass
class Masked:
    """A chunk's path-set results with its label masks, before the diagnosis."""

    computed: Computed
    masks: dict[str, Array]
    masked: bool  # whether any row is ignored or has no class


@dataclass(frozen=True)
class Plan:
    """A run's choices, made once: its settings, the input's family and the path set."""

    settings: Settings
    family: Family
    n_classes: int
    paths: PathSet
    ragged: set[int] | None = None  # the source's rows that could not be formed (filled as read)
    first_row: int = 0  # the source's first row number (a shard's place in its input)

    def compute(self, values: Array, labels: Array) -> Masked:
        """The first half of :meth:`evaluate`: label masks and every path and dtype."""
        s = self.settings
        masks = self.family.label_check(labels, self.n_classes, s.ignore_index)
        # rows whose loss is masked (checked once per chunk); none in the common chunk, which
        # then takes the labels as targets and the losses as values, without a copy
        masked = bool(masks["ignored"].any() or masks["no_loss"].any())
        target = labels
        if self.family.class_labels and masked:  # a valid class for the rows without one
            target = np.where(masks["ignored"] | masks["no_loss"], 0, labels)
        return Masked(self.paths.compute(values, labels, target), masks, masked)

    def diagnosed(self, m: Masked, values: Array, labels: Array, start: int) -> ChunkResult:
        """The second half of :meth:`evaluate`: the chunk's loss columns and diagnosis."""
        s, c = self.settings, m.computed
        plus = self.paths.positive_zero
        columns = {
            f"{path}_{d}": mask(r.loss, m.masks, m.masked, positive_zero=plus)
            for (path, d), r in c.results.items()
        }
        columns["reference"] = mask(c.reference, m.masks, m.masked, positive_zero=plus)
        precisions = {d: prec.get(d) for d in s.dtypes}
        overflow = None
        if self.paths.logits:
            overflow = cast_overflow_rows(values, precisions.values(), c.ends)
        nonfinite, extra = c.nonfinite, c.extra_flags
        if self.ragged is not None:  # a ragged row is that, not a NaN input
            n = c.reference.shape[0]
            ragged = np.zeros(n, dtype=bool)
            at = start - self.first_row  # the source's own row numbers
            ragged[[r - at for r in self.ragged if at <= r < at + n]] = True
            nonfinite, extra = nonfinite & ~ragged, {**extra, "ragged_logits": ragged}
        diag = diagnose(
            nonfinite,
            m.masks,
            c.results,
            c.reference,
            precisions,
            {d: s.tolerance(d)[0] for d in s.dtypes},
            {d: s.tolerance(d)[1] for d in s.dtypes},
            overflow,
            nan_input=c.nan,
            masked_target=c.masked_target,
            extra_flags=extra,
            evidence=c.evidence,
        )
        return ChunkResult(start, values, labels, columns, diag, c.ends)

    def evaluate(self, values: Array, labels: Array, start: int = 0) -> ChunkResult:
        """Every path and dtype of one chunk, masked and diagnosed."""
        return self.diagnosed(self.compute(values, labels), values, labels, start)


def plan(
    source: Source,
    s: Settings,
    *,
    use_fast: bool | None = None,
    options: str = WEIGHTING_OPTIONS,
    noun: str = "inputs",
) -> tuple[Plan, Source]:
    """The plan of a run over ``source``, and the source to run.

    Checks the settings against the input (ValueError with one sentence, the options named
    as ``options``, see :meth:`Settings.check_source`). ``use_fast``: take the kernel where it
    covers the family and dtypes; by default when no framework-view setting is on and the
    kernel is usable (:func:`cecheck.fast.usable`). The source returned has, with probability
    input, no warning that the values look like probabilities, and with a softmax over one
    class, the :data:`ONE_CLASS_WARNING`.
    """
    family = families.get(source.task, source.label_form)
    s.check_source(
        source.task,
        source.n_classes,
        weighting_applies=family.weighting,
        options=options,
        noun=noun,
    )
    check_weighting_framework(s, options)
    if use_fast is None:
        use_fast = not s.framework_view and fast.usable(source.task, source.label_form, s.dtypes)
    paths = choose(family, source.n_classes, s, use_fast=use_fast)
    chosen = Plan(s, family, source.n_classes, paths, source.ragged, source.first_row)
    if s.inputs == "probs":  # the values are what the user said they are: no warning
        kept = tuple(w for w in source.warnings if LOOKS_LIKE_PROBABILITIES not in w)
        source = dataclasses.replace(source, warnings=kept)
    if family.softmax and source.n_classes == 1:
        source = dataclasses.replace(source, warnings=(*source.warnings, ONE_CLASS_WARNING))
    return chosen, source


def chunk_plan(
    task: str, label_form: str, n_classes: int, s: Settings, *, use_fast: bool = False
) -> Plan:
    """The plan of one chunk given by its task, label form and classes (no source checks)."""
    family = families.get(task, label_form)
    return Plan(s, family, n_classes, choose(family, n_classes, s, use_fast=use_fast))


def mask(loss: Array, masks: dict[str, Array], masked: bool, *, positive_zero: bool) -> Array:
    """float64 losses with ignored rows at 0 (as PyTorch) and rows without a class (an index
    label out of range or not a whole number) at NaN.

    ``masked``: whether the chunk has such a row at all. ``positive_zero``: a -0.0 loss
    becomes 0 (the framework-view path sets: a log of exactly 1 shows as 0); the logit path
    sets keep their values as computed, without a copy when nothing is masked.
    """
    out = np.asarray(loss, dtype=np.float64)
    if positive_zero:
        out = out + 0.0
    elif masked:
        out = out.copy()  # never write into the path's own result
    if masked:
        out[masks["ignored"]] = 0.0
        out[masks["no_loss"]] = np.nan
    return out


class Batches:
    """PyTorch's ``reduction="mean"`` over batches of ``s.batch_size`` rows, chunk by chunk;
    over N-d logits (rows ``lead_shape`` = ``(B, T, ...)``), of ``s.batch_size`` sequences.

    Each chunk's loss columns go to :class:`~cecheck.frameworks.BatchMeans` with each row's
    share of the denominator (``w[y]`` for class labels, 0 when ignored; 1 for other forms).
    """

    def __init__(
        self, p: Plan, batch_size: int, lead_shape: tuple[int, ...], first_row: int = 0
    ) -> None:
        s = p.settings
        self.family = p.family
        self.n_classes = p.n_classes
        self.ignore_index = s.ignore_index
        self.weights = None if s.class_weights is None else np.asarray(s.class_weights)
        self.means = fw.BatchMeans(
            batch_size,
            s.columns,
            sequence=tuple(lead_shape[1:]),
            ignore_index=s.ignore_index,
            first_row=first_row,
        )

    @classmethod
    def start(cls, p: Plan, lead_shape: tuple[int, ...], first_row: int = 0) -> Batches | None:
        """The batch means of a run over rows shaped ``lead_shape`` (its first row numbered
        ``first_row``, on a batch boundary), or None without a batch size."""
        size = p.settings.batch_size
        return None if size is None else cls(p, size, lead_shape, first_row)

    def add(self, values: dict[str, Array], labels: Array) -> dict[str, Array]:
        """One chunk's loss columns and labels, in row order; the batches it completed
        (:meth:`~cecheck.frameworks.BatchMeans.add`)."""
        if self.family.class_labels:
            ignored = labels == self.ignore_index
        else:
            ignored = np.zeros(labels.shape[0], dtype=bool)
        share = fw.row_weights(
            labels, self.family.label_form, self.n_classes, self.weights, self.ignore_index
        )
        return self.means.add(values, share, ignored)

    def result(self) -> fw.BatchSummary:
        return self.means.result()
