"""The rich report: golden renderings at 80 and 120 columns, widths, and the plain words.

Golden files live in ``tests/golden/``; regenerate them after an intended change with
``CECHECK_UPDATE_GOLDEN=1 python -m pytest tests/test_tables.py`` and read the diff.
Every loss value asserted here is computed independently with mpmath (``mp_reference``).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import mp_reference as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from textcheck import check_golden, flat, same_text

from cecheck import compare, engine, inputs
from cecheck import precision as prec
from cecheck.output import explain, numbers, tables, words
from cecheck.rows import ChunkRows

ROOT = Path(__file__).resolve().parent.parent

SAMPLES = {
    "tf_example": ("sample_data/tf_example_logits.npy", "sample_data/tf_example_labels.npy"),
    "binary_sweep": ("sample_data/binary_sweep.csv", None),
    "sequence": ("sample_data/sequence.npz", None),
    "benign": ("sample_data/benign_logits.npy", "sample_data/benign_labels.npy"),
    "float32_diverges": (
        "sample_data/float32_diverges_logits.npy",
        "sample_data/float32_diverges_labels.npy",
    ),
}


def render(report_or_fn: object, width: int, **kw: object) -> str:
    """The report as plain text at ``width`` columns, without colour."""
    console = Console(
        width=width, file=io.StringIO(), color_system=None, legacy_windows=False, record=True
    )
    if callable(report_or_fn):
        report_or_fn(console)
    else:
        tables.print_report(report_or_fn, console, **kw)  # type: ignore[arg-type]
    return console.export_text()


def sample_report(name: str, **settings_kw: object) -> engine.Report:  # type: ignore[name-defined]
    logits, labels = SAMPLES[name]
    cwd = os.getcwd()
    os.chdir(ROOT)  # relative names in the header, whatever the test's working directory
    try:
        source = inputs.open_inputs(logits, labels)
    finally:
        os.chdir(cwd)
    return engine.run(source, engine.Settings(**settings_kw))  # type: ignore[arg-type]


# ---------------------------------------------------------------- golden renderings


@pytest.mark.parametrize("width", [60, 80, 120])
@pytest.mark.parametrize("name", list(SAMPLES))
def test_sample_report_matches_golden(name: str, width: int) -> None:
    text = render(sample_report(name), width)
    check_golden(f"{name}_{width}", text)
    assert max(len(line) for line in text.splitlines()) <= width
    # no name cut short: at 60 columns the summary says f32, not "floa…"
    names = [*prec.DTYPES, "textbook", "naive", "stable", "reference", "logit", "label", "path"]
    cut = [w for w in re.findall(r"(\S+)…", text) if any(n.startswith(w) for n in names)]
    assert cut == []


@pytest.mark.parametrize(
    ("text", "golden", "same"),
    [
        # rounding noise: the ulp-sized error and bits columns, the last digits of a value
        ("naive  2.89145   2.2e-16  52.0/53", "naive  2.89145      2.3e-16  51.2/53", True),
        ("[1] 0.048587352", "[1] 0.04858735", True),
        ("[284] 7.116763603099692e-39", "[284] 7.11676360309969e-39", True),
        # anything else
        ("naive  2.89146", "naive  2.89145", False),
        ("stable 2.89145", "naive  2.89145", False),
        ("error 5e-07", "error 1.9e-07", False),
        ("error -1e-07", "error 1e-07", False),
        ("52.0/53", "50.9/53", False),
        ("52.0/53", "52.0/24", False),
        ("a b", "a\nb", False),
        ("1 2", "1 2 3", False),
    ],
)
def test_golden_comparison_allows_rounding_noise_only(text: str, golden: str, same: bool) -> None:
    assert same_text(text, golden) is same


def test_four_dtypes_at_80_columns_matches_golden() -> None:
    """With four dtypes the worst-rows table is split in two so that it fits 80 columns."""
    report = sample_report("float32_diverges", dtypes=tuple(prec.DTYPES), top=3)
    text = render(report, 80)
    check_golden("float32_diverges_4dtypes_80", text)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert text.count("reference") >= 3  # summary + each of the two row tables


@settings(max_examples=25, deadline=None)
@given(
    width=st.integers(min_value=60, max_value=160),
    scale=st.sampled_from([1.0, 50.0, 1000.0, 30000.0]),
    n_dtypes=st.integers(min_value=1, max_value=4),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_no_line_is_wider_than_the_console(
    width: int, scale: float, n_dtypes: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    z = scale * rng.standard_normal((8, 5))
    y = rng.integers(-1, 6, size=8)  # -1 and 5: labels out of range, flagged as input problems
    report = compare(z, y, dtypes=prec.DTYPES[-n_dtypes:])
    text = render(report, width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert "Traceback" not in text


# ---------------------------------------------------------------- the pieces


def test_tf_example_cells_and_cause() -> None:
    report = compare(np.array([[1000.0, 2000.0, 2500.0]]), np.array([1]))
    expected = mp.multiclass([1000.0, 2000.0, 2500.0], 1)  # mpmath: exactly 500
    assert expected == 500.0
    text = render(report, 80)
    rows = text[text.index("Worst flagged rows") :].splitlines()
    textbook_line = next(line for line in rows if "textbook" in line)
    assert textbook_line.split() == ["0", "1", "2500", "textbook", "NaN", "NaN", "500"]
    naive_line = next(line for line in rows if "naive" in line)
    assert naive_line.split() == ["naive", "inf", "500"]
    stable_line = next(line for line in rows if "stable" in line)
    assert stable_line.split() == ["stable", "500", "500"]
    words = flat(text)  # sentences wrap at 80 columns
    assert "exp(2500) overflows float32 and float64" in words
    assert "largest finite exp argument 88.72 and 709.78" in words
    assert "inf / inf = NaN" in words


def test_sigmoid_saturation_words() -> None:
    """z = 100, t = 1: sigmoid(100) is exactly 1, so (1 - t) * log(1 - p) = 0 * -inf."""
    report = compare(np.array([100.0]), np.array([1.0]), task="binary")
    (record,) = report.top
    words = " ".join(explain.explain(record, report.source, report.settings))
    assert (
        "sigmoid(100) rounds to exactly 1 in float32 and float64, so log(1 - p) = log(0) = "
        "-inf and (1 - t) * -inf = 0 * -inf = NaN" in words
    )


def test_exp_overflow_binary_names_the_argument() -> None:
    """z = -100, t = 1: exp(100) overflows float32 only; the loss is inf, not NaN."""
    report = compare(np.array([-100.0]), np.array([1.0]), task="binary")
    (record,) = report.top
    words = " ".join(explain.explain(record, report.source, report.settings))
    assert "exp(100) overflows float32 (largest finite exp argument 88.72)" in words
    assert "sigmoid(-100) rounds to exactly 0 in float32" in words
    assert "so the loss is inf" in words
    assert record.values["stable_float32"] == pytest.approx(mp.binary(-100.0, 1.0), rel=1e-6)


def test_cancellation_words_use_the_true_loss() -> None:
    """Logits [30, 0], target 0: stable float32 returns 0, the true loss is 9.36e-14."""
    true = mp.multiclass([30.0, 0.0], 0)  # mpmath: log1p(exp(-30)) = 9.357622968839...e-14
    report = compare(np.array([[30.0, 0.0]]), np.array([0]))
    (record,) = report.top
    assert record.values["stable_float32"] == 0.0
    assert record.values["reference"] == pytest.approx(true, rel=1e-15)
    words = " ".join(explain.explain(record, report.source, report.settings))
    assert f"the stable path returns 0 in float32 where the true loss is {true:.3g}" in words
    assert f"the sum 1 + {true:.3g} rounds to 1" in words


def test_diverged_words_and_marker() -> None:
    """Logits near 20000 are held to 0.00098 by float32: the stable loss diverges."""
    report = sample_report("float32_diverges")
    record = next(r for r in report.top if "diverged:stable_float32" in r.flags)
    words = " ".join(explain.explain(record, report.source, report.settings))
    assert "float32 holds logits near" in words
    assert "only to within 0.00098" in words
    text = flat(render(report, 120))
    assert f"{numbers.spell(record.values['stable_float32'])}*" in text
    assert "* diverged from float64 beyond rtol/atol" in text


def test_input_problem_words() -> None:
    z = np.array([[0.0, 1.0, 2.0, 3.0, 4.0], [np.nan, 0.0, 0.0, 0.0, 0.0]])
    report = compare(z, np.array([7, 0]))
    by_row = {r.row: r for r in report.top}
    assert "label 7 is outside 0..4" in words.describe_flags(by_row[0], report.source)
    assert "NaN in the logits" in words.describe_flags(by_row[1], report.source)
    sentence = words.closing_sentence(report)
    assert "1 row with NaN logits (NaN weights or activations upstream)" in sentence
    assert "1 row with a label outside 0..4" in sentence


def test_closing_sentence_when_nothing_is_flagged() -> None:
    sentence = words.closing_sentence(sample_report("benign"))
    assert sentence.startswith("Nothing flagged")
    assert "64 scored rows" in sentence


def test_closing_sentence_names_each_path_its_mechanism_and_advice() -> None:
    sentence = words.closing_sentence(sample_report("tf_example"))
    assert (
        "The naive path torch.log(torch.softmax(z, -1)) gives NaN or inf on 1 row in float32 "
        "(probability underflow)"
    ) in sentence
    assert (
        "the textbook formula (unshifted exp(z) / Σ exp(z)) gives NaN or inf on 1 row in "
        "float32 and 1 in float64 (exp overflow)"
    ) in sentence
    assert "F.cross_entropy is finite everywhere (PyTorch 2.13): use it on the logits" in (sentence)


def test_closing_sentence_when_every_row_is_ignored() -> None:
    report = compare(np.zeros((2, 3)), np.array([-100, -100]))
    sentence = words.closing_sentence(report)
    assert sentence.startswith("No row was left to compare")
    assert "ignore_index (-100)" in sentence


def test_more_rows_line_when_rows_are_cut() -> None:
    report = sample_report("float32_diverges", top=4)
    assert "… and 12 more flagged rows" in flat(render(report, 100))


def test_fail_on_line() -> None:
    text = render(sample_report("tf_example"), 100, fail_on=("naive",))
    assert "--fail-on naive met: exit code 1" in flat(text)


def test_chunk_rows_shows_every_row() -> None:
    report_rows: list[str] = []
    source = inputs.open_inputs(ROOT / "sample_data/benign_logits.npy",
                                ROOT / "sample_data/benign_labels.npy")  # fmt: skip
    s = engine.Settings()

    def show(chunk: engine.ChunkResult) -> None:
        for renderable in tables.chunk_rows(ChunkRows(chunk, source, s), 80):
            report_rows.append(render(lambda c, r=renderable: c.print(r), 80))

    engine.run(source, s, on_chunk=show)
    text = "".join(report_rows)
    assert "Rows 0..63 of 64" in text
    body = [line.split()[0] for line in text.splitlines() if line[:1] == " " and "textbook" in line]
    assert body == [str(i) for i in range(64)]


@pytest.mark.parametrize(
    ("value", "text"),
    [(float("nan"), "NaN"), (float("inf"), "inf"), (-float("inf"), "-inf"),
     (500.0, "500"), (1.0 / 3.0, "0.333333"), (9.357622968839737e-14, "9.35762e-14")],
)  # fmt: skip
def test_spell_six_digits(value: float, text: str) -> None:
    assert numbers.spell(value) == text


def test_and_list() -> None:
    assert words.and_list([]) == ""
    assert words.and_list(["a"]) == "a"
    assert words.and_list(["a", "b"]) == "a and b"
    assert words.and_list(["a", "b", "c"]) == "a, b and c"


def test_the_table_opens_with_the_verdict_and_groups_identical_explanations() -> None:
    """fp16_lm in bfloat16: rows 28, 52, 125, 152 and 225 have the same logits' story (and
    the same losses), so they share one explanation instead of five paragraphs."""
    z = np.load(ROOT / "sample_data/fp16_lm_logits.npy")
    y = np.load(ROOT / "sample_data/fp16_lm_labels.npy")
    report = compare(z, y, dtypes="float16,bfloat16,float32,float64")
    text = render(report, 120)
    assert text.splitlines()[0] == (
        "cecheck: 11 of 256 rows flagged — NaN/inf in textbook float16 (3), naive float16 (1); "
        "stable finite"
    )
    assert text.splitlines()[1] == ""
    groups = explain.grouped_explanations(report.top, report.source, report.settings)
    assert ["28", "52", "125", "152", "225"] in [names for names, _ in groups]
    assert "rows 28," in text
    assert "row 52:" not in text
    assert sum("bfloat16 gives 0.0231934 against" in words for _, words in groups) == 1


def test_the_verdict_names_rows_whose_input_has_no_loss() -> None:
    """A row with an inf logit and a label out of range: flagged, not scored; the paths are
    finite on the rows they score, and the verdict says both (not "every path finite")."""
    from cecheck.output.verdict import verdict_line

    z = np.array([[1.0, 2.0, 3.0], [np.inf, 0.0, 1.0], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0]])
    report = compare(z, np.array([0, 1, 2, 7]))
    assert verdict_line(report) == (
        "cecheck: 2 of 4 rows flagged — 1 row with +inf logits (an overflowing output layer) "
        "and 1 row with a label outside 0..2; every path finite on the other rows"
    )
    z[0] = [0.0, 0.0, 1e30]  # and a path that breaks on a scored row
    assert verdict_line(compare(z, np.array([0, 1, 2, 7]))) == (
        "cecheck: 3 of 4 rows flagged — 1 row with +inf logits (an overflowing output layer) "
        "and 1 row with a label outside 0..2; NaN/inf in textbook float32/float64 (1), naive "
        "float32/float64 (1); stable finite on the other rows"
    )
    z[[0, 2, 3]] = np.nan  # no row left
    assert verdict_line(compare(z, np.array([0, 1, 2, 7]))) == (
        "cecheck: 4 of 4 rows flagged — 3 rows with NaN logits (NaN weights or activations "
        "upstream), 1 row with +inf logits (an overflowing output layer) and 1 row with a label "
        "outside 0..2; no row left to score"
    )
