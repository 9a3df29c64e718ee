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


def scaled_lse(z: np.ndarray, rows: np.ndarray, lam: np.ndarray, top: np.ndarray) -> np.ndarray:
    """The kernel's lse(λz) of the ``rows`` of ``z``, each by its λ, ``top`` its max."""
    out = np.empty(len(rows))
    fast.kernel().scaled_lse(z, z.itemsize, *z.shape, rows, lam, top, out, 0, len(rows))
    return out


def numpy_lse(z: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """headroom's own lse(λz) per row (the value Newton's method and _past compute)."""
    return headroom._lse_slope(np.asarray(z, dtype=np.float64), lam, False)[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [1, 2, 15, 16, 17, 300, 32000])
def test_the_kernels_scaled_lse_is_numpys_within_its_slack(dtype: type, c: int) -> None:
    rng = np.random.default_rng(c)
    n = 40
    z64 = rng.standard_normal((n, c)) * rng.choice([0.1, 3.0, 30.0, 300.0], (n, 1))
    z64[::7, 0] += 50  # a class leads by far
    z64[3::7] = rng.integers(-2, 3, (len(z64[3::7]), c))  # ties at the max
    z64[5] = 0.0
    z64[6] = 1e300 * rng.uniform(-1, 1, c)  # near float64's limit (float32: +-inf, skipped)
    z = z64.astype(dtype) if dtype == np.float64 else z64.clip(-1e30, 1e30).astype(dtype)
    rows = rng.permutation(n)[: n - 3]  # some rows, in any order
    lam = rng.choice([1e-3, 0.38, 1.0, 2.5, 37.0], rows.size)
    top = z.max(axis=1).astype(np.float64)[rows]
    mine = scaled_lse(z, rows, lam, top)
    with np.errstate(over="ignore", invalid="ignore"):
        theirs = numpy_lse(z[rows], lam)
    finite = np.isfinite(theirs)
    assert finite.sum() >= rows.size - 2
    terms = lam * np.abs(top) + math.log(c) + np.abs(theirs)
    err = np.abs(mine - theirs)[finite]
    # well inside headroom's slack: a row beyond it is on the side numpy finds it on
    assert (err <= headroom.ESTIMATE_SLACK * 1e-3 * (1 + terms[finite])).all()


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
    assert by_numpy > 400  # every row once, then Newton's method
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
