"""Per-row cross-entropy losses along the ``textbook`` and ``reference`` paths, as pure
vectorised numpy functions.

Paths
-----
``textbook``
    The textbook formula with no guard at all: the unshifted softmax ``exp(z) / Σ exp(z)``
    or the sigmoid ``1 / (1 + exp(-z))`` first, then ``-Σ t · log(p)``: the seeds' formula
    and raw numpy code. It reproduces what they hit: exp overflow, log(0) = -inf and
    0 · log(0) = NaN.
``reference``
    Accurate in float64 wherever the exact loss is a normal float64, including confident
    rows where a framework's fused loss returns exactly 0. It writes every loss as a sum of
    non-negative terms, using ``log1p`` for the part that is near zero (Blanchard, Higham &
    Higham, "Accurately computing the log-sum-exp and softmax functions", IMA J. Numer.
    Anal. 41, 2021, doi:10.1093/imanum/draa038).

The ``naive`` and ``stable`` paths are a framework's (its softmax-then-log and its fused
loss): :mod:`cecheck.frameworks.registry` gives them, in the same style.

``textbook`` takes a :class:`~cecheck.precision.Precision`; every elementary step is
rounded to it (see :mod:`cecheck.precision` for how float16 and bfloat16 are emulated).
Each returns a :class:`PathResult`: the losses and the evidence of what went wrong inside,
read off the intermediate values the path really computed.

Recording
---------
Each function takes an optional :class:`Recorder`, which receives every elementary step (its
name, formula and value) as the function computes it: :mod:`cecheck.trace` walks a row
through these very functions. Without one (the engine), the default :func:`ignore` returns
each value as it is: a function call per step and chunk.

Memory
------
The engine calls these functions on chunks sized to a memory budget, so a recorded step
must not outlive its use: an ``(N, C)`` temporary is dropped (``del``) as soon as the next
step has used it, and where numpy writes an operation's result into a temporary operand
(``a + b`` with ``b`` a temporary), the steps stay nested in one expression. The peak
memory of each function is the same as without the recording steps.

Label conventions: ``index`` labels are valid class numbers (the engine masks ignored and
out-of-range rows before calling); ``soft`` labels are (N, C) probability rows; binary
targets are 0/1 or soft in [0, 1]; ``multilabel`` targets are (N, C) in [0, 1], and a row's loss
is the mean over classes of the per-class binary loss (as ``MultiLabelSoftMarginLoss``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from cecheck.arraytypes import Array
from cecheck.precision import Precision, widen


@dataclass
class PathResult:
    """One path's losses for a chunk, with per-row evidence of the mechanism behind a failure.

    Each evidence array is boolean, one entry per row, or None where the path cannot
    produce that event.
    """

    loss: Array
    exp_overflow: Array | None = None  # an exp gave inf
    prob_underflow: Array | None = None  # a target probability rounded to 0
    sigmoid_saturated: Array | None = None  # a sigmoid rounded to exactly 0 or 1
    zero_times_inf: Array | None = None  # a zero label multiplied log(0) = -inf
    sum_overflow: Array | None = None  # a sum over classes of finite terms went inf
    cancellation: Array | None = None  # a final subtraction lost half the significand or more


# The evidence fields of a PathResult, each the name of a cause.
EVIDENCE = (
    "exp_overflow",
    "prob_underflow",
    "sigmoid_saturated",
    "zero_times_inf",
    "sum_overflow",
    "cancellation",
)


class Recorder(Protocol):
    """What a loss function tells about each elementary step as it computes it.

    Called with the step's name (a stable identifier: ``"exp"``, ``"sum"``, ``"loss"``), its
    formula as a person reads it (a :meth:`str.format` template when ``fields`` are given,
    such as ``"max = z[{k}]"`` with ``k`` the argmax), and its value: per class ``(N, C)`` or
    one per row ``(N,)``, in the dtype of the path (its name is in the ``"z as ..."`` step).
    ``shown=False`` marks an operand that is not a step of its own (``exp(-z)`` inside the
    sigmoid) but that an explanation may need. Returns ``value`` unchanged.
    :mod:`cecheck.trace` records one row this way; the engine passes no recorder
    (:func:`ignore`), which costs a function call per step and chunk.
    """

    def __call__(
        self, name: str, formula: str, value: Array, *, shown: bool = True, **fields: Any
    ) -> Array: ...


def ignore(name: str, formula: str, value: Array, *, shown: bool = True, **fields: Any) -> Array:
    """The recorder of an unrecorded call: ``value``, nothing kept."""
    return value


def negate(x: Array) -> Array:
    """``-x`` with +0 for a zero, so that a certain row's loss prints as 0, not -0."""
    return 0 - x


def _rows(n: int) -> Array:
    return np.arange(n)


# ----------------------------------------------------------------------------- multiclass


def textbook_multiclass(z: Array, y: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """``-log(softmax(z)[y])`` with the softmax computed as ``exp(z) / sum(exp(z))``."""
    r = p.round
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # the failures we show
        e = rec("exp", "exp(z)", r(np.exp(rec("z", f"z as {p.name}", p.cast(z)))))
        s = rec("sum", "Σ exp(z)", r(e.sum(axis=1)))
        prob = rec("p", "p = exp(z_y) / Σ", r(e[_rows(len(y)), y] / s))
        loss = rec("loss", "loss = -log p", negate(rec("log_p", "log p", r(np.log(prob)))))
    return PathResult(loss, exp_overflow=np.any(np.isinf(e), axis=1), prob_underflow=prob == 0)


def textbook_soft(z: Array, t: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """``-sum(t * log(softmax(z)))`` with the softmax computed first."""
    r = p.round
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        tc = rec("t", f"t as {p.name}", p.cast(t), shown=False)
        e = rec("exp", "exp(z)", r(np.exp(rec("z", f"z as {p.name}", p.cast(z)))))
        s = r(e.sum(axis=1, keepdims=True))
        rec("sum", "Σ exp(z)", s[:, 0])
        prob = rec("p", "p = exp(z) / Σ", r(e / s))
        del s
        log_p = rec("log_p", "log p", r(np.log(prob)))
        t_log_p = rec("t_log_p", "t · log p", r(tc * log_p))
        total = rec("sum_t_log_p", "Σ t · log p", r(t_log_p.sum(axis=1)))
        del t_log_p  # see Memory in the module docstring
        loss = rec("loss", "loss = -Σ t · log p", negate(total))
    return PathResult(
        loss,
        exp_overflow=np.any(np.isinf(e), axis=1),
        prob_underflow=((prob == 0) & (tc > 0)).any(axis=1),
        zero_times_inf=((tc == 0) & np.isinf(log_p)).any(axis=1),
    )


def reference_multiclass(z: Array, y: Array, rec: Recorder = ignore) -> Array:
    """Accurate ``lse(z) - z[y]`` in float64, as ``(m - z[y]) + log1p(sum_{j != k} exp(z_j - m))``.

    ``k`` is the position of the row max. Both terms are non-negative, so nothing cancels,
    and ``log1p`` keeps full relative accuracy when the target holds the max and the loss
    is tiny (logits [30, 0], target 0: 9.3576229688397368e-14, where a fused loss gives 0).
    """
    z = rec("z", "z as float64", widen(z))
    m, l1 = _max_and_log1p_rest(z, rec)
    with np.errstate(invalid="ignore", over="ignore"):  # past float64's range: inf, exactly
        gap = rec("gap", "max - z_y", m - z[_rows(len(y)), y])
        return rec("loss", "loss = (max - z_y) + log1p", gap + l1)


def reference_soft(z: Array, t: Array, rec: Recorder = ignore) -> Array:
    """Accurate ``sum_i t_i (lse(z) - z_i)``, as ``sum_i t_i (m - z_i) + log1p(...) sum_i t_i``.

    A class with ``t_i = 0`` adds 0, even when it is masked (``z_i = -inf``, where
    ``t_i (m - z_i)`` would be ``0 * inf``): the convention ``0 log 0 = 0`` of optax's
    ``safe_softmax_cross_entropy`` (logits [-inf, 0, 0], targets [0, 0.5, 0.5]: log 2).
    """
    z = rec("z", "z as float64", widen(z))
    t = np.asarray(t, dtype=np.float64)
    m, l1 = _max_and_log1p_rest(z, rec)
    with np.errstate(invalid="ignore", over="ignore"):  # past float64's range: inf, exactly
        weighted = np.where(t == 0, 0.0, t * (m[:, None] - z))
        gaps = rec("gaps", "Σ t · (max - z)", weighted.sum(axis=1))
        del weighted
        mass = rec("mass", "Σ t", t.sum(axis=1))
        return rec("loss", "loss = Σ t · (max - z) + log1p · Σ t", gaps + l1 * mass)


def _max_and_log1p_rest(z: Array, rec: Recorder) -> tuple[Array, Array]:
    """Row max ``m`` and ``log1p(sum over j != argmax of exp(z_j - m))``, so lse = m + that."""
    k, m, rest = max_and_rest(z)
    rec("max", "max = z[{k}]", m, k=k)
    rec("rest", "Σ exp(z - max), all but class {k}", rest, k=k)
    return m, rec("log1p", "log1p(that)", np.log1p(rest))


# A row whose rest (the sum of exp(z_j - m) over j != argmax) is below this has every term
# below it too, many perhaps subnormal (a 262,144-class vocabulary whose target leads by
# 720: each term is ~1e-313, rounded to a multiple of 2**-1074, up to 1e-11 off): its terms
# are recomputed times 2**RESCALE_BITS, where they are normal, and the sum scaled back.
RESCALE_BELOW = 2.0**-1000
RESCALE_BITS = 600
_RESCALE_SHIFT = RESCALE_BITS * float(np.log(2.0))  # 415.89 (its rounding: 6e-14 relative)


def max_and_rest(z: Array) -> tuple[Array, Array, Array]:
    """Per row of float64 ``z``: the argmax ``k``, the max ``m`` and the sum over the other
    classes of ``exp(z_j - m)`` (a tie for the max counts as 1).

    A row whose sum is below :data:`RESCALE_BELOW` is summed again with every term scaled
    by ``2**RESCALE_BITS`` (``exp(z_j - m + 600 ln 2)``, normal numbers) and the sum scaled
    back exactly (``ldexp``): within 1e-13 relative wherever the sum is a normal float64.
    """
    rows = _rows(z.shape[0])
    k = np.argmax(z, axis=1)
    m = z[rows, k]
    # invalid: inf - inf on a non-finite row gives NaN, as it should; over: z - m overflows
    # to -inf for logits near -+1e308 (-1e308 - 1e308), whose exp is 0, the right term
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(z - m[:, None])
    e[rows, k] = 0.0
    rest = e.sum(axis=1)
    del e
    tiny = np.flatnonzero(rest < RESCALE_BELOW)  # NaN compares False: not rescaled
    if tiny.size:
        with np.errstate(invalid="ignore", over="ignore"):  # as above
            scaled = np.exp((z[tiny] - m[tiny, None]) + _RESCALE_SHIFT)
        scaled[_rows(tiny.size), k[tiny]] = 0.0
        rest[tiny] = np.ldexp(scaled.sum(axis=1), -RESCALE_BITS)
    return k, m, rest


# ------------------------------------------------------------------ binary and multilabel


def _loss_name(z: Array) -> str:
    """A binary row's loss is the row's; a multilabel class's loss is one of its terms."""
    return "loss" if z.ndim == 1 else "class_loss"


def _textbook_sigmoid_bce(
    z: Array, t: Array, p: Precision, rec: Recorder
) -> tuple[Array, dict[str, Array]]:
    """Elementwise ``-(t log(sigmoid z) + (1-t) log(1 - sigmoid z))``, sigmoid = 1/(1+exp(-z))."""
    r = p.round
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        zc = rec("z", f"z as {p.name}", p.cast(z))
        tc = rec("t", f"t as {p.name}", p.cast(t), shown=False)
        en = rec("exp_neg", "exp(-z)", r(np.exp(-zc)), shown=False)
        prob = rec("sigmoid", "s = sigmoid(z) = 1 / (1 + exp(-z))", r(1 / r(1 + en)))
        q = rec("one_minus_sigmoid", "1 - s", r(1 - prob))
        log_p = rec("log_sigmoid", "log s", r(np.log(prob)))
        log_q = rec("log_one_minus_sigmoid", "log(1 - s)", r(np.log(q)))
        del q  # see Memory in the module docstring
        one_minus_t = r(1 - tc)
        # one expression: see Memory in the module docstring
        loss = rec(
            _loss_name(z),
            "loss = -sum",
            negate(
                rec(
                    "sum",
                    "t · log s + (1 - t) · log(1 - s)",
                    r(
                        rec("t_log_sigmoid", "t · log s", r(tc * log_p))
                        + rec("one_minus_t_log", "(1 - t) · log(1 - s)", r(one_minus_t * log_q))
                    ),
                )
            ),
        )
    evidence = {
        "exp_overflow": np.isinf(en),
        "sigmoid_saturated": (prob == 0) | (prob == 1),
        "zero_times_inf": ((tc == 0) & np.isinf(log_p)) | ((one_minus_t == 0) & np.isinf(log_q)),
    }
    return loss, evidence


def _reference_sigmoid_bce(z: Array, t: Array, rec: Recorder) -> Array:
    """Elementwise ``(1 - t) softplus(z) + t softplus(-z)``: two non-negative terms.

    ``softplus(x) = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))``, accurate for every x;
    ``softplus(z)`` and ``softplus(-z)`` share the ``log1p`` term.
    """
    z = rec("z", "z as float64", widen(z))
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # 0 * inf for an infinite logit
        log1p = rec("log1p", "log1p(exp(-|z|))", np.log1p(np.exp(-np.abs(z))))
        sp = rec("softplus", "softplus(z) = max(z, 0) + log1p", np.maximum(z, 0) + log1p)
        sn = rec("softplus_neg", "softplus(-z) = max(-z, 0) + log1p", np.maximum(-z, 0) + log1p)
        loss = (1 - t) * sp + t * sn
    return rec(_loss_name(z), "(1 - t) · softplus(z) + t · softplus(-z)", loss)


def textbook_binary(z: Array, t: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """Binary cross-entropy of one logit per row, sigmoid first."""
    loss, ev = _textbook_sigmoid_bce(z, t, p, rec)
    return PathResult(loss, **ev)


def reference_binary(z: Array, t: Array, rec: Recorder = ignore) -> Array:
    """Accurate binary cross-entropy with logits in float64."""
    return _reference_sigmoid_bce(z, t, rec)


def _class_mean(x: Array, p: Precision, rec: Recorder) -> Array:
    """The mean over classes (axis 1), the sum and the division each rounded to ``p``."""
    with np.errstate(over="ignore", invalid="ignore"):  # a sum beyond the format's range: inf
        total = rec("sum_classes", "Σ over classes", p.round(x.sum(axis=1)))
        return rec("loss", f"loss = Σ / {x.shape[1]}", p.round(total / x.shape[1]))


def textbook_multilabel(z: Array, t: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """Mean over classes of the textbook binary loss of each (logit, target) pair."""
    loss, ev = _textbook_sigmoid_bce(z, t, p, rec)
    per_row: dict[str, Array] = {k: np.asarray(v.any(axis=1)) for k, v in ev.items()}
    return PathResult(_class_mean(loss, p, rec), **per_row)


def reference_multilabel(z: Array, t: Array, rec: Recorder = ignore) -> Array:
    """Accurate mean over classes of the binary loss, in float64."""
    loss = _reference_sigmoid_bce(z, t, rec)
    return rec("loss", f"loss = mean over {loss.shape[1]} classes", loss.mean(axis=1))


# The (textbook, reference) functions of each kind of loss; cecheck.families names the
# kind of each task and label form.
Family = tuple[Callable[..., PathResult], Callable[..., Array]]
PATHS: dict[str, Family] = {
    "index": (textbook_multiclass, reference_multiclass),
    "soft": (textbook_soft, reference_soft),
    "binary": (textbook_binary, reference_binary),
    "multilabel": (textbook_multilabel, reference_multilabel),
}
