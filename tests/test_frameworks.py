"""Tests of cecheck.frameworks: probability-input conventions, PyTorch's label smoothing and
class weights, and the streaming batch means.

Expected values are computed independently with mpmath at 50 digits (far more than any
float64 needs) from the rule each framework documents, then rounded once to the format the
path works in; the constants 100 (PyTorch's clamp) and 16.118095 (Keras in float32) are
also pinned as the frameworks' documentation states them.
"""

from __future__ import annotations

import math
import re

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_allclose

from cecheck import frameworks as fw
from cecheck import losses
from cecheck.frameworks import torch_fused
from cecheck.precision import DTYPES, get

mpmath.mp.dps = 50

# Relative tolerance of one correctly rounded log in each format, with room for the few
# rounded steps around it (a few units in the last place).
RTOL = {"float16": 4e-3, "bfloat16": 3e-2, "float32": 1e-6, "float64": 1e-14}
STORAGE = {d: get(d).storage for d in DTYPES}


def mp_neglog(x: float) -> mpmath.mpf:
    """-log(x) in mpmath, ``x`` taken exactly."""
    return -mpmath.log(mpmath.mpf(float(x)))


def rounded(value: mpmath.mpf, dtype: str) -> float:
    """An mpmath value rounded to ``dtype`` (via float64: exact enough for these checks)."""
    return float(np.asarray(float(value)).astype(STORAGE[dtype]).astype(np.float64))


def loss(path: str, task: str, probs: object, target: object, dtype: str) -> np.ndarray:
    return fw.probs_loss(path, task, np.asarray(probs), np.asarray(target), get(dtype)).loss


# ------------------------------------------------------------------- documented constants


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_bce_costs_exactly_100_for_a_hopeless_row(dtype: str) -> None:
    # BCELoss clamps each log at -100: p = 0 with t = 1 and p = 1 with t = 0 both cost 100.
    assert loss("torch", "binary", [0.0, 1.0], [1.0, 0.0], dtype).tolist() == [100.0, 100.0]


def test_torch_bce_clamp_applies_per_term_for_soft_targets() -> None:
    # t = 0.25, p = 0: 0.25 * 100 from the clamped log(p), log1p(-0) = 0 for the other term.
    assert loss("torch", "binary", [0.0], [0.25], "float64").tolist() == [25.0]


def test_keras_float32_hopeless_row_is_16_118095() -> None:
    got = loss("keras", "binary", [0.0], [1.0], "float32")[0]
    # -log(float32(1e-7)) in mpmath, rounded to float32; Keras's documented 16.118095.
    expected = rounded(mp_neglog(np.float32(1e-7)), "float32")
    assert got == expected
    assert round(float(got), 6) == 16.118095


def test_keras_float32_upper_clip_is_one_minus_2_pow_23() -> None:
    # float32(1 - 1e-7) = 1 - 2**-23, so p = 1, t = 0 costs -log(2**-23) = 23 log 2.
    got = loss("keras", "binary", [1.0], [0.0], "float32")[0]
    assert got == rounded(23 * mpmath.log(2), "float32")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_keras_upper_clip_vanishes_in_narrow_formats(dtype: str) -> None:
    # 1 - 1e-7 rounds to 1 in float16 and bfloat16: p = 1, t = 0 is log(0), p = 1, t = 1 is
    # 0 * log(0) = NaN, as Keras computes it in those formats.
    result = fw.probs_loss(
        "keras", "binary", np.array([1.0, 1.0]), np.array([0.0, 1.0]), get(dtype)
    )
    assert np.isinf(result.loss[0])
    assert np.isnan(result.loss[1])
    assert result.zero_times_inf is not None
    assert result.zero_times_inf.tolist() == [False, True]


@pytest.mark.parametrize(
    ("dtype", "eps_log2"), [("float64", 52), ("float32", 23), ("float16", 10), ("bfloat16", 7)]
)
def test_sklearn_hopeless_row_costs_minus_log_eps(dtype: str, eps_log2: int) -> None:
    # eps = finfo(dtype).eps = 2**-k, so -log(eps) = k log 2 (36.043653 in float64).
    got = loss("sklearn", "binary", [0.0, 1.0], [1.0, 0.0], dtype)
    expected = rounded(eps_log2 * mpmath.log(2), dtype)
    assert got.tolist() == [expected, expected]
    if dtype == "float64":
        assert round(float(got[0]), 6) == 36.043653


@pytest.mark.parametrize("dtype", DTYPES)
def test_naive_gives_inf_and_zero_times_inf_nan(dtype: str) -> None:
    result = fw.probs_loss(
        "naive", "binary", np.array([0.0, 1.0, 0.0]), np.array([1.0, 1.0, 0.0]), get(dtype)
    )
    assert np.isinf(result.loss[0])
    assert np.isnan(result.loss[1])  # 0 * log(1 - 1): the zero target meets log 0
    assert np.isnan(result.loss[2])
    assert result.zero_times_inf is not None
    assert result.zero_times_inf.tolist() == [False, True, True]


# ------------------------------------------------------------- evidence and hopeless rows


@pytest.mark.parametrize("path", fw.PROB_PATHS)
def test_every_path_flags_a_zero_target_probability(path: str) -> None:
    q = np.array([0.0, 1.0, 0.3, 1.0])
    t = np.array([1.0, 0.0, 1.0, 1.0])
    result = fw.probs_loss(path, "binary", q, t, get("float32"))
    assert result.prob_underflow is not None
    assert result.prob_underflow.tolist() == [True, True, False, False]
    assert fw.zero_target_probability("binary", q, t).tolist() == [True, True, False, False]


def test_a_probability_that_underflows_in_float16_is_flagged_there_only() -> None:
    q, t = np.array([1e-9]), np.array([1.0])
    assert fw.probs_loss("torch", "binary", q, t, get("float16")).loss.tolist() == [100.0]
    assert fw.probs_loss("naive", "binary", q, t, get("float16")).prob_underflow.tolist() == [True]
    r32 = fw.probs_loss("naive", "binary", q, t, get("float32"))
    assert r32.prob_underflow.tolist() == [False]
    # -log(float32(1e-9)) in mpmath, rounded to float32.
    assert r32.loss[0] == pytest.approx(rounded(mp_neglog(np.float32(1e-9)), "float32"), rel=1e-6)


def test_multiclass_hopeless_rows_per_convention() -> None:
    probs = np.array([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])
    y = np.array([0, 2])
    got = {path: loss(path, "multiclass", probs, y, "float32") for path in fw.PROB_PATHS}
    assert np.isinf(got["naive"][0])
    assert np.isinf(got["torch"][0])  # nll_loss(torch.log(p)): no clamp for multiclass
    assert got["keras"][0] == rounded(mp_neglog(np.float32(1e-7)), "float32")
    assert got["sklearn"][0] == rounded(23 * mpmath.log(2), "float32")
    expected = rounded(mp_neglog(np.float32(0.5)), "float32")  # a healthy row: all agree
    assert [got[p][1] for p in fw.PROB_PATHS] == [expected] * 4
    assert fw.zero_target_probability("multiclass", probs, y).tolist() == [True, False]


def test_keras_renormalises_rows_and_sklearn_does_not() -> None:
    probs = np.array([[0.2, 0.2]])  # sums to 0.4
    y = np.array([0])
    # Keras: -log(0.2 / 0.4) = log 2; scikit-learn >= 1.5: -log(0.2). Both from mpmath.
    assert loss("keras", "multiclass", probs, y, "float64")[0] == pytest.approx(
        float(mpmath.log(2)), rel=1e-15
    )
    assert loss("sklearn", "multiclass", probs, y, "float64")[0] == pytest.approx(
        float(mp_neglog(0.2)), rel=1e-15
    )
    assert fw.invalid_probabilities("multiclass", probs).tolist() == [True]


def test_soft_targets_on_probabilities() -> None:
    probs = np.array([[0.0, 0.25, 0.75]])
    t = np.array([[0.0, 0.5, 0.5]])
    naive = fw.probs_loss("naive", "multiclass", probs, t, get("float64"))
    assert np.isnan(naive.loss[0])  # 0 * log(0) in the first class
    assert naive.zero_times_inf is not None
    assert naive.zero_times_inf.tolist() == [True]
    # scikit-learn's xlogy makes the zero target contribute 0: 0.5 (-log .25 - log .75).
    expected = float((mp_neglog(0.25) + mp_neglog(0.75)) / 2)
    assert loss("sklearn", "multiclass", probs, t, "float64")[0] == pytest.approx(
        expected, rel=1e-15
    )
    assert fw.probs_reference("multiclass", probs, t)[0] == pytest.approx(expected, rel=1e-15)


def test_multilabel_is_the_mean_over_classes() -> None:
    probs = np.array([[0.0, 0.5]])
    t = np.array([[1.0, 1.0]])
    # (100 + -log 0.5) / 2 for torch; the reference is inf.
    expected = float((100 + mp_neglog(0.5)) / 2)
    assert loss("torch", "multilabel", probs, t, "float64")[0] == pytest.approx(expected, rel=1e-15)
    assert np.isinf(fw.probs_reference("multilabel", probs, t)[0])
    assert fw.zero_target_probability("multilabel", probs, t).tolist() == [True]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", fw.PROB_PATHS)
def test_paths_agree_with_mpmath_away_from_the_clips(path: str, dtype: str) -> None:
    # Probabilities in [0.01, 0.99]: no convention clips. For t = 1 each path gives -log(p)
    # of p as the format holds it. For t = 0, torch uses log1p(-p); the others round 1 - p to
    # the format first (exact for p >= 0.5, a rounding that the loss inherits otherwise), so
    # the expected value is -log of that rounded difference. All in mpmath, rounded once.
    rng = np.random.default_rng(7)
    stored = np.asarray(rng.uniform(0.01, 0.99, 50)).astype(STORAGE[dtype]).astype(np.float64)
    t = rng.integers(0, 2, 50).astype(np.float64)
    got = loss(path, "binary", stored, t, dtype)
    expected = []
    for q, ti in zip(stored, t, strict=True):
        if ti == 1:
            expected.append(float(mp_neglog(q)))
        elif path == "torch":
            expected.append(float(-mpmath.log1p(-mpmath.mpf(q))))
        else:
            expected.append(float(mp_neglog(rounded(1 - mpmath.mpf(q), dtype))))
    assert_allclose(got, expected, rtol=RTOL[dtype])


def test_probs_reference_against_mpmath() -> None:
    q = np.array([1e-300, 0.5, 1 - 2**-52, 1e-20])
    t = np.array([1.0, 0.3, 0.0, 0.0])
    expected = [
        float(
            -(
                mpmath.mpf(ti) * mpmath.log(mpmath.mpf(qi))
                + (1 - mpmath.mpf(ti)) * mpmath.log(1 - mpmath.mpf(qi))
            )
        )
        for qi, ti in zip(q, t, strict=True)
    ]
    assert_allclose(fw.probs_reference("binary", q, t), expected, rtol=1e-15)


def test_invalid_probabilities() -> None:
    q = np.array([0.5, -0.1, 1.5, np.nan])
    assert fw.invalid_probabilities("binary", q).tolist() == [False, True, True, True]
    rows = np.array([[0.5, 0.5], [0.9, 0.2], [np.inf, 0.0]])
    assert fw.invalid_probabilities("multiclass", rows).tolist() == [False, True, True]
    assert fw.invalid_probabilities("multilabel", rows).tolist() == [False, False, True]


def test_unknown_path_or_task_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown path 'tf'"):
        fw.probs_loss("tf", "binary", np.zeros(1), np.zeros(1), get("float32"))
    with pytest.raises(ValueError, match="unknown task"):
        fw.probs_loss("torch", "ranking", np.zeros(1), np.zeros(1), get("float32"))


def test_no_stable_path_advice_says_export_logits() -> None:
    assert "no stable path" in fw.NO_STABLE_PATH
    assert "Export the logits" in fw.NO_STABLE_PATH
    assert set(fw.CONVENTIONS) == set(fw.PROB_PATHS)


# ------------------------------------------------------------ label smoothing, class weights


def mp_torch_smoothed(z: np.ndarray, y: int, eps: float, w: np.ndarray) -> float:
    """PyTorch's formula for an index label, in mpmath:
    ``(1 - eps) w[y] nll_y + eps / C sum_c w_c nll_c`` with ``nll_c = lse(z) - z_c``."""
    zz = [mpmath.mpf(float(v)) for v in z]
    lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in zz))
    nll = [lse - v for v in zz]
    ww = [mpmath.mpf(float(v)) for v in w]
    e = mpmath.mpf(eps)
    smooth = mpmath.fsum(wc * n for wc, n in zip(ww, nll, strict=True))
    return float((1 - e) * ww[y] * nll[y] + e / len(zz) * smooth)


def test_smoothed_targets_reproduce_pytorchs_formula() -> None:
    z = np.array([[3.0, -1.0, 0.5, 20.0], [-40.0, 2.0, 2.0, 1.0]])
    y = np.array([0, 2])
    w = np.array([0.5, 2.0, 1.0, 3.0])
    t = fw.smoothed_targets(y, "index", 4, 0.1, w)
    got = losses.reference_soft(z, t)
    expected = [mp_torch_smoothed(z[i], int(y[i]), 0.1, w) for i in range(2)]
    assert_allclose(got, expected, rtol=1e-14)


def test_smoothing_also_applies_to_soft_targets() -> None:
    soft = np.array([[0.7, 0.3, 0.0]])
    got = fw.smoothed_targets(soft, "soft", 3, 0.3)
    assert_allclose(got, [[0.7 * 0.7 + 0.1, 0.3 * 0.7 + 0.1, 0.1]], rtol=1e-15)
    assert "soft targets too" in fw.SOFT_SMOOTHING_NOTE


def test_ignored_and_out_of_range_labels_get_zero_targets_and_weights() -> None:
    y = np.array([1, -100, 5, 0])
    w = np.array([2.0, 3.0, 4.0])
    t = fw.smoothed_targets(y, "index", 3, 0.3, w)
    assert t[1].tolist() == [0.0, 0.0, 0.0]
    assert t[2].tolist() == [0.0, 0.0, 0.0]
    assert_allclose(t[0], [0.2, 3.0 * (0.7 + 0.1), 0.4])
    assert fw.row_weights(y, "index", 3, w).tolist() == [3.0, 0.0, 0.0, 2.0]
    assert fw.row_weights(y, "index", 3).tolist() == [1.0, 0.0, 0.0, 1.0]
    # Soft targets: PyTorch's mean divides by the row count whatever the weights.
    assert fw.row_weights(np.eye(3), "soft", 3, w).tolist() == [1.0, 1.0, 1.0]


def test_smoothing_rejects_labels_that_are_not_multiclass() -> None:
    with pytest.raises(ValueError, match="multiclass labels"):
        fw.smoothed_targets(np.zeros((2, 3)), "multihot", 3, 0.1)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_label_smoothing_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        fw.check_label_smoothing(bad)


def test_apply_row_weights_rounds_and_keeps_zero_times_inf() -> None:
    base = losses.PathResult(np.array([2.0, np.inf], dtype=np.float32))
    got = fw.apply_row_weights(base, np.array([0.1, 0.0]), get("float32")).loss
    assert got[0] == np.float32(np.float32(0.1) * np.float32(2.0))
    assert np.isnan(got[1])  # weight 0 times an infinite loss, as PyTorch gives it


finite_logits = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 6), st.integers(2, 6)),
    elements=st.floats(-1e4, 1e4, allow_nan=False),
)


@settings(max_examples=200, deadline=None)
@given(z=finite_logits, data=st.data())
def test_smoothed_targets_without_smoothing_or_weights_give_the_index_loss(
    z: np.ndarray, data: st.DataObject
) -> None:
    n, c = z.shape
    y = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    t = fw.smoothed_targets(y, "index", c, 0.0, np.ones(c))
    for d in ("float32", "float64"):
        p = get(d)
        # -Σ t · log_softmax with a one-hot t is exactly -log_softmax[y]: PyTorch's two
        # stable paths (probability and index targets) agree to the bit.
        assert_allclose(
            torch_fused.stable_soft(z, t, p).loss,
            torch_fused.stable_index(z, y, p).loss,
            rtol=0,
            atol=0,
        )
    assert_allclose(
        losses.reference_soft(z, t), losses.reference_multiclass(z, y), rtol=1e-13, atol=1e-300
    )


# ------------------------------------------------------------------------- class weights


def test_parse_class_weights_from_a_list() -> None:
    assert fw.parse_class_weights("1, 2.5,0", 3).tolist() == [1.0, 2.5, 0.0]


def test_parse_class_weights_from_files(tmp_path: object) -> None:
    import pathlib

    folder = pathlib.Path(str(tmp_path))
    text = folder / "w.txt"
    text.write_text("1\n2\n 3e-1\n")
    assert fw.parse_class_weights(str(text), 3).tolist() == [1.0, 2.0, 0.3]
    npy = folder / "w.npy"
    np.save(npy, np.array([0.5, 1.5]))
    assert fw.parse_class_weights(str(npy), 2).tolist() == [0.5, 1.5]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,2", "expected 3 weights (one per class), got 2"),
        ("1,x,3", "'x' is not a number"),
        ("1,-2,3", "must be >= 0, class 1 has -2"),
        ("0,0,0", "all weights are 0"),
        ("1,nan,3", "finite"),
        ("missing.txt", "no such file"),
        ("", "empty"),
    ],
)
def test_parse_class_weights_errors_are_one_sentence(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        fw.parse_class_weights(text, 3)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------- batch means


def feed(
    bm: fw.BatchMeans,
    values: dict[str, np.ndarray],
    weights: np.ndarray,
    ignored: np.ndarray,
    cuts: list[int],
) -> list[dict[str, np.ndarray]]:
    """Feed rows to ``bm`` in chunks ending at ``cuts``; the completed batches of each."""
    out, start = [], 0
    for end in [*cuts, len(weights)]:
        out.append(
            bm.add(
                {c: v[start:end] for c, v in values.items()}, weights[start:end], ignored[start:end]
            )
        )
        start = end
    out.append(bm.flush())
    return out


def test_second_batch_all_ignored_is_nan_with_the_reason() -> None:
    # 10 rows, batch size 4, chunks that cut through batches: rows 4-7 are all -100.
    y = np.array([0, 1, 1, 0, -100, -100, -100, -100, 1, 0])
    ignored = y == -100
    v = np.where(ignored, 0.0, np.arange(10.0))
    bm = fw.BatchMeans(4, ["stable_float32"])
    feed(bm, {"stable_float32": v}, fw.row_weights(y, "index", 2), ignored, [3, 5, 9])
    summary = bm.result()
    assert summary.batches == 3
    assert summary.nonfinite_batches == 1
    issue = summary.issues[0]
    assert (issue.batch, issue.first_row, issue.rows, issue.ignored) == (1, 4, 4, 4)
    assert math.isnan(issue.means["stable_float32"])
    assert issue.reason == (
        "every label in batch 1 (rows 4-7) is -100 (ignore_index): PyTorch's mean is 0/0 = NaN"
    )
    col = summary.columns["stable_float32"]
    assert (col.nan, col.inf) == (1, 0)
    assert (col.worst_batch, col.worst_mean) == (2, 8.5)  # the short last batch: (8 + 9) / 2
    data = summary.to_dict()
    assert data["last_batch_rows"] == 2
    assert data["nonfinite"][0]["reasons"]["stable_float32"] == issue.reason


def test_weighted_mean_divides_by_the_target_weights() -> None:
    y = np.array([0, 1, -100, 1])
    w = np.array([1.0, 3.0])
    rw = fw.row_weights(y, "index", 2, w)
    v = np.array([2.0, 3.0 * 4.0, 0.0, 3.0 * 1.0])  # w[y] * CE, as PyTorch's rows
    bm = fw.BatchMeans(4, ["x"])
    done = feed(bm, {"x": v}, rw, y == -100, [])
    assert done[0]["x"].tolist() == [(2.0 + 12.0 + 3.0) / (1.0 + 3.0 + 3.0)]
    assert done[0]["weight"].tolist() == [7.0]


def test_zero_weight_nan_row_and_inf_row_reasons() -> None:
    v = np.array([0.0, 0.0, np.nan, 1.0, np.inf, 1.0, np.inf, 0.0])  # weight 0: loss 0
    weights = np.array([0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    ignored = np.zeros(8, dtype=bool)
    bm = fw.BatchMeans(2, ["x"], max_issues=2)
    feed(bm, {"x": v}, weights, ignored, [1])
    summary = bm.result()
    assert summary.nonfinite_batches == 4
    assert summary.truncated
    assert [i.batch for i in summary.issues] == [0, 1]
    assert summary.issues[0].reason == (
        "every label in batch 0 (rows 0-1) that is not ignored has class weight 0: "
        "PyTorch's mean is 0/0 = NaN"
    )
    assert summary.issues[1].reason == "row 2 in batch 1 (rows 2-3) has a NaN loss: the mean is NaN"
    assert (summary.columns["x"].nan, summary.columns["x"].inf) == (2, 2)


def test_ignored_rows_do_not_leak_their_values() -> None:
    # An ignored row holding NaN (a NaN logit on an ignored row) does not make the mean NaN.
    v = np.array([np.nan, 4.0])
    bm = fw.BatchMeans(2, ["x"])
    done = feed(bm, {"x": v}, np.array([0.0, 1.0]), np.array([True, False]), [])
    assert done[0]["x"].tolist() == [4.0]


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        fw.BatchMeans(0, ["x"])


@settings(max_examples=100, deadline=None)
@given(
    values=hnp.arrays(
        np.float64,
        st.integers(1, 40),
        elements=st.one_of(st.floats(0, 100), st.just(np.inf), st.just(np.nan)),
    ),
    batch=st.integers(1, 9),
    data=st.data(),
)
def test_batch_means_do_not_depend_on_chunking(
    values: np.ndarray, batch: int, data: st.DataObject
) -> None:
    n = len(values)
    ignored = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    weights = np.where(ignored, 0.0, 1.0)
    cuts = sorted(data.draw(st.sets(st.integers(1, n), max_size=5)))
    whole = fw.BatchMeans(batch, ["x"])
    parts = fw.BatchMeans(batch, ["x"])
    one = np.concatenate([d["x"] for d in feed(whole, {"x": values}, weights, ignored, [])])
    many = np.concatenate([d["x"] for d in feed(parts, {"x": values}, weights, ignored, cuts)])
    # Direct computation: sum of the rows not ignored over their count, per batch.
    with np.errstate(invalid="ignore", divide="ignore"):
        direct = [
            np.where(ignored[s : s + batch], 0.0, values[s : s + batch]).sum()
            / (~ignored[s : s + batch]).sum()
            for s in range(0, n, batch)
        ]
    assert_allclose(many, one, rtol=1e-15)  # only the order of the float64 sums differs
    assert_allclose(one, direct, rtol=1e-15)
    a, b = whole.result(), parts.result()
    assert (a.batches, a.nonfinite_batches) == (b.batches, b.nonfinite_batches)
    assert [(i.batch, i.reasons) for i in a.issues] == [(i.batch, i.reasons) for i in b.issues]
    assert (a.columns["x"].nan, a.columns["x"].inf) == (b.columns["x"].nan, b.columns["x"].inf)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", fw.PROB_PATHS)
def test_values_that_are_not_probabilities_give_values_not_warnings(path: str, dtype: str) -> None:
    # pytest turns every RuntimeWarning into an error: the paths must compute quietly.
    q = np.array([-0.1, 1.5, np.nan, np.inf])
    fw.probs_loss(path, "binary", q, np.array([1.0, 0.0, 1.0, 0.0]), get(dtype))
    rows = np.array([[-0.5, 1.5], [np.nan, 0.0], [0.0, 0.0]])
    fw.probs_loss(path, "multiclass", rows, np.array([0, 1, 0]), get(dtype))
    fw.probs_loss(path, "multiclass", rows, np.eye(2)[[0, 1, 0]], get(dtype))


def test_flush_returns_the_short_last_batch() -> None:
    bm = fw.BatchMeans(4, ["x"])
    assert bm.add({"x": np.array([1.0, 2.0, 3.0])}, np.ones(3), np.zeros(3, bool))["x"].size == 0
    last = bm.flush()
    assert last["batch"].tolist() == [0]
    assert last["rows"].tolist() == [3]
    assert last["x"].tolist() == [2.0]
    assert bm.flush()["x"].size == 0  # nothing left open
