"""The framework view's path sets (cecheck.pathsets) end to end: probability input,
PyTorch's batch means, label smoothing and class weights, through ``cecheck.compare`` and the
``cecheck compare`` command.

Expected losses are computed independently with mpmath (50 digits, far beyond float64): the
conventions' constants from the rule each framework documents (``-log`` of the clip bound as
the dtype holds it, rounded once to that dtype), and logit losses from the textbook formula
in ``tests/mp_reference.py``. Tolerances: a few units in the last place of the dtype the
value is computed in (``RTOL``), since each path rounds every step.
"""

from __future__ import annotations

import io
import math

import ml_dtypes
import mp_reference as mp
import mpmath
import numpy as np
import pytest
from click.testing import CliRunner, Result
from numpy.testing import assert_allclose
from rich.console import Console
from textcheck import flat, strict_json

import cecheck
from cecheck import fast
from cecheck import frameworks as fw
from cecheck.cli import cecheck as cli
from cecheck.output import tables
from cecheck.settings import Settings

mpmath.mp.dps = 50
RTOL = {"float16": 2e-3, "bfloat16": 1e-2, "float32": 1e-6, "float64": 1e-14}
STORAGE = {
    "float16": np.float16,
    "bfloat16": ml_dtypes.bfloat16,
    "float32": np.float32,
    "float64": np.float64,
}
ALL = ("float16", "bfloat16", "float32", "float64")


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["compare", *args], catch_exceptions=False)


def render(report: cecheck.Report) -> str:
    console = Console(width=120, file=io.StringIO(), color_system=None, record=True)
    tables.print_report(report, console)
    return flat(console.export_text())


def neglog_in(x: float, dtype: str) -> float:
    """``-log(x)`` with ``x`` first stored in ``dtype`` (mpmath, exact), rounded to ``dtype``."""
    stored = float(np.asarray(x, dtype=STORAGE[dtype]).astype(np.float64))
    return float(np.asarray(float(-mpmath.log(mpmath.mpf(stored))), dtype=STORAGE[dtype]))


def eps_of(dtype: str) -> float:
    return float(ml_dtypes.finfo(STORAGE[dtype]).eps)


# ---------------------------------------------------------------- probabilities

# Binary probabilities: p = 0 for a positive target, p = 1 for a negative one (both
# hopeless), p = 1 for a positive target (perfect), and an ordinary row.
P_BINARY = np.array([0.0, 1.0, 1.0, 0.25])
T_BINARY = np.array([1.0, 0.0, 1.0, 1.0])


def expected_hopeless(path: str, dtype: str, p: float) -> float:
    """What each convention reports for a hopeless binary row (p = 0, t = 1 or p = 1, t = 0),
    from its documented rule."""
    if path == "naive":
        return math.inf
    if path == "torch":
        return 100.0  # BCELoss clamps each log at -100
    if path == "keras":
        # clip to [1e-7, 1 - 1e-7] in the dtype; the loss reads -log(o) or -log(1 - o)
        if p == 0.0:
            return neglog_in(1e-7, dtype)
        hi = float(np.asarray(1 - 1e-7, dtype=STORAGE[dtype]).astype(np.float64))
        return math.inf if hi == 1.0 else neglog_in(1.0 - hi, dtype)
    return neglog_in(eps_of(dtype), dtype)  # sklearn: clip to [eps, 1 - eps] of the dtype


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("path", fw.PROB_PATHS)
def test_binary_probabilities_give_each_conventions_documented_value(path: str, dtype: str) -> None:
    report = cecheck.compare(P_BINARY, T_BINARY, inputs="probs", dtypes=ALL, top=10)
    rows = {r.row: r for r in report.top}
    for row in (0, 1):
        want = expected_hopeless(path, dtype, P_BINARY[row])
        got = rows[row].values[f"{path}_{dtype}"]
        if math.isinf(want):
            assert got == want
        else:
            assert_allclose(got, want, rtol=RTOL[dtype])
        assert "target_prob_zero" in rows[row].flags
        assert rows[row].values["reference"] == math.inf
    frame = report.to_frame()
    # the ordinary row: -log(0.25) with 0.25 exact in every dtype (mpmath), all conventions
    assert_allclose(frame[f"{path}_{dtype}"][3], neglog_in(0.25, dtype), rtol=RTOL[dtype])


def test_documented_constants_in_float32_and_float64() -> None:
    """The numbers the docs quote: 100, 16.118095, 15.942385 and 36.043653."""
    frame = cecheck.compare(P_BINARY, T_BINARY, inputs="probs").to_frame()
    assert list(frame["torch_float32"][:2]) == [100.0, 100.0]
    assert_allclose(frame["keras_float32"][:2], [16.118095, 15.942385], rtol=1e-7)
    assert_allclose(frame["sklearn_float32"][:2], [15.942385, 15.942385], rtol=1e-7)
    assert_allclose(frame["sklearn_float64"][:2], [36.043653389117154] * 2, rtol=1e-15)


def test_perfect_row_is_not_flagged_as_target_prob_zero() -> None:
    report = cecheck.compare(P_BINARY, T_BINARY, inputs="probs", top=10)
    flags = {r.row: r.flags for r in report.top}
    assert "target_prob_zero" not in flags.get(2, [])
    assert report.counts["target_prob_zero"] == 2


def test_multiclass_probability_zero_for_the_target() -> None:
    """p[y] = 0: nll_loss(log p) is inf, Keras renormalises and clips, sklearn clips."""
    probs = np.array([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])
    labels = np.array([0, 2])
    report = cecheck.compare(probs, labels, inputs="probs", dtypes=("float32", "float64"))
    (row,) = report.top
    assert row.row == 0
    assert row.values["naive_float64"] == math.inf
    assert row.values["torch_float64"] == math.inf
    for d in ("float32", "float64"):
        assert_allclose(row.values[f"keras_{d}"], neglog_in(1e-7, d), rtol=RTOL[d])
        assert_allclose(row.values[f"sklearn_{d}"], neglog_in(eps_of(d), d), rtol=RTOL[d])
    assert "target_prob_zero" in row.flags
    # torch's multiclass path is not guarded: a framework path's inf ranks with stable
    assert "torch_inf:float64" in row.flags
    assert report.failed(["stable"]) == ["stable"]
    frame = report.to_frame()
    assert_allclose(frame["reference"][1], float(-mpmath.log(mpmath.mpf(0.5))), rtol=1e-15)


def test_table_says_no_stable_path_and_shows_the_conventions() -> None:
    text = render(cecheck.compare(P_BINARY, T_BINARY, inputs="probs"))
    assert flat(fw.NO_STABLE_PATH) in text
    for path in fw.PROB_PATHS:
        assert flat(f"{path} {fw.CONVENTIONS[path]}") in text
    assert "export the logits" in text.rsplit("Worst flagged rows", 1)[1]
    assert "max p" in text or " p " in text


def test_clipped_is_the_cause_when_a_clip_moves_a_finite_loss() -> None:
    """p = 1e-9 in float64: Keras reports -log(1e-7), far from the true -log(1e-9)."""
    report = cecheck.compare(np.array([1e-9]), np.array([1.0]), inputs="probs", dtypes=["float64"])
    (row,) = report.top
    assert "inaccurate:keras_float64" in row.flags
    assert "clipped" in row.causes
    assert "cancellation" not in row.causes
    assert_allclose(row.values["reference"], float(-mpmath.log(mpmath.mpf(1e-9))), rtol=1e-15)


def test_invalid_probability_is_an_input_problem() -> None:
    report = cecheck.compare(np.array([1.5, 0.5]), np.array([1.0, 1.0]), inputs="probs")
    assert report.counts["invalid_probability"] == 1
    assert report.scored_rows == 1
    assert report.failed(["input"]) == ["input"]


def test_fail_on_with_probabilities_through_the_cli(tmp_path: object) -> None:
    """Binary p = 0: torch/keras/sklearn stay finite in float32 (no `stable`), naive is inf."""
    path = _save(tmp_path, "p.npy", np.array([0.0, 0.5]))
    labels = _save(tmp_path, "t.npy", np.array([1.0, 1.0]))
    assert run(path, labels, "--inputs", "probs", "--fail-on", "stable").exit_code == 0
    assert run(path, labels, "--inputs", "probs", "--fail-on", "naive").exit_code == 1


def test_probability_warning_is_dropped_with_inputs_probs(tmp_path: object) -> None:
    probs = _save(tmp_path, "p.npy", np.array([[0.25, 0.75], [0.5, 0.5]]))
    labels = _save(tmp_path, "y.npy", np.array([0, 1]))
    assert "look like softmax probabilities" in flat(run(probs, labels).stderr)
    result = run(probs, labels, "--inputs", "probs", "--format", "json")
    assert result.exit_code == 0
    assert "warning" not in result.stderr
    data = strict_json(result.stdout)
    assert data["inputs"]["kind"] == "probs"
    assert data["inputs"]["warnings"] == []
    assert data["conventions"]["no_stable_path"] == fw.NO_STABLE_PATH
    assert set(data["conventions"]["paths"]) == set(fw.PROB_PATHS)


def test_json_of_hopeless_binary_rows(tmp_path: object) -> None:
    p = _save(tmp_path, "p.npy", P_BINARY)
    t = _save(tmp_path, "t.npy", T_BINARY)
    data = strict_json(run(p, t, "--inputs", "probs", "--format", "json").stdout)
    by_row = {r["row"]: r for r in data["flagged"]}
    assert by_row[0]["losses"]["torch_float32"] == 100.0
    assert by_row[0]["losses"]["naive_float32"] == "inf"
    assert by_row[0]["reference"] == "inf"
    assert "target_prob_zero" in by_row[0]["flags"]


# ---------------------------------------------------------------- batch means


def _logits(n: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, c)) * 3


LABELS_2ND_IGNORED = np.array([0, 1, 2, 1, -100, -100, -100, -100, 2, 0])
NAN_REASON = "every label in batch 1 (rows 4-7) is -100 (ignore_index): PyTorch's mean is 0/0 = NaN"


def test_second_batch_all_ignored_is_nan_with_the_reason() -> None:
    z = _logits(10, 3)
    report = cecheck.compare(z, LABELS_2ND_IGNORED, batch_size=4)
    b = report.batches
    assert b is not None
    assert (b.batches, b.batch_size, b.nonfinite_batches) == (3, 4, 1)
    (issue,) = b.issues
    assert issue.batch == 1
    assert all(math.isnan(m) for m in issue.means.values())
    assert issue.reason == NAN_REASON
    assert all(c.nan == 1 and c.inf == 0 for c in b.columns.values())
    # batch 0 and batch 2 (2 rows) are plain means of the mpmath losses
    exact = [mp.multiclass(z[i], int(y)) for i, y in enumerate(LABELS_2ND_IGNORED) if y >= 0]
    means = [sum(exact[:4]) / 4, sum(exact[4:]) / 2]
    worst = max(range(2), key=lambda i: means[i])
    col = b.columns["stable_float64"]
    assert col.worst_batch == (0, 2)[worst]
    assert_allclose(col.worst_mean, means[worst], rtol=1e-14)
    assert "PyTorch's reduction='mean' is NaN or inf in 1 of 3 batches" in render(report)
    assert NAN_REASON in render(report)


def test_second_batch_all_ignored_through_the_cli(tmp_path: object) -> None:
    z = _save(tmp_path, "z.npy", _logits(10, 3))
    y = _save(tmp_path, "y.npy", LABELS_2ND_IGNORED)
    table = run(z, y, "--batch-size", "4")
    assert table.exit_code == 0
    assert f"batch 1 (rows 4-7): NaN in every column — {NAN_REASON}." in flat(table.stdout)
    data = strict_json(run(z, y, "--batch-size", "4", "--format", "json").stdout)
    batches = data["batches"]
    assert batches["batch_size"] == 4
    assert batches["count"] == 3
    assert batches["last_batch_rows"] == 2
    (issue,) = batches["nonfinite"]
    assert issue["batch"] == 1
    assert issue["ignored"] == 4
    assert issue["means"]["stable_float32"] == "nan"
    assert issue["reasons"]["stable_float32"] == NAN_REASON
    csv = run(z, y, "--batch-size", "4", "--format", "csv").stdout.splitlines()
    header = csv[0].split(",")
    assert header[:3] == ["row", "batch", "label"]
    assert [line.split(",")[1] for line in csv[1:]] == ["0"] * 4 + ["1"] * 4 + ["2"] * 2


def test_weighted_batch_mean_divides_by_the_targets_weights() -> None:
    """PyTorch's mean with weights: sum(w[y] * CE) / sum(w[y]) over the rows not ignored."""
    z = _logits(6, 3, seed=1)
    y = np.array([0, 2, -100, 1, 1, 0])
    w = [1.0, 2.0, 0.5]
    report = cecheck.compare(z, y, batch_size=6, class_weights=w)
    kept = [i for i in range(6) if y[i] >= 0]
    want = sum(w[y[i]] * mp.multiclass(z[i], int(y[i])) for i in kept) / sum(w[y[i]] for i in kept)
    assert_allclose(report.batches.columns["stable_float64"].worst_mean, want, rtol=1e-14)
    frame = report.to_frame()
    for i in kept:
        exact = w[y[i]] * mp.multiclass(z[i], int(y[i]))
        assert_allclose(frame["stable_float64"][i], exact, rtol=1e-14)
        assert_allclose(frame["stable_float32"][i], exact, rtol=1e-5)


def test_label_smoothing_row_loss() -> None:
    """(1 - eps) * CE + eps / C * sum_c (lse - z_c), the soft loss of the smoothed target."""
    z = _logits(4, 5, seed=2)
    y = np.array([0, 4, 2, -100])
    eps = 0.1
    frame = cecheck.compare(z, y, label_smoothing=eps).to_frame()
    for i in range(3):
        t = np.full(5, eps / 5)
        t[y[i]] += 1 - eps
        assert_allclose(frame["stable_float64"][i], mp.soft(z[i], t), rtol=1e-14)
        assert_allclose(frame["reference"][i], mp.soft(z[i], t), rtol=1e-14)
    assert frame["stable_float64"][3] == 0.0


def test_smoothing_soft_targets_prints_the_note(tmp_path: object) -> None:
    z = _save(tmp_path, "z.npy", _logits(3, 3))
    t = _save(tmp_path, "t.npy", np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.5, 0.5, 0.0]]))
    out = flat(run(z, t, "--label-smoothing", "0.2").stdout)
    assert flat(fw.SOFT_SMOOTHING_NOTE) in out
    data = strict_json(run(z, t, "--label-smoothing", "0.2", "--format", "json").stdout)
    assert data["pytorch"]["notes"] == [fw.SOFT_SMOOTHING_NOTE]


def test_class_weights_from_a_file(tmp_path: object) -> None:
    z = _save(tmp_path, "z.npy", _logits(4, 3))
    y = _save(tmp_path, "y.npy", np.array([0, 1, 2, 0]))
    weights = tmp_path / "w.txt"  # type: ignore[operator]
    weights.write_text("1\n2\n0.5\n")
    data = strict_json(run(z, y, "--class-weights", str(weights), "--format", "json").stdout)
    assert data["pytorch"]["class_weights"] == [1.0, 2.0, 0.5]


# ---------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--class-weights", "1,2"], "expected 3 weights"),
        (["--class-weights", "1,x,2"], "'x' is not a number"),
        (["--class-weights", "no-such-file.txt"], "no such file"),
        (["--class-weights", "1,-1,1"], "weights must be >= 0"),
        (["--label-smoothing", "1.5"], "--label-smoothing"),
        (["--batch-size", "0"], "--batch-size"),
        (["--inputs", "probs", "--label-smoothing", "0.1"], "do not apply to probability"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path: object, args: list[str], words: str) -> None:
    z = _save(tmp_path, "z.npy", _logits(4, 3))
    y = _save(tmp_path, "y.npy", np.array([0, 1, 2, 0]))
    result = run(z, y, *args)
    assert result.exit_code == 2
    assert words in result.stderr
    assert "Traceback" not in result.stderr


def test_weights_and_smoothing_are_rejected_for_binary(tmp_path: object) -> None:
    z = _save(tmp_path, "z.npy", np.array([1.0, -2.0]))
    t = _save(tmp_path, "t.npy", np.array([1.0, 0.0]))
    for args in (["--class-weights", "1"], ["--label-smoothing", "0.1"]):
        result = run(z, t, *args)
        assert result.exit_code == 2
        assert result.stderr.strip().count("\n") == 0
        assert "multiclass" in result.stderr
    with pytest.raises(ValueError, match="multiclass"):
        cecheck.compare(np.array([1.0]), np.array([1.0]), label_smoothing=0.1)


def test_library_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="3 class weights"):
        cecheck.compare(_logits(2, 3), np.array([0, 1]), class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="inputs"):
        Settings(inputs="prob")
    with pytest.raises(ValueError, match="batch size"):
        Settings(batch_size=0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Settings(label_smoothing=-0.1)


# ---------------------------------------------------------------- defaults, fast path


def test_defaults_leave_the_report_as_it_was() -> None:
    report = cecheck.compare(np.array([[1000.0, 2000.0, 2500.0]]), np.array([1]))
    assert report.batches is None
    data = report.to_dict()
    assert not {"batches", "conventions", "pytorch"} & set(data)
    assert data["inputs"]["kind"] == "logits"
    assert not report.settings.framework_view


def test_any_framework_setting_keeps_the_fast_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """fast.usable says yes, but the fused kernel must not be called with these settings."""

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("the fast path ran")

    monkeypatch.setattr(fast, "usable", lambda *_a, **_k: True)
    monkeypatch.setattr(fast, "multiclass_index", refuse)
    z, y = _logits(8, 3), np.array([0, 1, 2, 0, 1, 2, 0, 1])
    for kw in ({"batch_size": 4}, {"label_smoothing": 0.1}, {"class_weights": [1, 2, 3]}):
        assert Settings(**kw).framework_view  # type: ignore[arg-type]
        cecheck.compare(z, y, **kw)  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="fast path ran"):
        cecheck.compare(z, y)


# ---------------------------------------------------------------- PyTorch parity


def test_batch_means_and_rows_match_torch() -> None:
    """With torch installed: the engine's stable float64 rows and batch means equal
    ``F.cross_entropy`` (reduction none and mean per batch), NaN of the all-ignored batch
    included."""
    torch = pytest.importorskip("torch", exc_type=ImportError)
    f = torch.nn.functional
    z = _logits(10, 3, seed=3)
    y = LABELS_2ND_IGNORED
    w = [1.0, 2.0, 0.5]
    report = cecheck.compare(z, y, batch_size=4, class_weights=w, label_smoothing=0.1)
    zt, yt, wt = torch.from_numpy(z), torch.from_numpy(y), torch.tensor(w, dtype=torch.float64)
    rows = f.cross_entropy(zt, yt, weight=wt, label_smoothing=0.1, reduction="none")
    assert_allclose(report.to_frame()["stable_float64"], rows.numpy(), rtol=1e-12)
    means = [
        float(f.cross_entropy(zt[a : a + 4], yt[a : a + 4], weight=wt, label_smoothing=0.1))
        for a in range(0, 10, 4)
    ]
    assert math.isnan(means[1])
    (issue,) = report.batches.issues
    assert issue.batch == 1
    assert math.isnan(issue.means["stable_float64"])
    finite = [m for m in means if not math.isnan(m)]
    assert_allclose(report.batches.columns["stable_float64"].worst_mean, max(finite), rtol=1e-12)


def _save(tmp_path: object, name: str, array: np.ndarray) -> str:
    path = tmp_path / name  # type: ignore[operator]
    np.save(path, array)
    return str(path)
