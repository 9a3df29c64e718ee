"""A multiclass input with one class: the loss is 0 in every path, with a warning.

TensorFlow's and PyTorch's own tests expect ``cross_entropy`` over a single class to be 0
(``log_softmax`` of one logit is ``z - z - log 1``), so a one-class input is computed, not
refused; a warning on stderr says the loss cannot be anything but 0.
"""

from __future__ import annotations

from pathlib import Path

import mp_reference as mp
import numpy as np
import pytest
from click.testing import CliRunner
from textcheck import strict_json

from cecheck import compare
from cecheck.cli import cecheck
from cecheck.pipeline import ONE_CLASS_WARNING

EVERY_DTYPE = "float16,bfloat16,float32,float64"


def _run(tmp_path: Path, z: np.ndarray, y: np.ndarray, *args: str):  # type: ignore[no-untyped-def]
    zf, yf = tmp_path / "z.npy", tmp_path / "y.npy"
    np.save(zf, z)
    np.save(yf, y)
    return CliRunner().invoke(cecheck, ["compare", str(zf), str(yf), *args], catch_exceptions=False)


@pytest.mark.parametrize("labels", ["index", "onehot"])
def test_one_class_has_loss_zero_in_every_path_and_dtype(tmp_path: Path, labels: str) -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(0, 2, (50, 1)).clip(-10, 10)
    y = np.zeros(50, dtype=np.int64) if labels == "index" else np.ones((50, 1))
    result = _run(
        tmp_path, z, y, "--task", "multiclass", "--dtypes", EVERY_DTYPE, "--format", "json"
    )
    assert result.exit_code == 0, result.stderr
    assert ONE_CLASS_WARNING in " ".join(result.stderr.split())
    data = strict_json(result.stdout)
    assert data["rows"]["flagged"] == 0
    for entry in data["summary"]:
        assert entry["mean"] == 0.0, entry
        assert entry["finite"] == 50
    assert {mp.multiclass(row, 0) for row in z} == {0.0}


def test_one_class_through_the_library() -> None:
    report = compare(np.array([[3.5], [-2.0]]), np.array([0, 0]), task="multiclass")
    assert report.flagged_rows == 0
    assert any(ONE_CLASS_WARNING in w for w in report.source.warnings)
