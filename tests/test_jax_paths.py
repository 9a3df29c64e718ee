"""cecheck.frameworks.jax_paths against JAX 0.10.2 / optax 0.2.8 on CPU and against mpmath.

The parity tests skip when jax or optax is not installed; the others need neither.

Stated bound, in units of ``eps · max(1, |L|)`` (``L`` JAX's loss, ``eps`` the dtype's machine
epsilon), on rows finite in both: 2 in float16 and bfloat16 (each step is computed in float32
and rounded, as here: they differ only where XLA's float32 exp/log round a value near a
rounding boundary of the narrow format the other way); 16 in float32 and float64 (XLA's own
exp/log polynomials and order of summation over up to 1,000 classes; the largest seen on
seeds 0, 1, 3, 7 and 11 is 11). optax's integer-label loss is
``(log Σ + max) - z[y]``: its last subtraction rounds at the scale of ``lse = log Σ + max``,
so there the unit is ``eps · max(1, |L|, |lse|)`` (bound 4).
"""

from __future__ import annotations

import jaxtf_cases as cases
import mp_reference as mp
import numpy as np
import pytest

from cecheck.frameworks import jax_paths
from cecheck.precision import get


@pytest.fixture(scope="module")
def jo() -> tuple[object, object]:
    """(jax, optax), float64 enabled; the test is skipped without them."""
    jax = pytest.importorskip("jax", reason="jax is not installed", exc_type=ImportError)
    optax = pytest.importorskip("optax", reason="optax is not installed", exc_type=ImportError)
    jax.config.update("jax_enable_x64", True)
    return jax, optax


def _lse(z: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):  # all-masked and +inf rows
        m = np.max(z, axis=1)
        m = np.where(np.isfinite(m), m, 0)
        return np.log(np.exp(z - m[:, None]).sum(axis=1)) + m


@pytest.mark.parametrize("path", cases.PATHS)
@pytest.mark.parametrize("dtype", cases.DTYPES)
@pytest.mark.parametrize("family", cases.FAMILIES)
def test_same_finiteness_and_values_as_jax(jo, family: str, dtype: str, path: str) -> None:
    jax, optax = jo
    p = get(dtype)
    for z, t in cases.blocks(family, 3000, seed=1):
        ours = jax_paths.PATHS[(path, family)](z, t, p).loss.astype(np.float64)
        theirs = cases.jax_loss(jax, optax, path, family, z, t, dtype)
        bad = np.nonzero(cases.category(ours) != cases.category(theirs))[0]
        assert len(bad) == 0, (z[bad[0]], t[bad[0]], ours[bad[0]], theirs[bad[0]])
        both = np.isfinite(theirs)
        scale = np.maximum(1.0, np.abs(theirs))
        if (path, family) == ("stable", "index"):
            scale = np.maximum(scale, np.abs(_lse(z)))
            bound = 4.0
        else:
            bound = 2.0 if p.emulated else 16.0
        err = np.abs(ours[both] - theirs[both]) / (p.eps * scale[both])
        assert err.max(initial=0) <= bound, (family, dtype, path, err.max())


def test_safe_softmax_cross_entropy_matches_optax_test_values() -> None:
    """optax's own test (losses/_classification_test.py, SafeSoftmaxCrossEntropyTest): a
    masked class with zero weight adds 0; the plain loss gives NaN there (0 · -inf)."""
    ys = np.array(
        [
            [10.0, 1.0, -2.0],
            [1.0, 4.0, 0.2],
            [-np.inf, 0.0, 0.0],
            [-np.inf, 0.0, 0.0],
            [-np.inf, 0.0, -np.inf],
        ],
    )
    ts = np.array(
        [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.4, 0.3, 0.3], [0.0, 1.0, 0.0]]
    )
    safe = jax_paths.safe_soft(ys, ts, get("float32")).loss
    np.testing.assert_allclose(safe, [9.00013, 3.0696733, 0.693147, np.inf, 0.0], atol=1e-4)
    plain = jax_paths.stable_soft(ys, ts, get("float32"))
    assert np.isnan(plain.loss[[2, 4]]).all()
    assert np.isposinf(plain.loss[3])
    assert list(plain.zero_times_inf) == [False, False, True, False, True]


def test_safe_soft_equals_optax(jo) -> None:
    jax, optax = jo
    for dtype in cases.DTYPES:
        for z, t in cases.blocks("soft", 1000, seed=2):
            ours = jax_paths.safe_soft(z, t, get(dtype)).loss.astype(np.float64)
            theirs = cases.jax_loss(jax, optax, "stable", "soft", z, t, dtype, safe=True)
            np.testing.assert_array_equal(cases.category(ours), cases.category(theirs))


def test_mask_with_large_logits() -> None:
    """[1e8, -inf, 1e8], y = 0 (checked with optax 0.2.8): the integer-label loss is
    ``(log 2 + 1e8) - 1e8``, 0 in float32 (log 2 is below half an ulp of 1e8) and log 2 in
    float64; ``softmax_cross_entropy`` with the one-hot target is NaN (0 · -inf on the
    masked class)."""
    z = np.array([[1e8, -np.inf, 1e8]])
    y = np.array([0])
    assert jax_paths.stable_index(z, y, get("float32")).loss[0] == 0
    loss = jax_paths.stable_index(z, y, get("float64")).loss[0]
    assert abs(loss - mp.multiclass(z[0, [0, 2]], 0)) <= get("float64").eps * 1e8  # ulp of lse
    r = jax_paths.stable_soft(z, np.array([[1.0, 0.0, 0.0]]), get("float64"))
    assert np.isnan(r.loss[0])
    assert r.zero_times_inf[0]


def test_naive_index_underflow_is_inf_with_its_cause() -> None:
    """The target's probability rounds to 0: inf, probability underflow, no exp overflow."""
    z = np.array([[0.0, 20.0, 0.0], [0.0, 120.0, 0.0]])
    y = np.array([0, 0])
    r16 = jax_paths.naive_index(z, y, get("float16"))
    assert np.isposinf(r16.loss).all()
    assert r16.prob_underflow.all()
    assert not r16.exp_overflow.any()
    r32 = jax_paths.naive_index(z, y, get("float32"))
    assert list(np.isinf(r32.loss)) == [False, True]
    assert r32.loss[0] == pytest.approx(mp.multiclass(z[0], 0), rel=4 * get("float32").eps)


def test_naive_soft_zero_times_log_zero_is_nan() -> None:
    r = jax_paths.naive_soft(np.array([[0.0, 30.0]]), np.array([[0.0, 1.0]]), get("float16"))
    assert np.isnan(r.loss[0])
    assert r.zero_times_inf[0]
    assert not r.prob_underflow[0]


def test_naive_binary_saturates_where_sigmoid_rounds_to_one() -> None:
    """float16: sigmoid(8) rounds to 1, so t = 0 gives log(0): inf; t = 1 gives 0 · -inf."""
    r = jax_paths.naive_binary(np.array([8.0, 8.0]), np.array([0.0, 1.0]), get("float16"))
    assert np.isposinf(r.loss[0])
    assert np.isnan(r.loss[1])
    assert r.sigmoid_saturated.all()
    assert list(r.zero_times_inf) == [False, True]


@pytest.mark.parametrize("dtype", cases.DTYPES)
def test_optax_sigmoid_bce_is_accurate(dtype: str) -> None:
    """Two softplus terms, nothing cancels: within 4 eps of mpmath wherever the exact loss
    is well above the format's smallest normal (below it XLA flushes to 0)."""
    p = get(dtype)
    rng = np.random.default_rng(3)
    z = np.concatenate([rng.standard_normal(300) * 10, rng.uniform(-60, 60, 300)])
    t = rng.choice([0.0, 1.0, 0.3], z.size)
    zs = p.cast(z).astype(np.float64)
    ts = p.cast(t).astype(np.float64)
    exact = np.array([mp.binary(a, b) for a, b in zip(zs, ts, strict=True)])
    ours = jax_paths.stable_binary(zs, ts, p).loss.astype(np.float64)
    keep = exact > p.tiny / p.eps
    assert keep.sum() > 400
    err = np.abs(ours - exact)[keep] / (p.eps * exact[keep])
    assert err.max() <= 4, err.max()


def test_stable_float64_matches_mpmath_on_ordinary_rows() -> None:
    p = get("float64")
    rng = np.random.default_rng(4)
    z = rng.standard_normal((200, 6)) * 5
    y = rng.integers(0, 6, 200)
    t = rng.dirichlet(np.ones(6), 200)
    idx = jax_paths.stable_index(z, y, p).loss
    soft = jax_paths.stable_soft(z, t, p).loss
    for i in range(200):
        scale = max(1.0, abs(_lse(z[i : i + 1])[0]))
        assert abs(idx[i] - mp.multiclass(z[i], y[i])) <= 4 * p.eps * scale
        assert abs(soft[i] - mp.soft(z[i], t[i])) <= 8 * p.eps * max(1.0, abs(soft[i]), scale)
