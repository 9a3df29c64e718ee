"""The data of a :mod:`cecheck.trace`: a row's walk (:class:`Trace`), its paths and steps,
and what a step's check (:mod:`cecheck.trace_explain`) knows and says.

Plain data without the walk, so that the renderers (:mod:`cecheck.trace_render`) import it
and not the path sets the walk calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from cecheck.arraytypes import Array
from cecheck.choices import DEFAULT_FRAMEWORK
from cecheck.precision import Precision


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

    path: str  # textbook, naive, stable or reference
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
    framework: str = DEFAULT_FRAMEWORK  # whose idioms the naive and stable paths emulate
    label_smoothing: float = 0.0  # PyTorch's label_smoothing, as compare takes it
    class_weights: tuple[float, ...] | None = None  # PyTorch's weight, one per class
    inputs: str = "logits"  # or "probs": ``logits`` then holds the row's probabilities

    def path(self, path: str, dtype: str = "float64") -> PathTrace:
        """The trace of ``path`` in ``dtype`` (the reference is float64)."""
        for p in self.paths:
            if p.path == path and (path == "reference" or p.dtype == dtype):
                return p
        raise KeyError(f"{path} in {dtype} was not traced")


@dataclass(frozen=True)
class Bad:
    """Why a step is bad: one sentence, and the classes where it happened, to be shown."""

    note: str
    classes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Row:
    """What a check knows besides the steps' values."""

    z: Array  # the logits as given, (1, C) or (1,)
    y: Array  # the label(s), as the loss function took them
    p: Precision  # the path's precision (float64 for the reference)
    ref: float  # the reference loss
    masks: Array | None = None  # (C,) the classes masked with -inf (softmax rows only)
    label_smoothing: float = 0.0  # PyTorch's label_smoothing, which reaches every class
