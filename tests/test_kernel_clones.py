"""Every instruction-set copy of the C kernel gives the same bits.

The kernel is compiled for x86-64-v4 (AVX-512), x86-64-v3 (AVX2) and the default x86-64;
the import picks the best one the CPU runs, or the one ``CECHECK_KERNEL_ISA`` names. Each
copy runs tests/kernel_clone_run.py in a subprocess, on random and adversarial inputs, and
its results must equal the default copy's bit for bit: a report must not depend on the CPU.
(The x86-64-v4 copy once dropped the float32 rounding error of float64 logits: GCC folds
a vectorised double-to-float-to-double conversion into nothing on 512-bit vectors.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cecheck import fast

if not fast.installed():
    if os.environ.get("CECHECK_REQUIRE_KERNEL"):
        raise RuntimeError("the C kernel cecheck._kernel was not built (no C compiler?)")
    pytest.skip("the C kernel cecheck._kernel was not built", allow_module_level=True)

from cecheck import _kernel  # after the skip: it may not be built

CLONES = ("x86-64-v4", "x86-64-v3", "default")
HERE = Path(__file__).parent
ROOT = HERE.parent


def _run(isa: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """tests/kernel_clone_run.py with CECHECK_KERNEL_ISA=isa, writing cwd/out.npz."""
    env = dict(os.environ, CECHECK_KERNEL_ISA=isa)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, str(HERE / "kernel_clone_run.py"), str(cwd / "out.npz")],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def _results(isa: str, cwd: Path) -> dict[str, np.ndarray]:
    """Every result of the ``isa`` copy of the kernel, or a skip if it cannot run here."""
    runs = _kernel.isas()
    if isa not in runs:
        pytest.skip(f"the kernel was not compiled for {isa} on this platform")
    if not runs[isa]:
        pytest.skip(f"this CPU cannot run the {isa} kernel")
    done = _run(isa, cwd)
    assert done.returncode == 0, done.stderr
    with np.load(cwd / "out.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def default_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    return _results("default", tmp_path_factory.mktemp("default"))


def _bits(a: np.ndarray) -> np.ndarray:
    """The bytes of an array, so that NaN equals NaN of the same bits and -0.0 != 0.0."""
    return a.view(np.uint8) if a.dtype.kind == "f" else a


@pytest.mark.parametrize("isa", CLONES[:-1])
def test_every_kernel_copy_gives_the_default_bits(
    isa: str, default_results: dict[str, np.ndarray], tmp_path: Path
) -> None:
    mine = _results(isa, tmp_path)
    assert str(mine.pop("isa")) == isa  # the forced copy is the one that ran
    theirs = dict(default_results)
    assert str(theirs.pop("isa")) == "default"
    assert mine.keys() == theirs.keys()
    differ = [k for k in theirs if not np.array_equal(_bits(mine[k]), _bits(theirs[k]))]
    assert not differ, f"{isa} differs from default on {len(differ)} cases: {differ[:8]}"


def test_the_cases_cover_what_matters(default_results: dict[str, np.ndarray]) -> None:
    """The comparison above sees special rows, tame and direct rows, ignored rows."""
    bits = default_results["index-odd-7-float64-bits"]
    assert (bits & 32).any()  # SPECIAL rows
    assert not (bits & 32).all()  # and others
    assert "ignored" in ";".join(default_results["engine-7-flags"])
    # -inf masks: special rows that are not input problems (SPECIAL without NONFINITE)
    for kernel, special, nonfinite in (("index", 32, 16), ("soft", 128, 64)):
        mask = default_results[f"{kernel}-mask-7-float32-bits"]
        assert (mask & special).any()
        assert not (mask & nonfinite).any()
    flags = ";".join(default_results["engine-7-flags"])
    assert "masked_target" in flags
    assert "nonfinite_input" not in flags
    assert {"index-wide-300-float32-loss", "soft-margin-17-float64-loss"} <= default_results.keys()
    # float16 and bfloat16: exp overflow, probabilities of 0, rows left to numpy
    for d in ("float16", "bfloat16"):
        wide = default_results[f"index-wide-7-float32-{d}-bits"]
        assert all((wide & bit).any() for bit in (1, 2, 4))
        assert (default_results[f"index-odd-300-float64-{d}-bits"] & 32).any()
    assert any(c.endswith("bfloat16") for c in default_results if c.startswith("engine-7-"))
    # torch's paths: naive probabilities of 0 (index: bits 64 and 128; soft: 256 and 1024),
    # 0 * log 0 under a zero soft target (512), the stable sigmoid's cancellation (256, 512)
    # and exact zeros, the naive sigmoid's clamp at 100
    assert (default_results["index-below-7-float32-bits"] & 64).any()
    assert (default_results["index-wide-7-float64-bits"] & 128).any()
    assert (default_results["soft-wide-7-float64-bits"] & (1024 | 512)).any()
    below = default_results["sigmoid-below-7-float32-bits"]
    assert (below & 256).any()
    assert (below & 512).any()
    single = default_results["sigmoid-below-1-float32-loss"]
    assert (single[2] == 0).any()
    assert (single[5] == 100).any()


def test_the_kernels_ends_give_numpys_headroom(default_results: dict[str, np.ndarray]) -> None:
    """The headroom from the default copy's row ends is numpy's (every other copy's, the
    default's: above), on every case; and the cases reach cliffs."""
    both = {k: v for k, v in default_results.items() if k.endswith("-headroom")}
    assert len(both) > 50
    differ = [k for k, (kernel, numpy) in both.items() if kernel != numpy]
    assert not differ, differ[:8]
    assert "cause='prob_underflow'" in str(both["index-margin-300-float32-headroom"][0])


def test_the_default_isa_is_the_best_the_cpu_runs() -> None:
    runs = _kernel.isas()
    assert _kernel.isa() == next(name for name, ok in runs.items() if ok)


@pytest.mark.parametrize("isa", CLONES)
def test_forcing_a_copy_the_cpu_cannot_run_is_refused(isa: str, tmp_path: Path) -> None:
    if _kernel.isas().get(isa, False):
        pytest.skip(f"this CPU runs the {isa} kernel")
    done = _run(isa, tmp_path)
    assert done.returncode == 1  # an ImportError, not a crash on an illegal instruction
    assert f"CECHECK_KERNEL_ISA={isa}: " in done.stderr


def test_forcing_an_unknown_copy_is_refused(tmp_path: Path) -> None:
    done = _run("x86-64-v9", tmp_path)
    assert done.returncode == 1
    assert "CECHECK_KERNEL_ISA=x86-64-v9: no such kernel; this CPU runs " in done.stderr


def test_the_cli_says_an_unknown_copy_in_one_line() -> None:
    """An environment problem is one `Error:` line and exit 2, like a file problem."""
    data = ROOT / "sample_data"
    args = ["compare", str(data / "benign_logits.npy"), str(data / "benign_labels.npy")]
    env = dict(os.environ, CECHECK_KERNEL_ISA="x86-64-v9")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("CECHECK_NO_KERNEL", None)
    done = subprocess.run(
        [sys.executable, "-m", "cecheck", *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    said = "Error: CECHECK_KERNEL_ISA=x86-64-v9: no such kernel; this CPU runs "
    assert lines[0].startswith(said)
    assert lines[0].endswith("(unset CECHECK_KERNEL_ISA, or name one of those)")
