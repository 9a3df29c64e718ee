"""The narrow kernel's rows whose textbook exp overflows: decided from the row's max.

A row whose max reaches the least value of the format whose textbook exp is inf
(cecheck.narrow.exp_overflow_at: 11.09375 in float16, 89 in bfloat16) has an exp sum of
inf, so the kernel looks up the target's exp only and sums PyTorch's exps alone
(pairwise_sum's order). Its bits must stay the numpy specification's: rows at the
threshold, an ulp of the format either side of it and at the float32 and float64 values
that round there, with the max at the target or elsewhere, of every length the pairwise
sum splits differently; and the rows the threshold does not decide (over_at inf) must give
the same bits through the look-ups. Every CPU copy: tests/kernel_clone_run.py runs these
rows too.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from cecheck import fast, narrow
from cecheck import precision as prec
from cecheck.arraytypes import Array

if not fast.installed():
    pytest.skip("the C kernel cecheck._kernel was not built", allow_module_level=True)

from test_narrow_kernel import NARROW, STORAGE, TORCH, _assert_spec_bits

from cecheck import _kernel  # after the skip: it may not be built

LENGTHS = [1, 2, 9, 250, 256, 1000, 4099, 32000]  # 256, 1000, 32000: equal halves


def _format_values(d: str) -> Array:
    """Every value of the format d, as float32, by its bits."""
    return np.arange(1 << 16, dtype=np.uint16).view(STORAGE[d]).astype(np.float32)


@pytest.mark.parametrize("d", NARROW)
def test_the_textbook_exp_overflows_exactly_from_the_threshold(d: str) -> None:
    x, e = _format_values(d), narrow.tables((d,))[0, 0]
    at = narrow.exp_overflow_at((d,))[0]
    assert at == {"float16": 11.09375, "bfloat16": 89.0}[d]
    ordered = ~np.isnan(x)
    assert_array_equal(e[ordered] == np.inf, x[ordered] >= at)
    assert (e[ordered] >= 0).all()
    both = narrow.exp_overflow_at(NARROW)
    assert both[NARROW.index(d)] == at


def test_a_table_not_overflowing_from_a_threshold_has_none() -> None:
    """overflow_threshold: inf (the look-ups decide) for an inf entry below a finite one,
    a NaN or negative exp of a value that is not NaN, or no inf at all."""
    x = _format_values("float16")
    e = narrow.tables(("float16",))[0, 0]
    at = narrow.overflow_threshold(x, e)
    assert at == 11.09375
    finite = x[np.isfinite(x)]
    for value, exp in ((5.0, np.inf), (20.0, 7.0), (-3.0, np.nan), (-3.0, -1.0), (-3.0, -np.inf)):
        doctored = e.copy()
        doctored[x == value] = exp
        assert narrow.overflow_threshold(x, doctored) == np.inf, (value, exp)
    assert narrow.overflow_threshold(finite, np.zeros_like(finite)) == np.inf
    doctored = e.copy()
    doctored[np.isnan(x)] = np.inf  # the exps of NaN do not matter: a row of NaN is numpy's
    assert narrow.overflow_threshold(x, doctored) == at


def _near(d: str) -> Array:
    """float64 logits at the threshold of d, a value of the format either side, and the
    float32 and float64 values that round to the threshold or next to it (the midpoints with
    the format's ties to even, and a float64 ulp either side: double rounding)."""
    at = np.array(narrow.exp_overflow_at((d,))[0]).astype(STORAGE[d]).view(np.uint16)
    below, t, above = (at - 1 + np.arange(3, dtype=np.uint16)).view(STORAGE[d]).astype(float)
    mids = [(below + t) / 2, (t + above) / 2]
    f32 = [np.nextafter(np.float32(m), np.float32(s)) for m in mids for s in (-np.inf, np.inf)]
    f64 = [np.nextafter(m, s) for m in mids for s in (-np.inf, np.inf)]
    return np.array([below, t, above, *mids, *np.array(f32, np.float64), *f64])


def _boundary_rows(d: str, c: int, dtype: type) -> tuple[Array, Array]:
    """Rows of c logits (background well below the threshold) with a logit near it (_near):
    at the target, elsewhere (the target below it, or far below), at both; and rows with
    none."""
    rng = np.random.default_rng(c)
    rows, targets = [], []
    for v in _near(d):
        for kind in ("target", "other", "other_below", "both", "none"):
            if c == 1 and kind not in ("target", "none"):
                continue
            z = rng.standard_normal(c) * 2
            t, o = rng.choice(c, 2, replace=False) if c > 1 else (0, 0)
            if kind in ("target", "both"):
                z[t] = v
            if kind in ("other", "other_below", "both"):
                z[o] = v
            if kind == "other_below":
                z[t] = float(_near(d)[0])
            rows.append(z)
            targets.append(t)
    return np.ascontiguousarray(np.array(rows).astype(dtype)), np.array(targets, dtype=np.int64)


@pytest.mark.parametrize("c", LENGTHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", NARROW)
def test_rows_near_the_threshold_give_the_specification_bits(d: str, c: int, dtype: type) -> None:
    z, y = _boundary_rows(d, c, dtype)
    _assert_spec_bits(z, y, (d,))
    results, _, _, _ = fast.multiclass_index(z, y, (d,), TORCH)
    over = results[("textbook", d)].exp_overflow
    assert over is not None
    assert over.any()
    assert not over.all()  # the rows reach both sides of the threshold


def _run(z: Array, y: Array, over_at: Array) -> tuple[Array, Array]:
    n, c = z.shape
    loss, bits = np.empty((2, 3, n)), np.empty((2, n), dtype=np.uint16)
    tables = narrow.tables(NARROW)
    _kernel.narrow_index(z, z.itemsize, n, c, y, 3, tables, over_at, loss, bits, 0, n)
    return loss, bits


@pytest.mark.parametrize("c", [1, 9, 1000, 32000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_the_threshold_does_not_decide_give_the_same_bits(c: int, dtype: type) -> None:
    """Without a threshold (over_at inf: a table whose exp does not overflow from one) the
    kernel looks every exp up, and its bits are those it gives with the threshold."""
    parts = [_boundary_rows(d, c, dtype) for d in NARROW]
    z, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    with_at = _run(z, y, narrow.exp_overflow_at(NARROW))
    without = _run(z, y, np.full(2, np.inf, dtype=np.float32))
    for mine, theirs in zip(with_at, without, strict=True):
        assert_array_equal(mine.view(np.uint8), theirs.view(np.uint8))
    assert (with_at[1] & 1).any()


def test_the_threshold_buffer_must_hold_one_per_format() -> None:
    z, y = np.zeros((1, 3), np.float32), np.zeros(1, np.int64)
    with pytest.raises(ValueError, match="over_at"):
        _run(z, y, np.zeros(3, dtype=np.float32))


@pytest.mark.parametrize("seed", range(3))
def test_the_one_array_sum_is_numpys_pairwise_sum(seed: int) -> None:
    """pairwise_sum, the sum of PyTorch's exps in an overflowing row: numpy's float32 row
    sum bit for bit, at every length up to 300 and at lengths whose halves are equal or
    not, of terms of mixed magnitudes (so that the order shows)."""
    rng = np.random.default_rng(seed)
    for n in [*range(300), 500, 1000, 1001, 4096, 4099, 32000, 32001, 65543]:
        a = (rng.standard_normal(n) * 10.0 ** rng.uniform(-4, 4, n)).astype(np.float32)
        want = a[None, :].sum(axis=1)[0]
        assert np.float32(_kernel.pairwise_sum(a)).view(np.uint32) == want.view(np.uint32), n


def test_a_language_model_block_overflows_in_float16_only() -> None:
    """The rows the threshold serves: a confident class near 12 (tests/bench/bench.py's
    logits) overflows float16's exp, not bfloat16's; the bits stay the specification's."""
    rng = np.random.default_rng(9)
    z = (rng.standard_normal((8, 32000)) * 3).astype(np.float32)
    z[:, 0] += 12.0
    y = rng.integers(0, 32000, 8)
    y[:2] = 0  # the confident class is the target: p = exp(inf) / inf, NaN
    _assert_spec_bits(z, y)
    rounded = prec.get("float16").round(z)
    assert (rounded.max(axis=1) >= narrow.exp_overflow_at(("float16",))[0]).all()
    assert (z.max(axis=1) < narrow.exp_overflow_at(("bfloat16",))[0]).all()
