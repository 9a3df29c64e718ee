"""-inf logits as masks, and the input problems NaN and +inf told apart.

A ``-inf`` on a class the target does not use is a mask (as torch, TensorFlow and JAX treat
it): the row is scored, its losses are what the paths compute. A ``-inf`` on the target (or
on every class) is ``masked_target``: the loss is inf in every framework. NaN and ``+inf``
logits stay input problems, with the cause ``nan_input`` or ``inf_input``. Loss values are
checked against ``mp_reference`` (mpmath).
"""

from __future__ import annotations

from pathlib import Path

import mp_reference as mp
import numpy as np
import pytest
from click.testing import CliRunner
from numpy.testing import assert_allclose
from textcheck import strict_json

from cecheck import fast
from cecheck.cli import cecheck
from cecheck.engine import Settings, evaluate
from cecheck.trace import trace

INF = np.inf
F32_F64 = ("float32", "float64")
KERNEL = [
    False,
    pytest.param(True, marks=pytest.mark.skipif(not fast.installed(), reason="no kernel")),
]


def _flags(r, row: int = 0) -> set[str]:  # type: ignore[no-untyped-def]
    return set(r.diagnosis.flag_lists()[row])


def _causes(r, row: int = 0) -> set[str]:  # type: ignore[no-untyped-def]
    return set(r.diagnosis.cause_lists()[row])


@pytest.mark.parametrize("use_fast", KERNEL)
def test_a_masked_class_is_scored_with_the_paths_values(use_fast: bool) -> None:
    z = np.array([[1e8, -INF, 1e8], [0.0, -INF, 2.0], [3.0, 1.0, -INF]])
    y = np.array([0, 2, 0])
    r = evaluate(z, y, "multiclass", "index", 3, Settings(dtypes=F32_F64), use_fast=use_fast)
    assert r.diagnosis.scored.all()
    for row in range(3):
        assert not {"nonfinite_input", "masked_target"} & _flags(r, row)
        expected = mp.multiclass(z[row], y[row])
        assert_allclose(r.values["reference"][row], expected, rtol=1e-13)
        assert_allclose(r.values["stable_float64"][row], expected, rtol=1e-13)
    assert r.values["reference"][0] == pytest.approx(np.log(2), rel=1e-15)
    # the textbook formula overflows on exp(1e8): a textbook flag, not an input problem
    assert "textbook_nan:float32" in _flags(r, 0)


@pytest.mark.parametrize("use_fast", KERNEL)
def test_a_masked_target_is_a_flag_of_its_own(use_fast: bool) -> None:
    z = np.array([[0.0, -INF, 1.0], [-INF, -INF, -INF], [1.0, 2.0, 3.0]])
    y = np.array([1, 0, 0])
    r = evaluate(z, y, "multiclass", "index", 3, Settings(dtypes=F32_F64), use_fast=use_fast)
    for row in (0, 1):
        assert _flags(r, row) == {"masked_target"}
        assert _causes(r, row) == {"masked_target"}
    assert _flags(r, 2) == set()
    assert list(r.diagnosis.scored) == [False, False, True]


@pytest.mark.parametrize("use_fast", KERNEL)
def test_nan_and_plus_inf_logits_are_input_problems_told_apart(use_fast: bool) -> None:
    z = np.array([[np.nan, 0.0], [INF, 0.0], [INF, -INF], [1.0, 0.0]])
    y = np.array([0, 1, 0, 0])
    r = evaluate(z, y, "multiclass", "index", 2, Settings(dtypes=F32_F64), use_fast=use_fast)
    assert [_flags(r, i) for i in range(3)] == [{"nonfinite_input"}] * 3
    assert [_causes(r, i) for i in range(3)] == [{"nan_input"}, {"inf_input"}, {"inf_input"}]
    assert _flags(r, 3) == set()


@pytest.mark.parametrize("use_fast", KERNEL)
def test_soft_targets_with_zero_weight_on_masked_classes(use_fast: bool) -> None:
    # optax's SafeSoftmaxCrossEntropyTest: 0.693147, inf (a masked class with weight) and 0
    z = np.array([[-INF, 0.0, 0.0], [-INF, 0.0, 0.0], [-INF, 0.0, -INF]])
    t = np.array([[0.0, 0.5, 0.5], [0.4, 0.3, 0.3], [0.0, 1.0, 0.0]])
    r = evaluate(z, t, "multiclass", "soft", 3, Settings(dtypes=F32_F64), use_fast=use_fast)
    ref = r.values["reference"]
    assert_allclose(ref[0], mp.soft(z[0], t[0]), rtol=1e-13)
    assert_allclose(ref[0], 0.693147, rtol=1e-6)
    assert ref[2] == mp.soft(z[2], t[2]) == 0.0
    assert _flags(r, 1) == {"masked_target"}
    assert not {"nonfinite_input", "masked_target"} & (_flags(r, 0) | _flags(r, 2))
    assert r.diagnosis.scored[[0, 2]].all()


def test_binary_minus_inf_stays_an_input_problem() -> None:
    # sigmoid losses have no masks: torch's BCE with logits is NaN at z = -inf, t = 0
    r = evaluate(np.array([-INF, 1.0]), np.array([0.0, 1.0]), "binary", "binary", 1, Settings())
    assert _flags(r, 0) == {"nonfinite_input"}
    assert _causes(r, 0) == {"inf_input"}


def _compare(tmp_path: Path, z: np.ndarray, y: np.ndarray, *args: str):  # type: ignore[no-untyped-def]
    zf, yf = tmp_path / "z.npy", tmp_path / "y.npy"
    np.save(zf, z)
    np.save(yf, y)
    return CliRunner().invoke(cecheck, ["compare", str(zf), str(yf), *args], catch_exceptions=False)


def test_masks_do_not_fail_on_input(tmp_path: Path) -> None:
    z = np.array([[1e8, -INF, 1e8], [2.0, -INF, 0.0]])
    result = _compare(tmp_path, z, np.array([0, 0]), "--fail-on", "input", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = strict_json(result.stdout)
    assert "nonfinite_input" not in data["counts"]
    assert "masked_target" not in data["counts"]


def test_closing_sentence_names_nan_and_inf_and_masked_targets(tmp_path: Path) -> None:
    z = np.array([[np.nan, 0.0], [INF, 0.0], [0.0, -INF], [1.0, 0.0]])
    result = _compare(tmp_path, z, np.array([0, 0, 1, 0]), "--fail-on", "input", "--quiet")
    assert result.exit_code == 1
    text = " ".join(result.stdout.split())
    assert "1 row with NaN logits (NaN weights or activations upstream)" in text
    assert "1 row with +inf logits (an overflowing output layer)" in text
    assert "1 row whose target falls on a masked (-inf) class" in text


def test_inf_probabilities_are_not_blamed_on_an_output_layer(tmp_path: Path) -> None:
    p = np.array([[0.5, 0.5], [INF, 0.0], [-INF, 1.0]])
    result = _compare(tmp_path, p, np.array([0, 0, 1]), "--inputs", "probs", "--quiet")
    text = " ".join(result.stdout.split())
    assert "2 rows with inf probabilities" in text
    assert "output layer" not in text


def test_trace_does_not_blame_a_masked_class() -> None:
    t = trace([1e8, -INF, 1e8], 0, dtypes=["float32"])
    for path, dtype in (("stable", "float32"), ("reference", "float64")):
        walked = t.path(path, dtype)
        assert walked.loss == pytest.approx(np.log(2), rel=1e-6)
        assert walked.first_bad is None, [s.name for s in walked.steps if s.first_bad]
    textbook = t.path("textbook", "float32")
    assert textbook.first_bad is not None
    assert textbook.steps[textbook.first_bad].name == "exp"


def _signalling_nan(dtype: type) -> np.ndarray:
    """A signalling NaN of ``dtype`` (the quiet bit clear: bit garbage, as a corrupted dump
    holds), whose cast to another float dtype raises the invalid flag."""
    bits = {np.float32: (np.uint32, 0x7F800001), np.float64: (np.uint64, 0x7FF0000000000001)}
    kind, value = bits[dtype]
    return np.array([value], dtype=kind).view(dtype)


@pytest.mark.parametrize("framework", ["torch", "jax", "tensorflow"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", ["", "1"])
def test_a_signalling_nan_is_a_nan_row_without_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel: str, dtype: type, framework: str
) -> None:
    # pytest turns any warning into an error (pyproject.toml): a RuntimeWarning of numpy's
    # cast on stderr fails here
    monkeypatch.setenv("CECHECK_NO_KERNEL", kernel)
    z = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.5, 0.25, 1.0]], dtype=dtype)
    z[0, 1] = _signalling_nan(dtype)[0]
    z[2, 0] = -_signalling_nan(dtype)[0]
    dtypes = "float16,bfloat16,float32,float64"
    for labels in (np.array([0, 1, 2]), np.eye(3)[[0, 1, 2]]):
        for fmt in ("json", "csv", "table"):
            result = _compare(
                tmp_path, z, labels, "--dtypes", dtypes, "--framework", framework, "--format", fmt
            )
            assert result.exit_code == 0, result.stderr
            assert "Warning" not in result.stderr, result.stderr
        data = strict_json(_compare(tmp_path, z, labels, "--format", "json").stdout)
        assert data["counts"]["nonfinite_input"] == 2
    for task_z, label in ((z[0], 1), (z[0], np.array([0.0, 1.0, 1.0])), (z[0, 1], 1.0)):
        t = trace(task_z, label, dtypes=dtypes, framework=framework)
        assert t.path("reference", "float64").first_bad is not None
