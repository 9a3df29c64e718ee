"""The loss paths of cecheck.losses, in every dtype, against exact losses.

Every expected loss comes from ``mp_reference`` (tests/mp_reference.py): the textbook
definition of the loss evaluated with mpmath in 450 decimal digits, no max shift and no
log1p, then rounded once to float64. Tolerances:

- float64 values (the reference path, and the float64 stable path where it has no reason to
  lose accuracy): ``rtol=1e-13``, a few hundred float64 ulps;
- the reference path over arbitrary inputs: ``rtol=1e-12`` wherever the exact loss is a
  normal float64 (what the reference promises);
- the other dtypes: the first-order error bounds of :func:`stable_bound` and
  :func:`textbook_bound`, a few unit roundoffs of the dtype times the size of the numbers
  the path handles (derivations in their docstrings).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import ml_dtypes
import mp_reference as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

import cecheck
from cecheck import losses
from cecheck.frameworks import registry
from cecheck.losses import PathResult
from cecheck.precision import DTYPES, Precision, get

FLOAT64_RTOL = 1e-13
REFERENCE_RTOL = 1e-12
TINY64 = float(np.finfo(np.float64).smallest_normal)
KINDS = ("index", "soft", "binary", "multilabel")

# PyTorch's stable path (its fused losses) of each kind of label, the engine's default.
STABLE = {kind: registry.get("torch").path("stable", kind) for kind in KINDS}

# (textbook, stable, reference) of each kind of label, as the engine pairs them.
PATHS: dict[str, tuple[Callable[..., PathResult], Callable[..., PathResult], Callable]] = {
    "index": (losses.textbook_multiclass, STABLE["index"], losses.reference_multiclass),
    "soft": (losses.textbook_soft, STABLE["soft"], losses.reference_soft),
    "binary": (losses.textbook_binary, STABLE["binary"], losses.reference_binary),
    "multilabel": (losses.textbook_multilabel, STABLE["multilabel"], losses.reference_multilabel),
}


def rows(*values: float) -> np.ndarray:
    """One row of logits as a (1, C) float64 array."""
    return np.array([values], dtype=np.float64)


# --------------------------------------------------------------------- the yardstick itself


def test_mp_reference_agrees_with_closed_forms() -> None:
    """The mpmath helper against values that follow from identities, computed with math.

    Equal logits give log C whatever the target; a confident two-class row gives
    log1p(exp(-30)); a zero binary logit gives log 2 whatever the target; a binary logit of
    100 with target 1 gives log1p(exp(-100)). math's log, log1p and exp are good to an ulp.
    """
    assert mp.multiclass([0.0, 0.0], 1) == pytest.approx(math.log(2), rel=1e-15)
    assert mp.multiclass([7.5, 7.5, 7.5], 2) == pytest.approx(math.log(3), rel=1e-15)
    assert mp.soft([-3.0] * 4, [0.1, 0.2, 0.3, 0.4]) == pytest.approx(math.log(4), rel=1e-15)
    assert mp.multiclass([30.0, 0.0], 0) == pytest.approx(math.log1p(math.exp(-30)), rel=1e-15)
    assert mp.multiclass([30.0, 0.0], 1) == pytest.approx(30 + math.log1p(math.exp(-30)))
    for t in (0.0, 0.25, 1.0):
        assert mp.binary(0.0, t) == pytest.approx(math.log(2), rel=1e-15)
    assert mp.binary(100.0, 1.0) == pytest.approx(math.log1p(math.exp(-100)), rel=1e-15)
    assert mp.multilabel([0.0, 100.0], [0.0, 1.0]) == pytest.approx(
        (math.log(2) + math.log1p(math.exp(-100))) / 2, rel=1e-15
    )


def test_mp_reference_resolves_losses_far_below_the_logits() -> None:
    """A loss of exp(-700) next to logits of 1e4: 450 digits leave it correctly rounded."""
    expected = math.exp(-700) * (1 - math.exp(-700) / 2)  # log1p(x) = x - x^2/2 + ...
    assert mp.multiclass([1e4, 1e4 - 700], 0) == pytest.approx(expected, rel=1e-15)


# ------------------------------------------------------------ the classic worked examples


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tf_example_stable_and_reference_give_500_while_textbook_overflows(dtype: str) -> None:
    """Logits [1000, 2000, 2500], target 1 (the TensorFlow walkthrough): the exact loss is
    500 + log1p(exp(-500) + exp(-1500)), which is 500.0 in float64."""
    z, y = rows(1000, 2000, 2500), np.array([1])
    exact = mp.multiclass(z[0], 1)
    assert exact == 500.0
    p = get(dtype)
    assert_allclose(STABLE["index"](z, y, p).loss, [exact], rtol=FLOAT64_RTOL)
    assert_allclose(losses.reference_multiclass(z, y), [exact], rtol=FLOAT64_RTOL)
    textbook = losses.textbook_multiclass(z, y, p)
    assert not np.isfinite(textbook.loss[0])  # exp(2500)/inf = inf/inf: NaN
    assert textbook.exp_overflow is not None
    assert textbook.exp_overflow[0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_logit_100_target_1_is_nan_on_textbook_path_from_zero_times_inf(dtype: str) -> None:
    """sigmoid(100) rounds to 1 in every dtype, so log(1 - p) = -inf meets the weight 1 - t = 0."""
    z, t = np.array([100.0]), np.array([1.0])
    textbook = losses.textbook_binary(z, t, get(dtype))
    assert np.isnan(textbook.loss[0])
    assert textbook.zero_times_inf is not None
    assert textbook.zero_times_inf[0]
    exact = mp.binary(100.0, 1.0)  # log1p(exp(-100)) = 3.72e-44
    assert_allclose(losses.reference_binary(z, t), [exact], rtol=FLOAT64_RTOL)
    if dtype == "float64":
        assert_allclose(STABLE["binary"](z, t, get(dtype)).loss, [exact], rtol=FLOAT64_RTOL)


def test_confident_row_30_0_stable_float32_is_exactly_zero_reference_is_not() -> None:
    """Logits [30, 0], target 0: 1 + exp(-30) rounds to 1 in float32, so stable gives 0;
    the reference keeps the loss log1p(exp(-30)) = 9.3576229688397368e-14."""
    z, y = rows(30, 0), np.array([0])
    exact = mp.multiclass(z[0], 0)
    assert exact == pytest.approx(9.3576229688397368e-14, rel=FLOAT64_RTOL)
    assert STABLE["index"](z, y, get("float32")).loss[0] == 0.0
    assert_allclose(losses.reference_multiclass(z, y), [exact], rtol=FLOAT64_RTOL)


def test_confident_row_30_0_stable_float64_keeps_few_bits() -> None:
    """In float64, 1 + exp(-30) keeps only ~10 of the 53 bits of exp(-30): finite, positive,
    but off by about 1e-3 relative, which is what ``inaccurate:stable_float64`` reports."""
    z, y = rows(30, 0), np.array([0])
    exact = mp.multiclass(z[0], 0)
    stable = STABLE["index"](z, y, get("float64")).loss[0]
    assert stable > 0
    assert 1e-5 < abs(stable - exact) / exact < 1e-2


# ------------------------------------------------------------------ each dtype's emulation


def test_float16_exp_of_12_overflows_while_exp_of_11_does_not() -> None:
    """float16's largest number is 65504: exp(11) = 59874 fits, exp(12) = 162755 does not."""
    p = get("float16")
    assert 11 < p.max_exp_arg < 12
    fits = losses.textbook_multiclass(rows(11, 0), np.array([1]), p)
    overflows = losses.textbook_multiclass(rows(12, 0), np.array([1]), p)
    assert fits.exp_overflow is not None
    assert overflows.exp_overflow is not None
    assert not fits.exp_overflow[0]
    assert np.isfinite(fits.loss[0])
    assert overflows.exp_overflow[0]
    assert np.isinf(overflows.loss[0])  # 1 / inf = 0, -log(0) = inf
    in_float32 = losses.textbook_multiclass(rows(12, 0), np.array([1]), get("float32"))
    assert in_float32.exp_overflow is not None
    assert not in_float32.exp_overflow[0]


def test_bfloat16_rounds_2500_to_2496_so_stable_tf_example_gives_496() -> None:
    """bfloat16 has 8 significant bits: numbers in [2048, 4096) are 16 apart, so 2500 is
    stored as 2496 (1000 and 2000 are exact). The stable path is then exact for the input it
    really sees: the mpmath loss of [1000, 2000, 2496] is 496. An honest result of rounding
    the input, not a fault of the path."""
    p = get("bfloat16")
    assert_allclose(p.cast(np.array([1000.0, 2000.0, 2500.0])), [1000, 2000, 2496], rtol=0)
    exact_of_rounded = mp.multiclass([1000.0, 2000.0, 2496.0], 1)
    assert exact_of_rounded == 496.0
    loss = STABLE["index"](rows(1000, 2000, 2500), np.array([1]), p).loss
    assert loss[0] == exact_of_rounded


def test_float16_stores_2500_exactly_so_stable_tf_example_gives_500() -> None:
    """float16 has 11 significant bits: numbers in [2048, 4096) are 2 apart, 2500 is exact."""
    p = get("float16")
    assert STABLE["index"](rows(1000, 2000, 2500), np.array([1]), p).loss[0] == 500.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_stable_loss_of_equal_logits_is_log2_correctly_rounded_to_the_dtype(dtype: str) -> None:
    """[0, 0]: every step is exact except the final log, so the result is log 2 rounded to
    the dtype (bfloat16: 0.69140625, float16: 0.69335938): proof that results are rounded
    to the narrow format rather than left in float32."""
    p = get(dtype)
    exact = mp.multiclass([0.0, 0.0], 0)
    expected = float(np.asarray(exact).astype(p.storage))
    assert STABLE["index"](rows(0, 0), np.array([0]), p).loss[0] == expected


def test_float16_rounds_an_input_beyond_65504_to_inf() -> None:
    """A logit of 70000 is finite in float64 but inf in float16: the stable path sees
    inf - inf = NaN, with no RuntimeWarning escaping (pytest turns warnings into errors)."""
    p = get("float16")
    assert np.isnan(STABLE["index"](rows(7e4, 0), np.array([1]), p).loss[0])
    assert STABLE["index"](rows(7e4, 0), np.array([1]), get("float32")).loss[0] == 7e4


@pytest.mark.parametrize("kind", KINDS)
def test_logits_beyond_float32_range_give_nonfinite_losses_without_warnings(kind: str) -> None:
    """1e39 is finite in float64 and inf in float32: every float32 path sees inf, and the
    rounding to inf is no RuntimeWarning (pytest runs with warnings as errors)."""
    z = np.array([1e39]) if kind == "binary" else rows(1e39, 0.0)
    labels = {
        "index": np.array([1]),
        "soft": np.array([[0.5, 0.5]]),
        "binary": np.array([0.5]),
        "multilabel": np.array([[0.5, 0.5]]),
    }[kind]
    textbook, stable, reference = PATHS[kind]
    p = get("float32")
    assert not np.isfinite(textbook(z, labels, p).loss[0])
    assert not np.isfinite(stable(z, labels, p).loss[0])
    assert np.isfinite(reference(z, labels)[0])


def test_float16_multilabel_mean_of_large_losses_is_summed_in_float32_as_torch_does() -> None:
    """Three per-class losses of 30000 sum to 90000, beyond float16's 65504; PyTorch's CPU
    mean accumulates float16 in float32 and rounds once, so the mean is 30000, not inf."""
    z, t = rows(3e4, 3e4, 3e4), np.zeros((1, 3))
    exact = mp.multilabel([3e4, 3e4, 3e4], [0.0, 0.0, 0.0])
    assert STABLE["multilabel"](z, t, get("float16")).loss[0] == exact == 3e4


def test_float16_shift_beyond_65504_makes_the_stable_loss_inf() -> None:
    """[60000, -60000]: both logits fit float16, their difference -120000 does not."""
    loss = STABLE["index"](rows(6e4, -6e4), np.array([1]), get("float16")).loss
    assert np.isinf(loss[0])


# ------------------------------------------------------------------ error bounds per dtype


def unit_roundoff(p: Precision) -> float:
    """Half the gap between 1 and the next number: the relative error of one rounding."""
    return 2.0**-p.bits


def smallest_subnormal(p: Precision) -> float:
    return float(ml_dtypes.finfo(p.storage).smallest_subnormal)


def stable_bound(p: Precision, z: np.ndarray, exact: float) -> float:
    """Largest error of the stable path in ``p`` against the exact loss of the float64 row.

    First order, each elementary step rounding with relative error at most u:
    rounding the logits to ``p`` moves the loss by at most 2u max|z| (its gradient in z has
    an l1 norm of at most 2); each shifted logit z_j - max carries u |z_j - max| <= 2u max|z|,
    which moves the loss by at most 4u max|z|; exp, the sum of C terms and the log add at most
    (C + 2) u to log-sum-exp; products with labels, their sum (or the mean over classes)
    and the final subtraction add (C + 2) u |L|. An exp that lands among the subnormals is
    off by up to half the smallest subnormal s. Total:
    u (6 max|z| + (C + 2)(1 + |L|)) + C s; doubled for second-order terms and for the double
    rounding of emulated float16/bfloat16 (a float32 result rounded again).
    """
    u, m, c = unit_roundoff(p), float(np.max(np.abs(z))), np.size(z)
    return 2 * (u * (6 * m + (c + 2) * (1 + abs(exact))) + c * smallest_subnormal(p))


def textbook_bound(p: Precision, z: np.ndarray, exact: float) -> float:
    """Largest error of the textbook path in ``p``, for logits small enough that nothing overflows.

    On top of :func:`stable_bound`: ``log(1 - sigmoid(z))`` takes 1 - p with an absolute
    error of 3u, relative to 1 - p = sigmoid(-z) that is 3u e^z (the cancellation the
    stable form avoids); and a probability or exp(z_j) that is subnormal has an absolute
    error of s / 2, relative up to s e^max|z| or s e^L. Doubled as in stable_bound.
    """
    u, s, m = unit_roundoff(p), smallest_subnormal(p), float(np.max(np.abs(z)))
    c = np.size(z)
    extra = 3 * u * math.exp(m) + (c + 1) * s * (math.exp(m) + math.exp(min(exact, 700)))
    return stable_bound(p, z, exact) + 2 * extra


# ---------------------------------------------------------------- hypothesis strategies


def signed(low: float, high: float) -> st.SearchStrategy[float]:
    """Floats whose magnitude lies in [low, high], either sign."""
    magnitude = st.floats(low, high, allow_nan=False, allow_infinity=False)
    return st.builds(lambda m, neg: -m if neg else m, magnitude, st.booleans())


@st.composite
def batches(
    draw: st.DrawFn, kind: str, elements: st.SearchStrategy[float], max_classes: int = 6
) -> tuple[np.ndarray, np.ndarray]:
    """A few rows of logits and labels of ``kind``.

    Half of the multiclass batches are "clustered": every logit of a row is a shared base
    plus an offset in [-40, 40], which makes the confident rows (target at the max, the rest
    close below) where a loss is tiny next to large logits.
    """
    n = draw(st.integers(1, 4))
    c = 1 if kind == "binary" else draw(st.integers(2, max_classes))
    shape = (n,) if kind == "binary" else (n, c)
    values = draw(st.lists(elements, min_size=n * c, max_size=n * c))
    z = np.array(values, dtype=np.float64).reshape(shape)
    if kind != "binary" and draw(st.booleans()):
        offsets = draw(st.lists(st.floats(-40, 40), min_size=n * c, max_size=n * c))
        z = z[:, :1] + np.array(offsets).reshape(shape)
    if kind == "index":
        labels = np.array(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    elif kind == "soft":
        weights = np.array(draw(st.lists(st.floats(0, 1), min_size=n * c, max_size=n * c)))
        weights = weights.reshape(n, c)
        weights[weights.sum(axis=1) == 0, 0] = 1.0
        labels = weights / weights.sum(axis=1, keepdims=True)
    else:
        target = st.sampled_from([0.0, 1.0]) | st.floats(0, 1)
        labels = np.array(draw(st.lists(target, min_size=n * c, max_size=n * c)))
        labels = labels.reshape(shape)
    return z, labels


def any_kind_batch(elements: st.SearchStrategy[float]) -> st.SearchStrategy:
    return st.sampled_from(KINDS).flatmap(
        lambda kind: st.tuples(st.just(kind), batches(kind, elements))
    )


# ----------------------------------------------------------------------- the properties


@settings(max_examples=150, deadline=None)
@given(any_kind_batch(signed(1e-3, 1e4)))
def test_reference_is_within_1e12_of_mpmath_wherever_the_loss_is_a_normal_float64(
    case: tuple[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    kind, (z, labels) = case
    exact = mp.rows(kind, z, labels)
    got = PATHS[kind][2](z, labels)
    normal = exact >= TINY64
    assert_allclose(got[normal], exact[normal], rtol=REFERENCE_RTOL, atol=0)
    # Below the normal range the reference is still right in absolute terms.
    assert_allclose(got[~normal], exact[~normal], rtol=0, atol=TINY64)


@pytest.mark.parametrize("kind", KINDS)
def test_reference_matches_mpmath_over_every_decade_of_logits(kind: str) -> None:
    """A seeded sweep: 40 rows for each of the 7 decades of logit size from 1e-3 to 1e4;
    a quarter of the rows have the target at the row max (index labels: the tiny-loss
    rows) or a soft target (binary and multilabel). rtol 1e-12."""
    rng = np.random.default_rng(20240531)
    zs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for decade in range(-2, 5):
        shape = (40,) if kind == "binary" else (40, 4)
        z = rng.choice([-1.0, 1.0], shape) * 10.0 ** rng.uniform(decade - 1, decade, shape)
        zs.append(z)
        if kind == "index":
            index = rng.integers(0, 4, 40)
            index[:10] = z[:10].argmax(axis=1)
            ys.append(index)
        elif kind == "soft":
            ys.append(rng.dirichlet(np.ones(4), 40))
        else:
            target = rng.integers(0, 2, shape).astype(np.float64)
            target[:10] = rng.uniform(0, 1, target[:10].shape)
            ys.append(target)
    z, y = np.concatenate(zs), np.concatenate(ys)
    exact = mp.rows(kind, z, y)
    normal = exact >= TINY64
    assert normal.sum() > 200  # the sweep really tests something
    assert_allclose(PATHS[kind][2](z, y)[normal], exact[normal], rtol=REFERENCE_RTOL, atol=0)


@settings(max_examples=60, deadline=None)
@given(any_kind_batch(signed(0, 1e4)), st.sampled_from(DTYPES))
def test_stable_and_reference_are_finite_and_nonnegative_for_finite_logits(
    case: tuple[str, tuple[np.ndarray, np.ndarray]], dtype: str
) -> None:
    """Logits up to 1e4 and at most 6 classes keep every intermediate below float16's 65504."""
    kind, (z, labels) = case
    _, stable, reference = PATHS[kind]
    for loss in (stable(z, labels, get(dtype)).loss, reference(z, labels)):
        assert np.all(np.isfinite(loss))
        assert np.all(loss >= 0)


@settings(max_examples=60, deadline=None)
@given(any_kind_batch(signed(0, 1e4)), st.sampled_from(DTYPES))
def test_stable_path_is_within_its_error_bound_of_mpmath(
    case: tuple[str, tuple[np.ndarray, np.ndarray]], dtype: str
) -> None:
    kind, (z, labels) = case
    p = get(dtype)
    exact = mp.rows(kind, z, labels)
    got = PATHS[kind][1](z, labels, p).loss
    for i in range(len(exact)):
        assert abs(got[i] - exact[i]) <= stable_bound(p, z[i], exact[i]), (i, got[i], exact[i])


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["index", "soft"]).flatmap(
        lambda kind: st.tuples(st.just(kind), batches(kind, signed(0, 1e3)))
    ),
    st.floats(-1e3, 1e3),
    st.sampled_from(DTYPES),
)
def test_adding_a_constant_to_a_row_leaves_stable_and_reference_unchanged(
    case: tuple[str, tuple[np.ndarray, np.ndarray]], shift: float, dtype: str
) -> None:
    """Softmax losses depend only on differences of logits. Within rounding: z + c is itself
    rounded (in float64, then to the dtype), which moves the exact loss by at most
    2 u64 max|z + c|, and each side may be off by its stable_bound (reference: 1e-12)."""
    kind, (z, labels) = case
    _, stable, reference = PATHS[kind]
    moved = z + shift
    exact = mp.rows(kind, z, labels)
    p = get(dtype)
    a, b = stable(z, labels, p).loss, stable(moved, labels, p).loss
    ra, rb = reference(z, labels), reference(moved, labels)
    for i in range(len(exact)):
        input_rounding = 2 * 2.0**-53 * float(np.max(np.abs(moved[i])))
        tol = stable_bound(p, z[i], exact[i]) + stable_bound(p, moved[i], exact[i])
        assert abs(a[i] - b[i]) <= tol + input_rounding
        ref_tol = 2 * REFERENCE_RTOL * exact[i] + TINY64
        assert abs(ra[i] - rb[i]) <= ref_tol + input_rounding


@settings(max_examples=80, deadline=None)
@given(any_kind_batch(signed(0, 10)), st.sampled_from(DTYPES))
def test_textbook_equals_stable_where_textbook_is_finite_and_logits_are_at_most_10(
    case: tuple[str, tuple[np.ndarray, np.ndarray]], dtype: str
) -> None:
    """Within the two paths' error bounds, which for float64 and float32 are a few ulps
    (for float16, whose subnormals start at 6e-5, they are honestly loose)."""
    kind, (z, labels) = case
    textbook, stable, _ = PATHS[kind]
    p = get(dtype)
    n, s = textbook(z, labels, p).loss, stable(z, labels, p).loss
    exact = mp.rows(kind, z, labels)
    for i in np.flatnonzero(np.isfinite(n)):
        tol = textbook_bound(p, z[i], exact[i]) + stable_bound(p, z[i], exact[i])
        assert abs(n[i] - s[i]) <= tol, (i, n[i], s[i])


def test_textbook_and_stable_agree_to_float64_rounding_on_a_moderate_row() -> None:
    """One fixed row, so the agreement in float64 is pinned without hypothesis' luck."""
    z, y = rows(0.5, -2.25, 3.0, 1.0), np.array([1])
    exact = mp.multiclass(z[0], 1)
    p = get("float64")
    assert_allclose(losses.textbook_multiclass(z, y, p).loss, [exact], rtol=FLOAT64_RTOL)
    assert_allclose(STABLE["index"](z, y, p).loss, [exact], rtol=FLOAT64_RTOL)


# -------------------------------------------------------- evidence the textbook paths record


def test_textbook_prob_underflow_without_exp_overflow() -> None:
    """[0, -200], target 1, float32: exp(-200) underflows to 0, so p = 0 and the loss is inf;
    nothing overflowed."""
    r = losses.textbook_multiclass(rows(0, -200), np.array([1]), get("float32"))
    assert np.isinf(r.loss[0])
    assert r.prob_underflow is not None
    assert r.exp_overflow is not None
    assert r.prob_underflow[0]
    assert not r.exp_overflow[0]


def test_textbook_soft_zero_label_on_a_zero_probability_is_zero_times_inf() -> None:
    """Soft labels [0, 0, 1] with logits [0, 200, 0]: class 1 takes all the probability in
    float32, classes 0 and 2 get p = 0; the label-0 class gives 0 * log(0) = NaN."""
    r = losses.textbook_soft(rows(0, 200, 0), np.array([[0.0, 0.0, 1.0]]), get("float32"))
    assert np.isnan(r.loss[0])
    assert r.zero_times_inf is not None
    assert r.zero_times_inf[0]


def test_textbook_binary_saturated_sigmoid_with_soft_target_gives_inf() -> None:
    """Logit 20, target 0.5, float32: sigmoid(20) rounds to 1, log(1 - 1) = -inf is weighted
    by 0.5 (no zero weight, so inf rather than NaN)."""
    r = losses.textbook_binary(np.array([20.0]), np.array([0.5]), get("float32"))
    assert np.isinf(r.loss[0])
    assert r.sigmoid_saturated is not None
    assert r.zero_times_inf is not None
    assert r.sigmoid_saturated[0]
    assert not r.zero_times_inf[0]
    exact = mp.binary(20.0, 0.5)
    assert_allclose(
        losses.reference_binary(np.array([20.0]), np.array([0.5])), [exact], rtol=FLOAT64_RTOL
    )


def test_multilabel_row_loss_is_the_mean_of_binary_losses() -> None:
    """As MultiLabelSoftMarginLoss: checked against mpmath's mean, all dtypes within bound."""
    z, t = rows(2.0, -1.0, 0.5), np.array([[1.0, 0.0, 0.3]])
    exact = mp.multilabel(z[0], t[0])
    assert_allclose(losses.reference_multilabel(z, t), [exact], rtol=FLOAT64_RTOL)
    for dtype in DTYPES:
        p = get(dtype)
        got = STABLE["multilabel"](z, t, p).loss[0]
        assert abs(got - exact) <= stable_bound(p, z[0], exact)


# ---------------------------------------------------------------------- recording the steps


class Steps:
    """A recorder that keeps every call: (name, formula as given, value, shown, fields)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, np.ndarray, bool, dict]] = []

    def __call__(
        self, name: str, formula: str, value: np.ndarray, *, shown: bool = True, **fields: object
    ) -> np.ndarray:
        self.calls.append((name, formula, value, shown, fields))
        return value

    def shown(self) -> list[str]:
        return [name for name, _, _, shown, _ in self.calls if shown]


def test_a_recorder_receives_each_step_of_the_tf_example_as_it_is_computed() -> None:
    z, y = np.array([[1000.0, 2000.0, 2500.0]]), np.array([1])
    steps = Steps()
    result = losses.textbook_multiclass(z, y, get("float32"), steps)
    assert steps.shown() == ["z", "exp", "sum", "p", "log_p", "loss"]
    by_name = {name: (formula, value) for name, formula, value, _, _ in steps.calls}
    assert by_name["z"][0] == "z as float32"
    assert by_name["exp"] == ("exp(z)", by_name["exp"][1])
    assert np.isinf(by_name["exp"][1]).all()  # exp(1000) overflows float32: the NaN's cause
    assert by_name["loss"][1] is result.loss  # the last step is the loss itself
    ref_steps = Steps()
    ref = losses.reference_multiclass(z, y, ref_steps)
    assert ref[0] == 500.0 == mp.multiclass([1000.0, 2000.0, 2500.0], 1)
    name, formula, value, _, fields = ref_steps.calls[1]
    assert (name, formula, value[0]) == ("max", "max = z[{k}]", 2500.0)
    assert formula.format(k=int(fields["k"][0])) == "max = z[2]"


@pytest.mark.parametrize("kind", KINDS)
def test_recording_changes_no_loss_and_ends_at_the_loss(kind: str) -> None:
    rng = np.random.default_rng(5)
    c = 5
    z = rng.normal(size=(40,) if kind == "binary" else (40, c)) * 50
    if kind == "index":
        y = rng.integers(0, c, 40)
    elif kind == "soft":
        y = rng.dirichlet(np.ones(c), size=40)
    else:
        y = rng.integers(0, 2, size=z.shape).astype(np.float64)
    textbook, stable, reference = PATHS[kind]
    for d in DTYPES:
        for path in (textbook, stable):
            steps = Steps()
            recorded = path(z, y, get(d), steps).loss
            assert np.array_equal(recorded, path(z, y, get(d)).loss, equal_nan=True)
            assert steps.calls[-1][0] == "loss"
            assert steps.calls[-1][2] is recorded
            assert all(v.shape[0] == 40 for _, _, v, _, _ in steps.calls)  # one value per row
    steps = Steps()
    recorded = reference(z, y, steps)
    assert np.array_equal(recorded, reference(z, y), equal_nan=True)
    assert steps.calls[-1][0] == "loss"
    assert steps.calls[-1][2] is recorded


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "numpy"])
def test_logits_near_the_float64_limit_raise_no_warning(
    kernel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """z - max overflows to -inf for logits near +-1e308 (exp(-inf) = 0 is the right term):
    expected, so no RuntimeWarning reaches the user (pytest turns warnings into errors)."""
    if kernel:
        monkeypatch.delenv("CECHECK_NO_KERNEL", raising=False)
    else:
        monkeypatch.setenv("CECHECK_NO_KERNEL", "1")
    z = np.array([[1e308, -1e308, 0.0], [1.0, 2.0, 3.0]])
    frame = cecheck.compare(z, np.array([0, 1])).to_frame()
    assert frame["reference"][0] == 0.0  # exp(-1e308 - 1e308) and exp(-1e308) are 0
    assert frame["stable_float64"][0] == 0.0


@pytest.mark.parametrize("soft", [False, True], ids=["index", "soft"])
def test_a_reference_past_float64s_range_is_inf_without_a_warning(soft: bool) -> None:
    """max - z_y = 1e308 + 1e308 overflows: the exact loss is past float64's range, inf;
    numpy's overflow warning (an error under pytest) is not raised."""
    import cecheck

    z = np.array([[1e308, -1e308], [3.0, 1.7e308]])
    y = np.array([[0.0, 1.0], [1.0, 0.0]]) if soft else np.array([1, 0])
    report = cecheck.compare(z, y)
    exact = [mp.soft(z[i], y[i]) if soft else mp.multiclass(z[i], int(y[i])) for i in range(2)]
    assert exact == [np.inf, 1.7e308]  # 2e308 is past float64's range; 1.7e308 - 3 rounds
    assert [r.values["reference"] for r in sorted(report.top, key=lambda r: r.row)] == exact
