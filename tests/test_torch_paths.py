"""The PyTorch emulations (cecheck.frameworks.torch_naive / torch_fused) against the issue's
cases, against mpmath where they claim accuracy, and against installed torch (2.13.0, CPU).

Parity bound: on every row of tests/torch_cases.py, the emulation and torch are both NaN,
both +inf, both -inf or both finite; finite values differ by at most

- 0 in float16 and bfloat16: bit-identical (torch accumulates in float32 and rounds once, so
  the order of its sums does not show);
- 8 units of ``eps · max(1, |L|)`` in float32 and float64 (``L`` torch's loss): torch's
  ``sum(-1)`` adds classes in another order than numpy, and its SLEEF exp/log/log1p differ from
  the correctly rounded value by an ulp on about 1% of float32 arguments;
- for the naive binary and multilabel paths in float32 and float64, 8 units of
  ``eps · (max(1, |L|) + κ)``, where ``κ = s (1 - t) / (1 - s) + t`` is how much the loss moves
  when the sigmoid ``s`` moves by one ulp (``log1p(-s)`` near ``s = 1`` magnifies it): torch's
  vectorised exp is SLEEF's and its tail elements use glibc's, so an element's sigmoid can
  differ from the emulation's by an ulp depending on its position in the tensor.
"""

from __future__ import annotations

import math
from typing import Any

import mp_reference as mp
import numpy as np
import pytest
import torch_cases as tc
from hypothesis import given, settings
from hypothesis import strategies as st

from cecheck import losses
from cecheck.frameworks import torch_common, torch_fused, torch_naive
from cecheck.precision import get

# ------------------------------------------------------------------- the cases


def test_naive_float16_of_a_confident_row_is_zero_where_the_unshifted_formula_is_nan() -> None:
    """Row [11.5, 0, 0], target 0: torch's softmax subtracts the max, so p = 1 in float16 and
    -log p = 0 (torch prints -0.0); the unshifted exp(11.5) = 98715 overflows float16."""
    z, y = np.array([[11.5, 0.0, 0.0]]), np.array([0])
    got = torch_naive.naive_index(z, y, get("float16"))
    assert got.loss.tolist() == [0.0]
    assert not got.prob_underflow.any()
    assert np.isnan(losses.textbook_multiclass(z, y, get("float16")).loss).all()
    # what float16 loses: the exact loss is 2.03e-5, below float16's spacing at 1
    assert mp.multiclass(z[0], 0) == pytest.approx(2.0260e-5, rel=1e-4)


def test_naive_float16_target_probability_underflow_is_inf_with_its_cause() -> None:
    """The LM case of the issue: a target probability of e^-21.4 underflows float16 (its
    smallest subnormal is 6e-8 = e^-16.6) and -log 0 is inf."""
    z = np.array([[21.4, 0.0, 0.0, 0.0]])
    got = torch_naive.naive_index(z, np.array([1]), get("float16"))
    assert got.loss.tolist() == [math.inf]
    assert got.prob_underflow.tolist() == [True]
    exact = mp.multiclass(z[0], 1)
    assert torch_fused.stable_index(z, np.array([1]), get("float16")).loss[0] == pytest.approx(
        exact, rel=get("float16").eps
    )


@pytest.mark.parametrize(("dtype", "z", "exact"), [
    ("bfloat16", -4.3, 0.0135), ("float16", -8.0, 3.4e-4), ("float32", -15.0, 3.06e-7),
])  # fmt: skip
def test_bce_with_logits_cancels_to_exactly_zero(dtype: str, z: float, exact: float) -> None:
    """``(1 - t) z - log_sigmoid(z)`` at t = 0, z < 0: both terms round to z and cancel."""
    got = torch_fused.stable_binary(np.array([z]), np.array([0.0]), get(dtype))
    assert got.loss.tolist() == [0.0]
    assert got.cancellation.tolist() == [True]
    # the true loss, as the format stores the logit
    zc = float(get(dtype).cast(z))
    assert mp.binary(zc, 0.0) == pytest.approx(exact, rel=0.02)


def test_bce_with_logits_without_cancellation_is_accurate_and_unflagged() -> None:
    """t = 1 (or z > 0 at t = 0): one term is ~0, nothing cancels, the value is accurate."""
    z = np.array([-15.0, 3.0, 0.5])
    t = np.array([1.0, 0.0, 1.0])
    for dtype in ("float32", "float64"):
        got = torch_fused.stable_binary(z, t, get(dtype))
        assert not got.cancellation.any()
        exact = [mp.binary(a, b) for a, b in zip(z, t, strict=True)]
        np.testing.assert_allclose(got.loss, exact, rtol=4 * get(dtype).eps)


def test_label_smoothing_overflows_float16_as_torch_does() -> None:
    """Logits [0] + [-1e4] * 9, target 0, label_smoothing 0.1: -Σ log_softmax = 9e4 > 65504."""
    z = np.array([[0.0] + [-1e4] * 9])
    got = torch_fused.stable_index(z, np.array([0]), get("float16"), label_smoothing=0.1)
    assert got.loss.tolist() == [math.inf]
    assert got.sum_overflow.tolist() == [True]
    # float32 holds the sum: 0.9 · 0 + 9e4 · 0.01 = 900
    f32 = torch_fused.stable_index(z, np.array([0]), get("float32"), label_smoothing=0.1)
    assert f32.loss.tolist() == [pytest.approx(900.0, rel=1e-6)]
    assert not f32.sum_overflow.any()


@pytest.mark.parametrize("dtype", ["bfloat16", "float32", "float64"])
def test_minus_inf_mask_on_a_non_target_class_gives_log_2(dtype: str) -> None:
    """[1e8, -inf, 1e8], y = 0: the mask weighs nothing, the loss is log 2 in both paths."""
    z, y = np.array([[1e8, -np.inf, 1e8]]), np.array([0])
    p = get(dtype)
    expected = float(p.cast(mp.multiclass(z[0], 0)))
    assert expected == pytest.approx(math.log(2), rel=p.eps)
    assert torch_fused.stable_index(z, y, p).loss.tolist() == [expected]
    assert torch_naive.naive_index(z, y, p).loss.tolist() == [expected]


def test_minus_inf_mask_with_soft_targets_and_smoothing_follows_torch() -> None:
    """torch multiplies before it sums: a zero target on a masked class is 0 · -inf = NaN, and
    label smoothing puts eps / C on the masked class, whose -log p is inf."""
    z = np.array([[1e8, -np.inf, 1e8]])
    p = get("float32")
    soft = torch_fused.stable_soft(z, np.array([[0.5, 0.0, 0.5]]), p)
    assert np.isnan(soft.loss).all()
    assert soft.zero_times_inf.tolist() == [True]
    smoothed = torch_fused.stable_index(z, np.array([0]), p, label_smoothing=0.1)
    assert smoothed.loss.tolist() == [math.inf]
    assert smoothed.prob_underflow.tolist() == [True]


def test_ignored_rows_cost_zero_in_every_index_path() -> None:
    z = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 40.0]])
    y = np.array([-100, 0])
    p = get("float16")
    for loss in (
        torch_naive.naive_index(z, y, p).loss,
        torch_fused.stable_index(z, y, p).loss,
        torch_fused.stable_index(z, y, p, label_smoothing=0.2, weight=np.array([1, 2, 3])).loss,
    ):
        assert loss[0] == 0.0
        assert loss[1] > 0
    assert torch_naive.naive_index(z, y, p).prob_underflow.tolist() == [False, True]


def test_class_weights_scale_the_row_as_nll_loss_does() -> None:
    z, y = np.array([[0.3, -1.2, 2.0]]), np.array([1])
    w = np.array([0.5, 3.0, 1.0])
    exact = 3.0 * mp.multiclass(z[0], 1)
    got = torch_fused.stable_index(z, y, get("float64"), weight=w).loss
    np.testing.assert_allclose(got, [exact], rtol=4 * get("float64").eps)


def test_naive_bce_clamps_a_saturated_sigmoid_at_100() -> None:
    z, t = np.array([-120.0, 120.0, 5.0]), np.array([1.0, 0.0, 0.5])
    got = torch_naive.naive_binary(z, t, get("float32"))
    assert got.loss[:2].tolist() == [100.0, 100.0]
    assert got.sigmoid_saturated.tolist() == [True, True, False]


@pytest.mark.parametrize("bits", [512, 256])
def test_lane_sum_adds_in_torchs_vector_order(monkeypatch: pytest.MonkeyPatch, bits: int) -> None:
    """Below one vector, left to right; from one vector on, lane by lane, then across the
    lanes: values where the order shows (2**24 + 1 rounds to 2**24 in float32)."""
    monkeypatch.setattr(torch_common, "VECTOR_BITS", bits)
    lanes = bits // 32
    big = 2.0**24
    short = np.array([[big, 1.0, 1.0, -big]], dtype=np.float32)
    assert torch_common.lane_sum(short).tolist() == [0.0]  # ((big + 1) + 1) - big
    row = np.zeros((1, 2 * lanes), dtype=np.float32)
    row[0, [0, 1, lanes + 1]] = [big, 1.0, 1.0]  # lane 0 holds big, lane 1 holds 1 + 1
    assert torch_common.lane_sum(row).tolist() == [big + 2]
    left_to_right = np.float32(0)
    for v in row[0]:
        left_to_right += v
    assert left_to_right == big
    doubles = np.zeros((1, bits // 64 + 1))
    doubles[0, [0, 1, bits // 64]] = [2.0**53, 1.0, 1.0]  # lane 0 gets 2**53 + 1 = 2**53
    assert torch_common.lane_sum(doubles).tolist() == [2.0**53]  # then + 1 = 2**53 again


# ----------------------------------------------------------------- properties (hypothesis)

finite_logit = st.floats(-60, 60, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(finite_logit, min_size=4, max_size=4), min_size=1, max_size=6),
    st.sampled_from(["float16", "bfloat16", "float32"]),
    st.integers(0, 3),
)
def test_one_hot_naive_soft_is_naive_index_or_nan_through_0_log_0(
    z: list[list[float]], dtype: str, target: int
) -> None:
    """``-(t · log softmax).sum()`` with a one-hot t is ``-log softmax[y]``, except where a
    non-target probability underflowed: then 0 · log 0 makes it NaN (and says so)."""
    za = np.array(z)
    y = np.full(len(za), target)
    p = get(dtype)
    index = torch_naive.naive_index(za, y, p)
    soft = torch_naive.naive_soft(za, np.eye(4)[y], p)
    nan = np.isnan(soft.loss)
    np.testing.assert_array_equal(nan, soft.zero_times_inf)
    np.testing.assert_array_equal(soft.loss[~nan], index.loss[~nan])


@settings(max_examples=300, deadline=None)
@given(st.floats(-700, 700, allow_nan=False), st.sampled_from([0.0, 1.0, 0.25]))
def test_bce_with_logits_float64_error_is_bounded_by_the_cancelled_size(z: float, t: float) -> None:
    """The fused binary loss in float64 is within 4 eps of ``max(|L|, |(1 - t) z|)`` of the
    exact loss: accurate unless its two terms cancel, and then off by at most the size of
    what cancelled (the stated bound of the cancellation)."""
    got = float(torch_fused.stable_binary(np.array([z]), np.array([t]), get("float64")).loss[0])
    exact = mp.binary(z, t)
    size = max(abs(exact), abs((1 - t) * z), get("float64").tiny)
    assert abs(got - exact) <= 4 * get("float64").eps * size


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(tc.DTYPES))
def test_each_row_is_computed_alone(seed: int, dtype: str) -> None:
    """A row's loss does not depend on the rows computed with it (the engine chunks rows)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((5, 7)) * 20
    y = rng.integers(0, 7, 5)
    p = get(dtype)
    for fn in (torch_naive.naive_index, torch_fused.stable_index):
        together = fn(z, y, p).loss
        alone = np.concatenate([fn(z[i : i + 1], y[i : i + 1], p).loss for i in range(5)])
        np.testing.assert_array_equal(together, alone)


# ------------------------------------------------------------ accuracy against mpmath


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_stable_index_on_ordinary_rows_is_accurate(dtype: str) -> None:
    """Where nothing cancels or overflows, torch's cross_entropy is accurate to a few eps."""
    rng = np.random.default_rng(7)
    z = rng.standard_normal((200, 10)) * 3
    y = rng.integers(0, 10, 200)
    p = get(dtype)
    zc = p.cast(z).astype(np.float64)
    exact = mp.rows("index", zc, y)
    got = torch_fused.stable_index(z, y, p).loss.astype(np.float64)
    assert (np.abs(got - exact) <= 4 * p.eps * np.maximum(1.0, exact)).all()


# ---------------------------------------------------------------------- torch parity


@pytest.fixture
def torch(monkeypatch: pytest.MonkeyPatch) -> object:
    """The torch module (the test skips without it), its sums in the lane order of the
    kernels it dispatches to on this CPU."""
    module = pytest.importorskip("torch", exc_type=ImportError, reason="torch is not installed")
    capability = module.backends.cpu.get_cpu_capability()
    monkeypatch.setattr(torch_common, "VECTOR_BITS", 512 if capability == "AVX512" else 256)
    return module


def _sensitivity(torch: Any, case: tc.Case, dtype: str) -> np.ndarray:
    """Per row, ``κ = s (1 - t) / (1 - s) + t`` of the naive BCE (mean over classes)."""
    s = torch.sigmoid(torch.from_numpy(case.z).to(getattr(torch, dtype))).double().numpy()
    t = case.labels
    with np.errstate(divide="ignore", invalid="ignore"):  # s = 1: saturated, clamped at 100
        k = np.where(s < 1, s * (1 - t) / (1 - s), 0.0) + t
    return k if k.ndim == 1 else k.mean(axis=1)


@pytest.mark.parametrize("dtype", tc.DTYPES)
@pytest.mark.parametrize("family", tc.FAMILIES)
@pytest.mark.parametrize("path", tc.PATHS)
def test_parity_with_torch(torch: Any, path: str, family: str, dtype: str) -> None:
    rows = 0
    for case in tc.cases(family):
        expected = tc.torch_loss(torch, path, case, dtype)
        got = tc.ours(path, case, dtype).loss.astype(np.float64)
        rows += len(expected)
        kind = tc.finiteness(expected)
        np.testing.assert_array_equal(tc.finiteness(got), kind, err_msg=case.name)
        both = kind == 0
        if dtype in ("float16", "bfloat16"):
            np.testing.assert_array_equal(got[both], expected[both], err_msg=case.name)
            continue
        scale = np.maximum(1.0, np.abs(expected))
        if path == "naive" and family in ("binary", "multilabel"):
            scale = scale + _sensitivity(torch, case, dtype)
        err = np.abs(got[both] - expected[both]) / (get(dtype).eps * scale[both])
        assert err.max(initial=0.0) <= 8, case.name
    assert rows >= 1000
