"""What the PyTorch emulations of :mod:`~cecheck.frameworks.torch_naive` and
:mod:`~cecheck.frameworks.torch_fused` share: the result type, the softmax and log_softmax
kernels, ``nll_loss`` and the reductions over classes. Pure numpy, no torch.

How a reduced format (float16, bfloat16) is computed on CPU
------------------------------------------------------------
PyTorch 2.13's CPU kernels convert float16 and bfloat16 operands to float32, compute in
float32 and round to the format once, where the kernel stores a tensor (or a scalar_t
variable). Here that is: the operation in ``p.work`` (float32 for the reduced formats), then
``p.round`` only at the points where torch stores its result. For float32 and float64
``p.round`` does nothing and numpy's own rounding of every operation is torch's.

Sources (pytorch/pytorch, read for 2.13):

- ``aten/src/ATen/native/cpu/LogSoftmaxKernelImpl.h``,
  ``serial_vec_log_softmax_lastdim_range``: ``max``; ``tmp_sum = Σ exp(x - max)`` accumulated
  in float32 (``map_reduce_all`` of ``ATen/cpu/vec/functional_bfloat16.h`` for the reduced
  formats) and stored as ``scalar_t`` (rounded); ``log(tmp_sum)`` stored as ``scalar_t``
  (rounded); output ``(x - max) - log_sum`` in float32, rounded once.
- ``aten/src/ATen/native/cpu/SoftMaxKernel.cpp``, ``_vec_softmax_lastdim``: ``max``;
  ``e = exp(x - max)`` and ``sum`` in float32 (kept in a float buffer for the reduced
  formats); ``inv = 1 / sum``; output ``e * inv`` rounded once (a product by the reciprocal,
  not a division).
- ``aten/src/ATen/native/LossNLL.cpp``, ``nll_loss_out_frame`` with ``reduction="none"``:
  ``-logp[y] * w[y]``, 0 for ``ignore_index``.
- ``aten/src/ATen/native/ReduceOps.cpp``: ``sum`` accumulates float16/bfloat16 in float32
  and rounds once; ``mean`` on CPU sums in float32 (reduced formats: not rounded), divides,
  then rounds once.

Order of the sums over classes: torch adds the classes in vector lanes (16 floats with
AVX512, 8 with AVX2) and then across lanes; numpy adds pairwise. For float16 and bfloat16
the float32 accumulation makes the order invisible after the one rounding (except a sum
within 2**-13 of a rounding boundary); for float32 and float64 the order changes the sum by
an ulp or so, and the exp/log of numpy and of torch's SLEEF differ by an ulp in places:
those two formats agree with torch to a few ``eps · max(1, |L|)``, not bit for bit. Rows are
independent of the thread count (each row is reduced by one thread), except a single row so
long that torch splits its sum across threads.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cecheck.arraytypes import Array
from cecheck.losses import PathResult, Recorder
from cecheck.precision import Precision

IGNORE_INDEX = -100  # torch's default ignore_index

# The width of torch's CPU vectors: 512 where it dispatches to AVX512 kernels
# (torch.backends.cpu.get_cpu_capability() == "AVX512"), 256 for AVX2. It sets the order of
# the float32 and float64 sums in softmax and log_softmax (see lane_sum).
VECTOR_BITS = 512


# The result type of the torch paths: a PathResult, whose ``sum_overflow`` and
# ``cancellation`` evidence only the fused losses produce.
TorchPathResult = PathResult


def scalar(value: float, p: Precision) -> np.generic:
    """A Python float as torch's CPU ``mul`` uses it against a tensor of ``p``: in the
    operation's compute type, unrounded to ``p`` (float32 for float16, bfloat16 and float32;
    float64). (``add`` rounds its scalar to ``p`` first: ``p.cast`` it instead.)"""
    typed: np.generic = p.work.type(value)
    return typed


def elementary(fn: Callable[[Array], Array], x: Array) -> Array:
    """``fn(x)`` (``np.exp``, ``np.log``, ``np.log1p``) as torch's CPU kernels give it.

    torch's float32 exp, log and log1p (SLEEF, within 1 ulp) are almost always the correctly
    rounded value; numpy's float32 ones are not (on 10**6 normal samples numpy's float32 exp
    differed from torch's on 39% of them, the float64 exp rounded to float32 on 1%). So a
    float32 argument is computed in float64 and rounded once to float32. A float64 argument
    uses numpy's float64 function: exp and log agreed with torch's on those samples, log1p
    differed by an ulp on 4% of them (and log does on some arguments below 1).
    """
    # over: a float64 result beyond float32's range is inf, as float32 gives it;
    # divide: log 0 = -inf, as torch gives it
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if x.dtype == np.float32:
            return fn(x.astype(np.float64)).astype(np.float32)
        return fn(x)


def lane_sum(x: Array) -> Array:
    """Per row of a float32 or float64 ``(N, C)`` array, ``Σ x`` in the order of torch's
    ``vec::reduce_all`` / ``map_reduce_all`` (``ATen/cpu/vec/functional_base.h``) with
    :data:`VECTOR_BITS`-wide vectors of ``L`` lanes.

    Fewer than ``L`` classes: left to right. Otherwise lane ``j`` accumulates classes
    ``j, j + L, j + 2L, ...`` in order (the last, partial vector into the first lanes), then
    the lanes are combined: float32 by the butterfly of ``VecReduceAllSIMD`` (lane ``i`` plus
    lane ``i ^ L/2``, then ``i ^ L/4``, ... ``i ^ 1``), float64 left to right.
    """
    c = x.shape[1]
    lanes = VECTOR_BITS // (8 * x.dtype.itemsize)
    if c < lanes:
        acc: Array = x[:, 0].copy()
        for j in range(1, c):
            acc += x[:, j]
        return acc
    acc = x[:, :lanes].copy()
    d = lanes
    while d + lanes <= c:
        acc += x[:, d : d + lanes]
        d += lanes
    acc[:, : c - d] += x[:, d:c]
    if x.dtype == np.float32:
        idx = np.arange(lanes)
        step = lanes // 2
        while step:
            acc = acc + acc[:, idx ^ step]
            step //= 2
        return acc[:, 0]
    total: Array = acc[:, 0].copy()
    for j in range(1, lanes):
        total += acc[:, j]
    return total


def row_sum(x: Array, p: Precision) -> Array:
    """``Σ exp(z - max)`` of the softmax kernels: the lane order of :func:`lane_sum` for
    float32 and float64; the reduced formats accumulate in float32 and round once, which
    makes the order invisible (numpy's pairwise sum stands in for it)."""
    if p.emulated:
        pairwise: Array = x.sum(axis=1)
        return pairwise
    return lane_sum(x)


def rows(n: int) -> Array:
    return np.arange(n)


def shifted(zc: Array, rec: Recorder) -> Array:
    """``z - max(z)`` per row, in the compute type (exact where the two are close)."""
    m = zc.max(axis=1, keepdims=True)
    rec("max", "max(z)", m[:, 0])
    return rec("shifted", "z - max", zc - m)


def log_softmax(zc: Array, p: Precision, rec: Recorder) -> Array:
    """``torch.log_softmax(z, -1)`` as its CPU kernel computes it (module docstring)."""
    r = p.round
    # invalid: inf - inf on a row whose max is infinite, NaN as torch gives it
    with np.errstate(over="ignore", invalid="ignore"):
        d = shifted(zc, rec)
        s = rec("sum", "Σ exp(z - max)", r(row_sum(elementary(np.exp, d), p)))
        lse = rec("lse", "lse = log Σ", r(elementary(np.log, s)))
        return rec("log_softmax", "log_softmax = (z - max) - lse", r(d - lse[:, None]))


def softmax(zc: Array, p: Precision, rec: Recorder) -> Array:
    """``torch.softmax(z, -1)`` as its CPU kernel computes it: ``exp(z - max) * (1 / Σ)``."""
    with np.errstate(over="ignore", invalid="ignore"):  # as in log_softmax
        e = rec("exp", "exp(z - max)", elementary(np.exp, shifted(zc, rec)))
        inv = rec("inv_sum", "1 / Σ exp(z - max)", 1 / row_sum(e, p))[:, None]
        return rec("p", "p = exp(z - max) · (1 / Σ)", p.round(e * inv))


def gather(x: Array, y: Array) -> Array:
    """``x[i, y[i]]`` per row; rows with ``y = ignore_index`` read class 0 (masked later)."""
    picked: Array = x[rows(len(y)), np.where(y < 0, 0, y)]
    return picked


def nll(
    logp: Array,
    y: Array,
    p: Precision,
    rec: Recorder,
    weight: Array | None,
    ignore_index: int,
) -> Array:
    """``F.nll_loss(logp, y, weight, ignore_index=..., reduction="none")``: ``-logp[y] · w[y]``
    rounded, 0 on ignored rows. Without ``weight`` the product is by 1: ``-logp[y]``."""
    ignored = y == ignore_index
    picked = rec("log_p_y", "log p_y", gather(logp, y))
    with np.errstate(invalid="ignore"):  # 0 · inf for a zero class weight, NaN as in torch
        if weight is None:
            loss = 0 - picked
        else:
            loss = p.round(-picked * p.cast(weight)[np.where(y < 0, 0, y)])
    return rec("nll", "nll = -log p_y · w_y", np.where(ignored, p.work.type(0), loss))


def class_sum(x: Array, p: Precision) -> Array:
    """``x.sum(-1)``: accumulated in the compute type, rounded once."""
    with np.errstate(over="ignore", invalid="ignore"):  # inf, and inf - inf = NaN, as torch
        return p.round(x.sum(axis=1))


def class_mean(x: Array, p: Precision, rec: Recorder) -> Array:
    """``x.mean(-1)``: torch's CPU ``mean`` sums in the compute type (float32 for the reduced
    formats, unrounded), divides by C and rounds once."""
    with np.errstate(over="ignore", invalid="ignore"):  # as in class_sum
        return rec("loss", f"loss = Σ / {x.shape[1]}", p.round(x.sum(axis=1) / x.shape[1]))


def any_class(x: Array) -> Array:
    """(N,) bool: any true in each row of an (N, C) array."""
    return np.asarray(x.any(axis=1), dtype=bool)


def sum_overflow(terms: Array, total: Array) -> Array:
    """Rows whose sum is infinite although every term is finite."""
    return np.asarray(np.isinf(total) & np.isfinite(terms).all(axis=1), dtype=bool)
