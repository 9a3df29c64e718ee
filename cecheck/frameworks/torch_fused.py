"""The ``stable`` paths for PyTorch: its fused losses, emulated as torch 2.13's CPU kernels
compute them in each format, row by row (``reduction="none"``).

==============  ============================================================================
family          the call
==============  ============================================================================
index           ``F.cross_entropy(z, y, weight, ignore_index=..., label_smoothing=...)``
soft            ``F.cross_entropy(z, t, weight, label_smoothing=...)`` (probability targets)
binary          ``F.binary_cross_entropy_with_logits(z, t, pos_weight=...)``
multilabel      the same, then ``.mean(-1)`` over the classes (``BCEWithLogitsLoss`` per row)
==============  ============================================================================

Where these fail although they are "stable":

- Label smoothing (``LossNLL.cpp``, ``cross_entropy_loss_label_smoothing``) adds
  ``-Σ_c w_c log_softmax(z)_c`` over all classes in the input's format: in float16 a row with
  logits [0] + [-1e4] * 9 sums to -9e4, beyond 65504, so its loss is inf (``sum_overflow``); a
  ``-inf`` mask on any class makes it inf too (the smoothed target puts mass ``eps / C`` on a
  class of probability 0: ``prob_underflow``).
- Probability targets (``cross_entropy_loss_prob_target``) multiply ``t · log_softmax``
  before summing: a zero target on a ``-inf``-masked class is ``0 · -inf = NaN``
  (``zero_times_inf``).
- ``binary_cross_entropy_with_logits`` (``Loss.cpp``) computes
  ``(1 - t) · z - log_sigmoid(z)``: for ``t = 0`` and ``z < 0`` the two terms are both about
  ``z`` and cancel, so the loss is exactly 0 at z = -4.3 (bfloat16), -8 (float16), -15 (float32)
  where the true loss is 0.0135, 3.4e-4, 3.06e-7 (``cancellation``: the subtraction lost half
  the significand or more).

Sources (pytorch/pytorch, read for 2.13; see :mod:`~cecheck.frameworks.torch_common` for
``log_softmax``, ``nll_loss``, ``sum`` and ``mean``):

- ``aten/src/ATen/native/LossNLL.cpp``: ``cross_entropy_loss`` picks
  ``nll_loss(log_softmax(z), y, weight, ignore_index)`` for index targets without smoothing;
  ``cross_entropy_loss_label_smoothing``: ``(1 - eps) · nll + smooth · (eps / C)`` with
  ``smooth = -(log_softmax · w).sum(-1)`` (``-log_softmax.sum(-1)`` without weights), 0 on
  ignored rows; ``cross_entropy_loss_prob_target``: ``-(log_softmax · t' · w).sum(-1)`` with
  ``t' = t · (1 - eps) + eps / C``. Every operation is a tensor operation in the input's
  format. A Python float multiplying a tensor is used as float32 against float16, bfloat16
  and float32 tensors (``mul_kernel``: ``original_scalar_value<opmath_t>``), but one *added* to
  a tensor is first rounded to the tensor's format (the ``add`` ufunc reads the promoted
  scalar): ``t · 0.8 + 0.2 / 3`` in float16 adds ``float16(0.0667) = 0.06665``.
- ``aten/src/ATen/native/Loss.cpp``, ``binary_cross_entropy_with_logits``:
  ``log_weight = (pos_weight - 1) · t + 1``, ``loss = (1 - t) · z - log_sigmoid(z) · log_weight``.
- ``aten/src/ATen/native/cpu/Activation.cpp``, ``log_sigmoid_cpu_kernel``:
  ``min(z, 0) - log1p(exp(-|z|))``; float16/bfloat16 in float32, rounded once.
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
    log_softmax,
    nll,
    scalar,
    sum_overflow,
)
from cecheck.losses import Recorder, ignore
from cecheck.precision import Precision

Array = np.ndarray


def _weighted(lsm: Array, weight: Array | None, p: Precision, rec: Recorder) -> Array:
    """``log_softmax · w`` (broadcast over rows), rounded; ``log_softmax`` without weights."""
    if weight is None:
        return lsm
    with np.errstate(invalid="ignore"):  # -inf · 0 for a masked class of weight 0: NaN
        return rec("w_log_softmax", "w · log_softmax", p.round(lsm * p.cast(weight)[None, :]))


def stable_index(
    z: Array,
    y: Array,
    p: Precision,
    rec: Recorder = ignore,
    *,
    weight: Array | None = None,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
) -> TorchPathResult:
    """``F.cross_entropy(z, y, weight, ignore_index=..., label_smoothing=..., reduction="none")``
    for class-index targets.

    >>> from cecheck.precision import get
    >>> z = np.array([[0.0] + [-1e4] * 9])
    >>> stable_index(z, np.array([0]), get("float16"), label_smoothing=0.1).loss
    array([inf], dtype=float32)
    """
    y = np.asarray(y)
    lsm = log_softmax(rec("z", f"z as {p.name}", p.cast(z)), p, rec)
    loss = nll(lsm, y, p, rec, weight, ignore_index)
    if label_smoothing == 0:
        return TorchPathResult(rec("loss", "loss = -log_softmax_y · w_y", loss))
    r = p.round
    terms = _weighted(lsm, weight, p, rec)
    total = rec("sum_log_softmax", "Σ w · log_softmax", class_sum(terms, p))
    ignored = y == ignore_index
    smooth = rec("smooth", "smooth = -Σ w · log_softmax", np.where(ignored, 0, 0 - total))
    n = lsm.shape[1]
    with np.errstate(invalid="ignore"):  # inf - inf, NaN as torch gives it
        loss = rec(
            "loss",
            f"loss = (1 - {label_smoothing}) · nll + smooth · {label_smoothing} / {n}",
            r(
                r(scalar(1 - label_smoothing, p) * loss)
                + r(smooth * scalar(label_smoothing / n, p))
            ),
        )
    return TorchPathResult(
        loss,
        prob_underflow=any_class(np.isneginf(lsm)) & ~ignored,
        sum_overflow=sum_overflow(terms, total) & ~ignored,
    )


def stable_soft(
    z: Array,
    t: Array,
    p: Precision,
    rec: Recorder = ignore,
    *,
    weight: Array | None = None,
    label_smoothing: float = 0.0,
) -> TorchPathResult:
    """``F.cross_entropy(z, t, weight, label_smoothing=..., reduction="none")`` for
    probability (one-hot or soft) targets: ``-(log_softmax · t' · w).sum(-1)``.

    >>> from cecheck.precision import get
    >>> z, t = np.array([[1e8, -np.inf, 1e8]]), np.array([[0.5, 0.0, 0.5]])
    >>> stable_soft(z, t, get("float32")).loss  # 0 · -inf on the masked class
    array([nan], dtype=float32)
    """
    r = p.round
    tc = rec("t", f"t as {p.name}", p.cast(t), shown=False)
    n = tc.shape[1]
    if label_smoothing > 0:
        tc = rec(
            "t_smoothed",
            f"t · (1 - {label_smoothing}) + {label_smoothing} / {n}",
            r(r(tc * scalar(1 - label_smoothing, p)) + p.cast(label_smoothing / n)),
            shown=False,
        )
    lsm = log_softmax(rec("z", f"z as {p.name}", p.cast(z)), p, rec)
    with np.errstate(invalid="ignore"):  # 0 · -inf = NaN, as torch gives it
        terms = rec("t_log_softmax", "t · log_softmax", r(lsm * tc))
        if weight is not None:
            terms = rec("w_t_log_softmax", "t · log_softmax · w", r(terms * p.cast(weight)))
    total = rec("sum_t_log_softmax", "Σ t · log_softmax", class_sum(terms, p))
    return TorchPathResult(
        rec("loss", "loss = -Σ t · log_softmax", 0 - total),
        prob_underflow=any_class(np.isneginf(lsm) & (tc > 0)),
        zero_times_inf=any_class(np.isinf(lsm) & (tc == 0)),
        sum_overflow=sum_overflow(terms, total),
    )


def _bce_with_logits(
    z: Array, t: Array, p: Precision, rec: Recorder, pos_weight: Array | float | None
) -> tuple[Array, Array]:
    """Elementwise ``(1 - t) · z - log_sigmoid(z) · log_weight`` and where it cancelled."""
    r = p.round
    zc = rec("z", f"z as {p.name}", p.cast(z))
    tc = rec("t", f"t as {p.name}", p.cast(t), shown=False)
    exp = rec("exp", "exp(-|z|)", elementary(np.exp, -np.abs(zc)), shown=False)
    log_sig = rec(
        "log_sigmoid", "log_sigmoid(z) = min(z, 0) - log1p(exp(-|z|))",
        r(np.minimum(zc, 0) - elementary(np.log1p, exp)),
    )  # fmt: skip
    del exp
    if pos_weight is not None:
        pw = p.cast(pos_weight)
        log_weight = rec("log_weight", "(pos_weight - 1) · t + 1", r(r(r(pw - 1) * tc) + 1))
        log_sig = rec("weighted_log_sigmoid", "log_sigmoid · log_weight", r(log_sig * log_weight))
    linear = rec("linear", "(1 - t) · z", r(r(1 - tc) * zc))
    name = "loss" if zc.ndim == 1 else "class_loss"
    with np.errstate(invalid="ignore"):  # inf - inf for an infinite logit, NaN as torch
        loss = rec(name, "loss = (1 - t) · z - log_sigmoid", r(linear - log_sig))
        size = np.maximum(np.abs(linear), np.abs(log_sig))
        cancelled = (size > 0) & (np.abs(loss) * 2.0 ** (p.bits // 2) <= size)
    return loss, cancelled


def stable_binary(
    z: Array,
    t: Array,
    p: Precision,
    rec: Recorder = ignore,
    *,
    pos_weight: float | None = None,
) -> TorchPathResult:
    """``F.binary_cross_entropy_with_logits(z, t, pos_weight=..., reduction="none")``.

    >>> from cecheck.precision import get
    >>> stable_binary(np.array([-15.0]), np.array([0.0]), get("float32")).loss
    array([0.], dtype=float32)
    """
    loss, cancelled = _bce_with_logits(np.asarray(z), t, p, rec, pos_weight)
    return TorchPathResult(loss, cancellation=cancelled)


def stable_multilabel(
    z: Array,
    t: Array,
    p: Precision,
    rec: Recorder = ignore,
    *,
    pos_weight: Array | None = None,
) -> TorchPathResult:
    """``F.binary_cross_entropy_with_logits(z, t, pos_weight=..., reduction="none").mean(-1)``;
    ``pos_weight`` is one per class."""
    loss, cancelled = _bce_with_logits(np.asarray(z), t, p, rec, pos_weight)
    return TorchPathResult(class_mean(loss, p, rec), cancellation=any_class(cancelled))
