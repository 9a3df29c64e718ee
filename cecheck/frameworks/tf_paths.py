"""What TensorFlow 2.21 (and Keras 3.15) compute on CPU, row by row, emulated in numpy.

Not wired into the engine yet: :data:`PATHS` maps ``(path, family)`` (``path`` "naive" or
"stable", ``family`` as :func:`cecheck.losses.family`) to a function
``f(z, target, p, rec=ignore) -> PathResult`` in the style of :mod:`cecheck.losses`.

Paths
-----
``naive`` (probabilities first)
    index: ``-tf.gather(tf.math.log(tf.nn.softmax(z)), y, batch_dims=1)``; soft:
    ``-tf.reduce_sum(t * tf.math.log(tf.nn.softmax(z)), -1)``; binary and multilabel:
    ``keras.losses.binary_crossentropy(t, tf.sigmoid(z))`` (``from_logits=False``), which
    clips the probabilities to ``[1e-7, 1 - 1e-7]`` and takes the mean over the last axis.
``stable`` (the fused losses)
    index: ``tf.nn.sparse_softmax_cross_entropy_with_logits``; soft:
    ``tf.nn.softmax_cross_entropy_with_logits``; binary:
    ``tf.nn.sigmoid_cross_entropy_with_logits``; multilabel: that, ``tf.reduce_mean(-1)``.

Every op accepts float16, bfloat16, float32 and float64 on CPU (probed: none refused).

Sources (the installed wheel: Python in ``tensorflow/python``, kernels' headers in
``tensorflow/include``)
----------------------------------------------------------------------------------------
- ``core/kernels/softmax_op_functor.h``, ``SoftmaxEigenImpl``: ``e = exp(z - max)``, then
  ``e * (1 / Σ e)``: a product by the reciprocal, the reciprocal evaluated (rounded) first.
- ``core/kernels/sparse_xent_op.h``, ``SparseXentEigenImpl``: ``d = z - max``,
  ``s = Σ exp(d)``, loss ``log(s) - d[y]``.
- ``core/kernels/xent_op.h``, ``XentEigenImpl``: loss ``Σ t · (log(s) - d)``: a class masked
  with ``-inf`` and ``t = 0`` gives ``0 · inf = NaN``.
- ``python/ops/nn_ops.py``: ``softmax_cross_entropy_with_logits_v2_helper`` casts float16 and
  bfloat16 logits (and labels) to float32 and the loss back;
  ``sparse_softmax_cross_entropy_with_logits`` does so for float16 only: bfloat16 runs the
  kernel in bfloat16.
- ``python/ops/nn_impl.py``, ``sigmoid_cross_entropy_with_logits``:
  ``where(z >= 0, z, 0) - z * t + log1p(exp(where(z >= 0, -z, z)))``.
- ``Eigen/src/Core/functors/UnaryFunctors.h``, ``scalar_logistic_op`` (``tf.sigmoid``):
  ``e = exp(x)``, ``e / (1 + e)`` (1 where ``e`` is inf); for float32 a specialisation with
  ``x`` capped at 16.6355324 (where it is exactly 1) and its own exp (4.5 ulp at worst),
  emulated operation by operation.
- ``keras/src/backend/tensorflow/nn.py``, ``binary_crossentropy``: ``clip_by_value(p, 1e-7,
  1 - 1e-7)`` in the format of ``p``, ``t · log(p) + (1 - t) · log(1 - p)``, negated;
  ``keras/src/losses/losses.py`` takes ``ops.mean`` over the last axis, which
  (``backend/tensorflow/numpy.py``, ``mean``) computes float16/bfloat16 in float32 and casts
  back. In float16 and bfloat16 ``1 - 1e-7`` rounds to 1, so the upper clip does nothing and
  a saturated sigmoid still gives ``log(0)``. Keras replaces the probabilities by their
  logits (``_get_logits``) when they come from a Keras sigmoid activation or from a
  ``Sigmoid`` op in a graph (``tf.function``): this path is the eager case, or probabilities
  computed elsewhere.

float16, bfloat16 and subnormals on CPU
---------------------------------------
Eigen computes a float16/bfloat16 elementwise op in float32 and rounds its result (probed):
``p.round`` after every op, as :mod:`cecheck.precision` does. TensorFlow's CPU threads flush
subnormal results to zero (probed: ``tf.exp(float32(-88.7))`` is 0; ``tf.nn.softmax`` gives
a probability 0 where it is a float32 subnormal), so a float32, bfloat16 or float64 result
below the smallest normal is 0; float16's subnormals, converted from a normal float32, are
kept.

``tf.nn.softmax`` runs oneDNN or Eigen by format and CPU. With oneDNN on (the default on
x86), ``core/util/util.cc``, ``IsDataTypeSupportedByOneDNNOnThisCPU`` (called by
``core/graph/mkl_graph_util.h``, ``IsMklOp``) sends float32 to oneDNN always, bfloat16 where
the CPU has AVX512F or AVX-NE-CONVERT, float16 only where it has AVX512BW with AVX512-FP16
or AMX-FP16 (Sapphire Rapids and later) or AVX-NE-CONVERT; Eigen's ``SoftmaxEigenImpl``
otherwise, and for float64. cecheck computes one model per format, whatever the CPU:

- float16: Eigen, the common case (every AMD CPU, Intel before Sapphire Rapids), operation
  by operation (:mod:`cecheck.frameworks.eigen_half`): ``d = z - max``, ``e = exp(d)`` by
  Eigen's ``pexp_float``, the sum over classes in eight float16 lanes, ``1 / Σ`` and
  ``e · (1 / Σ)``, each rounded to float16. Probed on an AMD EPYC (Zen 4: AVX-512 without
  FP16): equal to ``tf.nn.softmax`` on all of about 56,000,000 probabilities (widths 2 to
  20,001, the tree sum's splits above 1,600 classes included, on rows starting on a
  packet boundary: :func:`~cecheck.frameworks.eigen_half.row_sums`) and on the rows of
  tests/jaxtf_cases.py (seeds 0, 1, 3, 7, 11: -inf masks, ties, subnormal probabilities)
  but 16 of 6,390,000, where that file rounds a float64 logit straight to float16 and
  :meth:`~cecheck.precision.Precision.cast` rounds it to float32 first; the naive index
  and soft losses there bit for bit. Eigen's packet ``1 / Σ`` is
  ``_mm256_rcp_ps`` and one Newton step (2 float32 ulp at worst), its scalar path a
  division: on every float16 ``Σ`` (at least 1) the exact ``1 / Σ`` is 2.0 float32 ulp
  or more from a float16 midpoint, and both round to it (probed with the Zen 4's
  ``rcp``, whose first guess differs between CPU makers); the exp likewise
  (:func:`~cecheck.frameworks.eigen_half.exp_float32`). Where float16 goes to
  oneDNN instead, TensorFlow computes float32 throughout and rounds once (probed on an
  AVX-512 FP16 Intel machine: equal to that on all but 25 to 61 of 3,000,000
  float16/bfloat16 probabilities, each one ulp); the Eigen model then differs from
  TensorFlow on 39% of the probabilities, by up to 11 float16 ulp (20,000 rows of 50
  logits N(0, 5²)), and tests/test_tf_paths.py skips that comparison, naming the CPU's
  flags.
- bfloat16 and float32: oneDNN, float32 throughout, rounded once (as above), its exp 0
  below ``2**-125`` (:data:`ONEDNN_EXP_MIN`). Where bfloat16 goes to Eigen (no AVX-512
  and no AVX-NE-CONVERT) or oneDNN is off (``TF_ENABLE_ONEDNN_OPTS=0``), TensorFlow
  differs (probed with oneDNN off: bfloat16 and float32 naive soft losses differ in
  finiteness on a row), and the test skips.

Sums over classes elsewhere accumulate in float32, rounded once, except ``tf.reduce_sum`` in
float16 (the naive soft loss), which is Eigen's float16 lane sum (bit for bit, probed on
widths 2 to 20,001). One exception TensorFlow's thread count decides: a batch of one row is
a full reduction, which Eigen splits over the intra-op threads (``FullReducer`` on the
``ThreadPoolDevice``): with 8 threads, 1 of 3 rows of 200,000 classes and 3 of 3 of
1,000,000 summed otherwise (probed; with 2, none).

Order of the float32/float64 sums: Eigen adds in vector lanes and its exp/log are its own
polynomials, so float32 and float64 agree to a few ``eps · max(1, |L|)``, not bit for bit
(bound in tests/test_tf_paths.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from cecheck.arraytypes import Array
from cecheck.frameworks import eigen_half
from cecheck.losses import PathResult, Recorder, ignore, negate
from cecheck.precision import PRECISIONS, Precision

KERAS_EPSILON = 1e-7  # keras.backend.epsilon()
SIGMOID_FLOAT32_CAP = np.float32(16.6355324)  # Eigen's scalar_logistic_op<float>
# oneDNN's exp in tf.nn.softmax gives 0 below 2**-125, not at the smallest normal 2**-126
# (probed: softmax([x, 0]) in float32 is 0 for x <= -86.6434, positive from -86.6433)
ONEDNN_EXP_MIN = -125 * math.log(2)


def _rows(n: int) -> Array:
    return np.arange(n)


def _rounder(p: Precision) -> Callable[[Array], Array]:
    """Round to ``p`` with subnormal results flushed to zero (float16's kept): see the
    module docstring."""
    if p.name == "float16":
        return p.round
    tiny = p.tiny

    def r(x: Array) -> Array:
        x = p.round(x)
        return np.where(np.abs(x) < tiny, x * 0, x)

    return r


def _softmax_float16(zc: Array, rec: Recorder) -> tuple[Array, Array]:
    """``tf.nn.softmax(z)`` in float16 by Eigen's ``SoftmaxEigenImpl`` on ``Eigen::half``:
    every op rounded to float16, Eigen's own exp, the sum over classes in 8 float16 lanes
    (:mod:`cecheck.frameworks.eigen_half`); see the module docstring."""
    r = PRECISIONS["float16"].round
    m = zc.max(axis=1, keepdims=True)
    rec("max", "max(z)", m[:, 0])
    d = rec("shifted", "z - max", r(zc - m))
    e = rec("exp", "exp(z - max)", r(eigen_half.exp_float32(d)))
    inv = r(1 / eigen_half.row_sums(e))[:, None]
    rec("inv_sum", "1 / Σ exp(z - max)", inv[:, 0])
    return e, rec("p", "p = exp(z - max) · (1 / Σ)", r(e * inv))


def _softmax(zc: Array, p: Precision, rec: Recorder) -> tuple[Array, Array]:
    """``tf.nn.softmax(z)``: ``exp(z - max) * (1 / Σ)``; returns (exp, probabilities).

    float16 as :func:`_softmax_float16`. bfloat16 and float32 run oneDNN's softmax (on by
    default on x86): float32 throughout, rounded once (probed: equal to that on all but 25
    to 61 of 3,000,000 float16/bfloat16 probabilities where both go to oneDNN, each one
    ulp), its exp 0 below ``2**-125`` (:data:`ONEDNN_EXP_MIN`); float64 as Eigen's
    ``SoftmaxEigenImpl``."""
    if p.name == "float16":
        return _softmax_float16(zc, rec)
    r = _rounder(PRECISIONS["float32"] if p.emulated else p)
    m = zc.max(axis=1, keepdims=True)
    rec("max", "max(z)", m[:, 0])
    d = rec("shifted", "z - max", r(zc - m))
    e = r(np.exp(d))
    if p.name != "float64":
        e = np.where(d < ONEDNN_EXP_MIN, 0, e)
    rec("exp", "exp(z - max)", e)
    inv = r(1 / r(e.sum(axis=1, keepdims=True)))
    rec("inv_sum", "1 / Σ exp(z - max)", inv[:, 0])
    return e, rec("p", "p = exp(z - max) · (1 / Σ)", _rounder(p)(r(e * inv)))


def naive_index(z: Array, y: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """``-log(tf.nn.softmax(z))[y]``: inf where the target's probability underflows."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # the failures we show
        e, prob = _softmax(rec("z", f"z as {p.name}", p.cast(z)), p, rec)
        log_p = rec("log_p", "log p", _rounder(p)(np.log(prob[_rows(len(y)), y])))
        loss = rec("loss", "loss = -log p[y]", negate(log_p))
    return PathResult(
        loss, exp_overflow=np.any(np.isinf(e), axis=1), prob_underflow=np.isneginf(log_p)
    )


def naive_soft(z: Array, t: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """``-tf.reduce_sum(t * log(tf.nn.softmax(z)), -1)``: NaN from 0 · log 0; in float16
    the sum is Eigen's, in float16 lanes (``SumReducer<half>``, as in the softmax)."""
    r = _rounder(p)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        tc = rec("t", f"t as {p.name}", p.cast(t), shown=False)
        e, prob = _softmax(rec("z", f"z as {p.name}", p.cast(z)), p, rec)
        log_p = rec("log_p", "log p", r(np.log(prob)))
        t_log_p = rec("t_log_p", "t · log p", r(tc * log_p))
        total = eigen_half.row_sums(t_log_p) if p.name == "float16" else r(t_log_p.sum(axis=1))
        loss = rec("loss", "loss = -Σ t · log p", negate(total))
    return PathResult(
        loss,
        exp_overflow=np.any(np.isinf(e), axis=1),
        prob_underflow=((prob == 0) & (tc > 0)).any(axis=1),
        zero_times_inf=((tc == 0) & np.isinf(log_p)).any(axis=1),
    )


def _kernel_precision(p: Precision, bfloat16_native: bool) -> Precision:
    """The format a fused softmax loss runs its kernel in: float32 for float16 (and for
    bfloat16 unless the Python wrapper leaves it native)."""
    if p.name == "float16" or (p.name == "bfloat16" and not bfloat16_native):
        return PRECISIONS["float32"]
    return p


def stable_index(z: Array, y: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """``tf.nn.sparse_softmax_cross_entropy_with_logits``: ``log Σ exp(z - max) - (z[y] - max)``,
    float16 computed in float32, bfloat16 in bfloat16."""
    k = _kernel_precision(p, bfloat16_native=True)
    r = _rounder(k)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        zc = rec("z", f"z as {p.name}", p.cast(z)).astype(k.work)
        m = zc.max(axis=1, keepdims=True)
        rec("max", "max(z)", m[:, 0])
        d = rec("shifted", "z - max", r(zc - m))
        e = rec("exp", "exp(z - max)", r(np.exp(d)))
        lse = rec("lse", "lse = log Σ", r(np.log(r(e.sum(axis=1)))))
        loss = r(lse - d[_rows(len(y)), y])
        loss = rec("loss", "loss = lse - (z[y] - max)", _rounder(p)(loss.astype(p.work)))
    return PathResult(loss, exp_overflow=np.any(np.isinf(e), axis=1))


def stable_soft(z: Array, t: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """``tf.nn.softmax_cross_entropy_with_logits``: ``Σ t · (log Σ exp(z - max) - (z - max))``,
    float16 and bfloat16 computed in float32; NaN where a class masked with ``-inf`` has
    ``t = 0`` (0 · inf)."""
    k = _kernel_precision(p, bfloat16_native=False)
    r = _rounder(k)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        tc = rec("t", f"t as {p.name}", p.cast(t), shown=False).astype(k.work)
        zc = rec("z", f"z as {p.name}", p.cast(z)).astype(k.work)
        m = zc.max(axis=1, keepdims=True)
        rec("max", "max(z)", m[:, 0])
        d = rec("shifted", "z - max", r(zc - m))
        lse = r(np.log(r(r(np.exp(d)).sum(axis=1, keepdims=True))))
        rec("lse", "lse = log Σ", lse[:, 0])
        nls = rec("neg_log_softmax", "lse - (z - max)", r(lse - d))
        total = r(rec("t_neg_log_softmax", "t · (lse - (z - max))", r(tc * nls)).sum(axis=1))
        loss = rec("loss", "loss = Σ t · (lse - (z - max))", _rounder(p)(total.astype(p.work)))
    return PathResult(loss, zero_times_inf=((tc == 0) & np.isinf(nls)).any(axis=1))


# ------------------------------------------------------------------ binary and multilabel


def _eigen_logistic_float32(x: Array) -> Array:
    """Eigen's ``scalar_logistic_op<float>::packetOp`` step by step in float32: ``exp(x/2)``
    by Cephes range reduction and a degree-5 polynomial, squared, then ``e / (1 + e)``; 0
    below -104. ``pmadd`` is a product then a sum, each rounded (the wheel is built without
    FMA): equal to ``tf.sigmoid`` on 300,003 of 300,003 float32 values (probed)."""
    f = np.float32
    x = x.astype(f)
    zero = x < f(-104)
    h = np.minimum(x, SIGMOID_FLOAT32_CAP) * f(0.5)
    m = np.floor(h * f(1.44269504088896341) + f(0.5))
    rr = m * f(-0.693359375) + h
    rr = m * f(2.12194440e-4) + rr
    r2 = rr * rr
    p_even = r2 * f(4.1898667812347412109375e-2) + f(0.49999141693115234375)
    p_odd = r2 * f(8.33471305668354034423828125e-3) + f(0.16666877269744873046875)
    poly = rr * p_odd + p_even
    poly = r2 * poly + (rr + f(1))
    half = np.ldexp(poly, m.astype(np.int32)).astype(f)
    e = _rounder(PRECISIONS["float32"])(half * half)
    s: Array = np.where(zero, f(0), e / (f(1) + e))
    return s


def sigmoid(zc: Array, p: Precision) -> Array:
    """``tf.sigmoid(z)`` (Eigen's ``scalar_logistic_op``): ``e / (1 + e)``, ``e = exp(z)``."""
    r = _rounder(p)
    if p.name == "float32":
        return _eigen_logistic_float32(zc)
    e = r(np.exp(zc))
    return np.where(np.isinf(e), 1, r(e / r(1 + e)))


def _naive_bce(z: Array, t: Array, p: Precision, rec: Recorder) -> tuple[Array, dict[str, Array]]:
    """Elementwise Keras ``binary_crossentropy(t, tf.sigmoid(z))`` before its mean."""
    r = _rounder(p)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        zc = rec("z", f"z as {p.name}", p.cast(z))
        tc = rec("t", f"t as {p.name}", p.cast(t), shown=False)
        s = rec("sigmoid", "s = sigmoid(z)", sigmoid(zc, p))
        lo, hi = p.cast(KERAS_EPSILON), p.cast(1.0 - KERAS_EPSILON)
        c = rec("clipped", f"clip(s, {lo:.3g}, {hi:.9g})", np.clip(s, lo, hi))
        log_c = rec("log_sigmoid", "log s", r(np.log(c)))
        log_q = rec("log_one_minus_sigmoid", "log(1 - s)", r(np.log(r(1 - c))))
        one_minus_t = r(1 - tc)
        total = r(r(tc * log_c) + r(one_minus_t * log_q))
        loss = rec(
            "loss" if z.ndim == 1 else "class_loss",
            "-(t · log s + (1 - t) · log(1 - s))",
            negate(total),
        )
    evidence = {
        "sigmoid_saturated": (s == 0) | (s == 1),
        "zero_times_inf": ((tc == 0) & np.isinf(log_c)) | ((one_minus_t == 0) & np.isinf(log_q)),
    }
    return loss, evidence


def _mean(x: Array, p: Precision) -> Array:
    """The mean over classes in float32 (float64 for float64), rounded once to ``p``."""
    return _rounder(p)(x.sum(axis=1) / p.work.type(x.shape[1]))


def _stable_bce(z: Array, t: Array, p: Precision, rec: Recorder) -> Array:
    """``tf.nn.sigmoid_cross_entropy_with_logits``: ``max(z, 0) - z·t + log1p(exp(-|z|))``."""
    r = _rounder(p)
    with np.errstate(over="ignore", invalid="ignore"):
        zc = rec("z", f"z as {p.name}", p.cast(z))
        tc = rec("t", f"t as {p.name}", p.cast(t), shown=False)
        linear = rec("linear", "max(z, 0) - z · t", r(np.maximum(zc, 0) - r(zc * tc)))
        log1p = rec("log1p", "log1p(exp(-|z|))", r(np.log1p(r(np.exp(-np.abs(zc))))))
        return rec(
            "loss" if z.ndim == 1 else "class_loss",
            "loss = max(z, 0) - z · t + log1p",
            r(linear + log1p),
        )


def naive_binary(z: Array, t: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """Keras ``binary_crossentropy(t, tf.sigmoid(z))`` of one logit per row."""
    loss, ev = _naive_bce(z, t, p, rec)
    return PathResult(loss, **ev)


def naive_multilabel(z: Array, t: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """Keras ``binary_crossentropy(t, tf.sigmoid(z))``: the mean over classes."""
    loss, ev = _naive_bce(z, t, p, rec)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = rec("loss", f"loss = mean over {z.shape[1]} classes", _mean(loss, p))
    return PathResult(mean, **{k: np.asarray(v.any(axis=1)) for k, v in ev.items()})


def stable_binary(z: Array, t: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """``tf.nn.sigmoid_cross_entropy_with_logits`` of one logit per row."""
    return PathResult(_stable_bce(z, t, p, rec))


def stable_multilabel(z: Array, t: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """``tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(t, z), -1)``."""
    loss = _stable_bce(z, t, p, rec)
    with np.errstate(over="ignore", invalid="ignore"):
        return PathResult(rec("loss", f"loss = mean over {z.shape[1]} classes", _mean(loss, p)))


# The code the report names for each path (cecheck.frameworks.registry).
CODE = {
    ("naive", "softmax"): "tf.math.log(tf.nn.softmax(z))",
    ("naive", "sigmoid"): "keras.losses.binary_crossentropy(t, tf.sigmoid(z))",
    ("stable", "softmax"): "tf.nn.softmax_cross_entropy_with_logits",
    ("stable", "sigmoid"): "tf.nn.sigmoid_cross_entropy_with_logits",
}

PATHS: dict[tuple[str, str], Callable[..., PathResult]] = {
    ("naive", "index"): naive_index,
    ("naive", "soft"): naive_soft,
    ("naive", "binary"): naive_binary,
    ("naive", "multilabel"): naive_multilabel,
    ("stable", "index"): stable_index,
    ("stable", "soft"): stable_soft,
    ("stable", "binary"): stable_binary,
    ("stable", "multilabel"): stable_multilabel,
}
