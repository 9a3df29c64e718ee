"""Flags and causes on losses the paths really compute, through engine.evaluate and compare.

Every loss value asserted here is computed independently by ``mp_reference`` (the textbook
definition in 450 digits with mpmath, rounded once to float64) and compared with
``rtol=1e-13`` (float64 values) or exactly (where the float64 result is exact).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import mp_reference as mp
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from cecheck import compare, engine, partial
from cecheck.diagnose import CAUSES, INPUT_FLAGS, NOT_FLAGGED, PROBABILITY_CAUSES
from cecheck.engine import Settings, evaluate

F32_F64 = ("float32", "float64")
FLOAT64_RTOL = 1e-13


@dataclass(frozen=True)
class Case:
    """One row that must raise exactly ``flags`` and ``causes`` (and why, in ``why``)."""

    id: str
    task: str
    label_form: str
    logits: list[float] | float
    label: object
    dtypes: tuple[str, ...]
    flags: set[str]
    causes: set[str]
    why: str


CASES = [
    Case(
        "tf_example", "multiclass", "index", [1000, 2000, 2500], 1, F32_F64,
        {"textbook_nan:float32", "textbook_nan:float64", "naive_inf:float32"},
        {"exp_overflow", "prob_underflow"},
        "exp(2500) overflows the textbook softmax: inf/inf; torch's softmax gives p = "
        "exp(-500), 0 in float32: -log 0 = inf",
    ),
    Case(
        "tf_example_bfloat16", "multiclass", "index", [1000, 2000, 2500], 1,
        ("bfloat16", "float64"),
        {"textbook_nan:bfloat16", "textbook_nan:float64", "naive_inf:bfloat16"},
        {"exp_overflow", "prob_underflow"},
        "bfloat16 stores 2500 as 2496: stable gives 496 against 500 in float64; that keeps"
        " 7 of 8 bits, ordinary bfloat16 rounding within 64 eps: not diverged; only the"
        " textbook NaN and the naive inf have causes",
    ),
    Case(
        "overflow_then_zero_prob", "multiclass", "index", [0, 200], 0, F32_F64,
        {"textbook_inf:float32", "naive_inf:float32"}, {"exp_overflow", "prob_underflow"},
        "exp(200) is inf in float32, so p(class 0) = 1/inf = 0 and -log 0 = inf; torch's "
        "p = exp(-200) is 0 in float32",
    ),
    Case(
        "zero_prob_alone", "multiclass", "index", [0, -200], 1, F32_F64,
        {"textbook_inf:float32", "naive_inf:float32"}, {"prob_underflow"},
        "exp(-200) underflows to 0 in float32: p = 0 with no overflow",
    ),
    Case(
        "confident_30_0", "multiclass", "index", [30, 0], 0, F32_F64,
        {
            "inaccurate:stable_float32", "inaccurate:stable_float64",
            "inaccurate:naive_float32", "inaccurate:naive_float64",
            "inaccurate:textbook_float32", "inaccurate:textbook_float64",
        },
        {"cancellation"},
        "1 + exp(-30) rounds to 1 (float32) or keeps 10 bits of exp(-30) (float64)",
    ),
    Case(
        "float32_stores_4000_1", "multiclass", "index", [4000.1, 4000], 1, F32_F64,
        {"textbook_nan:float32", "textbook_nan:float64", "diverged:naive_float32",
         "diverged:stable_float32"}, {"exp_overflow"},
        "float32 stores 4000.1 as 4000.1001: naive and stable give 0.744448 against 0.744397,"
        " 5e-5 off, beyond 64 float32 eps; 13.8 of 24 bits kept, so no accuracy note and no"
        " cause; the textbook exp(4000) overflows",
    ),
    Case(
        "subnormal_prob", "multiclass", "index", [-50, 50], 0, F32_F64,
        {"diverged:textbook_float32", "diverged:naive_float32"}, set(),
        "p = exp(-100) is a float32 subnormal with 5 bits left: -log p is 99.98, not 100;"
        " a diverged row that keeps half its bits gets no cause",
    ),
    Case(
        "float16_shift_overflows", "multiclass", "index", [60000, -60000], 1, ("float16",),
        {"stable_inf:float16", "naive_inf:float16", "textbook_inf:float16"},
        {"exp_overflow", "prob_underflow"},
        "z - max = -120000 is -inf in float16 (the causes come from the textbook and naive "
        "paths)",
    ),
    Case(
        "float16_input_overflows", "multiclass", "index", [70000, 0], 1, ("float16",),
        {"stable_nan:float16", "naive_nan:float16", "textbook_inf:float16"},
        {"cast_overflow", "exp_overflow", "prob_underflow"},
        "70000 is inf in float16: inf - inf = NaN on the stable and naive paths",
    ),
    Case(
        "nan_logit", "multiclass", "index", [float("nan"), 0], 1, F32_F64,
        {"nonfinite_input"},
        {"nan_input"},
        "a NaN logit makes every path NaN: an input problem, no path is judged on it",
    ),
    Case(
        "inf_logit", "multiclass", "index", [float("inf"), 0], 1, F32_F64,
        {"nonfinite_input"}, {"inf_input"}, "a +inf logit: an input problem (an overflowing head)",
    ),
    Case(
        "masked_target", "multiclass", "index", [0, float("-inf")], 1, F32_F64,
        {"masked_target"}, {"masked_target"},
        "the target's logit is -inf: an infinite loss in every framework, not scored",
    ),
    Case(
        "label_out_of_range", "multiclass", "index", [1, 0], 2, F32_F64,
        {"label_out_of_range"}, set(), "class 2 of 2 classes",
    ),
    Case("ignored", "multiclass", "index", [1, 0], -100, F32_F64, {"ignored"}, set(), "-100"),
    Case(
        "binary_100", "binary", "binary", 100.0, 1.0, F32_F64,
        {"textbook_nan:float32", "textbook_nan:float64", "inaccurate:naive_float64"},
        {"sigmoid_saturated", "zero_times_inf"},
        "sigmoid(100) = 1, so (1 - t) log(1 - p) = 0 * -inf; torch's BCE clamps the log and"
        " gives 0 where the loss is 3.7e-44 (a float64 normal, below float32's)",
    ),
    Case(
        "binary_saturated_soft_target", "binary", "binary", 20.0, 0.5, F32_F64,
        {"textbook_inf:float32", "diverged:naive_float32", "inaccurate:naive_float32"},
        {"sigmoid_saturated"},
        "sigmoid(20) = 1 in float32, log(1 - p) = -inf weighted by 0.5; torch clamps it at"
        " -100: 50 where the loss is 10",
    ),
    Case(
        "soft_zero_label_on_zero_prob", "multiclass", "soft", [0, 200, 0], [0, 0, 1.0], F32_F64,
        {"textbook_nan:float32", "naive_nan:float32"},
        {"exp_overflow", "prob_underflow", "zero_times_inf"},
        "exp(200) = inf leaves p = 0 for labels 0 (0 * -inf) and 1 (-log 0); torch's "
        "p = exp(-200) is 0 in float32 too",
    ),
    Case(
        "soft_label_sums_to_1_1", "multiclass", "soft", [0, 1, 0], [0.5, 0.6, 0.0], F32_F64,
        {"invalid_label"}, set(), "a probability vector must sum to 1",
    ),
    Case(
        "multihot_2", "multilabel", "multihot", [0, 1, 0], [0.0, 1.0, 2.0], F32_F64,
        {"invalid_label"}, set(), "a multi-hot target must lie in [0, 1]",
    ),
    Case(
        "multilabel_saturated", "multilabel", "multihot", [50, -50, 0], [1.0, 1.0, 0.0],
        F32_F64, {"textbook_nan:float32", "textbook_nan:float64"},
        {"sigmoid_saturated", "zero_times_inf"},
        "sigmoid(50) = 1 meets target 1: 0 * log(0); torch's clamp at -100 keeps its naive"
        " loss finite and, averaged over the classes, accurate",
    ),
]  # fmt: skip


def evaluate_case(case: Case) -> engine.ChunkResult:
    logits = np.array([case.logits], dtype=np.float64)
    labels = np.array([case.label])
    c = 1 if case.task == "binary" else logits.shape[1]
    return evaluate(logits, labels, case.task, case.label_form, c, Settings(case.dtypes))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_row_raises_exactly_its_flags_and_causes(case: Case) -> None:
    diagnosis = evaluate_case(case).diagnosis
    assert set(diagnosis.flag_lists()[0]) == case.flags, case.why
    assert set(diagnosis.cause_lists()[0]) == case.causes, case.why


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_reference_column_of_each_case_matches_mpmath(case: Case) -> None:
    """Scored rows carry the exact loss; ignored rows 0 (as PyTorch), out-of-range rows NaN."""
    result = evaluate_case(case)
    got = result.values["reference"][0]
    if case.id == "ignored":
        assert got == 0.0
    elif case.id == "label_out_of_range":
        assert np.isnan(got)
    elif not np.all(np.isfinite(case.logits)):  # NaN, or inf (+inf logit, masked target)
        assert not np.isfinite(got)
    else:
        kind = "index" if case.label_form == "index" else case.label_form
        kind = {"multihot": "multilabel"}.get(kind, kind)
        assert_allclose(got, mp.rows(kind, result.logits, result.labels)[0], rtol=FLOAT64_RTOL)


def test_every_flag_kind_and_every_cause_is_raised_by_a_case() -> None:
    """The table above is complete: each kind of flag (diverged and inaccurate on both
    paths) and each cause occurs in it."""
    flags = {f for c in CASES for f in c.flags}
    kinds = {f.split(":")[0] for f in flags}
    assert kinds == {
        *INPUT_FLAGS, "ignored", "naive_nan", "naive_inf", "stable_nan", "stable_inf",
        "textbook_nan", "textbook_inf", "diverged", "inaccurate",
    }  # fmt: skip
    path_kinds = {(f.split(":")[0], f.split(":")[1].split("_")[0]) for f in flags if ":" in f}
    for kind in ("diverged", "inaccurate"):
        assert {(kind, "stable"), (kind, "naive"), (kind, "textbook")} <= path_kinds
    # ``clipped`` needs probability input (tests/test_framework_view.py raises it), and
    # ``sum_overflow`` label smoothing (tests/test_fidelity.py).
    raised = {cause for c in CASES for cause in c.causes}
    assert raised == set(CAUSES) - set(PROBABILITY_CAUSES) - {"sum_overflow"}


def test_tf_example_values_stable_500_textbook_nan() -> None:
    """500 is the mpmath loss of [1000, 2000, 2500] with target 1, to float64 precision."""
    every_dtype = Settings(("float16", "bfloat16", "float32", "float64"))
    z, y = np.array([[1000.0, 2000.0, 2500.0]]), np.array([1])
    r = evaluate(z, y, "multiclass", "index", 3, every_dtype)
    exact = mp.multiclass([1000.0, 2000.0, 2500.0], 1)
    for col in ("stable_float16", "stable_float32", "stable_float64", "reference"):
        assert_allclose(r.values[col], [exact], rtol=FLOAT64_RTOL, err_msg=col)
    assert r.values["stable_bfloat16"][0] == mp.multiclass([1000.0, 2000.0, 2496.0], 1)
    for d in ("float16", "bfloat16", "float32", "float64"):
        assert np.isnan(r.values[f"textbook_{d}"][0])


# --------------------------------------------------------------------------- clean input


@pytest.mark.parametrize("stored", [np.float32, np.float64])
def test_clean_standard_normal_input_has_no_row_flagged(stored: type[np.floating]) -> None:
    """20000 rows of standard-normal logits over 10 classes: nothing overflows, no loss is
    tiny, so neither float32 nor float64 may flag a single row."""
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((20000, 10)).astype(stored)
    labels = rng.integers(0, 10, 20000)
    diagnosis = evaluate(logits, labels, "multiclass", "index", 10, Settings(F32_F64)).diagnosis
    assert not diagnosis.flags.any()
    assert not diagnosis.causes.any()
    assert_array_equal(diagnosis.severity, NOT_FLAGGED)


def test_clean_input_through_compare_reports_nothing() -> None:
    rng = np.random.default_rng(8)
    report = compare(rng.standard_normal((5000, 10)), rng.integers(0, 10, 5000))
    assert report.flagged_rows == 0
    assert report.counts == {}
    assert report.cause_counts == {}
    assert report.top == []


def test_iter_frames_streams_the_rows_of_to_frame_chunk_by_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Per-row results come in bounded chunks, and together they are exactly to_frame()."""
    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 40)  # 4 rows of 10 classes a chunk
    monkeypatch.setattr(engine.fast, "CHUNK_BYTES", 40 * 4)  # the same with the kernel
    rng = np.random.default_rng(9)
    logits = rng.standard_normal((10, 10))
    labels = rng.integers(0, 10, 10)
    logits[3, 2], labels[3] = 1000.0, 2  # exp(1000) = inf: p = inf / inf = NaN
    report = compare(logits, labels)
    frames = list(report.iter_frames())
    assert [len(f) for f in frames] == [4, 4, 2]
    whole = report.to_frame()
    assert_array_equal(np.concatenate([f["row"] for f in frames]), whole["row"])
    assert_array_equal(
        np.concatenate([f["stable_float32"] for f in frames]), whole["stable_float32"]
    )
    assert whole.loc[3, "flags"] == "textbook_nan:float32;textbook_nan:float64"


# -------------------------------------------------------------------- through compare()


def test_compare_on_tf_example_reports_nan_textbook_inf_naive_and_500_stable() -> None:
    report = compare(np.array([[1000.0, 2000.0, 2500.0]]), np.array([1]))
    (row,) = report.top
    assert np.isnan(row.values["textbook_float32"])
    assert np.isinf(row.values["naive_float32"])
    assert row.values["stable_float32"] == mp.multiclass([1000.0, 2000.0, 2500.0], 1)
    assert row.causes == ["exp_overflow", "prob_underflow"]
    assert report.counts == {
        "naive_inf:float32": 1,
        "textbook_nan:float32": 1,
        "textbook_nan:float64": 1,
    }
    assert report.path_causes == {
        "naive": {"prob_underflow": 1},
        "textbook": {"exp_overflow": 1},
    }


def nd_case(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """(B, T, C) logits (binary: (B, T)) of every size from 1e-3 to 1e4, and labels."""
    b, t, c = 3, 5, 4
    shape = (b, t) if kind == "binary" else (b, t, c)
    z = rng.choice([-1.0, 1.0], shape) * 10.0 ** rng.uniform(-3, 4, shape)
    if kind == "index":
        return z, rng.integers(0, c, (b, t)), "multiclass"
    if kind == "soft":
        return z, rng.dirichlet(np.ones(c), (b, t)), "multiclass"
    return z, rng.integers(0, 2, shape).astype(np.float64), kind


@pytest.mark.parametrize("kind", ["index", "soft", "binary", "multilabel"])
def test_nd_input_reference_matches_mpmath_row_by_row(kind: str) -> None:
    """Rows of N-d input are the leading axes in C order; each reference loss is within
    1e-12 of mpmath wherever the exact loss is a normal float64."""
    z, labels, task = nd_case(kind, np.random.default_rng(11))
    frame = compare(z, labels, task=task).to_frame()
    lead = labels.shape[:2]
    flat_z = z.reshape(-1) if kind == "binary" else z.reshape(-1, z.shape[-1])
    flat_labels = labels.reshape(int(np.prod(lead)), *labels.shape[2:])
    exact = mp.rows(kind, flat_z, flat_labels)
    normal = exact >= np.finfo(np.float64).smallest_normal
    assert normal.sum() >= 10
    got = frame["reference"].to_numpy()
    assert_allclose(got[normal], exact[normal], rtol=1e-12, atol=0)
    assert list(frame["index"]) == [f"{i},{j}" for i in range(lead[0]) for j in range(lead[1])]


def test_nd_flagged_row_keeps_its_index_tuple() -> None:
    z = np.zeros((2, 3, 2))
    z[1, 2] = [1000.0, 2500.0]
    report = compare(z, np.zeros((2, 3), dtype=np.int64))
    (row,) = report.top
    assert row.index == (1, 2)
    assert row.row == 5
    assert row.values["stable_float64"] == mp.multiclass([1000.0, 2500.0], 0)  # 1500


def test_counts_and_top_rows_do_not_depend_on_the_chunk_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same input in one chunk and in chunks of 7 rows gives the same report."""
    rng = np.random.default_rng(3)
    z = rng.standard_normal((100, 4)) * 40
    y = rng.integers(0, 4, 100)
    y[::9] = -100
    whole = compare(z, y, top=10)
    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 7 * 4)
    chunked = compare(z, y, top=10)
    assert chunked.counts == whole.counts
    assert chunked.cause_counts == whole.cause_counts
    assert chunked.flagged_rows == whole.flagged_rows > 0
    assert [r.row for r in chunked.top] == [r.row for r in whole.top]
    for a, b in zip(chunked.summary, whole.summary, strict=True):
        assert (a.rows, a.finite, a.nan, a.inf) == (b.rows, b.finite, b.nan, b.inf)
        assert a.worst_rel_error == b.worst_rel_error
        assert a.mean == pytest.approx(b.mean, rel=1e-14)  # summed in another order


def test_top_rows_that_tie_rank_by_row_number_whatever_the_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows equal in severity and error are kept first row first, within and across chunks."""
    z = np.tile([[0.0, 200.0, 1.0]], (60, 1))  # naive float32: exp(200) = inf, loss inf
    z[::4] = [30.0, 0.0, 0.0]  # only inaccurate: less serious than every other row
    y = np.zeros(60, dtype=np.int64)
    whole = compare(z, y, top=7)
    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 9 * 3)
    chunked = compare(z, y, top=7)
    expected = [1, 2, 3, 5, 6, 7, 9]
    assert [r.row for r in whole.top] == [r.row for r in chunked.top] == expected
    assert {(r.severity, r.error) for r in chunked.top} == {(2, float("inf"))}


def test_best_rows_are_the_first_k_rows_of_the_full_sort() -> None:
    """_best_rows selects before it sorts: the same rows, in the same order, as sorting all."""
    rng = np.random.default_rng(5)
    for _ in range(300):
        n = int(rng.integers(1, 60))
        severity = rng.integers(0, 5, n)
        error = rng.choice([0.0, 1e-3, 0.5, float("inf")], n)  # many ties
        rows = np.flatnonzero(rng.random(n) < 0.7)
        k = int(rng.integers(1, 12))
        expected = rows[np.lexsort((rows, -error[rows], severity[rows]))][:k]
        assert_array_equal(partial.best_rows(rows, severity, error, k), expected)


@pytest.mark.parametrize("n", [1, 7, 129, 10_000, 131_073])
def test_column_totals_mean_is_the_exact_mean_rounded_once(n: int) -> None:
    """The total is exact: the mean is the exact mean rounded once, whatever the order."""
    rng = np.random.default_rng(n)
    values = np.abs(rng.standard_normal(n)) * 10.0 ** rng.uniform(-8, 8, n)
    t = partial.ColumnTotals()
    t.add(values, None)
    assert (t.rows, t.finite, t.nan, t.inf) == (n, n, 0, 0)
    assert t.mean == float(sum(Fraction(v) for v in values.tolist()) / n)


def test_column_totals_count_nan_and_inf_and_keep_an_overflowing_finite_sum() -> None:
    t = partial.ColumnTotals()
    t.add(np.array([1.0, np.nan, np.inf, -np.inf, 2.0]), 0.5)
    with np.errstate(over="ignore"):
        t.add(np.array([1e308, 1e308]), None)  # finite values whose sum overflows float64
    assert (t.rows, t.finite, t.nan, t.inf) == (7, 4, 1, 2)
    assert t.total.value() == float("inf")
    assert t.mean == 1e308 / 2  # the exact sum, not its overflow
    assert t.worst == 0.5


def test_the_two_chunks_in_flight_take_less_than_one_read_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kernel computes a chunk while the one before it is diagnosed (which reads its
    logits again): two chunks of logits are in use at once, and for a memory-mapped file
    both chunks' pages are resident. Together they stay below the 64 MB chunk of the
    one-pass read the benchmark compares the run's peak memory with (tests/bench/bench.py)."""
    from cecheck import fast, pipeline

    if not fast.usable("multiclass", "index", ("float32", "float64")):
        pytest.skip("the kernel is not built (or CECHECK_NO_KERNEL is set)")
    c = 32_000  # a language model's vocabulary: the widest rows, the fewest per chunk
    rows = fast.chunk_rows(c) + 3
    rng = np.random.default_rng(5)
    z = rng.standard_normal((rows, c), dtype=np.float32)
    y = rng.integers(0, c, rows)
    sizes: list[int] = []
    compute = pipeline.Plan.compute

    def spy(self: pipeline.Plan, values: np.ndarray, labels: np.ndarray) -> pipeline.Masked:
        sizes.append(values.nbytes)
        return compute(self, values, labels)

    monkeypatch.setattr(pipeline.Plan, "compute", spy)
    assert compare(z, y).rows == rows
    assert len(sizes) == 2  # the pipeline ran: a full chunk, then the rest
    read_chunk = (64 << 20) // (c * 4) * (c * 4)  # whole rows, as the read takes them
    assert 2 * max(sizes) < read_chunk
