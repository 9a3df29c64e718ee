"""The headroom on the kernel's chunks: the kernel's estimate of a scaled row's log-partition
(scaled_lse in _kernel.c) tells the rows far from a cliff without numpy's pass over them, and
the cliffs stay numpy's to the bit (every copy of the kernel: tests/test_kernel_clones.py)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cecheck import fast, headroom

if not fast.installed():
    if os.environ.get("CECHECK_REQUIRE_KERNEL"):
        raise RuntimeError("the C kernel cecheck._kernel was not built (no C compiler?)")
    pytest.skip("the C kernel cecheck._kernel was not built", allow_module_level=True)

DTYPES = ("float16", "bfloat16", "float32", "float64")


def scaled_lse(
    z: np.ndarray, rows: np.ndarray, lam: np.ndarray, top: np.ndarray
) -> tuple[np.ndarray, float]:
    """The kernel's lse(λz) of the ``rows`` of ``z``, each by its λ, ``top`` its max; and the
    bound η of its sum's relative error."""
    out = np.empty(len(rows))
    eta = fast.kernel().scaled_lse(z, z.itemsize, *z.shape, rows, lam, top, out, 0, len(rows))
    return out, eta


def exact_lse(z: np.ndarray, lam: np.ndarray, top: np.ndarray) -> np.ndarray:
    """lse(λz) per row from numpy's float64 ``λz_j - λ max z`` (the kernel's arguments too),
    their exps summed exactly (math.fsum): within 2**-50 relatively of the sum of the exact
    exps of those arguments."""
    lm = lam * top
    x = lam[:, None] * np.asarray(z, dtype=np.float64) - lm[:, None]
    with np.errstate(under="ignore"):
        return lm + np.log([math.fsum(row) for row in np.exp(x)])


def rows_of(c: int, rng: np.random.Generator) -> np.ndarray:
    """Rows whose sums the float32 exps and sums strain: many terms of the same size (the
    largest ones hundreds of times smaller than their sum), terms near exp(-86) where the
    kernel's exp stops, near-ties at the max, all equal, a row that leads by far."""
    n = 48
    z = rng.standard_normal((n, c)) * rng.choice([0.1, 3.0, 30.0, 300.0], (n, 1))
    z[::7, 0] += 50
    z[3::7] = rng.integers(-2, 3, (len(z[3::7]), c))  # ties at the max
    z[5] = 0.0
    z[8::7] = rng.uniform(-1, 1, (len(z[8::7]), c)) * 1e-3  # every term about 1
    z[9::7] = -rng.uniform(0, 1, (len(z[9::7]), c))  # terms in [exp(-λ), 1], rounded
    z[10::7, 1:] = -86.0 + rng.uniform(-1e-4, 1e-4, (len(z[10::7]), c - 1)) * (c > 1)
    return z


@pytest.mark.parametrize("dtype", [np.float32, np.float64, "bfloat16"])
@pytest.mark.parametrize("c", [1, 2, 15, 16, 17, 300, 513, 32000])
def test_the_kernels_scaled_lse_is_within_its_bound(dtype: type | str, c: int) -> None:
    """|lse - exact| <= -log(1 - η): the rows the estimate puts past its error from a
    threshold are there. The bound is not loose by more than 64 times on these rows (a
    bound too small by that much, say EXP32_ERROR alone, fails). bfloat16: the kernel reads
    the stored bits."""
    rng = np.random.default_rng(c)
    z = rows_of(c, rng).astype(np.float32 if dtype == "bfloat16" else dtype)
    stored = z
    if dtype == "bfloat16":
        stored = (z.view(np.uint32) >> 16).astype(np.uint16)
        z = (stored.astype(np.uint32) << 16).view(np.float32)
    rows = rng.permutation(len(z))
    lam = rng.choice([1e-3, 0.38, 1.0, 1.0 + 2**-20, 2.5, 37.0], rows.size)
    lam[z[rows, 0] == -86.0] = 1.0
    top = z.max(axis=1).astype(np.float64)[rows]
    mine, eta = scaled_lse(stored, rows, lam, top)
    exact = exact_lse(z[rows], lam, top)
    bound = -math.log1p(-eta) + 2**-48 * (1 + np.abs(exact))
    err = np.abs(mine - exact)
    assert (err <= bound).all()
    if c >= 300:
        assert err.max() > bound.max() / 64


@pytest.mark.parametrize("dtype", [np.float32, "bfloat16"])
def test_the_kernels_scaled_lse_is_within_its_bound_at_the_float32_arguments_edges(
    dtype: type | str,
) -> None:
    """Where the kernel takes ``λ (z_j - m)`` in float32: λ |m| near 2**24 (numpy's own
    ``λ z_j - λ m`` then off by up to 2**-29 a term), λ at both ends of its range and past
    them (the float64 arguments), logits far from 0 with small gaps, and float32's extremes."""
    rng = np.random.default_rng(7)
    c = 4000
    z = np.empty((8, c), dtype=np.float32)
    z[:4] = 1e6 + rng.uniform(-64, 0, (4, c))  # gaps of a few ulp of 1e6 (0.0625)
    z[4:6] = -1e6 + rng.uniform(-64, 0, (2, c))
    z[6] = rng.standard_normal(c) * 3e37  # differences beyond float32: -inf, clamped
    z[7] = rng.standard_normal(c) * 1e-30
    stored = z
    if dtype == "bfloat16":
        stored = (z.view(np.uint32) >> 16).astype(np.uint16)
        z = (stored.astype(np.uint32) << 16).view(np.float32)
    rows = np.arange(8)
    top = z.max(axis=1).astype(np.float64)
    lam = np.array([16.7, 16.8, 2.0**-60, 2.0**60 / 1e7, 8.0, 2.0**-61, 1.0, 2.0**60])
    lam[4] = 2.0**24 / 1e6 * 0.999  # just inside, the other sign
    mine, eta = scaled_lse(stored, rows, lam, top)
    exact = exact_lse(z, lam, top)
    bound = -math.log1p(-eta) + 2**-48 * (1 + np.abs(exact))
    ok = np.isfinite(exact)
    assert (np.abs(mine - exact)[ok] <= bound[ok]).all()


def test_the_kernels_scaled_lse_is_nan_where_the_scale_overflows() -> None:
    """λ max z beyond float64: numpy's pass (NaN or inf) decides, not the estimate."""
    z = np.array([[1e300, -1e300, 0.0]])
    mine, _ = scaled_lse(z, np.array([0]), np.array([1e10]), np.array([1e300]))
    assert np.isnan(mine).all()


def test_scaled_lse_checks_its_arguments() -> None:
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match="row 3 is not in"):
        scaled_lse(z, np.array([3]), np.ones(1), np.zeros(1))
    with pytest.raises(ValueError, match="m holds"):
        scaled_lse(z, np.array([0, 1]), np.ones(2), np.zeros(1))


def lm_like(seed: int, n: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Language-model-like float32 logits (tests/bench): in float16 many rows near a cliff."""
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal((n, c)) * 3).astype(np.float32)
    z[:, 0] += 12
    y = rng.integers(0, c, n)
    y[::5] = 0
    return z, y


def headroom_of(z: np.ndarray, y: np.ndarray, chunk: int, kernel: bool) -> str:
    """The headroom over chunks of ``chunk`` rows, with the kernel's ends (and so its
    estimates) or numpy's reading; as its repr, every float to the bit."""
    run = headroom.Running(DTYPES)
    for start in range(0, len(y), chunk):
        part, labels = z[start : start + chunk], y[start : start + chunk]
        _, ref, nonfinite, ends = fast.multiclass_index(part, labels, ("float32",))
        run.add(part, labels, ~nonfinite, start, ref, ends if kernel else None)
    return repr(run.result())


def test_most_rows_are_told_by_the_kernels_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows near float16's cliffs (every row past its sum overflow at 1): numpy's pass over a
    row's logits goes to a few rows only, and the cliffs are those of numpy's passes."""
    z, y = lm_like(1, 400, 3000)
    evaluated = [0]

    def counting(fn):  # type: ignore[no-untyped-def]
        def wrapped(x, *args, **kw):  # type: ignore[no-untyped-def]
            evaluated[0] += len(x)
            return fn(x, *args, **kw)

        return wrapped

    monkeypatch.setattr(headroom, "_margin", counting(headroom._margin))
    numpy_ = headroom_of(z, y, 100, kernel=False)
    by_numpy, evaluated[0] = evaluated[0], 0
    assert headroom_of(z, y, 100, kernel=True) == numpy_
    assert by_numpy > 300  # most rows once (the chord tells the others), then Newton's
    assert evaluated[0] < by_numpy / 4
    assert "cause='sum_overflow'" in numpy_


@settings(max_examples=30, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([(120, 300, 40), (90, 2000, 30), (64, 17, 9), (200, 40, 200)]),
    st.sampled_from([0.5, 3.0, 12.0]),
)
def test_the_kernels_estimates_leave_every_cliff_as_numpy_finds_it(
    seed: int, shape: tuple[int, int, int], spread: float
) -> None:
    n, c, chunk = shape
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal((n, c)) * spread).astype(rng.choice([np.float32, np.float64]))
    z[:, 0] += rng.uniform(0, 20)
    z[rng.integers(0, n, 3)] = z[rng.integers(0, n, 3)]  # duplicate rows: exact ties
    y = rng.integers(0, c, n)
    y[::3] = 0
    assert headroom_of(z, y, chunk, kernel=True) == headroom_of(z, y, chunk, kernel=False)
