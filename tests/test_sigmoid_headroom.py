"""Headroom of binary and multilabel logits (cecheck.sigmoid_headroom): the issue's
brute-force check through the engine, random and adversarial inputs, and every format."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from cecheck import compare
from cecheck.cli import cecheck
from cecheck.sigmoid_headroom import threshold

DTYPES = ["float16", "bfloat16", "float32", "float64"]
PATHS = ["textbook", "naive", "stable"]


def broken_rows(z: np.ndarray, t: np.ndarray, task: str, path: str, dtype: str) -> set[int]:
    """The rows whose ``path`` loss is NaN or inf in ``dtype``, as the engine computes them
    (the summary's mean of losses near float64's limit may overflow: not this check's)."""
    with np.errstate(over="ignore"):
        r = compare(z, t, task=task, dtypes=[dtype, "float64"], top=len(t))
    column = f"{path}_{dtype}"
    return {rec.row for rec in r.top if not math.isfinite(rec.values[column])}


def check(z: np.ndarray, t: np.ndarray, task: str, dtype: str) -> None:
    """Each path's reported factor: × 1.01 breaks the named row, × 0.99 breaks none; the rows
    past are the rows broken at × 1; no factor means no scale breaks a row."""
    hr = compare(z, t, task=task, dtypes=[dtype, "float64"]).headroom
    assert hr is not None
    assert hr.log_partition is None
    for path in PATHS:
        c = next(c for c in hr.cliffs if (c.path, c.dtype) == (path, dtype))
        assert c.breaks
        assert c.rows_past == len(broken_rows(z, t, task, path, dtype))
        if math.isinf(c.factor):
            assert c.row is None
            assert not broken_rows(z * 1e300, t, task, path, dtype)
            continue
        if (path, dtype) == ("stable", "float64"):  # the class sum near float64's limit:
            assert c.cause in ("sum_overflow", "logit_overflow")  # the reference overflows too
            continue
        with np.errstate(over="ignore"):  # a logit scaled past float64's range: inf
            above, below = z * (c.factor * 1.01), z * (c.factor * 0.99)
        assert c.row in broken_rows(above, t, task, path, dtype)
        assert not broken_rows(below, t, task, path, dtype)
        if task == "multilabel" and c.cause == "sum_overflow":
            assert c.klass is None  # the row's class sum, not one class
        elif task == "multilabel":
            assert c.klass is not None
            one = z[c.row].copy() * 0
            one[c.klass] = z[c.row, c.klass] * c.factor * 1.01
            assert broken_rows(one[None], t[c.row][None], task, path, dtype) == {0}


logit = st.floats(-60.0, 60.0) | st.floats(-1e5, 1e5) | st.sampled_from([-88.72, 88.72, 16.6])


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.tuples(logit, st.integers(0, 1)), min_size=1, max_size=12),
    st.sampled_from(DTYPES),
)
def test_binary_brute_force(pairs: list[tuple[float, int]], dtype: str) -> None:
    z = np.array([p[0] for p in pairs], dtype=np.float64)
    t = np.array([p[1] for p in pairs], dtype=np.float64)
    if not np.any(z != 0):
        z[0] = 1.0
    check(z, t, "binary", dtype)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(DTYPES), st.floats(0.5, 50.0))
def test_multilabel_brute_force(seed: int, dtype: str, scale: float) -> None:
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, scale, (6, 4))
    t = (rng.random((6, 4)) < 0.5).astype(np.float64)
    check(z, t, "multilabel", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adversarial_at_the_thresholds(dtype: str) -> None:
    """Logits one float64 step either side of each threshold: rows past exactly there."""
    vs = [threshold("textbook", dtype, t, s) * s for t in (0.0, 1.0) for s in (1, -1)]
    z = np.array([x for v in vs for x in (v, np.nextafter(v, 0.0))])
    t = np.array([tt for tt in (0.0, 0.0, 1.0, 1.0) for _ in range(4)][: z.size])
    check(z, t, "binary", dtype)
    hr = compare(z, t, task="binary", dtypes=[dtype]).headroom
    text = next(c for c in hr.cliffs if c.path == "textbook")
    assert text.rows_past == 4
    assert text.factor <= 1.0


def test_known_thresholds() -> None:
    """The bisection finds the cliffs the formulas predict: exp(-z) overflows float32 below
    -88.72, float16 below -11.09; the naive path (its logs clamped) never breaks; the stable
    path only where the logit is cast to inf (in float64: where the scaled logit is past
    float64's range)."""
    assert threshold("textbook", "float32", 1.0, -1) == pytest.approx(88.7228, abs=1e-4)
    assert threshold("textbook", "float16", 1.0, -1) == pytest.approx(11.09, abs=1e-2)
    assert threshold("textbook", "float64", 0.0, -1) == pytest.approx(709.78, abs=1e-2)
    assert all(math.isinf(threshold("naive", d, t, s)) for d in DTYPES for t in (0, 1)
               for s in (1, -1))  # fmt: skip
    assert threshold("stable", "float16", 0.0, 1) == pytest.approx(65520, abs=1e-2)
    assert threshold("stable", "float64", 1.0, 1) == np.finfo(np.float64).max


def run(*args: str):
    return CliRunner().invoke(cecheck, ["compare", *args], catch_exceptions=False)


@pytest.fixture
def multilabel_files(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(3)
    z = rng.normal(0.0, 2.0, (20, 5))
    z[7, 3] = -40.0  # float16's sigmoid is 0 from ×0.28 on
    t = (rng.random((20, 5)) < 0.5).astype(np.float64)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "t.npy", t)
    return [str(tmp_path / "z.npy"), str(tmp_path / "t.npy"), "--task", "multilabel"]


def test_formats_show_it(multilabel_files: list[str]) -> None:
    args = [*multilabel_files, "--dtypes", "float16,float32"]
    data = json.loads(run(*args, "--format", "json").stdout)
    hr = data["headroom"]
    assert hr["log_partition"] is None
    text16 = next(p for p in hr["paths"] if (p["path"], p["dtype"]) == ("textbook", "float16"))
    assert (text16["row"], text16["class"], text16["cause"]) == (7, 3, "sigmoid_zero")
    assert text16["factor"] == pytest.approx(11.09 / 40, rel=1e-2)
    table = CliRunner(env={"COLUMNS": "120"}).invoke(cecheck, ["compare", *args]).stdout
    assert "Headroom" in table
    assert "7 class 3" in table
    markdown = run(*args, "--format", "markdown").stdout
    assert "textbook float16 ×0.277 (row 7 class 3)" in markdown


def test_fail_on_headroom(multilabel_files: list[str]) -> None:
    args = [*multilabel_files, "--dtypes", "float16", "--fail-on", "headroom"]
    assert run(*args).exit_code == 1
    assert run(*args, "--min-headroom", "0.2").exit_code == 0
    data = json.loads(run(*args, "--format", "json").stdout)
    assert "headroom" in data["failed"]
