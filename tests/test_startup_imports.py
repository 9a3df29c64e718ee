"""What a run imports: ``cecheck --help``/``--version`` load click and the cli modules only; a
run loads numpy, and ml_dtypes, pandas and rich only when it touches a bfloat16 value, makes
a frame or draws a table.

Each case runs in a fresh interpreter (``python -c``) and reads its ``sys.modules`` at the end.
No timing here: the start-up times are measured by ``tests/bench/bench.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "sample_data"
BENIGN = [str(DATA / "benign_logits.npy"), str(DATA / "benign_labels.npy")]
HEAVY = ("numpy", "ml_dtypes", "pandas", "rich", "pyarrow", "torch", "matplotlib")

CLI = """
import sys
from cecheck.cli import main
sys.argv = ["cecheck", *ARGS]
try:
    main()
except SystemExit:
    pass
"""


def modules_after(code: str, tmp_path: Path) -> set[str]:
    """The modules a fresh interpreter has imported once ``code`` has run."""
    listing = tmp_path / "modules.json"
    script = (
        f"{code}\nimport json, sys\nopen({str(listing)!r}, 'w').write(json.dumps([*sys.modules]))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    subprocess.run(
        [sys.executable, "-c", script], check=True, env=env, cwd=tmp_path, capture_output=True
    )
    return set(json.loads(listing.read_text()))


def cli_modules(args: list[str], tmp_path: Path) -> set[str]:
    return modules_after(CLI.replace("ARGS", repr(args)), tmp_path)


@pytest.mark.parametrize(
    "args", [["--help"], ["--version"], ["compare", "--help"], ["trace", "--help"], ["-h"]]
)
def test_help_and_version_import_click_and_the_cli_only(args: list[str], tmp_path: Path) -> None:
    loaded = cli_modules(args, tmp_path)
    assert "click" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    ours = {m for m in loaded if m.startswith("cecheck")}
    assert {"cecheck.engine", "cecheck.inputs", "cecheck.cli.common"}.isdisjoint(ours), ours


def test_import_cecheck_loads_no_numpy(tmp_path: Path) -> None:
    assert "numpy" not in modules_after("import cecheck", tmp_path)


def test_float32_and_float64_precisions_load_no_ml_dtypes(tmp_path: Path) -> None:
    """Everything about float16/32/64 (storage, limits, rounding) without ml_dtypes; the
    modules that compute or explain losses import none either."""
    code = """
import numpy as np
import cecheck.frameworks, cecheck.losses, cecheck.trace_explain
from cecheck import precision as prec
for name in ("float16", "float32", "float64"):
    p = prec.get(name)
    p.round(p.cast(np.array([1e5, 1e-9]))), p.max, p.tiny, p.smallest, p.max_exp_arg, p.finfo.eps
"""
    assert "ml_dtypes" not in modules_after(code, tmp_path)
    bfloat16 = code + "prec.get('bfloat16').cast(np.array([1.0]))\n"
    assert "ml_dtypes" in modules_after(bfloat16, tmp_path)


def test_a_float32_float64_compare_loads_no_ml_dtypes(tmp_path: Path) -> None:
    loaded = cli_modules(["compare", *BENIGN, "--format", "json"], tmp_path)
    assert "ml_dtypes" not in loaded


@pytest.mark.parametrize("fmt", ["json", "csv", "markdown"])
def test_a_compare_draws_with_rich_only_for_the_table(fmt: str, tmp_path: Path) -> None:
    loaded = cli_modules(["compare", *BENIGN, "--format", fmt], tmp_path)
    assert "numpy" in loaded
    assert "rich" not in loaded
    assert "pandas" not in loaded  # the CSV rows are written from arrays, with no frame
    assert "torch" not in loaded
    assert "matplotlib" not in loaded
    assert "rich" in cli_modules(["compare", *BENIGN], tmp_path)


def test_only_the_html_format_loads_matplotlib(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="--format html needs the cecheck[html] extra")
    assert "matplotlib" not in cli_modules(["compare", *BENIGN], tmp_path)
    loaded = cli_modules(["compare", *BENIGN, "--format", "html"], tmp_path)
    assert "matplotlib" in loaded
    assert "matplotlib.pyplot" not in loaded  # figures without pyplot: no GUI backend
    assert not loaded & {"rich", "pandas", "torch"}


# Every input big enough for a progress bar (a 2 GB file's run, on the sample data).
BIG_INPUT = "from cecheck.cli import common\ncommon.PROGRESS_ELEMENTS = 0\n"


@pytest.mark.parametrize("fmt", ["json", "csv", "markdown"])
def test_a_big_compare_off_a_terminal_loads_no_rich_multiprocessing_or_openssl(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stderr is no terminal (a pipe here): no progress bar, and rich is not imported to find
    that out; one file is computed in this process (no multiprocessing); the name of -o's
    temporary file takes no OpenSSL (secrets, hashlib)."""
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)  # rich would take it for a terminal
    args = ["compare", *BENIGN, "--format", fmt, "-o", str(tmp_path / "report")]
    loaded = modules_after(BIG_INPUT + CLI.replace("ARGS", repr(args)), tmp_path)
    assert (tmp_path / "report").stat().st_size > 0
    unused = {"rich", "multiprocessing", "concurrent.futures.process", "secrets", "_hashlib"}
    assert not loaded & unused, sorted(loaded & unused)
