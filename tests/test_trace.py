"""``cecheck trace``: one row's loss step by step, the first bad step marked.

Every loss value asserted here is computed independently by ``mp_reference`` (the textbook
definition in 450 digits with mpmath, rounded once to float64): exactly where the dtype holds
it exactly (500 and 100 are float32 numbers), else with ``rtol=1e-13`` for float64. The
agreement tests compare the trace's losses with the engine's bit for bit: the trace must show
the very numbers ``compare`` reports.

Golden renderings live in ``tests/golden/trace_*.txt`` (100 columns, no colour); regenerate
them after an intended change with ``CECHECK_UPDATE_GOLDEN=1 python -m pytest
tests/test_trace.py`` and read the diff.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import ml_dtypes
import mp_reference as mp
import numpy as np
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from rich.console import Console
from textcheck import check_golden, flat

from cecheck import cli, engine, inputs, losses
from cecheck import precision as prec
from cecheck.engine import Settings
from cecheck.frameworks import torch_fused, torch_naive
from cecheck.precision import DTYPES
from cecheck.rowpick import parse_row, pick_row, read_row
from cecheck.trace import PATHS, Step, Trace, trace
from cecheck.trace_explain import format_value
from cecheck.trace_render import print_trace, trace_to_dict, write_trace_json

FLOAT64_RTOL = 1e-13
CLASSIC = [1000.0, 2000.0, 2500.0]


def render(t: Trace, width: int = 100) -> str:
    console = Console(
        width=width, file=io.StringIO(), color_system=None, legacy_windows=False, record=True
    )
    print_trace(t, console)
    return console.export_text()


def step(t: Trace, path: str, dtype: str, name: str) -> Step:
    return next(s for s in t.path(path, dtype).steps if s.name == name)


def first_bad(t: Trace, path: str, dtype: str) -> Step:
    """The first bad step of a path, which the test expects to exist."""
    p = t.path(path, dtype)
    assert p.first_bad is not None, f"{path} {dtype}: no step is marked"
    return p.steps[p.first_bad]


# ---------------------------------------------------------------------- the done-when cases


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_classic_example_textbook_nan_through_exp_overflow(dtype: str) -> None:
    t = trace(CLASSIC, 1, dtypes=[dtype])
    textbook = t.path("textbook", dtype)
    assert np.isnan(textbook.loss)
    bad = first_bad(t, "textbook", dtype)
    assert bad.name == "exp"
    assert [v for _, v in bad.values] == [np.inf] * 3
    largest = {"float32": "3.4e38", "float64": "1.8e308"}[dtype]
    assert bad.note == (f"exp(1000) is above {largest}, the largest {dtype}: it overflows to inf")
    # everything after the first bad step follows from it and is not marked again
    assert sum(s.first_bad for s in textbook.steps) == 1
    assert step(t, "textbook", dtype, "p").value != step(t, "textbook", dtype, "p").value  # NaN


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_classic_example_stable_shift_and_loss_500(dtype: str) -> None:
    t = trace(CLASSIC, 1, dtypes=[dtype])
    shifted = step(t, "stable", dtype, "shifted")
    assert shifted.values == ((0, -1500.0), (1, -500.0), (2, 0.0))
    exact = mp.multiclass(CLASSIC, 1)  # mpmath, 450 digits: 500 (+7e-218)
    assert t.path("stable", dtype).loss == exact == 500.0
    assert t.path("reference").loss == exact
    # exp(-1500) and exp(-500) underflowing, the target's shifted logit: none of it is bad
    assert t.path("stable", dtype).first_bad is None
    naive = {
        "float32": "naive goes wrong at step 6, p = exp(z - max) · (1 / Σ) and ends at inf; ",
        "float64": "naive gives 500, ",
    }[dtype]
    assert t.partings == (
        f"{dtype}: textbook goes wrong at step 2, exp(z) and ends at NaN; {naive}stable gives "
        "500; the reference 500.",
    )


def test_classic_example_with_onehot_labels_goes_the_same_way() -> None:
    t = trace(CLASSIC, [0.0, 1.0, 0.0], dtypes=["float32"])
    assert (t.task, t.label_form) == ("multiclass", "onehot")
    assert first_bad(t, "textbook", "float32").name == "exp"
    assert np.isnan(t.path("textbook", "float32").loss)
    assert t.path("stable", "float32").loss == mp.soft(CLASSIC, [0, 1, 0]) == 500.0


def test_binary_minus_100_marks_the_sigmoid_rounding_to_exactly_0() -> None:
    t = trace(np.float32(-100.0), 1.0, dtypes=["float32"])
    assert (t.task, t.label_form) == ("binary", "binary")
    textbook = t.path("textbook", "float32")
    bad = first_bad(t, "textbook", "float32")
    assert bad.name == "sigmoid"
    assert bad.value == 0.0
    assert textbook.first_bad == 1  # step 2, right after the logit itself
    assert "truly 3.7e-44, comes out as exactly 0" in bad.note
    assert "exp(100) is above 3.4e38, the largest float32" in bad.note
    assert textbook.loss == np.inf
    exact = mp.binary(-100.0, 1.0)  # 100 + 3.7e-44: 100 in float32 and float64
    assert t.path("stable", "float32").loss == np.float32(exact) == 100.0
    assert t.path("stable", "float32").first_bad is None


def three_hundred_classes() -> tuple[np.ndarray, np.ndarray]:
    """A (2, 8, 300) float32 array whose row (1, 3) has one logit of 95: exp overflows."""
    rng = np.random.default_rng(7)
    logits = (rng.normal(size=(2, 8, 300)) * 3).astype(np.float32)
    logits[1, 3, 17] = 95.0
    labels = rng.integers(0, 300, size=(2, 8))
    labels[1, 3] = 42
    return logits, labels


def test_300_class_row_traces_in_fewer_than_150_lines() -> None:
    logits, labels = three_hundred_classes()
    source = inputs.from_arrays(logits, labels)
    pick = parse_row("1,3", source.lead_shape)
    z, y = read_row(source, pick.row)
    t = trace(z, y, task=source.task, label_form=source.label_form)
    text = render(t)
    assert len(text.splitlines()) < 150  # two dtypes, four paths
    assert "+294 others" in text  # the target, the top 5 logits, one line for the rest
    assert t.classes == (42, 17, 293, 51, 284, 44)
    ref = mp.multiclass(logits[1, 3], 42)  # mpmath: 92.743005990982...
    assert_allclose(t.reference, ref, rtol=FLOAT64_RTOL)
    assert first_bad(t, "textbook", "float32").note == (
        "exp(95) is above 3.4e38, the largest float32: it overflows to inf"
    )


def test_32000_class_vocabulary_stays_short() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=32_000).astype(np.float32) * 4
    t = trace(z, 123, dtypes=DTYPES)
    text = render(t)
    assert len(text.splitlines()) < 300  # four dtypes, four paths: never thousands of lines
    assert "+31993 others" in text
    # the target, the top 5 and the class where float16's exp first overflows
    assert len(t.classes) == 7
    assert t.classes[:2] == (123, 5970)


# ---------------------------------------------------------------------- other marks


def test_stable_sum_rounding_to_1_is_marked_only_when_it_zeroes_the_loss() -> None:
    t = trace([30.0, 0.0], 0, dtypes=["float32"])
    exact = mp.multiclass([30.0, 0.0], 0)  # mpmath: 9.357622968839736e-14
    assert_allclose(t.reference, exact, rtol=FLOAT64_RTOL)
    stable = t.path("stable", "float32")
    assert stable.loss == 0.0
    bad = first_bad(t, "stable", "float32")
    assert bad.name == "sum"
    assert bad.value == 1.0
    assert "truly 9.4e-14, comes out as 0" in bad.note
    assert first_bad(t, "textbook", "float32").name == "p"
    # the target not at the max: the sum is 1 again, but the loss is right, so no mark
    other = trace([30.0, 0.0], 1, dtypes=["float32"])
    assert other.path("stable", "float32").first_bad is None
    assert other.path("stable", "float32").loss == np.float32(mp.multiclass([30.0, 0.0], 1))


def test_soft_label_zero_probability_times_log_zero_is_nan() -> None:
    z, t_soft = [-104.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    t = trace(z, t_soft, dtypes=["float32"])
    assert np.isnan(t.path("textbook", "float32").loss)
    bad = first_bad(t, "textbook", "float32")
    assert bad.name == "p"
    assert bad.note == (
        "exp(-104) is below 1.4e-45, the smallest float32: it underflows to 0, so p[0] = 0; "
        "log p[0] = -inf, and t = 0 there makes 0 · (-inf) = NaN"
    )
    assert_allclose(t.path("stable", "float32").loss, mp.soft(z, t_soft), rtol=1e-6)


def test_target_probability_rounding_to_0_gives_inf() -> None:
    z = [-87.0, 80.0]  # exp(-87) and exp(80) are finite float32s; their ratio is not
    t = trace(z, 0, dtypes=["float32"])
    assert t.path("textbook", "float32").loss == np.inf
    bad = first_bad(t, "textbook", "float32")
    assert bad.name == "p"
    assert bad.value == 0.0
    assert bad.note == (
        "p, truly 3.0e-73, is below 1.4e-45, the smallest float32: it rounds to 0, "
        "and log(0) = -inf follows"
    )
    assert t.path("stable", "float32").loss == np.float32(mp.multiclass(z, 0)) == 167.0


def test_float16_logit_beyond_range_is_marked_at_the_cast() -> None:
    t = trace([70000.0, 0.0], 1, dtypes=["float16"])
    for path in ("textbook", "stable"):
        bad = first_bad(t, path, "float16")
        assert bad.name == "z"
        assert bad.note == (
            "z[0] = 70000 is beyond 65504, the largest float16: stored as float16 it becomes inf"
        )
    assert t.path("reference").first_bad is None
    assert t.path("reference").loss == mp.multiclass([70000.0, 0.0], 1) == 70000.0


def test_nonfinite_input_is_marked_at_the_logit_on_every_path() -> None:
    t = trace([0.0, np.nan, 1.0], 0, dtypes=["float32"])
    for path, dtype in (("textbook", "float32"), ("stable", "float32"), ("reference", "float64")):
        bad = first_bad(t, path, dtype)
        assert bad.name == "z"
        assert bad.note == "the input logit z[1] is NaN: no loss can come of it"


def test_sigmoid_rounding_to_exactly_1_with_target_1_is_nan() -> None:
    t = trace(np.float32(20.0), 1.0, dtypes=["float32"])
    assert np.isnan(t.path("textbook", "float32").loss)  # (1 - t) * log(0) = 0 * -inf
    bad = first_bad(t, "textbook", "float32")
    assert bad.name == "sigmoid"
    assert bad.value == 1.0
    assert "1 + exp(-20) = 1 + 2.0611537e-9 rounds to 1 in float32" in bad.note
    assert_allclose(t.reference, mp.binary(20.0, 1.0), rtol=FLOAT64_RTOL)


def test_label_out_of_range_has_no_loss_to_trace() -> None:
    with pytest.raises(ValueError, match=r"label 3 is not a class of this row \(0..2\)"):
        trace(CLASSIC, 3)


# ---------------------------------------------------------------------- agreement


# The task and label form of each family of losses.
KINDS = {
    "index": ("multiclass", "index"),
    "soft": ("multiclass", "soft"),
    "binary": ("binary", "binary"),
    "multilabel": ("multilabel", "multihot"),
}


def random_rows(kind: str, in_dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """48 rows at scales from 0.1 to 1e5 (exp overflow in every dtype), a few non-finite."""
    rng = np.random.default_rng(seed)
    n, c = 48, 7
    scale = np.array([0.1, 1, 10, 30, 100, 1000, 1e4, 1e5])[np.arange(n) % 8]
    shape = (n,) if kind == "binary" else (n, c)
    z = rng.normal(size=shape) * (scale if kind == "binary" else scale[:, None])
    z.flat[5] = np.inf
    z.flat[11 if kind == "binary" else 40] = np.nan
    with np.errstate(over="ignore"):  # 1e5 is inf in float16: that is the point
        z = z.astype(in_dtype)
    if kind == "index":
        return z, rng.integers(0, c, size=n)
    if kind == "soft":
        t = rng.dirichlet(np.ones(c), size=n)
        t[::3] = np.eye(c)[rng.integers(0, c, size=len(t[::3]))]
        return z, t
    t = rng.integers(0, 2, size=shape).astype(np.float64)
    t[::4] = rng.uniform(size=t[::4].shape)
    return z, t


@pytest.mark.parametrize("in_dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_path_ends_at_the_engines_loss_bit_for_bit(kind: str, in_dtype: str) -> None:
    """The trace's loss of each path and dtype is the value ``compare`` reports for the row."""
    task, form = KINDS[kind]
    z, y = random_rows(kind, in_dtype, seed=len(kind) * 10 + len(in_dtype))
    n_classes = 1 if kind == "binary" else z.shape[1]
    chunk = engine.evaluate(z, y, task, form, n_classes, Settings(dtypes=DTYPES))
    expected = {("reference", "float64"): chunk.values["reference"]}
    for d in DTYPES:
        for path in ("textbook", "naive", "stable"):
            expected[(path, d)] = chunk.values[f"{path}_{d}"]
    for i in range(len(y)):
        t = trace(z[i], y[i], task=task, label_form=form, dtypes=DTYPES)
        assert len(t.paths) == 3 * len(DTYPES) + 1
        for p in t.paths:
            want = np.float64(expected[(p.path, p.dtype)][i])
            assert same_bits(p.loss, want), (kind, i, p.path, p.dtype)
            # a non-finite loss always has its cause marked; a marked step is explained
            if not np.isfinite(p.loss):
                assert p.first_bad is not None, (kind, i, p.path, p.dtype)
            if p.first_bad is not None:
                assert p.steps[p.first_bad].note


def same_bits(a: float, b: float) -> bool:
    """Equal to the bit, so that -0 and 0 differ; any NaN equals any NaN."""
    a, b = np.float64(a), np.float64(b)
    return bool(np.isnan(a) and np.isnan(b)) or a.view(np.int64) == b.view(np.int64)


@settings(max_examples=200, deadline=None)
@given(
    z=st.lists(st.floats(-2e4, 2e4, allow_nan=False, allow_infinity=False), min_size=2, max_size=6),
    data=st.data(),
    dtype=st.sampled_from(DTYPES),
)
def test_index_rows_agree_with_losses_for_any_logits(
    z: list[float], data: st.DataObject, dtype: str
) -> None:
    y = data.draw(st.integers(0, len(z) - 1))
    row = np.array(z)
    t = trace(row, y, dtypes=[dtype])
    p = prec.get(dtype)
    for path, fn in (
        ("textbook", losses.textbook_multiclass),
        ("naive", torch_naive.naive_index),
        ("stable", torch_fused.stable_index),
    ):
        want = fn(row[None], np.array([y]), p).loss[0]
        assert same_bits(t.path(path, dtype).loss, np.float64(want))


def test_trace_infers_task_and_label_form_as_from_arrays() -> None:
    assert trace(0.5, 1.0).task == "binary"
    assert trace([1.0, 2.0], 0).label_form == "index"
    assert trace([1.0, 2.0, 3.0], [0.2, 0.3, 0.5]).label_form == "soft"
    assert trace([1.0, 2.0, 3.0], [1.0, 1.0, 0.0]).task == "multilabel"


def test_paths_and_dtypes_select_what_is_traced() -> None:
    t = trace(CLASSIC, 1, dtypes=["float64", "bfloat16"], paths=["stable"])
    assert [(p.path, p.dtype) for p in t.paths] == [("stable", "bfloat16"), ("stable", "float64")]
    # bfloat16 stores 2500 as 2496; mpmath's loss of the stored logits is 496, a bfloat16
    assert step(t, "stable", "bfloat16", "z").values[2] == (2, 2496.0)
    assert t.path("stable", "bfloat16").loss == mp.multiclass([1000, 2000, 2496], 1) == 496.0
    with pytest.raises(ValueError, match="paths must be among"):
        trace(CLASSIC, 1, paths=["fast"])
    with pytest.raises(ValueError, match="unknown dtype"):
        trace(CLASSIC, 1, dtypes=["float8"])


# ---------------------------------------------------------------------- numbers as text


@pytest.mark.parametrize(
    ("dtype", "most"), [("float16", 5), ("bfloat16", 4), ("float32", 9), ("float64", 17)]
)
@settings(max_examples=300, deadline=None)
@given(bits=st.integers(0, 2**64 - 1))
def test_format_value_is_the_shortest_text_that_reads_back(
    dtype: str, most: int, bits: int
) -> None:
    storage = prec.get(dtype).storage
    raw = np.array([bits], dtype=np.uint64).view(np.float64)
    with np.errstate(all="ignore"):
        x = float(raw.astype(storage)[0])
    text = format_value(x, dtype)
    if not np.isfinite(x) or x == 0:
        assert text in ("NaN", "inf", "-inf", "0", "-0")
        return
    assert np.array(float(text)).astype(storage) == np.array(x).astype(storage)
    digits = len(text.split("e")[0].replace("-", "").replace(".", "").strip("0"))
    assert digits <= most
    if digits > 1:  # one digit fewer does not read back
        shorter = float(f"{x:.{digits - 2}e}")
        assert np.array(shorter).astype(storage) != np.array(x).astype(storage)


def test_format_value_shows_each_dtype_its_own_digits() -> None:
    third = 1 / 3
    shown = {d: format_value(float(np.array(third).astype(prec.get(d).storage)), d) for d in DTYPES}
    assert shown == {
        "float16": "0.3333",
        "bfloat16": "0.334",
        "float32": "0.33333334",
        "float64": "0.3333333333333333",
    }
    assert format_value(float(ml_dtypes.finfo(np.float32).smallest_subnormal), "float32") == (
        "1e-45"
    )


# ---------------------------------------------------------------------- rows of an input


def test_parse_row_takes_a_flat_number_or_an_index_tuple() -> None:
    assert parse_row("11", (2, 8)).index == (1, 3)
    assert parse_row("1,3", (2, 8)).row == 11
    assert parse_row(" 1 , 3 ", (2, 8)).row == 11


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("16", "row 16 is out of range: the input has 16 rows (0..15)"),
        ("-1", "row -1 is out of range: the input has 16 rows (0..15)"),
        (
            "1,2,3",
            "row index 1,2,3 has 3 numbers but the rows have 2 axes (shape (2, 8)): give 2 "
            "numbers, or one flat row number",
        ),
        ("2,0", "row index 2,0 is out of range: axis 0 has size 2 (0..1)"),
        ("x", "--row 'x' is not a row number or an index tuple such as 3,17"),
    ],
)
def test_parse_row_rejects_rows_that_do_not_exist(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_row(text, (2, 8))


def test_read_row_walks_chunks_to_the_row() -> None:
    logits, labels = three_hundred_classes()
    source = inputs.from_arrays(logits, labels)
    z, y = read_row(source, 11)
    assert np.array_equal(z, logits[1, 3])
    assert int(y) == 42


def test_pick_row_finds_the_worst_flagged_row() -> None:
    logits, labels = three_hundred_classes()
    pick = pick_row(inputs.from_arrays(logits, labels), Settings())
    assert (pick.row, pick.index) == (11, (1, 3))
    assert pick.origin is not None
    assert pick.origin.startswith("the worst flagged row: textbook_inf")


def test_pick_row_says_when_nothing_is_flagged() -> None:
    pick = pick_row(inputs.from_arrays(np.zeros((4, 3)), np.zeros(4, dtype=int)), Settings())
    assert (pick.row, pick.origin) == (0, "no row is flagged, so row 0")


# ---------------------------------------------------------------------- JSON and rendering


def test_json_is_strict_and_holds_the_steps() -> None:
    out = io.StringIO()
    write_trace_json(trace(CLASSIC, 1), out)

    def no_constants(name: str) -> None:
        raise AssertionError(f"non-strict JSON token {name}")

    data = json.loads(out.getvalue(), parse_constant=no_constants)
    textbook = next(p for p in data["paths"] if (p["path"], p["dtype"]) == ("textbook", "float32"))
    assert textbook["loss"] == "nan"
    assert textbook["first_bad_step"] == 2
    exp_step = textbook["steps"][1]
    assert exp_step["name"] == "exp"
    assert exp_step["first_bad"] is True
    assert [v["value"] for v in exp_step["values"]] == ["inf", "inf", "inf"]
    stable = next(p for p in data["paths"] if (p["path"], p["dtype"]) == ("stable", "float32"))
    shifted = next(s for s in stable["steps"] if s["name"] == "shifted")
    assert [v["value"] for v in shifted["values"]] == [-1500.0, -500.0, 0.0]
    assert stable["loss"] == 500.0
    assert data["reference"] == 500.0


def test_to_dict_of_a_big_row_keeps_the_shown_classes_only() -> None:
    logits, _ = three_hundred_classes()
    data = trace_to_dict(trace(logits[1, 3], 42))
    assert data["other_logits"]["count"] == 294
    assert all(len(s.get("values", [])) <= 6 for p in data["paths"] for s in p["steps"])


def test_golden_classic_example() -> None:
    check_golden("trace_classic", render(trace(CLASSIC, 1)))


def test_golden_binary_minus_100_float32() -> None:
    check_golden(
        "trace_binary_minus_100", render(trace(np.float32(-100.0), 1.0, dtypes=["float32"]))
    )


def test_golden_300_classes() -> None:
    logits, labels = three_hundred_classes()
    source = inputs.from_arrays(logits, labels)
    pick = parse_row("1,3", source.lead_shape)
    z, y = read_row(source, pick.row)
    t = trace(z, y, task=source.task, label_form=source.label_form)
    from dataclasses import replace

    check_golden("trace_300_classes", render(replace(t, row=pick.row, index=pick.index)))


def test_golden_soft_labels_in_float16_and_bfloat16() -> None:
    t = trace([-20.0, 3.0, 8.5], [0.0, 0.25, 0.75], dtypes=["float16", "bfloat16"])
    check_golden("trace_soft_float16_bfloat16", render(t))


def test_golden_multilabel() -> None:
    t = trace([40.0, -3.0, 0.5, -120.0], [1.0, 0.0, 1.0, 0.0], dtypes=["float32"])
    check_golden("trace_multilabel", render(t))


@pytest.mark.parametrize("paths", [("textbook",), ("stable",), ("reference",), PATHS])
def test_every_path_selection_renders(paths: tuple[str, ...]) -> None:
    text = render(trace(CLASSIC, 1, paths=paths), width=60)
    assert ("textbook · float32" in text) == ("textbook" in paths)
    assert ("reference (float64, log1p)" in text) == ("reference" in paths)


# ---------------------------------------------------------------------- the command


@pytest.fixture
def sequence_files(tmp_path: Path) -> tuple[str, str]:
    """The (2, 8, 300) logits and (2, 8) labels of :func:`three_hundred_classes` as .npy."""
    logits, labels = three_hundred_classes()
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", labels)
    return str(tmp_path / "logits.npy"), str(tmp_path / "labels.npy")


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(cli.cecheck, ["trace", *args], catch_exceptions=False)


def test_cli_traces_a_row_given_as_an_index_tuple(sequence_files: tuple[str, str]) -> None:
    result = run_cli(*sequence_files, "--row", "1,3")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) < 200  # two dtypes, four paths, at 80 columns
    assert lines[1].startswith("row        11 (index 1,3)")
    assert "✗ step 2: exp(95) is above 3.4e38, the largest float32: it overflows to inf" in (
        result.stdout
    )
    assert result.stderr == ""


def test_cli_without_row_traces_the_worst_flagged_row(sequence_files: tuple[str, str]) -> None:
    result = run_cli(*sequence_files, "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["row"], data["index"]) == (11, [1, 3])
    assert data["origin"].startswith("the worst flagged row: textbook_inf:float32")


def test_cli_says_when_no_row_is_flagged(tmp_path: Path) -> None:
    np.save(tmp_path / "z.npy", np.array([[0.0, 1.0], [2.0, 0.5]]))
    np.save(tmp_path / "y.npy", np.array([0, 1]))
    result = run_cli(str(tmp_path / "z.npy"), str(tmp_path / "y.npy"))
    assert result.exit_code == 0, result.stderr
    assert "row        0: no row is flagged, so row 0" in result.stdout


@pytest.mark.parametrize("path", ["textbook", "stable", "reference"])
def test_cli_path_option_walks_one_path(sequence_files: tuple[str, str], path: str) -> None:
    result = run_cli(*sequence_files, "--row", "11", "--path", path, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert {p["path"] for p in json.loads(result.stdout)["paths"]} == {path}


def test_cli_dtypes_as_in_compare(sequence_files: tuple[str, str]) -> None:
    result = run_cli(*sequence_files, "--row", "0", "--dtypes", "bfloat16,float16", "--format",
                     "json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    paths = json.loads(result.stdout)["paths"]
    assert [(p["path"], p["dtype"]) for p in paths][:3] == [
        ("textbook", "float16"),
        ("naive", "float16"),
        ("stable", "float16"),
    ]
    bad = run_cli(*sequence_files, "--dtypes", "float8")
    assert bad.exit_code == 2
    assert "unknown dtype float8" in bad.stderr


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("16", "Error: row 16 is out of range: the input has 16 rows (0..15)"),
        (
            "1,2,3",
            "Error: row index 1,2,3 has 3 numbers but the rows have 2 axes (shape (2, 8)): "
            "give 2 numbers, or one flat row number",
        ),
        ("1", None),  # a flat number is fine for N-d input
        ("2,0", "Error: row index 2,0 is out of range: axis 0 has size 2 (0..1)"),
        ("one", "Error: --row 'one' is not a row number or an index tuple such as 3,17"),
    ],
)
def test_cli_rows_that_do_not_exist_are_one_line_usage_errors(
    sequence_files: tuple[str, str], row: str, message: str | None
) -> None:
    result = run_cli(*sequence_files, "--row", row)
    if message is None:
        assert result.exit_code == 0, result.stderr
        return
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [message]


def test_cli_row_without_a_loss_is_a_one_line_error(tmp_path: Path) -> None:
    np.save(tmp_path / "z.npy", np.zeros((3, 4)))
    np.save(tmp_path / "y.npy", np.array([0, -100, 9]))
    ignored = run_cli(str(tmp_path / "z.npy"), str(tmp_path / "y.npy"), "--row", "1")
    assert ignored.exit_code == 2
    assert ignored.stderr.splitlines() == [
        "Error: row 1 has label -100, the --ignore-index: the row is skipped, so it has no "
        "loss to trace"
    ]
    out_of_range = run_cli(str(tmp_path / "z.npy"), str(tmp_path / "y.npy"), "--row", "2")
    assert out_of_range.exit_code == 2
    assert out_of_range.stderr.splitlines() == [
        "Error: row 2: label 9 is not a class of this row (0..3), so the row has no loss to trace"
    ]
    # picking the worst flagged row passes over the row without a loss
    picked = run_cli(str(tmp_path / "z.npy"), str(tmp_path / "y.npy"))
    assert picked.exit_code == 0, picked.stderr
    said = flat(picked.stdout)
    assert "every flagged row has no loss (a label out of range or not a whole number" in said


def test_cli_missing_input_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_cli(str(tmp_path / "nothing.npy"), "--row", "0")
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("Error: ")


def test_cli_json_is_strict(sequence_files: tuple[str, str]) -> None:
    result = run_cli(*sequence_files, "--row", "1,3", "--format", "json")

    def no_constants(name: str) -> None:
        raise AssertionError(f"non-strict JSON token {name}")

    data = json.loads(result.stdout, parse_constant=no_constants)
    textbook = data["paths"][0]
    assert (textbook["path"], textbook["dtype"], textbook["loss"]) == ("textbook", "float32", "inf")
    assert textbook["steps"][textbook["first_bad_step"] - 1]["name"] == "exp"


def test_pick_row_skips_rows_of_nan_logits_when_another_row_is_flagged() -> None:
    logits = np.array([[0.0, 1.0, 2.0], [np.nan] * 3, [0.0, 1.0, 2.0], [0.0, 1.0, 95.0]])
    labels = np.array([0, 1, 2, 0])
    pick = pick_row(inputs.from_arrays(logits, labels), Settings())
    assert pick.row == 3
    assert pick.origin is not None
    assert "whose logits are not all NaN (1 row of NaN skipped)" in pick.origin
    # rows of NaN logits only: the worst of them
    only = pick_row(inputs.from_arrays(logits[:3], labels[:3]), Settings())
    assert only.row == 1
    assert only.origin is not None
    assert only.origin.startswith("the worst flagged row: nonfinite_input")


def test_cli_quiet_says_nothing_on_stderr(tmp_path: Path) -> None:
    np.save(tmp_path / "p.npy", np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]))  # probabilities
    np.save(tmp_path / "y.npy", np.array([0, 2]))
    files = (str(tmp_path / "p.npy"), str(tmp_path / "y.npy"))
    assert "warning:" in run_cli(*files).stderr
    result = run_cli(*files, "-q")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert result.stdout.startswith("cecheck    trace: ")
