"""What JAX 0.10.2 and optax 0.2.8 compute on CPU, row by row, emulated in numpy.

Not wired into the engine yet: :data:`PATHS` maps ``(path, family)`` (``path`` "naive" or
"stable", ``family`` as :func:`cecheck.losses.family`) to a function
``f(z, target, p, rec=ignore) -> PathResult`` in the style of :mod:`cecheck.losses`.

Paths
-----
``naive`` (probabilities first, as JAX users write it by hand)
    index: ``-jnp.log(jax.nn.softmax(z))[y]``; soft: ``-(t * jnp.log(jax.nn.softmax(z))).sum(-1)``;
    binary: ``-(t * jnp.log(s) + (1 - t) * jnp.log(1 - s))`` with ``s = jax.nn.sigmoid(z)``;
    multilabel: the same, ``.mean(-1)``. optax's binary loss takes logits only, so a user
    with probabilities writes the formula out; flax's examples do the same.
``stable`` (the fused optax losses)
    index: ``optax.softmax_cross_entropy_with_integer_labels``; soft:
    ``optax.softmax_cross_entropy``; binary: ``optax.sigmoid_binary_cross_entropy``;
    multilabel: that, ``.mean(-1)``. :func:`safe_soft` is
    ``optax.safe_softmax_cross_entropy`` (not a path of its own).

Sources (installed packages, read for these versions)
-----------------------------------------------------
- ``jax/_src/nn/functions.py``: ``softmax`` -> ``_softmax``: ``m = max(z)`` (``initial=-inf``),
  ``e = exp(z - m)``, ``e / sum(e)`` (a division, not a product by the reciprocal);
  ``log_softmax``: ``shifted = z - m``, ``shifted - log(sum(exp(shifted)))``;
  ``sigmoid`` = ``lax.logistic``; ``log_sigmoid(x) = -softplus(-x)``,
  ``softplus(x) = jnp.logaddexp(x, 0)``.
- ``jax/_src/ops/special.py``, ``logsumexp``: ``amax = max(z)`` replaced by 0 when not finite,
  ``log(sum(exp(z - amax))) + amax``.
- ``jax/_src/lax/other.py``, ``logaddexp``: ``amax + log1p(exp(-|x1 - x2|))`` (``x1 + x2``
  where the difference is NaN, i.e. both infinite).
- ``optax/losses/_classification.py``: ``softmax_cross_entropy_with_integer_labels`` is
  ``logsumexp(z) - z[y]`` (the normaliser subtracted from the label's logit only);
  ``softmax_cross_entropy`` is ``-(t * log_softmax(z)).sum(-1)``: a masked class (``-inf``)
  with ``t = 0`` gives ``0 * -inf = NaN``; ``safe_softmax_cross_entropy`` is
  ``-sum(where(t != 0, t * log_softmax(z), 0))``, 0 for those classes;
  ``sigmoid_binary_cross_entropy`` is ``-t * log_sigmoid(z) - (1 - t) * log_sigmoid(-z)``.
- ``jax/_src/numpy/reductions.py``: ``sum`` and ``mean`` of float16/bfloat16 upcast to
  float32 (``upcast_f16_for_computation``) and round the result once; ``mean`` divides in
  float32 before that rounding.

float16 and bfloat16 on CPU
---------------------------
Run eagerly (each ``jnp``/``lax`` call dispatched on its own, as ``jax.nn.softmax`` is, its
jit being disabled in the source), each elementwise primitive computes in float32 and
rounds its result to the format, and sums accumulate in float32 (probed: a float16 sum
of 4096 ones is 4096): that is ``p.round`` after every operation, and the
:mod:`cecheck.precision` convention for sums. Under ``jax.jit`` XLA's CPU fusion keeps
float16/bfloat16 intermediates in float32 inside a fused kernel
(``xla_allow_excess_precision``, on by default): ``jit(lambda a: jnp.exp(a) * 3 - a)`` on
20,000 float16 values differs from the eager result on 3,310 of them. These emulations are
the eager computation. On the rows of ``tools/parity_jax_tf.py --jit`` the jitted losses
keep the same finiteness everywhere except the bfloat16 naive multilabel loss (445 of 5,000
rows: eager NaN or inf where the fused ``log(1 - s)`` is finite or inf).

Order of the float32/float64 sums: XLA's CPU reduction adds in its own order and its
``exp``/``log`` are its own polynomials, so float32 and float64 agree to a few
``eps · max(1, |L|)``, not bit for bit (bound in tests/test_jax_paths.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cecheck.arraytypes import Array
from cecheck.losses import PathResult, Recorder, ignore, negate
from cecheck.precision import Precision


def _rows(n: int) -> Array:
    return np.arange(n)


def _rounder(p: Precision) -> Callable[[Array], Array]:
    """Round to ``p`` as XLA's CPU code does: it runs with subnormals flushed to zero
    (probed: ``jnp.exp(float32(-88.7))`` is 0, ``jnp.log(float32(1e-39))`` is -inf), so a
    float32, bfloat16 (computed in float32) or float64 result below the smallest normal is
    a signed 0. float16 is computed in float32 and converted, which keeps its subnormals."""
    if p.name == "float16":
        return p.round
    tiny = p.tiny

    def r(x: Array) -> Array:
        x = p.round(x)
        return np.where(np.abs(x) < tiny, x * 0, x)

    return r


def _sum(x: Array, p: Precision, keepdims: bool = False) -> Array:
    """``jnp.sum(x, -1)``: float32 accumulation for the narrow formats, rounded once."""
    return _rounder(p)(x.sum(axis=1, keepdims=keepdims))


def _mean(x: Array, p: Precision) -> Array:
    """``jnp.mean(x, -1)``: sum and division in float32 for the narrow formats, rounded once."""
    return _rounder(p)(x.sum(axis=1) / p.work.type(x.shape[1]))


def _softmax(zc: Array, p: Precision, rec: Recorder) -> tuple[Array, Array]:
    """``jax.nn.softmax(z)``: ``exp(z - max) / Σ``; returns (exp, probabilities)."""
    r = _rounder(p)
    m = zc.max(axis=1, keepdims=True)
    rec("max", "max(z)", m[:, 0])
    e = rec("exp", "exp(z - max)", r(np.exp(rec("shifted", "z - max", r(zc - m)))))
    s = _sum(e, p, keepdims=True)
    rec("sum", "Σ exp(z - max)", s[:, 0])
    return e, rec("p", "p = exp(z - max) / Σ", r(e / s))


def _log_softmax(zc: Array, p: Precision, rec: Recorder) -> Array:
    """``jax.nn.log_softmax(z)``: ``(z - max) - log Σ exp(z - max)``."""
    r = _rounder(p)
    m = zc.max(axis=1, keepdims=True)
    rec("max", "max(z)", m[:, 0])
    d = rec("shifted", "z - max", r(zc - m))
    s = _sum(r(np.exp(d)), p, keepdims=True)
    rec("sum", "Σ exp(z - max)", s[:, 0])
    lse = r(np.log(s))
    rec("lse", "lse = log Σ", lse[:, 0])
    return rec("log_softmax", "z - max - lse", r(d - lse))


# ----------------------------------------------------------------------------- multiclass


def naive_index(z: Array, y: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """``-jnp.log(jax.nn.softmax(z))[y]``: inf where the target's probability underflows."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # the failures we show
        e, prob = _softmax(rec("z", f"z as {p.name}", p.cast(z)), p, rec)
        log_p = rec("log_p", "log p", _rounder(p)(np.log(prob[_rows(len(y)), y])))
        loss = rec("loss", "loss = -log p[y]", negate(log_p))
    return PathResult(
        loss, exp_overflow=np.any(np.isinf(e), axis=1), prob_underflow=np.isneginf(log_p)
    )


def naive_soft(z: Array, t: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """``-(t * jnp.log(jax.nn.softmax(z))).sum(-1)``: NaN from 0 · log 0."""
    r = _rounder(p)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        tc = rec("t", f"t as {p.name}", p.cast(t), shown=False)
        e, prob = _softmax(rec("z", f"z as {p.name}", p.cast(z)), p, rec)
        log_p = rec("log_p", "log p", r(np.log(prob)))
        t_log_p = rec("t_log_p", "t · log p", r(tc * log_p))
        loss = rec("loss", "loss = -Σ t · log p", negate(_sum(t_log_p, p)))
    return PathResult(
        loss,
        exp_overflow=np.any(np.isinf(e), axis=1),
        prob_underflow=((prob == 0) & (tc > 0)).any(axis=1),
        zero_times_inf=((tc == 0) & np.isinf(log_p)).any(axis=1),
    )


def stable_index(z: Array, y: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """``optax.softmax_cross_entropy_with_integer_labels``: ``(log Σ exp(z - a) + a) - z[y]``
    with ``a = max(z)``, or 0 where that max is not finite (``jax.nn.logsumexp``)."""
    r = _rounder(p)
    # over: beyond the format's range is inf; invalid: inf - inf for +inf or all -inf rows
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        zc = rec("z", f"z as {p.name}", p.cast(z))
        m = zc.max(axis=1)
        a = rec("max", "a = max(z), 0 if not finite", np.where(np.isfinite(m), m, 0))
        e = rec("exp", "exp(z - a)", r(np.exp(r(zc - a[:, None]))))
        s = rec("sum", "Σ exp(z - a)", _sum(e, p))
        lse = rec("lse", "lse = log Σ + a", r(r(np.log(s)) + a))
        loss = rec("loss", "loss = lse - z[y]", r(lse - zc[_rows(len(y)), y]))
    return PathResult(loss, exp_overflow=np.any(np.isinf(e), axis=1))


def _soft(z: Array, t: Array, p: Precision, rec: Recorder, safe: bool) -> PathResult:
    r = _rounder(p)
    with np.errstate(over="ignore", invalid="ignore"):
        tc = rec("t", f"t as {p.name}", p.cast(t), shown=False)
        lsm = _log_softmax(rec("z", f"z as {p.name}", p.cast(z)), p, rec)
        t_lsm = r(tc * lsm)
        if safe:
            t_lsm = np.where(tc != 0, t_lsm, 0)
        rec("t_log_softmax", "t · log_softmax", t_lsm)
        loss = rec("loss", "loss = -Σ t · log_softmax", negate(_sum(t_lsm, p)))
    zero_inf = None if safe else ((tc == 0) & np.isinf(lsm)).any(axis=1)
    return PathResult(loss, zero_times_inf=zero_inf)


def stable_soft(z: Array, t: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """``optax.softmax_cross_entropy``: ``-(t * log_softmax(z)).sum(-1)``; NaN where a class
    masked with ``-inf`` has ``t = 0`` (0 · -inf)."""
    return _soft(z, t, p, rec, safe=False)


def safe_soft(z: Array, t: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """``optax.safe_softmax_cross_entropy``: as :func:`stable_soft`, the classes with
    ``t = 0`` left out of the sum (a masked class with zero weight adds 0, not NaN)."""
    return _soft(z, t, p, rec, safe=True)


# ------------------------------------------------------------------ binary and multilabel


def _naive_bce(z: Array, t: Array, p: Precision, rec: Recorder) -> tuple[Array, dict[str, Array]]:
    """Elementwise ``-(t * log(s) + (1 - t) * log(1 - s))``, ``s = jax.nn.sigmoid(z)``."""
    r = _rounder(p)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        zc = rec("z", f"z as {p.name}", p.cast(z))
        tc = rec("t", f"t as {p.name}", p.cast(t), shown=False)
        # lax.logistic: expanded to 1 / (1 + exp(-z)) in the format (probed: equal on
        # 40,001 float16 values)
        s = rec("sigmoid", "s = sigmoid(z)", r(1 / r(1 + r(np.exp(-zc)))))
        log_s = rec("log_sigmoid", "log s", r(np.log(s)))
        log_q = rec("log_one_minus_sigmoid", "log(1 - s)", r(np.log(r(1 - s))))
        one_minus_t = r(1 - tc)
        total = r(r(tc * log_s) + r(one_minus_t * log_q))
        loss = rec(
            "loss" if z.ndim == 1 else "class_loss",
            "loss = -(t · log s + (1 - t) · log(1 - s))",
            negate(total),
        )
    evidence = {
        "sigmoid_saturated": (s == 0) | (s == 1),
        "zero_times_inf": ((tc == 0) & np.isinf(log_s)) | ((one_minus_t == 0) & np.isinf(log_q)),
    }
    return loss, evidence


def _logaddexp0(x: Array, p: Precision) -> Array:
    """``jnp.logaddexp(x, 0)``: ``max(x, 0) + log1p(exp(-|x - 0|))``, each step rounded."""
    r = _rounder(p)
    return r(np.maximum(x, 0) + r(np.log1p(r(np.exp(-np.abs(x))))))


def _stable_bce(z: Array, t: Array, p: Precision, rec: Recorder) -> Array:
    """``optax.sigmoid_binary_cross_entropy``:
    ``-t · log_sigmoid(z) - (1 - t) · log_sigmoid(-z)``."""
    r = _rounder(p)
    with np.errstate(over="ignore", invalid="ignore"):
        zc = rec("z", f"z as {p.name}", p.cast(z))
        tc = rec("t", f"t as {p.name}", p.cast(t), shown=False)
        log_p = rec("log_sigmoid", "log_sigmoid(z) = -softplus(-z)", negate(_logaddexp0(-zc, p)))
        log_q = rec("log_sigmoid_neg", "log_sigmoid(-z) = -softplus(z)", negate(_logaddexp0(zc, p)))
        return rec(
            "loss" if z.ndim == 1 else "class_loss",
            "loss = -t · log_sigmoid(z) - (1 - t) · log_sigmoid(-z)",
            r(r(-tc * log_p) - r(r(1 - tc) * log_q)),
        )


def naive_binary(z: Array, t: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """Binary cross-entropy of ``jax.nn.sigmoid(z)``, written out by hand."""
    loss, ev = _naive_bce(z, t, p, rec)
    return PathResult(loss, **ev)


def naive_multilabel(z: Array, t: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """:func:`naive_binary` per class, ``.mean(-1)``."""
    loss, ev = _naive_bce(z, t, p, rec)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = rec("loss", f"loss = mean over {z.shape[1]} classes", _mean(loss, p))
    return PathResult(mean, **{k: np.asarray(v.any(axis=1)) for k, v in ev.items()})


def stable_binary(z: Array, t: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """``optax.sigmoid_binary_cross_entropy``: two softplus terms, nothing cancels."""
    return PathResult(_stable_bce(z, t, p, rec))


def stable_multilabel(z: Array, t: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """``optax.sigmoid_binary_cross_entropy(z, t).mean(-1)``."""
    loss = _stable_bce(z, t, p, rec)
    with np.errstate(over="ignore", invalid="ignore"):
        return PathResult(rec("loss", f"loss = mean over {z.shape[1]} classes", _mean(loss, p)))


# The code the report names for each path (cecheck.frameworks.registry).
CODE = {
    ("naive", "softmax"): "jnp.log(jax.nn.softmax(z))",
    ("naive", "sigmoid"): "jnp.log(jax.nn.sigmoid(z))",
    ("stable", "softmax"): "optax.softmax_cross_entropy",
    ("stable", "sigmoid"): "optax.sigmoid_binary_cross_entropy",
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
