"""What to compute and how strictly to judge it: :class:`Settings`, every option checked here.

The bottom of cecheck's import graph (it imports only :mod:`cecheck.precision` and the
names of :mod:`cecheck.choices`), so that the
engine, the path sets, the reporters and the CLI all take the same ``Settings``. The checks
that need no input run when a ``Settings`` is made; the ones that need the input (its task
and number of classes) are :meth:`Settings.check_source`, called once per run when the run
is planned (:func:`cecheck.pipeline.plan`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cecheck import precision as prec
from cecheck.choices import DEFAULT_FRAMEWORK, DEFAULT_MIN_HEADROOM, FRAMEWORKS

# What the input holds, and the paths computed for it, in the order the report shows them:
# logits take the textbook formula and the framework's naive and stable paths; probabilities
# the naive path and the conventions of PyTorch, Keras and scikit-learn
# (cecheck.frameworks.probs).
INPUT_PATHS = {
    "logits": ("textbook", "naive", "stable"),
    "probs": ("naive", "torch", "keras", "sklearn"),
}
INPUT_KINDS = tuple(INPUT_PATHS)

# The default tolerance of ``diverged``, in units of each dtype's machine epsilon: rtol and
# atol are both this many eps, so a value diverges when |L - L64| > 64 eps (1 + |L64|). The
# measurement behind it (README, "Tolerances"): on N(0, 3) logits and the benign sample,
# multiclass, both paths, |L - L64| / (eps (1 + |L64|)) stays below 3, but for the naive
# float16 path, whose subnormal probabilities bound it near 38.6; the float32_diverges
# sample reaches 3,503.
TOLERANCE_EPS = 64

# How the library names the weighting options in its errors (the CLI names its flags).
WEIGHTING_OPTIONS = "label smoothing and class weights"


def default_dtypes(stored: str) -> tuple[str, ...]:
    """The dtypes computed when none are named: float32 and float64, and the logits' stored
    dtype (:attr:`cecheck.inputs.Source.logits_dtype`) when it is a narrower one cecheck
    emulates, float16 or bfloat16, so that the precision the values were kept in is computed
    too. The float8 formats are shown as stored, not emulated.

    >>> default_dtypes("bfloat16"), default_dtypes("float64")
    (('bfloat16', 'float32', 'float64'), ('float32', 'float64'))
    """
    if stored in prec.DTYPES and prec.get(stored).bits < prec.get("float32").bits:
        return (stored, "float32", "float64")
    return ("float32", "float64")


@dataclass(frozen=True)
class Settings:
    """What to compute and how strictly to judge it."""

    dtypes: tuple[str, ...] = ("float32", "float64")
    ignore_index: int = -100
    # None: TOLERANCE_EPS times each dtype's epsilon (see tolerance()); a number: that
    # tolerance for every dtype
    rtol: float | None = None
    atol: float | None = None
    top: int = 20
    # The framework view: "logits" or "probs"; PyTorch's batch mean over batches of this many
    # rows; label smoothing and class weights (multiclass logits).
    inputs: str = "logits"
    batch_size: int | None = None
    label_smoothing: float = 0.0
    class_weights: tuple[float, ...] | None = None
    # Whose idioms the naive and stable paths emulate (cecheck.choices.FRAMEWORKS).
    framework: str = DEFAULT_FRAMEWORK
    # ``--fail-on headroom``: fail when logits scaled by less than this break a path's loss
    min_headroom: float = DEFAULT_MIN_HEADROOM

    def __post_init__(self) -> None:
        if not self.dtypes:
            raise ValueError("dtypes is empty: name at least one of " + ", ".join(prec.DTYPES))
        for d in self.dtypes:
            prec.get(d)
        order = {d: i for i, d in enumerate(prec.DTYPES)}
        object.__setattr__(self, "dtypes", tuple(sorted(set(self.dtypes), key=order.__getitem__)))
        if (self.rtol is not None and self.rtol < 0) or (self.atol is not None and self.atol < 0):
            raise ValueError("rtol and atol must be >= 0")
        if self.top < 0:
            raise ValueError("top must be >= 0")
        object.__setattr__(self, "min_headroom", float(self.min_headroom))
        if not self.min_headroom > 0:  # NaN too
            raise ValueError(f"min headroom must be a factor > 0, got {self.min_headroom}")
        if self.class_weights is not None:
            weights = tuple(float(w) for w in self.class_weights)
            object.__setattr__(self, "class_weights", weights)
        object.__setattr__(self, "label_smoothing", float(self.label_smoothing))
        self._check_framework_view()

    def _check_framework_view(self) -> None:
        """The framework-view options: ValueError with one sentence."""
        if self.framework not in FRAMEWORKS:
            raise ValueError(
                f"unknown framework {self.framework!r}: cecheck emulates {', '.join(FRAMEWORKS)}"
            )
        if self.inputs not in INPUT_KINDS:
            raise ValueError(f"inputs must be 'logits' or 'probs', got {self.inputs!r}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch size must be a positive number of rows, got {self.batch_size}")
        check_label_smoothing(self.label_smoothing)
        if self.class_weights is not None:
            w = np.asarray(self.class_weights, dtype=np.float64)
            if w.ndim != 1 or w.size == 0:
                raise ValueError("class weights must be a flat list of numbers, one per class")
            if not np.isfinite(w).all() or (w < 0).any():
                raise ValueError("class weights must be finite numbers >= 0")
            if not (w > 0).any():
                raise ValueError("class weights are all 0, so every mean would be 0/0")
        if self.inputs == "probs" and self.weighted:
            raise ValueError(
                "label smoothing and class weights follow PyTorch's cross_entropy, which takes "
                "logits: they do not apply to probability input"
            )

    def tolerance(self, dtype: str) -> tuple[float, float]:
        """(rtol, atol) of ``diverged`` in ``dtype``: each the explicit setting, or by default
        :data:`TOLERANCE_EPS` times the dtype's machine epsilon (what its own rounding
        explains)."""
        default = TOLERANCE_EPS * prec.get(dtype).eps
        rtol = default if self.rtol is None else self.rtol
        return rtol, default if self.atol is None else self.atol

    @property
    def weighted(self) -> bool:
        """Whether PyTorch's label smoothing or class weights are asked for."""
        return self.label_smoothing > 0 or self.class_weights is not None

    @property
    def changes_losses(self) -> bool:
        """Whether the per-row losses differ from the plain logit paths."""
        return self.inputs == "probs" or self.weighted

    @property
    def framework_view(self) -> bool:
        """Whether any framework-view option is on (then the fast path stays off)."""
        return self.batch_size is not None or self.changes_losses

    @property
    def paths(self) -> tuple[str, ...]:
        """The paths computed: textbook, naive and stable, or the probability conventions."""
        return INPUT_PATHS[self.inputs]

    @property
    def columns(self) -> list[str]:
        """The per-row loss columns: ``<path>_<dtype>`` then ``reference``."""
        return [f"{p}_{d}" for p in self.paths for d in self.dtypes] + ["reference"]

    def check_source(
        self,
        task: str,
        n_classes: int,
        *,
        weighting_applies: bool,
        options: str = WEIGHTING_OPTIONS,
        noun: str = "inputs",
    ) -> None:
        """The checks against the input: ValueError with one sentence.

        ``weighting_applies``: whether PyTorch's label smoothing and class weights apply to
        the input's family (:attr:`cecheck.families.Family.weighting`). ``options`` and
        ``noun`` word the error as the caller names the options.
        """
        check_weighting(self.weighted, task, weighting_applies, options=options, noun=noun)
        if self.class_weights is not None and len(self.class_weights) != n_classes:
            raise ValueError(
                f"expected {n_classes} class weights (one per class), got {len(self.class_weights)}"
            )


def check_weighting(
    wanted: bool, task: str, applies: bool, *, options: str = WEIGHTING_OPTIONS, noun: str
) -> None:
    """ValueError if label smoothing or class weights are ``wanted`` where they do not apply."""
    if wanted and not applies:
        raise ValueError(
            f"{options} apply to multiclass {noun} (PyTorch's cross_entropy), not to this "
            f"{task} input"
        )


def check_label_smoothing(eps: float) -> float:
    """``eps`` as a float if ``0 <= eps <= 1`` (PyTorch's own check); ValueError otherwise."""
    value = float(eps)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"label smoothing must be between 0 and 1, got {eps}")
    return value
