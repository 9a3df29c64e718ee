"""The rules of cecheck.diagnose, on hand-made path results whose every number is chosen.

These tests feed ``diagnose`` PathResults built by hand (not computed by a path), so each
rule (thresholds, which rows are scored, where a cause may come from) is pinned on its
own; tests/test_engine.py checks the same rules on losses the paths really compute.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from cecheck.diagnose import (
    INPUT_FLAGS,
    NOT_FLAGGED,
    Diagnosis,
    bits_correct,
    diagnose,
    flag_names,
    relative_error,
    severity_of,
)
from cecheck.families import label_problems
from cecheck.losses import PathResult
from cecheck.precision import DTYPES, PRECISIONS

NAN, INF = float("nan"), float("inf")


def run(
    losses: dict[tuple[str, str], list[float]],
    reference: list[float],
    *,
    evidence: dict[tuple[str, str], dict[str, list[bool]]] | None = None,
    nonfinite: list[bool] | None = None,
    ignored: list[bool] | None = None,
    out_of_range: list[bool] | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-6,
) -> Diagnosis:
    """diagnose() over rows whose path losses, evidence and masks are given literally."""
    n = len(reference)
    none = [False] * n
    results = {
        key: PathResult(
            np.array(loss, dtype=np.float64),
            **{k: np.array(v) for k, v in (evidence or {}).get(key, {}).items()},
        )
        for key, loss in losses.items()
    }
    masks = {
        "ignored": np.array(ignored or none),
        "label_out_of_range": np.array(out_of_range or none),
        "invalid_label": np.array(none),
    }
    return diagnose(
        np.array(nonfinite or none),
        masks,
        results,
        np.array(reference, dtype=np.float64),
        PRECISIONS,
        rtol,
        atol,
        nan_input=np.array(nonfinite or none),
        masked_target=np.array(none),
    )


def flags_of(d: Diagnosis, row: int = 0) -> set[str]:
    return set(d.flag_lists()[row])


def causes_of(d: Diagnosis, row: int = 0) -> set[str]:
    return set(d.cause_lists()[row])


# ------------------------------------------------------------------ the measuring tools


def test_relative_error_of_finite_zero_and_nonfinite_values() -> None:
    got = relative_error(
        np.array([1.5, 0.0, 1.0, 0.0, NAN, INF, 2.0]),
        np.array([1.0, 0.0, 0.0, 2.0, 1.0, 1.0, NAN]),
    )
    assert_array_equal(got, [0.5, 0.0, INF, 1.0, NAN, NAN, NAN])


def test_bits_correct_is_minus_log2_of_the_relative_error_clipped_to_the_dtype() -> None:
    got = bits_correct(np.array([1 + 2.0**-10, 1.0, 3.0, 0.0]), np.array([1.0, 1.0, 1.0, 0.0]), 24)
    assert_array_equal(got, [10.0, 24.0, 0.0, 24.0])


# ----------------------------------------------------------------- names and severities


def test_flag_names_are_in_severity_order() -> None:
    names = flag_names(DTYPES)
    severities = [severity_of(f) for f in names]
    assert severities == sorted(severities)
    assert names[: len(INPUT_FLAGS)] == INPUT_FLAGS
    assert names[-1] == "ignored"


def test_diverged_flags_exist_only_when_float64_is_there_to_compare_with() -> None:
    assert not [f for f in flag_names(("float16", "float32")) if f.startswith("diverged")]
    diverged = [f for f in flag_names(("float32", "float64")) if f.startswith("diverged")]
    assert diverged == [
        "diverged:stable_float32",
        "diverged:naive_float32",
        "diverged:textbook_float32",
    ]


@pytest.mark.parametrize(
    ("flag", "severity"),
    [
        ("nonfinite_input", 0),
        ("label_out_of_range", 0),
        ("invalid_label", 0),
        ("stable_nan:float16", 1),
        ("stable_inf:float64", 1),
        ("naive_nan:bfloat16", 2),
        ("naive_inf:float32", 2),
        ("textbook_nan:float32", 3),
        ("textbook_inf:float16", 3),
        ("diverged:stable_float32", 4),
        ("inaccurate:naive_float64", 5),
        ("ignored", NOT_FLAGGED),
    ],
)
def test_severity_of_each_kind_of_flag(flag: str, severity: int) -> None:
    assert severity_of(flag) == severity


# ------------------------------------------------------------------------- label problems


def test_index_labels_ignored_and_out_of_range() -> None:
    m = label_problems("index", np.array([0, 2, 3, -1, -100]), 3, -100)
    assert_array_equal(m["ignored"], [False, False, False, False, True])
    assert_array_equal(m["label_out_of_range"], [False, False, True, True, False])
    assert not m["invalid_label"].any()


def test_soft_labels_must_be_finite_nonnegative_and_sum_to_one() -> None:
    labels = np.array([[0.3, 0.7], [0.3, 0.7005], [0.3, 0.71], [-0.1, 1.1], [NAN, 1.0], [1.0, 0.0]])
    m = label_problems("soft", labels, 2, -100)
    assert_array_equal(m["invalid_label"], [False, False, True, True, True, False])


@pytest.mark.parametrize("ignore_index", [-100, 0, 2, 7])
def test_index_label_masks_follow_their_definition_whatever_the_ignore_index(
    ignore_index: int,
) -> None:
    """A chunk of valid labels takes a shortcut; the masks are the definition's either way."""
    rng = np.random.default_rng(0)
    for labels in (
        rng.integers(0, 3, 50),
        rng.integers(-2, 8, 50),
        np.full(4, ignore_index),
        np.array([], dtype=np.int64),
    ):
        m = label_problems("index", labels, 3, ignore_index)
        ignored = labels == ignore_index
        assert_array_equal(m["ignored"], ignored)
        assert_array_equal(m["label_out_of_range"], ~ignored & ((labels < 0) | (labels >= 3)))
        assert not m["invalid_label"].any()


@pytest.mark.parametrize("form", ["binary", "multihot"])
def test_targets_outside_0_1_are_invalid(form: str) -> None:
    t = np.array([0.0, 1.0, 0.5, 2.0, -0.5, NAN])
    labels = t if form == "binary" else np.stack([t, np.zeros_like(t)], axis=1)
    m = label_problems(form, labels, 2, -100)
    assert_array_equal(m["invalid_label"], [False, False, False, True, True, True])


# ------------------------------------------------------------------------------- the rules


def test_nonfinite_loss_flags_nan_and_inf_separately() -> None:
    d = run({("naive", "float32"): [NAN, INF, 1.0]}, [1.0, 1.0, 1.0])
    assert d.flag_lists() == [["naive_nan:float32"], ["naive_inf:float32"], []]
    assert_array_equal(d.severity, [2, 2, NOT_FLAGGED])
    assert_array_equal(d.error, [INF, INF, 0.0])


def test_inaccurate_means_fewer_than_half_the_dtype_bits() -> None:
    """float32 has 24 bits: a relative error of 2**-13 keeps 13 (fine), 2**-11 keeps 11."""
    d = run({("stable", "float32"): [1 + 2.0**-13, 1 + 2.0**-11]}, [1.0, 1.0])
    assert d.flag_lists() == [[], ["inaccurate:stable_float32"]]
    assert d.error[1] == pytest.approx(2.0**-11)


def test_inaccurate_is_not_raised_where_the_reference_is_below_the_dtype_normal_range() -> None:
    """A float16 0 for a loss of 1e-9 is all float16 can do (its smallest normal is 6e-5);
    a float16 0 for a loss of 1e-3 is a lost loss."""
    d = run({("stable", "float16"): [0.0, 0.0]}, [1e-9, 1e-3])
    assert d.flag_lists() == [[], ["inaccurate:stable_float16"]]
    assert d.cause_lists() == [[], ["cancellation"]]


def test_diverged_compares_with_the_same_path_in_float64_using_atol_and_rtol() -> None:
    """|L - L64| > atol + rtol |L64|, with atol = 1e-6 and rtol = 1e-4 at L64 = 100: the
    threshold is 0.010001. Both values keep over 13 of float32's bits against the
    reference, so they are not inaccurate: divergence is its own test."""
    d = run(
        {
            ("stable", "float32"): [100.01, 100.0101, NAN],
            ("stable", "float64"): [100.0, 100.0, 100.0],
        },
        [100.0, 100.0, 100.0],
    )
    assert d.flag_lists() == [[], ["diverged:stable_float32"], ["stable_nan:float32"]]
    assert d.cause_lists()[1] == []  # keeps half its bits: ordinary rounding, no cause


def test_a_cause_comes_only_from_a_path_that_is_flagged_on_that_row() -> None:
    """Row 0: the naive path saw an exp overflow but its loss is right, so no cause.
    Row 1: the same evidence on a NaN loss is the cause."""
    evidence = {("naive", "float32"): {"exp_overflow": [True, True]}}
    d = run({("naive", "float32"): [2.0, NAN]}, [2.0, 2.0], evidence=evidence)
    assert d.cause_lists() == [[], ["exp_overflow"]]


def test_cancellation_is_the_cause_only_when_no_other_event_explains_the_loss() -> None:
    """Both rows are inaccurate; row 1 recorded a prob_underflow, row 0 nothing."""
    evidence = {("naive", "float32"): {"prob_underflow": [False, True]}}
    d = run({("naive", "float32"): [0.5, 0.5]}, [1.0, 1.0], evidence=evidence)
    assert d.cause_lists() == [["cancellation"], ["prob_underflow"]]


def test_nonfinite_input_is_a_flag_and_the_cause_and_no_path_is_judged() -> None:
    d = run({("stable", "float32"): [NAN, 1.0]}, [NAN, 3.0], nonfinite=[True, True])
    assert flags_of(d, 0) == {"nonfinite_input"}
    assert flags_of(d, 1) == {"nonfinite_input"}
    assert causes_of(d, 0) == {"nan_input"}
    assert causes_of(d, 1) == {"nan_input"}
    assert_array_equal(d.severity, [0, 0])


def test_ignored_and_out_of_range_rows_get_no_path_flags() -> None:
    d = run(
        {("naive", "float32"): [NAN, NAN]},
        [NAN, NAN],
        ignored=[True, False],
        out_of_range=[False, True],
    )
    assert d.flag_lists() == [["ignored"], ["label_out_of_range"]]
    assert_array_equal(d.severity, [NOT_FLAGGED, 0])
    assert not d.causes.any()


def test_severity_is_the_most_serious_flag_and_error_the_largest_flagged_error() -> None:
    d = run(
        {
            ("naive", "float32"): [0.5],
            ("stable", "float32"): [INF],
        },
        [1.0],
    )
    assert flags_of(d) == {"inaccurate:naive_float32", "stable_inf:float32"}
    assert d.severity[0] == 1
    assert d.error[0] == INF


def test_counts_severity_and_error_of_many_mixed_rows_follow_their_definitions() -> None:
    """Counts, severity and error as defined, on rows mixing every kind of flag and cause.

    diagnose counts each column as it writes it and reads only the columns holding a flag;
    the definitions here read the whole matrices.
    """
    rng = np.random.default_rng(1)
    n = 400
    kinds = [0.0, 1e-40, 1e-3, 1.0, 5.0, NAN, INF]
    reference = rng.choice(kinds, n, p=[0.1, 0.1, 0.2, 0.3, 0.2, 0.05, 0.05])
    losses = {}
    evidence = {}
    for key in [(p, d) for p in ("naive", "stable") for d in ("float16", "float32", "float64")]:
        loss = reference * (1 + rng.choice([0.0, 1e-12, 1e-6, 1e-3, 0.5], n))
        loss[rng.random(n) < 0.05] = rng.choice([NAN, INF, 0.0])
        losses[key] = loss.tolist()
        if key[0] == "naive":
            evidence[key] = {
                "exp_overflow": (rng.random(n) < 0.2).tolist(),
                "prob_underflow": (rng.random(n) < 0.2).tolist(),
            }
    d = run(
        losses,
        reference.tolist(),
        evidence=evidence,
        nonfinite=(rng.random(n) < 0.05).tolist(),
        ignored=(rng.random(n) < 0.05).tolist(),
        out_of_range=(rng.random(n) < 0.05).tolist(),
    )
    assert_array_equal(d.flag_counts, np.count_nonzero(d.flags, axis=0))
    assert_array_equal(d.cause_counts, np.count_nonzero(d.causes, axis=0))
    assert np.count_nonzero(d.flag_counts) > 10  # the rows raise many kinds of flag
    assert np.count_nonzero(d.cause_counts) > 3
    expected = [min(map(severity_of, row), default=NOT_FLAGGED) for row in d.flag_lists()]
    assert_array_equal(d.severity, expected)
    assert not np.isnan(d.error).any()
    assert (d.error[d.severity == NOT_FLAGGED] == 0).all()


def test_a_subnormal_reference_loss_gives_no_overflow_warning() -> None:
    """Binary probability 5e-324 with target 0: the reference loss is 5e-324, a clipped
    convention's ~1e-7 is ~2e307 times it; the relative error is inf, silently (pytest makes
    a RuntimeWarning an error)."""
    import mpmath

    import cecheck

    report = cecheck.compare(np.array([5e-324, 0.3]), np.array([0, 1]), inputs="probs")
    with mpmath.workprec(200):
        exact = float(-mpmath.log1p(-mpmath.mpf(5e-324)))  # -log(1 - p), target 0
    assert report.top[0].values["reference"] == exact == 5e-324
