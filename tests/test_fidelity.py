"""The cases of issue 14 that the paths must reproduce: what the user's own code computes.

- the TensorFlow seed example [1000, 2000, 2500], target 1: textbook NaN (exp overflow),
  PyTorch's naive ``-log(softmax)`` inf in float32 (probability underflow) and 500 in float64,
  the fused loss and the reference 500;
- breast-cancer-style rows (t = 0, z < 0) in float32: PyTorch's
  ``binary_cross_entropy_with_logits`` returns exactly 0, flagged inaccurate with cause
  cancellation, and the closing sentence does not recommend the fused loss that failed;
- label smoothing in float16: the fused loss's sum over the classes overflows (sum overflow);
- the real float16 failure in ``sample_data/fp16_lm_*``: the ``naive_inf:float16`` rows are
  exactly the rows PyTorch made inf, ranked first, with cause probability underflow, and
  ``cecheck trace`` says so (goldens ``fp16_lm_120`` and ``trace_fp16_lm``);
- the ranking within a severity: the framework's paths before the textbook's, a wider dtype
  before a narrower one, then the larger error.

Exact values come from ``mp_reference`` (mpmath, 450 digits).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import mp_reference as mp
import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console
from textcheck import check_golden, flat

from cecheck import cli, compare, engine, inputs, partial
from cecheck import precision as prec
from cecheck.diagnose import diagnose, within_severity
from cecheck.losses import PathResult
from cecheck.output import tables, words

ROOT = Path(__file__).resolve().parent.parent
FP16 = ("sample_data/fp16_lm_logits.npy", "sample_data/fp16_lm_labels.npy")
FP16_DTYPES = ("float16", "float32", "float64")


def test_tf_seed_example_reads_as_the_issue_says() -> None:
    z, y = np.array([[1000.0, 2000.0, 2500.0]]), np.array([1])
    exact = mp.multiclass([1000.0, 2000.0, 2500.0], 1)  # mpmath: 500 (+7e-218)
    assert exact == 500.0
    report = compare(z, y)
    (row,) = report.top
    v = row.values
    assert np.isnan(v["textbook_float32"])
    assert np.isnan(v["textbook_float64"])
    assert v["naive_float32"] == np.inf
    assert v["naive_float64"] == exact
    assert v["stable_float32"] == v["stable_float64"] == v["reference"] == exact
    assert report.path_causes == {
        "textbook": {"exp_overflow": 1},
        "naive": {"prob_underflow": 1},
    }
    sentence = words.closing_sentence(report)
    assert "torch.log(torch.softmax(z, -1)) gives NaN or inf on 1 row in float32 (probability " \
        "underflow)" in sentence  # fmt: skip
    assert "(exp overflow)" in sentence


BREAST_CANCER_Z = np.array([-15.0, -16.5, -18.0, -25.0])  # confident negatives, target 0


def test_breast_cancer_style_rows_show_pytorchs_exact_zeros_as_cancellation() -> None:
    """t = 0, z < 0: ``(1 - t) · z - log_sigmoid(z)`` cancels in float32 to exactly 0 where the
    loss is log1p(exp(z)) ≈ 3e-7 .. 1.4e-11, normal float32 numbers."""
    t = np.zeros_like(BREAST_CANCER_Z)
    exact = np.array([mp.binary(z, 0.0) for z in BREAST_CANCER_Z])
    assert (exact > float(prec.get("float32").tiny)).all()
    report = compare(BREAST_CANCER_Z, t, task="binary")
    frame = report.to_frame()
    assert (frame["stable_float32"] == 0.0).all()
    np.testing.assert_allclose(frame["reference"], exact, rtol=1e-12)
    for flags, causes in zip(frame["flags"], frame["causes"], strict=True):
        assert "inaccurate:stable_float32" in flags.split(";")
        assert "cancellation" in causes.split(";")
    assert report.path_causes["stable"] == {"cancellation": 4}
    sentence = words.closing_sentence(report)
    assert "F.binary_cross_entropy_with_logits keeps fewer than half the bits in float32" in (
        sentence
    )
    assert "cancellation" in sentence
    assert "use it on the logits" not in sentence  # no fused loss recommended: it failed


def test_label_smoothing_in_float16_overflows_the_fused_sum() -> None:
    """logits [0] + [-1e4] * 9, target 0, label_smoothing 0.1, float16: torch sums -log p_c over
    the classes in float16: -9e4 is beyond 65504, so the loss is inf."""
    z, y = np.array([[0.0] + [-1e4] * 9]), np.array([0])
    report = compare(z, y, dtypes="float16,float64", label_smoothing=0.1)
    assert report.counts.get("stable_inf:float16") == 1
    assert report.path_causes["stable"] == {"sum_overflow": 1}
    # mpmath: (1 - 0.1) · 0 + 0.1 / 10 · Σ_c -log p_c = 0.01 · 9e4 (+ a tiny log term)
    exact = 0.9 * mp.multiclass(z[0], 0) + 0.01 * sum(mp.multiclass(z[0], c) for c in range(10))
    np.testing.assert_allclose(report.top[0].values["reference"], exact, rtol=1e-12)
    sentence = words.closing_sentence(report)
    assert "(sum overflow)" in sentence
    assert "itself fails, so a fused loss is no remedy here" in sentence


# ------------------------------------------------------------------ the real float16 case


@pytest.fixture
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the header names the files as given


def fp16_report() -> engine.Report:
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        source = inputs.open_inputs(*FP16)
    finally:
        os.chdir(cwd)
    return engine.run(source, engine.Settings(FP16_DTYPES))


def test_fp16_lm_naive_inf_rows_are_the_rows_torch_made_inf_ranked_first() -> None:
    torch_loss = np.load(ROOT / "sample_data/fp16_lm_torch_loss.npy")
    torch_inf = np.flatnonzero(np.isinf(torch_loss))
    assert torch_inf.tolist() == [252]
    report = fp16_report()
    frame = report.to_frame()
    ours = [i for i, f in enumerate(frame["flags"]) if "naive_inf:float16" in f.split(";")]
    assert ours == torch_inf.tolist()
    first = report.top[0]
    assert first.row == 252
    assert "prob_underflow" in first.causes
    assert report.path_causes["naive"] == {"prob_underflow": 1}
    sentence = words.closing_sentence(report)
    assert "torch.log(torch.softmax(z, -1)) gives NaN or inf on 1 row in float16 (probability" \
        " underflow)" in sentence  # fmt: skip


def test_fp16_lm_compare_matches_golden() -> None:
    console = Console(
        width=120, file=io.StringIO(), color_system=None, legacy_windows=False, record=True
    )
    tables.print_report(fp16_report(), console)
    check_golden("fp16_lm_120", console.export_text())


@pytest.mark.usefixtures("_at_root")
def test_fp16_lm_trace_names_the_probability_underflow() -> None:
    args = ["trace", *FP16, "--dtypes", ",".join(FP16_DTYPES)]
    result = CliRunner().invoke(cli.cecheck, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    check_golden("trace_fp16_lm", result.stdout)
    text = flat(result.stdout)
    assert "row 252: the worst flagged row: naive_inf:float16" in text
    assert "log p = -inf and the loss is inf (probability underflow)" in text
    data = json.loads(
        CliRunner().invoke(cli.cecheck, [*args, "--format", "json"], catch_exceptions=False).stdout
    )
    assert data["framework"] == "torch"
    naive = next(p for p in data["paths"] if (p["path"], p["dtype"]) == ("naive", "float16"))
    assert naive["loss"] == "inf"
    assert "probability underflow" in naive["steps"][naive["first_bad_step"] - 1]["note"]


# ------------------------------------------------------------------ ranking


def test_places_within_a_severity() -> None:
    assert within_severity("naive_inf:float64") < within_severity("naive_inf:float16")
    assert within_severity("stable_nan:float16") < within_severity("textbook_nan:float64")
    assert within_severity("inaccurate:naive_float16") < within_severity(
        "inaccurate:textbook_float64"
    )
    assert within_severity("diverged:stable_float32") < within_severity("diverged:stable_bfloat16")
    assert within_severity("nonfinite_input") == 0


def test_rank_puts_framework_paths_and_wider_dtypes_before_the_larger_error() -> None:
    """Three rows, all only ``inaccurate`` (one severity): row 0 on the textbook path alone
    (error 1), row 1 on torch's naive path in float16 (error 0.5), row 2 on it in float32
    (error 0.01). Order: 2 (framework, widest), 1 (framework), 0 (textbook only)."""
    reference = np.array([1.0, 1.0, 1.0])
    losses = {
        "textbook": ([0.0, 1.0, 1.0], [1.0, 1.0, 1.0]),
        "naive": ([1.0, 1.0, 1.01], [1.0, 0.5, 1.0]),
        "stable": ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]),
    }  # path -> (float32 losses, float16 losses)
    results = {}
    for path, (l32, l16) in losses.items():
        results[(path, "float32")] = PathResult(np.array(l32))
        results[(path, "float16")] = PathResult(np.array(l16))
    no = np.zeros(3, dtype=bool)
    masks = dict.fromkeys(("ignored", "label_out_of_range", "invalid_label", "no_loss"), no)
    precisions = {d: prec.get(d) for d in ("float16", "float32")}
    diag = diagnose(
        no, masks, results, reference, precisions, 1e-4, 1e-6, nan_input=no, masked_target=no
    )
    assert diag.severity.tolist() == [5, 5, 5]
    order = partial.best_rows(np.arange(3), diag.rank, diag.error, 3)
    assert order.tolist() == [2, 1, 0]
    assert diag.error.tolist() == [1.0, 0.5, pytest.approx(0.01)]
