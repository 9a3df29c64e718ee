"""Issue 15's "done when": a bfloat16 (B, T, V) tensor saved with ``safetensors.torch.save_file``
and with ``torch.save``, and the same values as a float32 ``.npy``, give the same losses and
flags, and the report says the logits were stored as bfloat16 and runs the bfloat16 paths.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cecheck.cli import cecheck

torch = pytest.importorskip("torch", reason="bfloat16 tensors are written by torch")
st_torch = pytest.importorskip("safetensors.torch", reason="safetensors writes the file")

B, T, V = 3, 5, 11
DTYPES = ("--dtypes", "bfloat16,float32,float64")


def tensors() -> tuple[object, object]:
    """bfloat16 logits with rows that break: exp overflow, a NaN, -inf masks; int64 labels."""
    rng = np.random.default_rng(15)
    z = rng.normal(0, 6, (B, T, V))
    z[0, 1, 3] = 200.0  # exp(200) overflows bfloat16 (and float32) in the textbook formula
    z[1, 2, :] = 1e30  # huge and equal: the naive path's sum overflows
    z[2, 0, 4] = np.nan  # a NaN logit: an input problem
    z[2, 3, :5] = -np.inf  # masked classes
    y = rng.integers(5, V, (B, T))
    y[1, 4] = -100  # ignore_index
    return torch.tensor(z).to(torch.bfloat16), torch.tensor(y)


def run(*args: str) -> str:
    result = CliRunner().invoke(cecheck, ["compare", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    return result.stdout


def reports(*paths: str) -> tuple[str, dict[str, object]]:
    """Every row as CSV, and the JSON report but for its inputs (the file names, the dtype)."""
    out = json.loads(run(*paths, *DTYPES, "--top", str(B * T), "--format", "json"))
    del out["inputs"]
    return run(*paths, *DTYPES, "--format", "csv"), out


@pytest.fixture
def files(tmp_path: Path) -> dict[str, tuple[str, ...]]:
    z, y = tensors()
    st_torch.save_file({"logits": z, "labels": y}, str(tmp_path / "bf16.safetensors"))
    torch.save({"logits": z, "labels": y}, tmp_path / "bf16.pt")
    np.save(tmp_path / "z.npy", z.float().numpy())  # bfloat16 -> float32 is exact
    np.save(tmp_path / "y.npy", y.numpy())
    return {
        "safetensors": (str(tmp_path / "bf16.safetensors"),),
        "pt": (str(tmp_path / "bf16.pt"),),
        "npy": (str(tmp_path / "z.npy"), str(tmp_path / "y.npy")),
    }


@pytest.mark.parametrize("kind", ["safetensors", "pt"])
def test_the_same_losses_and_flags_as_the_float32_npy(
    files: dict[str, tuple[str, ...]], kind: str
) -> None:
    rows, report = reports(*files[kind])
    expected_rows, expected = reports(*files["npy"])
    assert rows == expected_rows
    assert report == expected
    counts = report["counts"]
    assert isinstance(counts, dict)
    assert counts["nonfinite_input"] == 1  # the rows made to break did
    assert counts["ignored"] == 1
    assert "textbook_inf:bfloat16" in counts


@pytest.mark.parametrize("kind", ["safetensors", "pt"])
def test_the_report_says_stored_as_bfloat16(files: dict[str, tuple[str, ...]], kind: str) -> None:
    text = run(*files[kind])
    assert f"logits ({B}, {T}, {V}) bfloat16, labels ({B}, {T})" in text
    assert "dtypes   bfloat16, float32, float64;" in text  # the bfloat16 paths, by default
    inputs = json.loads(run(*files[kind], "--format", "json"))["inputs"]
    assert inputs["logits_dtype"] == "bfloat16"
    npy = json.loads(run(*files["npy"], "--format", "json"))
    assert npy["inputs"]["logits_dtype"] == "float32"
    assert npy["dtypes"] == ["float32", "float64"]  # float32 storage adds no dtype
