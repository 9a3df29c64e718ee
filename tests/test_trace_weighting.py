"""``cecheck trace`` with PyTorch's label smoothing and class weights, as ``compare`` takes them.

The trace walks the very functions ``compare`` computes with those options
(:meth:`cecheck.pathsets.WeightedPaths.functions`), so its last step of each path is the
engine's value for the row bit for bit; the values asserted beyond that come from
``mp_reference`` (mpmath, rounded once to float64).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import mp_reference as mp
import numpy as np
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from test_trace import random_rows, same_bits
from textcheck import flat

from cecheck import cli, engine
from cecheck.engine import Settings
from cecheck.precision import DTYPES
from cecheck.trace import Trace, trace

C = 7  # the classes of random_rows
WEIGHTS = (0.5, 2.0, 1.0, 0.0, 3.0, 1.5, 0.25)
OPTIONS = [(0.1, None), (0.0, WEIGHTS), (0.2, WEIGHTS), (1.0, None)]
FORMS = {"index": ("multiclass", "index"), "soft": ("multiclass", "soft")}


def first_bad_name(t: Trace, path: str, dtype: str) -> str | None:
    p = t.path(path, dtype)
    return None if p.first_bad is None else p.steps[p.first_bad].name


@pytest.mark.parametrize("in_dtype", ["float16", "float32"])
@pytest.mark.parametrize("kind", sorted(FORMS))
@pytest.mark.parametrize(("eps", "weights"), OPTIONS)
def test_weighted_trace_ends_at_the_engines_loss_bit_for_bit(
    kind: str, in_dtype: str, eps: float, weights: tuple[float, ...] | None
) -> None:
    """Each path's last step is what ``compare`` reports for the row with the same options."""
    task, form = FORMS[kind]
    z, y = random_rows(kind, in_dtype, seed=len(kind) + len(in_dtype) + int(eps * 10))
    s = Settings(dtypes=DTYPES, label_smoothing=eps, class_weights=weights)
    chunk = engine.evaluate(z, y, task, form, C, s)
    for i in range(len(y)):
        options = {"label_smoothing": eps, "class_weights": weights}
        t = trace(z[i], y[i], task=task, label_form=form, dtypes=DTYPES, **options)
        assert (t.label_smoothing, t.class_weights) == (eps, weights)
        for p in t.paths:
            column = "reference" if p.path == "reference" else f"{p.path}_{p.dtype}"
            want = np.float64(chunk.values[column][i])
            assert same_bits(p.loss, want), (kind, i, p.path, p.dtype)
            if not np.isfinite(p.loss):  # a non-finite loss has its cause marked
                assert p.first_bad is not None, (kind, i, p.path, p.dtype)
            if p.first_bad is not None:
                assert p.steps[p.first_bad].note


def test_smoothing_steps_are_torchs() -> None:
    """The stable path: the smoothing term Σ log_softmax and its combination with the nll, in
    float32; the other paths: the smoothed target, ε/C on every class and 1 - ε + ε/C on the
    label. Each loss is the exact smoothed loss within float32's rounding."""
    z, eps = [2.0, -1.0, 0.5], 0.1
    t = trace(z, 0, dtypes=["float32"], label_smoothing=eps)
    names = [s.name for s in t.path("stable", "float32").steps]
    assert names[-3:] == ["sum_log_softmax", "smooth", "loss"]
    combine = t.path("stable", "float32").steps[-1]
    assert combine.formula == "loss = (1 - 0.1) · nll + smooth · 0.1 / 3"
    for path in ("textbook", "naive"):
        smoothed = next(s for s in t.path(path, "float32").steps if s.name == "t_smoothed")
        assert smoothed.formula == "t' = (1 - 0.1) · t + 0.1 / 3"
        assert smoothed.values == ((0, 0.9 + 0.1 / 3), (1, 0.1 / 3), (2, 0.1 / 3))
    exact = mp.soft(z, [1 - eps + eps / 3, eps / 3, eps / 3])
    for path in ("textbook", "naive", "stable"):
        assert_allclose(t.path(path, "float32").loss, exact, rtol=4 * np.finfo(np.float32).eps)
    assert_allclose(t.reference, exact, rtol=1e-13)


def test_class_weight_step_is_w_y_times_the_loss() -> None:
    """Without smoothing, reduction='none' gives w[y] · loss per row: a step of its own in
    the textbook path and the reference, the nll's product in the naive and stable paths."""
    z, w = [2.0, -1.0, 0.5], (0.5, 2.0, 4.0)
    t = trace(z, 1, dtypes=["float32"], class_weights=w)
    for path in ("textbook", "reference"):
        last = t.path(path, "float32").steps[-1]
        assert (last.name, last.formula) == ("weighted_loss", "loss = w_y · loss")
    for path in ("naive", "stable"):
        nll = next(s for s in t.path(path, "float32").steps if s.name == "nll")
        assert nll.formula == "nll = -log p_y · w_y"
    assert_allclose(t.reference, 2.0 * mp.multiclass(z, 1), rtol=1e-13)
    for p in t.paths:
        assert_allclose(p.loss, 2.0 * mp.multiclass(z, 1), rtol=4 * np.finfo(np.float32).eps)


def test_a_masked_class_breaks_the_smoothing_term_and_that_step_is_marked() -> None:
    """A -inf (masked) non-target logit: the loss without smoothing is finite, with it inf,
    because smoothing puts ε/C on the masked class; the step that sums over the classes is
    marked, the masked class named."""
    z = [2.0, -np.inf, 0.5]
    plain = trace(z, 0, dtypes=["float32"])
    assert all(p.first_bad is None and np.isfinite(p.loss) for p in plain.paths)
    t = trace(z, 0, dtypes=["float32"], label_smoothing=0.1)
    expected = {
        "stable": "sum_log_softmax",
        "naive": "sum_t_log_p",
        "textbook": "sum_t_log_p",
        "reference": "gaps",
    }
    for path, name in expected.items():
        assert t.path(path, "float32").loss == np.inf
        assert first_bad_name(t, path, "float32") == name, path
        p = t.path(path, "float32")
        note = p.steps[p.first_bad or 0].note or ""
        assert "class 1 is masked" in note, note
        assert "label smoothing" in note, note
    assert 1 in t.classes


def test_a_masked_class_of_weight_0_makes_the_smoothed_sum_nan() -> None:
    """PyTorch's w · log_softmax is 0 · (-inf) = NaN there; the reference, which counts a
    zero target as 0, stays finite."""
    z, w = [2.0, -np.inf, 0.5], (1.0, 0.0, 1.0)
    t = trace(z, 0, dtypes=["float16"], label_smoothing=0.2, class_weights=w)
    for path, name in (("stable", "sum_log_softmax"), ("naive", "sum_t_log_p")):
        p = t.path(path, "float16")
        assert np.isnan(p.loss)
        assert first_bad_name(t, path, "float16") == name
        assert "class 1 is masked (z = -inf) and weighted 0" in (
            p.steps[p.first_bad or 0].note or ""
        )
    assert t.path("reference").first_bad is None
    exact = mp.soft(z, [0.8 + 0.2 / 3, 0.0, 0.2 / 3])
    assert_allclose(t.reference, exact, rtol=1e-13)


def test_weighting_is_refused_as_compare_refuses_it() -> None:
    with pytest.raises(ValueError, match="label smoothing must be between 0 and 1"):
        trace([1.0, 2.0], 0, label_smoothing=1.5)
    with pytest.raises(ValueError, match="expected 2 class weights"):
        trace([1.0, 2.0], 0, class_weights=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="apply to multiclass"):
        trace(0.5, 1.0, label_smoothing=0.1)
    with pytest.raises(ValueError, match="use them with the torch framework, not jax"):
        trace([1.0, 2.0], 0, label_smoothing=0.1, framework="jax")


# ---------------------------------------------------------------------- the command


def run(command: str, *args: str) -> Result:
    return CliRunner().invoke(cli.cecheck, [command, *args], catch_exceptions=False)


@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str]:
    rng = np.random.default_rng(17)
    z = (rng.normal(size=(12, 5)) * 30).astype(np.float16)
    z[4, 2] = -np.inf  # a masked class: inf with smoothing
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", rng.integers(0, 5, size=12))
    return str(tmp_path / "z.npy"), str(tmp_path / "y.npy")


@pytest.mark.parametrize(
    "options",
    [
        ["--label-smoothing", "0.1"],
        ["--class-weights", "1,2,0.5,3,0.25"],
        ["--label-smoothing", "0.05", "--class-weights", "1,2,0.5,3,0.25"],
    ],
)
def test_cli_trace_takes_compares_options_and_ends_at_its_csv_values(
    files: tuple[str, str], options: list[str]
) -> None:
    dtypes = ["--dtypes", "float16,bfloat16,float32,float64"]
    report = run("compare", *files, *options, *dtypes, "--format", "csv")
    assert report.exit_code == 0, report.stderr
    rows = list(csv.DictReader(io.StringIO(report.stdout)))
    for row in (0, 4, 7):
        result = run("trace", *files, *options, *dtypes, "--row", str(row), "--format", "json")
        assert result.exit_code == 0, result.stderr
        data = json.loads(result.stdout)
        assert (data["label_smoothing"] > 0) == ("--label-smoothing" in options)
        assert (data["class_weights"] is not None) == ("--class-weights" in options)
        for p in data["paths"]:
            column = "reference" if p["path"] == "reference" else f"{p['path']}_{p['dtype']}"
            want = float(rows[row][column])
            got = float(p["loss"])
            assert same_bits(got, want), (row, column)


def test_cli_trace_header_names_the_options(files: tuple[str, str]) -> None:
    result = run("trace", *files, "--label-smoothing", "0.1", "--class-weights", "1,2,0.5,3,0.25",
                 "--row", "4")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    header = "pytorch cross_entropy with label smoothing 0.1 and class weights 1, 2, 0.5, 3, 0.25"
    assert header in flat(result.stdout)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--label-smoothing", "2"], "Invalid value for '--label-smoothing'"),
        (["--class-weights", "1,2"], "Error: class weights: expected 5 weights (one per"),
        (["--label-smoothing", "0.1", "--framework", "jax"], "use them with the torch framework"),
    ],
)
def test_cli_trace_refuses_options_as_compare_does(
    files: tuple[str, str], options: list[str], message: str
) -> None:
    for command in ("compare", "trace"):
        result = run(command, *files, *options)
        assert result.exit_code == 2, (command, result.stderr)
        assert message in result.stderr, (command, result.stderr)
        if not message.startswith("Invalid value"):  # one line, the same as compare's
            assert (
                result.stderr.splitlines() == run("compare", *files, *options).stderr.splitlines()
            )


@settings(max_examples=150, deadline=None)
@given(
    z=st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=2, max_size=6),
    data=st.data(),
    dtype=st.sampled_from(DTYPES),
)
def test_any_weighted_row_ends_at_the_engines_loss(
    z: list[float], data: st.DataObject, dtype: str
) -> None:
    c = len(z)
    y = data.draw(st.integers(0, c - 1))
    eps = data.draw(st.sampled_from([0.0, 0.05, 0.3, 1.0]))
    one_per_class = st.lists(st.sampled_from([0.0, 0.5, 1.0, 3.0]), min_size=c, max_size=c)
    weights = data.draw(st.none() | one_per_class.filter(any).map(tuple))
    if eps == 0 and weights is None:
        eps = 0.1
    s = Settings(dtypes=(dtype,), label_smoothing=eps, class_weights=weights)
    values = engine.evaluate(np.array([z]), np.array([y]), "multiclass", "index", c, s).values
    t = trace(z, y, dtypes=[dtype], label_smoothing=eps, class_weights=weights)
    for p in t.paths:
        column = "reference" if p.path == "reference" else f"{p.path}_{dtype}"
        assert same_bits(p.loss, np.float64(values[column][0])), (p.path, dtype)
