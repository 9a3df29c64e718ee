"""Random and adversarial rows for the JAX and TensorFlow emulations, the real calls they
emulate, and the comparison of the two.

Shared by tests/test_jax_paths.py, tests/test_tf_paths.py and tools/parity_jax_tf.py (which
prints the table). Nothing here imports jax or tensorflow at module level: the callers take
the framework's module as an argument.

Rows per family: ordinary logits at scales 0.1 to 1e4; huge margins (the target far below
the max: its probability underflows; far above: a tiny loss); ties; tiny losses; ``-inf``
on non-target classes (masks) and on every class; soft targets with zero weight on the
masked classes; binary and multilabel: saturated sigmoids (|z| up to 1e4), logits around
where ``1 - sigmoid`` rounds to 0 or 1, soft targets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

from cecheck.losses import PathResult
from cecheck.precision import get

FAMILIES = ("index", "soft", "binary", "multilabel")
DTYPES = ("float16", "bfloat16", "float32", "float64")
PATHS = ("naive", "stable")


def _logits(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    scale = rng.choice([0.1, 1.0, 3.0, 10.0, 30.0, 100.0, 1e3, 1e4], size=(n, 1))
    return rng.standard_normal((n, c)) * scale


def multiclass_rows(rng: np.random.Generator, n: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of ``c`` logits, random then adversarial in blocks, and index targets."""
    z = _logits(rng, n, c)
    y = rng.integers(0, c, n)
    k = n // 8
    b = iter(range(0, 8 * k, k))
    # huge margins: the target far below the max (underflow) or far above (tiny loss)
    s = next(b)
    gap = rng.uniform(5, 120, k)
    z[s : s + k] = rng.standard_normal((k, c))
    z[np.arange(s, s + k), y[s : s + k]] += np.where(rng.random(k) < 0.5, -gap, gap)
    # ties: every class equal, or the target tied with another class for the max
    s = next(b)
    z[s : s + k] = rng.choice([0.0, 1.0, 1000.0, -5.0], size=(k, 1))
    s = next(b)
    z[s : s + k, 0] = z[s : s + k].max(axis=1)
    y[s : s + k] = 0
    # tiny losses: the target holds the max by 8 to 40
    s = next(b)
    z[s : s + k] = rng.standard_normal((k, c))
    z[np.arange(s, s + k), y[s : s + k]] = rng.uniform(8, 40, k)
    # -inf masks on up to all but the target
    s = next(b)
    mask = rng.random((k, c)) < rng.uniform(0.2, 1.0, (k, 1))
    mask[np.arange(k), y[s : s + k]] = False
    z[s : s + k] = np.where(mask, -np.inf, z[s : s + k])
    # masks with a large surviving margin ([1e8, -inf, 1e8])
    s = next(b)
    z[s : s + k] = rng.choice([1e2, 1e4, 1e8], size=(k, 1))
    z[s : s + k, 1] = -np.inf
    y[s : s + k] = 0
    # every class masked (a few rows), or the target masked
    s = next(b)
    z[s : s + k // 4] = -np.inf
    tgt = np.arange(s + k // 4, s + k)
    z[tgt, y[tgt]] = -np.inf
    return z, y


def soft_targets(rng: np.random.Generator, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One-hot rows, soft rows, and soft rows with zero weight on every masked class."""
    n, c = z.shape
    t = np.zeros((n, c))
    t[np.arange(n), y] = 1.0
    soft = rng.dirichlet(np.ones(c), n)
    pick = rng.random(n)
    t = np.where((pick < 0.4)[:, None], soft, t)
    masked_zero = np.where(np.isneginf(z), 0.0, soft)
    masked_zero /= np.maximum(masked_zero.sum(axis=1, keepdims=True), 1e-300)
    return np.where((pick > 0.7)[:, None], masked_zero, t)


def binary_rows(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` logits (scales 0.1 to 1e4, plus the saturation points of each format) and
    targets: 0/1 for most rows, soft for a quarter."""
    z = _logits(rng, n, 1)[:, 0]
    k = n // 4
    # where sigmoid or 1 - sigmoid rounds to 0 or 1 in float16/bfloat16/float32/float64
    z[:k] = rng.choice([-1, 1], k) * rng.uniform(2, 45, k)
    t = rng.integers(0, 2, n).astype(np.float64)
    t[k : 2 * k] = rng.random(k)
    return z, t


def multilabel_rows(rng: np.random.Generator, n: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    z, t = binary_rows(rng, n * c)
    return z.reshape(n, c), t.reshape(n, c)


def blocks(family: str, n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """About ``n`` rows of one family, in blocks of one width each: (logits, targets),
    float64 (index targets int)."""
    rng = np.random.default_rng(seed)
    if family in ("index", "soft"):
        widths = (2, 3, 10, 50, 1000)
        out = [multiclass_rows(rng, n // len(widths), c) for c in widths]
        if family == "index":
            return out
        return [(z, soft_targets(rng, z, y)) for z, y in out]
    if family == "binary":
        return [binary_rows(rng, n)]
    return [multilabel_rows(rng, n, 5)]


def storage(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` as an array of the format itself (bfloat16 via ml_dtypes), for the frameworks."""
    with np.errstate(over="ignore"):
        if dtype == "bfloat16":
            return np.asarray(x, dtype=np.float32).astype(ml_dtypes.bfloat16)
        return np.asarray(x).astype(dtype)


@dataclass
class Comparison:
    rows: int
    finiteness_mismatches: int
    max_error: float  # in units of eps · max(1, |L|), over rows both finite
    worst_row: int


def category(x: np.ndarray) -> np.ndarray:
    """0 finite, 1 NaN, 2 +inf, 3 -inf: finiteness, row by row."""
    return np.select([np.isnan(x), np.isposinf(x), np.isneginf(x)], [1, 2, 3], 0)


def compare(ours: np.ndarray, theirs: np.ndarray, dtype: str) -> Comparison:
    ours = np.asarray(ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    mism = int((category(ours) != category(theirs)).sum())
    both = np.isfinite(ours) & np.isfinite(theirs)
    err = np.zeros_like(ours)
    err[both] = np.abs(ours[both] - theirs[both]) / (
        get(dtype).eps * np.maximum(1.0, np.abs(theirs[both]))
    )
    worst = int(np.argmax(err)) if len(err) else 0
    return Comparison(len(ours), mism, float(err.max(initial=0.0)), worst)


Emulation = Callable[..., PathResult]


def jax_loss(
    jax: Any,
    optax: Any,
    path: str,
    family: str,
    z: np.ndarray,
    t: np.ndarray,
    dtype: str,
    safe: bool = False,
    jit: bool = False,
) -> np.ndarray:
    """The real JAX/optax loss of every row, the inputs stored in ``dtype`` (needs
    ``jax_enable_x64`` for float64); eager unless ``jit``."""
    jnp = jax.numpy

    def loss(zj: Any, tj: Any) -> Any:
        if path == "naive":
            if family == "index":
                return -jnp.log(jax.nn.softmax(zj, axis=-1))[jnp.arange(zj.shape[0]), tj]
            if family == "soft":
                return -(tj * jnp.log(jax.nn.softmax(zj, axis=-1))).sum(-1)
            s = jax.nn.sigmoid(zj)
            out = -(tj * jnp.log(s) + (1 - tj) * jnp.log(1 - s))
            return out.mean(-1) if family == "multilabel" else out
        if family == "index":
            return optax.softmax_cross_entropy_with_integer_labels(zj, tj)
        if family == "soft":
            fn = optax.safe_softmax_cross_entropy if safe else optax.softmax_cross_entropy
            return fn(zj, tj)
        out = optax.sigmoid_binary_cross_entropy(zj, tj)
        return out.mean(-1) if family == "multilabel" else out

    zj = jnp.asarray(storage(z, dtype))
    tj = jnp.asarray(t) if family == "index" else jnp.asarray(storage(t, dtype))
    return np.asarray((jax.jit(loss) if jit else loss)(zj, tj)).astype(np.float64)


def tf_loss(
    tf: Any, keras: Any, path: str, family: str, z: np.ndarray, t: np.ndarray, dtype: str
) -> np.ndarray:
    """The real TensorFlow/Keras loss of every row, the inputs stored in ``dtype``."""
    zt = tf.constant(storage(z, dtype))
    tt = tf.constant(t.astype(np.int64)) if family == "index" else tf.constant(storage(t, dtype))
    if path == "naive":
        if family == "index":
            out = -tf.gather(tf.math.log(tf.nn.softmax(zt)), tt, batch_dims=1)
        elif family == "soft":
            out = -tf.reduce_sum(tt * tf.math.log(tf.nn.softmax(zt)), axis=-1)
        elif family == "binary":
            out = keras.losses.binary_crossentropy(tt[:, None], tf.sigmoid(zt)[:, None])
        else:
            out = keras.losses.binary_crossentropy(tt, tf.sigmoid(zt))
    elif family == "index":
        out = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tt, logits=zt)
    elif family == "soft":
        out = tf.nn.softmax_cross_entropy_with_logits(labels=tt, logits=zt)
    else:
        out = tf.nn.sigmoid_cross_entropy_with_logits(labels=tt, logits=zt)
        out = tf.reduce_mean(out, axis=-1) if family == "multilabel" else out
    return np.asarray(out.numpy()).astype(np.float64)
