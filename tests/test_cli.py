"""``cecheck compare``: every option, each exit code, strict JSON, streamed CSV, bad inputs.

Every loss value asserted here is computed independently with mpmath (``mp_reference``).
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import mp_reference as mp
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result
from numpy.testing import assert_allclose, assert_array_equal
from textcheck import flat, strict_json

from cecheck import __version__, engine, inputs, rows
from cecheck.cli import cecheck
from cecheck.output.registry import REPORTERS

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "sample_data"
TF = [str(DATA / "tf_example_logits.npy"), str(DATA / "tf_example_labels.npy")]
BENIGN = [str(DATA / "benign_logits.npy"), str(DATA / "benign_labels.npy")]
DIVERGES = [str(DATA / "float32_diverges_logits.npy"), str(DATA / "float32_diverges_labels.npy")]
SEQUENCE = [str(DATA / "sequence.npz")]
SWEEP = [str(DATA / "binary_sweep.csv")]
JSON_KEYS = {
    "schema_version", "cecheck_version", "inputs", "task", "rows", "dtypes", "tolerance",
    "summary", "counts", "flagged", "failed", "exit_code", "causes", "settings", "path_causes",
    "headroom",
}  # fmt: skip


def run(*args: str) -> Result:
    """``cecheck compare ARGS``; exceptions other than exits propagate (none are expected)."""
    return CliRunner().invoke(cecheck, ["compare", *args], catch_exceptions=False)


# ---------------------------------------------------------------- the table


def test_tf_example_table() -> None:
    """The classic example: textbook NaN in float32 and float64, torch's naive inf in float32
    and 500 in float64, stable and reference 500."""
    assert mp.multiclass([1000.0, 2000.0, 2500.0], 1) == 500.0  # mpmath
    result = run(*TF)
    assert result.exit_code == 0
    rows = result.stdout[result.stdout.index("Worst flagged rows") :].splitlines()
    assert next(r for r in rows if "textbook" in r).split() == [
        "0", "1", "2500", "textbook", "NaN", "NaN", "500"
    ]  # fmt: skip
    assert next(r for r in rows if "naive" in r).split() == ["naive", "inf", "500"]
    assert next(r for r in rows if "stable" in r).split() == ["stable", "500", "500"]
    assert "exp(2500) overflows float32 and float64" in flat(result.stdout)
    assert result.stderr == ""


def test_table_has_no_escape_codes_when_piped() -> None:
    result = run(*TF)
    assert "\x1b[" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_table_width_follows_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    result = run(*DIVERGES)
    assert max(len(line) for line in result.stdout.splitlines()) <= 120
    assert max(len(line) for line in result.stdout.splitlines()) > 80


def test_top_cuts_rows_and_says_how_many_more() -> None:
    result = run(*DIVERGES, "--top", "3")
    assert "Worst flagged rows (3 of 16)" in result.stdout
    assert "… and 13 more flagged rows" in flat(result.stdout)


def test_all_shows_every_row() -> None:
    result = run(*BENIGN, "--all")
    assert result.exit_code == 0
    assert "Rows 0..63 of 64" in result.stdout
    rows = [line.split()[0] for line in result.stdout.splitlines() if " textbook " in line]
    assert [r for r in rows if r.isdigit()] == [str(i) for i in range(64)]
    assert "Nothing flagged" in result.stdout


def test_all_with_json_is_a_usage_error() -> None:
    result = run(*BENIGN, "--all", "--format", "json")
    assert result.exit_code == 2
    assert "--all applies to the table" in result.stderr
    assert result.stdout == ""


def test_all_with_csv_is_every_row_anyway() -> None:
    assert run(*BENIGN, "--all", "--format", "csv").stdout == run(*BENIGN, "--format", "csv").stdout


def test_quiet_table_prints_only_the_closing_sentence() -> None:
    result = run(*TF, "--quiet")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert flat(result.stdout).startswith(
        "The naive path torch.log(torch.softmax(z, -1)) gives NaN or inf on 1 row"
    )
    assert "Worst flagged rows" not in result.stdout


def test_quiet_silences_stderr_for_json_and_fail_on(tmp_path: Path) -> None:
    probs = tmp_path / "probs.npy"
    np.save(probs, np.full((4, 2), 0.5))  # looks like softmax output: a warning
    labels = tmp_path / "y.npy"
    np.save(labels, np.zeros(4, dtype=np.int64))
    loud = run(str(probs), str(labels), "--format", "json")
    assert "warning:" in loud.stderr
    quiet = run(str(probs), str(labels), "--format", "json", "--quiet", "--fail-on", "any")
    assert quiet.stderr == ""
    strict_json(quiet.stdout)


# ---------------------------------------------------------------- JSON


def test_json_is_strict_and_has_the_schema_keys() -> None:
    result = run(*TF, "--format", "json")
    assert result.exit_code == 0
    data = strict_json(result.stdout)
    assert set(data) == JSON_KEYS
    assert data["schema_version"] == 2
    assert data["cecheck_version"] == __version__
    assert data["settings"] == {"framework": "torch", "emulates": "PyTorch 2.13"}
    (row,) = data["flagged"]
    assert row["losses"] == {
        "textbook_float32": "nan", "textbook_float64": "nan",
        "naive_float32": "inf", "naive_float64": 500.0,
        "stable_float32": 500.0, "stable_float64": 500.0,
    }  # fmt: skip
    assert row["reference"] == mp.multiclass([1000.0, 2000.0, 2500.0], 1)  # mpmath: 500
    assert row["causes"] == ["exp_overflow", "prob_underflow"]
    assert data["path_causes"] == {
        "naive": {"prob_underflow": 1},
        "textbook": {"exp_overflow": 1},
    }
    assert data["failed"] == []
    assert data["exit_code"] == 0
    assert "naive path" in result.stderr  # the closing sentence is for people: stderr


def test_json_floats_at_full_precision() -> None:
    """The JSON reference of each row round-trips the library's float64 exactly."""
    data = strict_json(run(*SEQUENCE, "--format", "json", "--top", "50").stdout)
    frame = engine.run(inputs.open_inputs(*SEQUENCE), engine.Settings(top=50)).to_frame()
    for row in data["flagged"]:
        assert row["reference"] == frame.loc[row["row"], "reference"]


def test_json_to_output_file(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = run(*TF, "--format", "json", "-o", str(out), "--fail-on", "naive")
    assert result.exit_code == 1
    assert result.stdout == ""
    data = strict_json(out.read_text())
    assert data["failed"] == ["naive"]
    assert data["exit_code"] == 1


def test_table_to_output_file(tmp_path: Path) -> None:
    out = tmp_path / "report.txt"
    result = run(*TF, "--output", str(out))
    assert result.stdout == ""
    assert "Worst flagged rows" in out.read_text()
    assert "naive path torch.log(torch.softmax(z, -1)) gives NaN" in result.stderr


# ---------------------------------------------------------------- CSV


def test_csv_one_line_per_row_matching_the_library() -> None:
    result = run(*SEQUENCE, "--format", "csv")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + 4 * 12
    got = pd.read_csv(io.StringIO(result.stdout), keep_default_na=False, na_values=["nan"])
    want = engine.run(inputs.open_inputs(*SEQUENCE), engine.Settings()).to_frame()
    assert list(got.columns) == list(want.columns)
    for column in ("naive_float32", "naive_float64", "stable_float32", "stable_float64"):
        assert_array_equal(got[column].to_numpy(), want[column].to_numpy())  # round-trips
    assert_array_equal(got["flags"].fillna(""), want["flags"])


def test_csv_reference_matches_mpmath() -> None:
    got = pd.read_csv(io.StringIO(run(*SEQUENCE, "--format", "csv").stdout))
    z = np.load(DATA / "sequence.npz")["logits"].reshape(48, 16).astype(np.float64)
    y = np.load(DATA / "sequence.npz")["labels"].reshape(48)
    scored = y != -100
    expected = [mp.multiclass(z[i], int(y[i])) for i in np.flatnonzero(scored)]  # mpmath
    assert_allclose(got["reference"].to_numpy()[scored], expected, rtol=1e-13)
    assert (got["reference"].to_numpy()[~scored] == 0).all()  # ignored rows: 0, as PyTorch


def test_csv_is_streamed_chunk_by_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """With tiny chunks the CSV is written per chunk: one header, every row once."""
    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 16 * 5)  # 5 rows of 16 classes a chunk
    monkeypatch.setattr(engine.fast, "CHUNK_BYTES", 16 * 5 * 4)  # the same with the kernel
    chunks: list[int] = []
    real = rows.chunk_columns

    def counting(*args: object) -> dict[str, object]:
        columns = real(*args)  # type: ignore[arg-type]
        chunks.append(len(columns["row"]))
        return columns

    monkeypatch.setattr(rows, "chunk_columns", counting)
    result = run(*SEQUENCE, "--format", "csv")
    lines = result.stdout.splitlines()
    assert chunks == [5] * 9 + [3]
    assert sum(line.startswith("row,") for line in lines) == 1
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(48))


# ---------------------------------------------------------------- options


def test_dtypes_option() -> None:
    data = strict_json(run(*TF, "--dtypes", "float16, bfloat16", "--format", "json").stdout)
    assert data["dtypes"] == ["float16", "bfloat16"]
    assert set(data["flagged"][0]["losses"]) == {
        "textbook_float16", "textbook_bfloat16", "naive_float16", "naive_bfloat16",
        "stable_float16", "stable_bfloat16",
    }  # fmt: skip


@pytest.mark.parametrize("value", ["float8", "", "float32,double"])
def test_bad_dtypes_is_a_usage_error(value: str) -> None:
    result = run(*TF, "--dtypes", value)
    assert result.exit_code == 2
    assert "--dtypes" in result.stderr


def test_ignore_index_option() -> None:
    default = strict_json(run(*SEQUENCE, "--format", "json").stdout)
    assert default["rows"]["ignored"] == 10
    assert default["tolerance"]["ignore_index"] == -100
    other = strict_json(run(*SEQUENCE, "--format", "json", "--ignore-index", "99").stdout)
    assert other["rows"]["ignored"] == 0
    assert other["counts"]["label_out_of_range"] == 10  # -100 is now just a bad label


def test_label_column_by_name_and_position(tmp_path: Path) -> None:
    named = tmp_path / "named.csv"
    named.write_text("target,z\n1,100\n0,-3\n")
    data = strict_json(run(str(named), "--label-column", "target", "--format", "json").stdout)
    assert data["task"] == "binary"
    assert data["rows"]["total"] == 2
    bare = tmp_path / "bare.csv"
    bare.write_text("100,1\n-3,0\n")
    data = strict_json(run(str(bare), "--label-column", "1", "--format", "json").stdout)
    assert data["flagged"][0]["reference"] == mp.binary(100.0, 1.0)  # mpmath


def test_logits_and_labels_keys(tmp_path: Path) -> None:
    path = tmp_path / "out.npz"
    np.savez(path, z=np.array([[1000.0, 2000.0, 2500.0]]), y=np.array([1]))
    result = run(str(path), "--logits-key", "z", "--labels-key", "y", "--format", "json")
    assert result.exit_code == 0
    assert strict_json(result.stdout)["flagged"][0]["reference"] == 500.0  # mpmath: above
    missing = run(str(path))
    assert missing.exit_code == 2
    assert "--logits-key" in missing.stderr


def test_task_option(tmp_path: Path) -> None:
    assert strict_json(run(*SWEEP, "--format", "json").stdout)["task"] == "binary"
    z, t = tmp_path / "z.npy", tmp_path / "t.npy"
    np.save(z, np.array([[3.0, -2.0], [0.5, 1.0]]))
    np.save(t, np.array([[1.0, 0.0], [0.0, 0.0]]))  # not one-hot: multilabel or soft
    data = strict_json(run(str(z), str(t), "--task", "multilabel", "--format", "json").stdout)
    assert data["task"] == "multilabel"
    bad = run(str(z), str(t), "--task", "trinary")
    assert bad.exit_code == 2


def test_rtol_and_atol_options() -> None:
    strict = strict_json(run(*DIVERGES, "--format", "json").stdout)
    # the default: 64 float32 eps (7.6e-6), tighter than 1e-4 for float32
    assert strict["counts"]["diverged:stable_float32"] == 15
    loose = strict_json(run(*DIVERGES, "--format", "json", "--rtol", "1e-2", "--atol", "0").stdout)
    assert "diverged:stable_float32" not in loose["counts"]
    assert loose["tolerance"] == {
        "rtol": 0.01,
        "atol": 0.0,
        "ignore_index": -100,
        "by_dtype": {"float32": {"rtol": 0.01, "atol": 0.0}},
    }
    assert run(*DIVERGES, "--atol", "-1").exit_code == 2


def test_top_option_in_json() -> None:
    data = strict_json(run(*DIVERGES, "--format", "json", "--top", "2").stdout)
    assert len(data["flagged"]) == 2
    assert data["rows"]["flagged"] == 16


def test_version_and_help() -> None:
    runner = CliRunner()
    version = runner.invoke(cecheck, ["--version"])
    assert version.exit_code == 0
    assert __version__ in version.stdout
    top = runner.invoke(cecheck, ["--help"])
    assert "compare" in top.stdout
    assert "Examples" in top.stdout
    helped = runner.invoke(cecheck, ["compare", "--help"])
    assert "cecheck compare sample_data/tf_example_{logits,labels}.npy" in helped.stdout
    assert "Exit codes" in helped.stdout


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cecheck", "compare", *TF, "--format", "json"],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert strict_json(done.stdout)["task"] == "multiclass"


def test_every_option_of_every_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name, command in cecheck.commands.items():
        assert f"cecheck {name}" in readme
        for param in command.params:
            for opt in param.opts if param.param_type_name == "option" else []:
                assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", readme), (name, opt)


@pytest.mark.parametrize("fmt", list(REPORTERS))
def test_every_format_reports_and_is_in_the_readme(fmt: str) -> None:
    """Each registered reporter: the TF example's stable loss, 500 (mpmath), on stdout; and
    the README's --format row names it."""
    assert mp.multiclass([1000.0, 2000.0, 2500.0], 1) == 500.0
    if fmt == "html":
        pytest.importorskip("matplotlib", reason="--format html needs the html extra")
    result = run(*TF, "--format", fmt)
    assert result.exit_code == 0, result.stderr
    assert re.search(r"(?<![\d.])500(\.0)?(?![\d.])", result.stdout)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "`--format [" + "\\|".join(REPORTERS) + "]`" in readme
    assert f"`{fmt}`: " in readme


# ---------------------------------------------------------------- exit codes


@pytest.mark.parametrize(
    ("args", "fail_on", "code"),
    [
        (BENIGN, "any", 0),
        (TF, None, 0),
        (TF, "naive", 1),
        (TF, "stable", 0),
        (TF, "stable,naive", 1),
        (TF, "any", 1),
        (DIVERGES, "diverged", 1),
        (DIVERGES, "input", 0),
        (SWEEP, "inaccurate", 1),
    ],
)
def test_exit_code(args: list[str], fail_on: str | None, code: int) -> None:
    result = run(*args, *(["--fail-on", fail_on] if fail_on else []))
    assert result.exit_code == code
    if code == 1:
        assert "met: exit code 1" in result.stderr


def test_the_fail_on_verdict_is_said_once_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A table on the terminal ends with the --fail-on verdict: stderr (the same terminal)
    does not repeat it; the table sent elsewhere leaves it on stderr."""
    from cecheck.cli import compare

    monkeypatch.setattr(compare, "_stdout_is_terminal", lambda: True)
    result = run(*TF, "--fail-on", "naive")
    assert result.exit_code == 1
    assert result.stdout.count("--fail-on naive met: exit code 1") == 1
    assert "met: exit code 1" not in result.stderr
    monkeypatch.setattr(compare, "_stdout_is_terminal", lambda: False)
    assert "met: exit code 1" in run(*TF, "--fail-on", "naive").stderr


@pytest.mark.parametrize("where", [["--format", "json"], ["--format", "csv"], ["-o", "r.txt"]])
def test_the_verdict_line_is_last_on_stderr(
    where: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report sent to a file or a program: stderr ends with the table's first line."""
    monkeypatch.chdir(tmp_path)  # -o r.txt lands here
    result = CliRunner().invoke(cecheck, ["compare", *TF, *where, "--fail-on", "naive"])
    assert result.exit_code == 1
    verdict = (
        "cecheck: 1 of 1 row flagged — NaN/inf in textbook float32/float64 (1), naive "
        "float32 (1); stable finite"
    )
    assert result.stderr.splitlines()[-2:] == ["--fail-on naive met: exit code 1", verdict]
    if where[0] == "-o":
        assert flat(Path("r.txt").read_text(encoding="utf-8")).startswith(verdict)


def test_fail_on_input(tmp_path: Path) -> None:
    z, y = tmp_path / "z.npy", tmp_path / "y.npy"
    np.save(z, np.array([[np.nan, 0.0], [0.0, 1.0]]))
    np.save(y, np.array([0, 5]))
    result = run(str(z), str(y), "--fail-on", "input", "--format", "json")
    assert result.exit_code == 1
    data = strict_json(result.stdout)
    assert data["failed"] == ["input"]
    assert data["counts"]["nonfinite_input"] == 1
    assert data["counts"]["label_out_of_range"] == 1


def test_bad_fail_on_is_a_usage_error() -> None:
    result = run(*TF, "--fail-on", "naive,sometimes")
    assert result.exit_code == 2
    assert "sometimes" in result.stderr


def test_fail_on_diverged_without_float64_is_a_usage_error() -> None:
    """Divergence is judged against float64: without it the condition could never fire."""
    result = run(*TF, "--dtypes", "float32", "--fail-on", "diverged")
    assert result.exit_code == 2
    assert "--fail-on diverged needs float64" in result.stderr
    assert "Traceback" not in result.stderr


def _bad_inputs(tmp: Path) -> dict[str, list[str]]:
    """Each kind of bad file, as the arguments of ``cecheck compare``."""
    good_labels = str(DATA / "tf_example_labels.npy")
    pickled = tmp / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    five = tmp / "five.npy"
    np.save(five, np.zeros(5, dtype=np.int64))
    truncated = tmp / "truncated.npy"
    truncated.write_bytes((DATA / "benign_logits.npy").read_bytes()[:300])
    empty = tmp / "empty.npy"
    empty.write_bytes(b"")
    text = tmp / "text.csv"
    text.write_text("a,label\nhello,1\n")
    garbage = tmp / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    fractional = tmp / "fractional.npy"
    np.save(fractional, np.array([0.5]))
    cases = {
        "missing file": [str(tmp / "nope.npy"), good_labels],
        "pickled npy": [str(pickled), good_labels],
        "mismatched rows": [BENIGN[0], str(five)],
        "one npy file": [TF[0]],
        "unsupported extension": [str(DATA / "make_samples.py"), good_labels],
        "truncated npy": [str(truncated), str(DATA / "benign_labels.npy")],
        "empty file": [str(empty), good_labels],
        "text in a CSV": [str(text)],
        "corrupt npz": [str(garbage)],
        "missing npz key": [*SEQUENCE, "--labels-key", "targets"],
        "missing label column": [*SWEEP, "--label-column", "target"],
        "fractional class index": [TF[0], str(fractional)],
        "a directory": [str(tmp), good_labels],
    }
    assert list(cases) == BAD_CASES
    return cases


BAD_CASES = [
    "missing file", "pickled npy", "mismatched rows", "one npy file", "unsupported extension",
    "truncated npy", "empty file", "text in a CSV", "corrupt npz", "missing npz key",
    "missing label column", "fractional class index", "a directory",
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_CASES)
@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_bad_input_is_exit_2_in_one_line(tmp_path: Path, case: str, fmt: str) -> None:
    result = run(*_bad_inputs(tmp_path)[case], "--format", fmt)
    assert result.exit_code == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_unwritable_output_is_exit_2(tmp_path: Path) -> None:
    result = run(*TF, "-o", str(tmp_path / "no" / "such" / "dir.json"))
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: cannot write")


def test_unexpected_error_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kw: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(engine, "run", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        run(*TF)


def test_keyboard_interrupt_exits_without_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_args: object, **_kw: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "run", interrupted)
    result = run(*TF)
    assert result.exit_code == 130  # the shell's code for SIGINT; 1 is --fail-on's
    assert result.stderr == "Interrupted (Ctrl-C)\n"


def test_broken_pipe_exits_quietly(tmp_path: Path) -> None:
    """``cecheck compare ... --format csv | head -1``: no traceback when the reader leaves."""
    z, y = tmp_path / "z.npy", tmp_path / "y.npy"
    n = 200_000
    np.save(z, np.linspace(-50, 50, n))
    np.save(y, (np.arange(n) % 2).astype(np.float64))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cecheck", "compare", str(z), str(y), "--format", "csv"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(b"row,")
    proc.stdout.close()  # the reader goes away with the output still coming
    _, err = proc.communicate(timeout=120)
    assert err == b""  # no traceback, no "Exception ignored"
    assert proc.returncode == 141  # 128 + SIGPIPE


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_for_big_inputs_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from cecheck.cli import common

    source = inputs.open_inputs(*TF)
    with common.progress_bar(source, quiet=False) as progress:
        assert progress is None  # small input, and stderr is not a terminal here
    monkeypatch.setattr(common, "PROGRESS_ELEMENTS", 0)
    with common.progress_bar(source, quiet=False) as progress:
        assert progress is None  # big, but stderr is not a terminal
    monkeypatch.setattr(sys, "stderr", _Terminal())
    with common.progress_bar(source, quiet=True) as progress:
        assert progress is None  # --quiet: never
    with common.progress_bar(source, quiet=False) as progress:
        assert progress is not None
        progress(1)  # the engine's callback: rows done


def test_progress_bar_where_rich_is_told_stderr_is_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """stderr is no tty here, but rich takes FORCE_COLOR to mean a terminal: the bar is drawn
    as rich decides (the check that spares rich's import defers to it)."""
    from cecheck.cli import common

    monkeypatch.setattr(common, "PROGRESS_ELEMENTS", 0)
    monkeypatch.setenv("FORCE_COLOR", "1")
    with common.progress_bar(inputs.open_inputs(*TF), quiet=False) as progress:
        assert progress is not None
        progress(1)
