"""``cecheck trace --inputs probs``: a row of probabilities walked along the paths
``compare --inputs probs`` computes (naive, torch, keras, sklearn, the reference).

The trace calls the very functions of :mod:`cecheck.frameworks.probs` with a recorder, so
each path's last step is the engine's value for the row bit for bit; the values asserted
beyond that come from mpmath (``-log p`` of the stored p, rounded once to float64).
"""

from __future__ import annotations

import json
from pathlib import Path

import mpmath
import numpy as np
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st
from test_trace import same_bits

from cecheck import cli, engine
from cecheck.choices import PROB_TRACE_PATHS, TRACE_PATHS
from cecheck.engine import Settings
from cecheck.precision import DTYPES
from cecheck.trace import PROB_PATHS, Trace, trace

# probabilities with the edges that matter: 0, 1, values that underflow in float16/bfloat16
EDGES = [0.0, 1.0, 1e-45, 1e-30, 1e-9, 1e-7, 5e-8, 1 - 1e-7, 1 - 2**-24, 0.5]
# no subnormal p: a reference loss of 5e-324 trips an overflow warning in diagnose (not ours)
PROB = st.sampled_from(EDGES) | st.floats(0.0, 1.0, allow_subnormal=False)


def first_bad_name(t: Trace, path: str, dtype: str) -> str | None:
    p = t.path(path, dtype)
    return None if p.first_bad is None else p.steps[p.first_bad].name


def engine_values(task: str, form: str, q: np.ndarray, y: np.ndarray, c: int, dtype: str) -> dict:
    s = Settings(dtypes=(dtype,), inputs="probs")
    return engine.evaluate(q[None], y[None], task, form, c, s).values


def assert_ends_at_the_engine(task: str, form: str, q: list, y: object, dtype: str) -> None:
    qa, ya = np.array(q, dtype=np.float64), np.array(y)
    c = 1 if qa.ndim == 0 else qa.shape[0]
    values = engine_values(task, form, qa, ya, c, dtype)
    t = trace(qa, ya, task=task, label_form=form, dtypes=[dtype], inputs="probs")
    assert {p.path for p in t.paths} == set(PROB_PATHS)
    for p in t.paths:
        column = "reference" if p.path == "reference" else f"{p.path}_{dtype}"
        assert same_bits(p.loss, np.float64(values[column][0])), (p.path, dtype, p.loss)


@settings(max_examples=150, deadline=None)
@given(
    q=st.lists(PROB, min_size=2, max_size=6),
    data=st.data(),
    dtype=st.sampled_from(DTYPES),
    normalise=st.booleans(),
)
def test_any_multiclass_row_of_probabilities_ends_at_the_engines_loss(
    q: list[float], data: st.DataObject, dtype: str, normalise: bool
) -> None:
    if normalise and sum(q) > 0:
        q = [v / sum(q) for v in q]
    y = data.draw(st.integers(0, len(q) - 1))
    assert_ends_at_the_engine("multiclass", "index", q, y, dtype)
    t = data.draw(st.lists(st.sampled_from([0.0, 0.25, 1.0]), min_size=len(q), max_size=len(q)))
    assert_ends_at_the_engine("multiclass", "soft", q, t, dtype)


@settings(max_examples=150, deadline=None)
@given(q=PROB, t=st.sampled_from([0.0, 1.0, 0.3]), dtype=st.sampled_from(DTYPES))
def test_any_binary_probability_ends_at_the_engines_loss(q: float, t: float, dtype: str) -> None:
    assert_ends_at_the_engine("binary", "binary", q, t, dtype)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(q=st.lists(PROB, min_size=2, max_size=5), data=st.data(), dtype=st.sampled_from(DTYPES))
def test_any_multilabel_row_of_probabilities_ends_at_the_engines_loss(
    q: list[float], data: st.DataObject, dtype: str
) -> None:
    t = data.draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=len(q), max_size=len(q)))
    assert_ends_at_the_engine("multilabel", "multihot", q, t, dtype)


def test_a_target_probability_of_zero_is_marked_at_the_log() -> None:
    q = [0.0, 0.25, 0.75]  # a valid row; the label's class has p = 0
    t = trace(q, 0, task="multiclass", label_form="index", dtypes=["float32"], inputs="probs")
    naive = t.path("naive", "float32")
    assert naive.loss == np.inf
    assert first_bad_name(t, "naive", "float32") == "log_p"
    assert naive.steps[naive.first_bad or 0].note == (
        "p = 0 for class 0: log 0 = -inf, so -log p is inf"
    )
    assert first_bad_name(t, "torch", "float32") == "log_p"  # nll_loss(log p): no guard
    assert first_bad_name(t, "keras", "float32") == "clipped"
    assert first_bad_name(t, "sklearn", "float32") == "clipped"
    # the clip caps the loss at -log(float32(1e-7)) and -log(float32 eps)
    assert t.path("keras", "float32").loss == np.float32(-np.log(np.float32(1e-7)))
    assert t.path("sklearn", "float32").loss == float(np.float32(-mpmath.log(2.0**-23)))


def test_a_zero_of_another_class_is_not_bad() -> None:
    """``log 0`` of a class the index label does not read never enters the loss."""
    q = [0.0, 0.25, 0.75]
    t = trace(q, 2, task="multiclass", label_form="index", dtypes=["float64"], inputs="probs")
    naive = t.path("naive", "float64")
    assert naive.first_bad is None
    assert naive.loss == float(-mpmath.log(mpmath.mpf(0.75)))


def test_binary_torch_marks_the_clamp_at_minus_100() -> None:
    t = trace(0.0, 1.0, task="binary", label_form="binary", dtypes=["float32"], inputs="probs")
    assert t.path("torch", "float32").loss == 100.0
    assert first_bad_name(t, "torch", "float32") == "clamped_log_p"
    assert first_bad_name(t, "naive", "float32") == "log_p"


def test_a_probability_that_underflows_in_the_dtype_is_marked_at_the_cast() -> None:
    t = trace(1e-9, 1.0, task="binary", label_form="binary", dtypes=["float16"], inputs="probs")
    naive = t.path("naive", "float16")
    assert naive.loss == np.inf
    assert first_bad_name(t, "naive", "float16") == "p"
    assert "rounds to 0" in (naive.steps[0].note or "")
    exact = float(-mpmath.log(mpmath.mpf(1e-9)))
    assert t.reference == pytest.approx(exact, rel=1e-15)


def test_an_invalid_probability_row_is_marked_at_the_cast() -> None:
    q = [0.5, 0.6, 0.1]  # sums to 1.2
    t = trace(q, 1, task="multiclass", label_form="index", dtypes=["float64"], inputs="probs")
    for path in ("naive", "torch", "keras", "sklearn"):
        assert first_bad_name(t, path, "float64") == "p", path
    assert "not a probability row" in (t.path("keras", "float64").steps[0].note or "")


def test_the_command_line_offers_every_path_of_probabilities() -> None:
    """``--path`` is built from cecheck.choices (no numpy at --help): the same paths."""
    assert set(PROB_PATHS) <= {*TRACE_PATHS, *PROB_TRACE_PATHS}
    assert set(PROB_TRACE_PATHS) <= set(PROB_PATHS)


def test_logit_paths_are_refused_for_probabilities() -> None:
    with pytest.raises(
        ValueError, match="paths must be among naive, torch, keras, sklearn, reference"
    ):
        trace([0.5, 0.5], 0, dtypes=["float32"], inputs="probs", paths=["stable"])


def run(command: str, *args: str) -> Result:
    return CliRunner().invoke(cli.cecheck, [command, *args], catch_exceptions=False)


@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str]:
    q = np.array([[0.2, 0.3, 0.5], [0.0, 0.4, 0.6], [0.1, 0.1, 0.8]])
    np.save(tmp_path / "p.npy", q)
    np.save(tmp_path / "y.npy", np.array([2, 0, 1]))
    return str(tmp_path / "p.npy"), str(tmp_path / "y.npy")


def test_cli_trace_walks_probabilities(files: tuple[str, str]) -> None:
    """Without --row the worst flagged row (p[y] = 0) is walked along compare's paths."""
    result = run("trace", *files, "--inputs", "probs", "--dtypes", "float32", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["row"], data["inputs"]) == (1, "probs")
    losses = {p["path"]: p["loss"] for p in data["paths"]}
    compare = run("compare", *files, "--inputs", "probs", "--dtypes", "float32", "--format", "csv")
    header, *rows = compare.stdout.splitlines()
    row = dict(zip(header.split(","), rows[1].split(","), strict=True))
    for path in ("naive", "torch", "keras", "sklearn"):
        assert float(row[f"{path}_float32"]) == float(losses[path]), path
    assert losses["naive"] == losses["torch"] == "inf"  # strict JSON: inf as a string
    naive = next(p for p in data["paths"] if p["path"] == "naive")
    assert naive["steps"][naive["first_bad_step"] - 1]["name"] == "log_p"


def test_cli_trace_of_probabilities_refuses_a_logit_path(files: tuple[str, str]) -> None:
    result = run("trace", *files, "--inputs", "probs", "--path", "stable")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "Error: row 1: paths must be among naive, torch, keras, sklearn, reference, got ['stable']"
    ]
