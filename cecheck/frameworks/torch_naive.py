"""The ``naive`` paths for PyTorch: probabilities first, the way PyTorch users write a loss by
hand, emulated as torch 2.13's CPU kernels compute it, row by row (``reduction="none"``).

==============  ============================================================================
family          the user's code
==============  ============================================================================
index           ``F.nll_loss(torch.log(torch.softmax(z, -1)), y, weight, ignore_index=...)``,
                i.e. ``-torch.log(torch.softmax(z, -1))[range(N), y]`` without weights
soft            ``-(t * torch.log(torch.softmax(z, -1))).sum(-1)`` (one-hot or soft ``t``)
binary          ``F.binary_cross_entropy(torch.sigmoid(z), t, reduction="none")``
multilabel      the same, then ``.mean(-1)`` over the classes
==============  ============================================================================

``torch.softmax`` subtracts the row max, so it never overflows. These paths fail when the
target's probability rounds to 0 (``log 0 = -inf``: an infinite loss) or, with one-hot and soft
targets, through ``0 · log 0 = NaN`` on a class whose probability underflowed. The sigmoid
saturates at 0 or 1 instead, and ``binary_cross_entropy`` clamps each log at -100, so a
saturated row costs exactly 100 (or 50 at ``t = 0.5``), never inf.

Sources (pytorch/pytorch, read for 2.13; see :mod:`~cecheck.frameworks.torch_common` for
softmax, ``nll_loss``, ``sum`` and ``mean``):

- ``aten/src/ATen/native/cpu/UnaryOpsKernel.cpp``, ``sigmoid_kernel``: ``1 / (1 + exp(-z))``;
  float16/bfloat16 in float32, rounded once (the float32 ``exp(-z)`` does not overflow where
  the narrow format's would). ``log`` (``log_kernel`` via ``Vectorized::log``): float32 log of
  the reduced value, rounded once.
- ``aten/src/ATen/native/Loss.cpp``, ``binary_cross_entropy_out_cpu``: per element, in
  ``scalar_t`` arithmetic (every operation rounded to the format),
  ``(t - 1) · max(log1p(-s), -100) - t · max(log(s), -100)``.
"""

from __future__ import annotations

import numpy as np

from cecheck.frameworks.torch_common import (
    IGNORE_INDEX,
    TorchPathResult,
    any_class,
    class_mean,
    class_sum,
    elementary,
    gather,
    nll,
    softmax,
)
from cecheck.losses import Recorder, ignore
from cecheck.precision import Precision

Array = np.ndarray

LOG_CLAMP = -100.0  # binary_cross_entropy clamps each log at -100


def _log_softmax_naive(z: Array, p: Precision, rec: Recorder) -> tuple[Array, Array]:
    """``torch.log(torch.softmax(z, -1))``: the probabilities and their logs, each rounded."""
    prob = softmax(rec("z", f"z as {p.name}", p.cast(z)), p, rec)
    with np.errstate(divide="ignore"):  # log 0 = -inf: the failure this path shows
        return prob, rec("log_p", "log p", p.round(elementary(np.log, prob)))


def naive_index(
    z: Array,
    y: Array,
    p: Precision,
    rec: Recorder = ignore,
    *,
    weight: Array | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> TorchPathResult:
    """``F.nll_loss(torch.log(torch.softmax(z, -1)), y, weight, ignore_index=...,
    reduction="none")``: inf where the target's probability rounds to 0.

    >>> from cecheck.precision import get
    >>> naive_index(np.array([[0.0, 20.0]]), np.array([0]), get("float16")).loss
    array([inf], dtype=float32)
    """
    y = np.asarray(y)
    prob, log_p = _log_softmax_naive(z, p, rec)
    loss = rec("loss", "loss = -log p_y", nll(log_p, y, p, rec, weight, ignore_index))
    return TorchPathResult(loss, prob_underflow=(gather(prob, y) == 0) & (y != ignore_index))


def naive_soft(z: Array, t: Array, p: Precision, rec: Recorder = ignore) -> TorchPathResult:
    """``-(t * torch.log(torch.softmax(z, -1))).sum(-1)``: ``0 · log 0 = NaN`` on a class whose
    probability underflowed, inf where a class with target mass did."""
    tc = rec("t", f"t as {p.name}", p.cast(t), shown=False)
    prob, log_p = _log_softmax_naive(z, p, rec)
    with np.errstate(invalid="ignore"):  # 0 · -inf = NaN: the failure this path shows
        t_log_p = rec("t_log_p", "t · log p", p.round(tc * log_p))
    total = rec("sum_t_log_p", "Σ t · log p", class_sum(t_log_p, p))
    del t_log_p
    return TorchPathResult(
        rec("loss", "loss = -Σ t · log p", 0 - total),
        prob_underflow=any_class((prob == 0) & (tc > 0)),
        zero_times_inf=any_class((tc == 0) & np.isinf(log_p)),
    )


def _bce_of_sigmoid(z: Array, t: Array, p: Precision, rec: Recorder) -> tuple[Array, Array]:
    """Elementwise ``F.binary_cross_entropy(torch.sigmoid(z), t)`` and where the sigmoid
    saturated (rounded to exactly 0 or 1)."""
    r = p.round
    zc = rec("z", f"z as {p.name}", p.cast(z))
    tc = rec("t", f"t as {p.name}", p.cast(t), shown=False)
    with np.errstate(over="ignore"):  # exp(-z) = inf for z < -88.7: the sigmoid is then 0
        en = rec("exp_neg", "exp(-z)", elementary(np.exp, -zc), shown=False)
    s = rec("sigmoid", "s = sigmoid(z) = 1 / (1 + exp(-z))", r(1 / (1 + en)))
    del en
    with np.errstate(divide="ignore"):  # log 0 = -inf, then clamped at -100
        log_q = rec(
            "log_one_minus_sigmoid",
            "max(log1p(-s), -100)",
            np.maximum(r(elementary(np.log1p, -s)), LOG_CLAMP),
        )
        log_s = rec(
            "log_sigmoid", "max(log s, -100)", np.maximum(r(elementary(np.log, s)), LOG_CLAMP)
        )
    neg_part = rec("one_minus_t_log", "(t - 1) · max(log1p(-s), -100)", r(r(tc - 1) * log_q))
    pos_part = rec("t_log_sigmoid", "t · max(log s, -100)", r(tc * log_s))
    name = "loss" if z.ndim == 1 else "class_loss"
    loss = rec(name, "loss = (t - 1) · log(1 - s) - t · log s", r(neg_part - pos_part))
    return loss, (s == 0) | (s == 1)


def naive_binary(z: Array, t: Array, p: Precision, rec: Recorder = ignore) -> TorchPathResult:
    """``F.binary_cross_entropy(torch.sigmoid(z), t, reduction="none")``: a saturated
    sigmoid costs 100 (its log clamped), never inf.

    >>> from cecheck.precision import get
    >>> naive_binary(np.array([-120.0]), np.array([1.0]), get("float32")).loss
    array([100.], dtype=float32)
    """
    loss, saturated = _bce_of_sigmoid(np.asarray(z), t, p, rec)
    return TorchPathResult(loss, sigmoid_saturated=saturated)


def naive_multilabel(z: Array, t: Array, p: Precision, rec: Recorder = ignore) -> TorchPathResult:
    """``F.binary_cross_entropy(torch.sigmoid(z), t, reduction="none").mean(-1)``."""
    loss, saturated = _bce_of_sigmoid(np.asarray(z), t, p, rec)
    return TorchPathResult(class_mean(loss, p, rec), sigmoid_saturated=any_class(saturated))
