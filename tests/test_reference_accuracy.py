"""The reference is within 1e-12 relative wherever the exact loss is a normal float64.

The hard corner: a vocabulary of 32k-262k classes whose target holds the max by about 718,
so that the exact loss (2.5e-308 to 1e-307) is normal while every other term ``exp(z_j - m)``
is a float64 subnormal, rounded to a multiple of 2^-1074 (relative error up to 1e-11 each,
all in one direction when the terms are equal). Expected values come from mpmath
(``mp_reference.multiclass_repeated``: the same row with each distinct value counted).
"""

from __future__ import annotations

import mp_reference as mp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cecheck import fast, losses
from cecheck.engine import Settings, evaluate

REL = 1e-12
TINY = np.finfo(np.float64).tiny
KERNEL = [
    False,
    pytest.param(True, marks=pytest.mark.skipif(not fast.installed(), reason="no kernel")),
]


def _row(values: list[float], counts: list[int]) -> np.ndarray:
    """One row of logits: value i repeated counts[i] times, the target (value 0) first."""
    return np.repeat(np.array(values, dtype=np.float64), counts)[None, :]


def _check(values: list[float], counts: list[int], use_fast: bool) -> None:
    exact = mp.multiclass_repeated(values, counts, 0)
    assert exact >= TINY  # the claim is for normal losses
    z, y = _row(values, counts), np.array([0])
    c = z.shape[1]
    onehot = np.zeros((1, c))
    onehot[0, 0] = 1.0
    got = [losses.reference_multiclass(z, y)[0], losses.reference_soft(z, onehot)[0]]
    r = evaluate(z, y, "multiclass", "index", c, Settings(("float64",)), use_fast=use_fast)
    got.append(r.values["reference"][0])
    for value in got:
        assert abs(value / exact - 1) <= REL, (value, exact)  # no subnormal arithmetic


@pytest.mark.parametrize("use_fast", KERNEL)
@pytest.mark.parametrize(
    ("classes", "gap"),
    # the worst gaps of a scan in steps of 0.05 (errors 3.4e-12, 3.7e-12, 2.5e-11 before the
    # terms were rescaled), and one loss near 1e-307
    [(32768, 718.75), (65536, 719.3), (262144, 720.8), (262144, 719.4)],
)
def test_subnormal_terms_of_a_large_vocabulary(classes: int, gap: float, use_fast: bool) -> None:
    assert np.exp(-gap) < TINY  # every term but the target's is subnormal
    _check([0.0, -gap], [1, classes - 1], use_fast)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.floats(708.5, 721.0), st.integers(1000, 65536)), min_size=1, max_size=4),
    st.floats(-1e3, 1e3),
)
def test_tiny_losses_of_many_subnormal_terms(groups: list[tuple[float, int]], shift: float) -> None:
    values = [shift] + [shift - gap for gap, _ in groups]
    counts = [1] + [n for _, n in groups]
    assume(mp.multiclass_repeated(values, counts, 0) >= TINY)  # a normal loss
    _check(values, counts, use_fast=False)
