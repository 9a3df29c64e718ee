"""The registry of families: a task with a label form, and everything that depends on it.

A family (``multiclass/index``, ``multiclass/onehot``, ``multiclass/soft``, ``binary/binary``,
``multilabel/multihot``) names its kind of loss (the key of its textbook and reference
functions in :mod:`cecheck.losses` and of a framework's naive and stable ones), its
label checks and label display (:mod:`cecheck.labels`), the fused kernel of
:mod:`cecheck.fast` that computes it (or none), and the few facts the rest of cecheck asks of
it. Code that depends on the task or label form reads its family here instead of comparing
strings; a new family is one entry of :data:`FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cecheck import labels as lb
from cecheck import losses
from cecheck.arraytypes import Array

LabelCheck = Callable[[Array, int, int], dict[str, Array]]


@dataclass(frozen=True)
class Family:
    """One task with one label form."""

    task: str  # binary, multiclass or multilabel
    label_form: str  # index, onehot, soft, binary or multihot
    kind: str  # its loss functions' key: losses.PATHS and a framework's PATHS
    kernel: str | None  # the fused kernel of cecheck.fast that computes it, or None
    label_check: LabelCheck  # (labels, n_classes, ignore_index) -> row masks
    show: Callable[[Array], list[object]]  # a scalar (or short text) per label row
    class_labels: bool = False  # labels are class numbers: ignore_index and range apply
    softmax: bool = False  # one softmax over the row's classes (else a sigmoid per logit)
    one_logit: bool = False  # one logit per row (no classes to show)
    soft_targets: bool = False  # (N, C) probability targets that are not one-hot
    # PyTorch's cross_entropy label smoothing and class weights apply
    weighting: bool = False

    @property
    def name(self) -> str:
        return f"{self.task}/{self.label_form}"

    @property
    def paths(self) -> losses.Family:
        """The (textbook, reference) loss functions of :mod:`cecheck.losses`."""
        return losses.PATHS[self.kind]

    def show_labels(self, labels: Array) -> list[object]:
        """A scalar per row: the class index, the binary target, or for (N, C) labels a
        summary."""
        if labels.ndim == 1 and not self.class_labels:
            return lb.show_target(labels)
        return self.show(labels)


FAMILIES: dict[tuple[str, str], Family] = {
    (f.task, f.label_form): f
    for f in (
        Family(
            "multiclass", "index", "index", "index", lb.index_problems, lb.show_index,
            class_labels=True, softmax=True, weighting=True,
        ),
        Family(
            "multiclass", "onehot", "soft", "soft", lb.distribution_problems, lb.show_onehot,
            softmax=True, weighting=True,
        ),
        Family(
            "multiclass", "soft", "soft", "soft", lb.distribution_problems, lb.show_soft,
            softmax=True, soft_targets=True, weighting=True,
        ),
        Family(
            "binary", "binary", "binary", "sigmoid", lb.target_problems, lb.show_target,
            one_logit=True,
        ),
        Family(
            "multilabel", "multihot", "multilabel", "sigmoid", lb.target_problems,
            lb.show_multihot,
        ),
    )
}  # fmt: skip
_BY_FORM = {f.label_form: f for f in FAMILIES.values()}


def get(task: str, label_form: str) -> Family:
    """The family of a task and label form; ValueError for a pair cecheck does not compute."""
    try:
        return FAMILIES[task, label_form]
    except KeyError:
        raise ValueError(f"unknown task {task!r} or label form {label_form!r}") from None


class HasFamily(Protocol):
    """Anything with a task and a label form, such as a :class:`~cecheck.inputs.Source`."""

    @property
    def task(self) -> str: ...

    @property
    def label_form(self) -> str: ...


def of(source: HasFamily) -> Family:
    """The family of a source (or of anything with a task and a label form)."""
    return get(source.task, source.label_form)


def known(task: str, label_form: str) -> bool:
    """Whether cecheck computes this task with this label form."""
    return (task, label_form) in FAMILIES


def of_form(label_form: str) -> Family:
    """The family of a label form (each label form belongs to one task)."""
    family = find_form(label_form)
    if family is None:
        raise ValueError(f"unknown label form {label_form!r}")
    return family


def find_form(label_form: str) -> Family | None:
    """The family of a label form, None for a label form cecheck does not know."""
    return _BY_FORM.get(label_form)


def label_problems(
    label_form: str, labels: Array, n_classes: int, ignore_index: int
) -> dict[str, Array]:
    """Row masks ``ignored``, ``label_out_of_range``, ``invalid_label`` and ``no_loss`` (the
    rows whose losses are NaN) from the labels alone, by the label form's check."""
    return of_form(label_form).label_check(labels, n_classes, ignore_index)
