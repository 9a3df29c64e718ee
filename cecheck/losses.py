"""Per-row cross-entropy losses along three paths, as pure vectorised numpy functions.

Paths
-----
``naive``
    The textbook formula with no guard at all: softmax or sigmoid first, then
    ``-sum t * log(p)``. It reproduces what people hit: exp overflow, log(0) = -inf and
    0 * log(0) = NaN.
``stable``
    What the frameworks do: shift by the row max, log-sum-exp, minus the target logit;
    binary ``max(z, 0) - t*z + log1p(exp(-|z|))``.
``reference``
    Accurate in float64 wherever the exact loss is a normal float64, including confident
    rows where ``stable`` returns exactly 0. It writes every loss as a sum of non-negative
    terms, using ``log1p`` for the part that is near zero (Blanchard, Higham & Higham,
    "Accurately computing the log-sum-exp and softmax functions", IMA J. Numer. Anal. 41,
    2021, doi:10.1093/imanum/draa038).

``naive`` and ``stable`` take a :class:`~cecheck.precision.Precision`; every elementary step is
rounded to it (see :mod:`cecheck.precision` for how float16 and bfloat16 are emulated).
Each returns a :class:`PathResult`: the losses and the evidence of what went wrong inside,
read off the intermediate values the path really computed.

Label conventions: ``index`` labels are valid class numbers (the engine masks ignored and
out-of-range rows before calling); ``soft`` labels are (N, C) probability rows; binary
targets are 0/1 or soft in [0, 1]; ``multilabel`` targets are (N, C) in [0, 1], and a row's loss
is the mean over classes of the per-class binary loss (as ``MultiLabelSoftMarginLoss``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cecheck.precision import Precision

Array = npt.NDArray


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


# The evidence fields of a PathResult, each the name of a cause.
EVIDENCE = ("exp_overflow", "prob_underflow", "sigmoid_saturated", "zero_times_inf")


def family(task: str, label_form: str) -> str:
    """The family of functions here for a task and label form: index, soft, binary or
    multilabel."""
    if task == "multiclass":
        return "index" if label_form == "index" else "soft"
    return task


def negate(x: Array) -> Array:
    """``-x`` with +0 for a zero, so that a certain row's loss prints as 0, not -0."""
    return 0 - x


def _rows(n: int) -> Array:
    return np.arange(n)


# ----------------------------------------------------------------------------- multiclass


def naive_multiclass(z: Array, y: Array, p: Precision) -> PathResult:
    """``-log(softmax(z)[y])`` with the softmax computed as ``exp(z) / sum(exp(z))``."""
    r = p.round
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # the failures we show
        e = r(np.exp(p.cast(z)))
        s = r(e.sum(axis=1))
        prob = r(e[_rows(len(y)), y] / s)
        loss = negate(r(np.log(prob)))
    return PathResult(loss, exp_overflow=np.isinf(e).any(axis=1), prob_underflow=prob == 0)


def stable_multiclass(z: Array, y: Array, p: Precision) -> PathResult:
    """``log(sum(exp(z - max))) - (z[y] - max)``, as log_softmax followed by NLL."""
    r = p.round
    # over: a value beyond the format's range rounds to inf, as the format would store it;
    # invalid: inf - inf for a non-finite input row
    with np.errstate(over="ignore", invalid="ignore"):
        zc = p.cast(z)
        d = r(zc - zc.max(axis=1, keepdims=True))
        lse = r(np.log(r(r(np.exp(d)).sum(axis=1))))
        loss = r(lse - d[_rows(len(y)), y])
    return PathResult(loss)


def naive_soft(z: Array, t: Array, p: Precision) -> PathResult:
    """``-sum(t * log(softmax(z)))`` with the softmax computed first."""
    r = p.round
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        tc = p.cast(t)
        e = r(np.exp(p.cast(z)))
        prob = r(e / r(e.sum(axis=1, keepdims=True)))
        logp = r(np.log(prob))
        loss = negate(r(r(tc * logp).sum(axis=1)))
    return PathResult(
        loss,
        exp_overflow=np.isinf(e).any(axis=1),
        prob_underflow=((prob == 0) & (tc > 0)).any(axis=1),
        zero_times_inf=((tc == 0) & np.isinf(logp)).any(axis=1),
    )


def stable_soft(z: Array, t: Array, p: Precision) -> PathResult:
    """``-sum(t * log_softmax(z))`` with the max-shifted log-sum-exp."""
    r = p.round
    with np.errstate(over="ignore", invalid="ignore"):  # as in stable_multiclass
        zc, tc = p.cast(z), p.cast(t)
        d = r(zc - zc.max(axis=1, keepdims=True))
        lse = r(np.log(r(r(np.exp(d)).sum(axis=1, keepdims=True))))
        loss = negate(r(r(tc * r(d - lse)).sum(axis=1)))
    return PathResult(loss)


def reference_multiclass(z: Array, y: Array) -> Array:
    """Accurate ``lse(z) - z[y]`` in float64, as ``(m - z[y]) + log1p(sum_{j != k} exp(z_j - m))``.

    ``k`` is the position of the row max. Both terms are non-negative, so nothing cancels,
    and ``log1p`` keeps full relative accuracy when the target holds the max and the loss
    is tiny (logits [30, 0], target 0: 9.3576229688397368e-14, where ``stable`` gives 0).
    """
    z = np.asarray(z, dtype=np.float64)
    rows = _rows(len(y))
    m, l1 = _max_and_log1p_rest(z)
    with np.errstate(invalid="ignore"):
        return (m - z[rows, y]) + l1


def reference_soft(z: Array, t: Array) -> Array:
    """Accurate ``sum_i t_i (lse(z) - z_i)``, as ``sum_i t_i (m - z_i) + log1p(...) sum_i t_i``."""
    z = np.asarray(z, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    m, l1 = _max_and_log1p_rest(z)
    with np.errstate(invalid="ignore"):
        return (t * (m[:, None] - z)).sum(axis=1) + l1 * t.sum(axis=1)


def _max_and_log1p_rest(z: Array) -> tuple[Array, Array]:
    """Row max ``m`` and ``log1p(sum over j != argmax of exp(z_j - m))``, so lse = m + that."""
    _, m, rest = max_and_rest(z)
    return m, np.log1p(rest)


def max_and_rest(z: Array) -> tuple[Array, Array, Array]:
    """Per row of float64 ``z``: the argmax ``k``, the max ``m`` and the sum over the other
    classes of ``exp(z_j - m)`` (a tie for the max counts as 1)."""
    rows = _rows(z.shape[0])
    k = np.argmax(z, axis=1)
    m = z[rows, k]
    # invalid: inf - inf on a non-finite row gives NaN, as it should; over: z - m overflows
    # to -inf for logits near -+1e308 (-1e308 - 1e308), whose exp is 0, the right term
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(z - m[:, None])
    e[rows, k] = 0.0
    return k, m, e.sum(axis=1)


# ------------------------------------------------------------------ binary and multilabel


def _naive_sigmoid_bce(z: Array, t: Array, p: Precision) -> tuple[Array, dict[str, Array]]:
    """Elementwise ``-(t log(sigmoid z) + (1-t) log(1 - sigmoid z))``, sigmoid = 1/(1+exp(-z))."""
    r = p.round
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        zc, tc = p.cast(z), p.cast(t)
        en = r(np.exp(-zc))
        prob = r(1 / r(1 + en))
        log_p = r(np.log(prob))
        log_q = r(np.log(r(1 - prob)))
        one_minus_t = r(1 - tc)
        loss = negate(r(r(tc * log_p) + r(one_minus_t * log_q)))
    evidence = {
        "exp_overflow": np.isinf(en),
        "sigmoid_saturated": (prob == 0) | (prob == 1),
        "zero_times_inf": ((tc == 0) & np.isinf(log_p)) | ((one_minus_t == 0) & np.isinf(log_q)),
    }
    return loss, evidence


def _stable_sigmoid_bce(z: Array, t: Array, p: Precision) -> Array:
    """Elementwise ``max(z, 0) - t*z + log1p(exp(-|z|))``."""
    r = p.round
    # over: a value beyond the format's range rounds to inf; invalid: inf - inf for an
    # infinite logit
    with np.errstate(over="ignore", invalid="ignore"):
        zc, tc = p.cast(z), p.cast(t)
        return r(r(np.maximum(zc, 0) - r(tc * zc)) + r(np.log1p(r(np.exp(-np.abs(zc))))))


def _softplus(x: Array) -> Array:
    """``log(1 + exp(x))`` accurate for every x: ``max(x, 0) + log1p(exp(-|x|))``."""
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _reference_sigmoid_bce(z: Array, t: Array) -> Array:
    """Elementwise ``(1 - t) softplus(z) + t softplus(-z)``: two non-negative terms."""
    z = np.asarray(z, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # 0 * inf for an infinite logit
        return (1 - t) * _softplus(z) + t * _softplus(-z)


def naive_binary(z: Array, t: Array, p: Precision) -> PathResult:
    """Binary cross-entropy of one logit per row, sigmoid first."""
    loss, ev = _naive_sigmoid_bce(z, t, p)
    return PathResult(loss, **ev)


def stable_binary(z: Array, t: Array, p: Precision) -> PathResult:
    """Binary cross-entropy with logits, as PyTorch's ``binary_cross_entropy_with_logits``."""
    return PathResult(_stable_sigmoid_bce(z, t, p))


def reference_binary(z: Array, t: Array) -> Array:
    """Accurate binary cross-entropy with logits in float64."""
    return _reference_sigmoid_bce(z, t)


def _class_mean(x: Array, p: Precision) -> Array:
    """The mean over classes (axis 1), the sum and the division each rounded to ``p``."""
    with np.errstate(over="ignore", invalid="ignore"):  # a sum beyond the format's range: inf
        return p.round(p.round(x.sum(axis=1)) / x.shape[1])


def naive_multilabel(z: Array, t: Array, p: Precision) -> PathResult:
    """Mean over classes of the naive binary loss of each (logit, target) pair."""
    loss, ev = _naive_sigmoid_bce(z, t, p)
    per_row: dict[str, Array] = {k: np.asarray(v.any(axis=1)) for k, v in ev.items()}
    return PathResult(_class_mean(loss, p), **per_row)


def stable_multilabel(z: Array, t: Array, p: Precision) -> PathResult:
    """Mean over classes of the stable binary loss, as ``MultiLabelSoftMarginLoss``."""
    return PathResult(_class_mean(_stable_sigmoid_bce(z, t, p), p))


def reference_multilabel(z: Array, t: Array) -> Array:
    """Accurate mean over classes of the binary loss, in float64."""
    return _reference_sigmoid_bce(z, t).mean(axis=1)


# The (naive, stable, reference) functions of each family (see family()).
Family = tuple[Callable[..., PathResult], Callable[..., PathResult], Callable[..., Array]]
PATHS: dict[str, Family] = {
    "index": (naive_multiclass, stable_multiclass, reference_multiclass),
    "soft": (naive_soft, stable_soft, reference_soft),
    "binary": (naive_binary, stable_binary, reference_binary),
    "multilabel": (naive_multilabel, stable_multilabel, reference_multilabel),
}
