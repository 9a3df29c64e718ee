"""``diverged`` by default means beyond what the dtype's own rounding explains.

The default rtol and atol are ``TOLERANCE_EPS`` (64) times each dtype's machine epsilon;
an explicit ``--rtol``/``--atol`` holds for every dtype. The factor is measured (README,
"Tolerances"): ordinary data never diverges in any dtype, the float32_diverges sample does.
"""

from __future__ import annotations

from pathlib import Path

import mp_reference as mp
import numpy as np
import pytest
from click.testing import CliRunner, Result
from textcheck import strict_json

from cecheck import precision as prec
from cecheck.cli import cecheck
from cecheck.engine import Settings, evaluate
from cecheck.frameworks import torch_fused
from cecheck.settings import TOLERANCE_EPS

DATA = Path(__file__).resolve().parent.parent / "sample_data"
BENIGN = [str(DATA / "benign_logits.npy"), str(DATA / "benign_labels.npy")]
DIVERGES = [str(DATA / "float32_diverges_logits.npy"), str(DATA / "float32_diverges_labels.npy")]
EVERY_DTYPE = ("float16", "bfloat16", "float32", "float64")


def run(*args: str) -> Result:
    return CliRunner().invoke(cecheck, ["compare", *args], catch_exceptions=False)


def test_benign_data_never_diverges_in_any_dtype_at_the_defaults() -> None:
    result = run(*BENIGN, "--dtypes", ",".join(EVERY_DTYPE), "--fail-on", "diverged")
    assert result.exit_code == 0, result.stdout


def test_an_explicit_rtol_holds_for_every_dtype() -> None:
    s = Settings(EVERY_DTYPE, rtol=1e-4, atol=1e-6)
    assert {s.tolerance(d) for d in EVERY_DTYPE} == {(1e-4, 1e-6)}
    result = run(
        *BENIGN,
        "--dtypes",
        "float16,float64",
        "--rtol",
        "1e-4",
        "--atol",
        "1e-6",
        "--fail-on",
        "diverged",
    )
    assert result.exit_code == 1  # float16 rounding is above 1e-4


def test_the_default_tolerance_scales_with_each_dtypes_epsilon() -> None:
    s = Settings(EVERY_DTYPE)
    for d in EVERY_DTYPE:
        assert s.tolerance(d) == (TOLERANCE_EPS * prec.get(d).eps,) * 2
    assert Settings(rtol=1e-3).tolerance("float32") == (1e-3, TOLERANCE_EPS * 2.0**-23)


def test_float32_diverges_still_diverges_in_float32() -> None:
    result = run(*DIVERGES, "--format", "json", "--fail-on", "diverged")
    assert result.exit_code == 1
    data = strict_json(result.stdout)
    assert data["counts"]["diverged:stable_float32"] >= 12
    assert data["tolerance"]["rtol"] is None
    assert data["tolerance"]["by_dtype"]["float32"] == {
        "rtol": TOLERANCE_EPS * 2.0**-23,
        "atol": TOLERANCE_EPS * 2.0**-23,
    }


def test_bfloat16_correctly_rounded_log_3_is_not_flagged() -> None:
    z, y = np.zeros((1, 3)), np.array([0])
    exact = mp.multiclass(z[0], 0)  # log 3
    stable = torch_fused.stable_index(z, y, prec.get("bfloat16")).loss[0]
    assert stable == prec.get("bfloat16").round(np.array([exact]))[0]  # correctly rounded
    r = evaluate(z, y, "multiclass", "index", 3, Settings(("bfloat16", "float64")))
    assert r.diagnosis.flag_lists()[0] == []


@pytest.mark.parametrize("c", [2, 10, 100, 1000])
def test_random_logits_never_diverge_at_the_defaults(c: int) -> None:
    rng = np.random.default_rng(c)
    n = 100_000 // c
    z, y = rng.normal(0, 3, (n, c)), rng.integers(0, c, n)
    r = evaluate(z, y, "multiclass", "index", c, Settings(EVERY_DTYPE))
    flags = {f for row in r.diagnosis.flag_lists() for f in row}
    assert not {f for f in flags if f.startswith("diverged")}
