"""The messages a new user reads first say what to do (issue 17's review): each names the
option or the fact that resolves it."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from cecheck.cli import cecheck


def run(*args: str) -> Result:
    return CliRunner().invoke(cecheck, list(args), catch_exceptions=False)


def test_the_probabilities_warning_names_inputs_probs(tmp_path: Path) -> None:
    np.save(tmp_path / "p.npy", np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]))
    np.save(tmp_path / "y.npy", np.array([0, 2]))
    result = run("compare", str(tmp_path / "p.npy"), str(tmp_path / "y.npy"))
    assert "--inputs probs" in result.stderr


def test_an_invalid_probability_row_says_what_it_sums_to(tmp_path: Path) -> None:
    np.save(tmp_path / "p.npy", np.array([[0.2, 0.3, 0.6], [0.1, 0.1, 0.8]]))
    np.save(tmp_path / "y.npy", np.array([0, 2]))
    result = run("compare", str(tmp_path / "p.npy"), str(tmp_path / "y.npy"), "--inputs", "probs")
    assert result.exit_code == 0
    assert "sums to 1.1" in result.stdout


def test_a_label_of_minus_1_suggests_ignore_index_minus_1(tmp_path: Path) -> None:
    np.save(tmp_path / "z.npy", np.array([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]]))
    np.save(tmp_path / "y.npy", np.array([-1, 2]))
    result = run("compare", str(tmp_path / "z.npy"), str(tmp_path / "y.npy"))
    assert "--ignore-index -1" in result.stdout
    with_it = run(
        "compare", str(tmp_path / "z.npy"), str(tmp_path / "y.npy"), "--ignore-index", "-1"
    )
    assert "--ignore-index -1" not in with_it.stdout.replace("ignore_index -1", "")


def test_a_header_less_csv_names_label_column_n(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("0.1,0.2,1\n0.3,0.4,0\n")
    result = run("compare", str(tmp_path / "t.csv"))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "--label-column 2" in result.stderr


@pytest.mark.parametrize("name", ["t.csv", "t.tsv"])
def test_a_gzip_file_named_csv_is_called_gzip(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(gzip.compress(b"a,b,label\n1,2,0\n"))
    result = run("compare", str(tmp_path / name))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "gzip" in result.stderr
    assert result.stderr.startswith(f"Error: {tmp_path / name} is gzip-compressed")


def test_zero_scored_rows_show_a_dash_not_nan(tmp_path: Path) -> None:
    np.save(tmp_path / "z.npy", np.array([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]]))
    np.save(tmp_path / "y.npy", np.array([-100, -100]))
    result = run("compare", str(tmp_path / "z.npy"), str(tmp_path / "y.npy"))
    summary = result.stdout[result.stdout.index("Loss per path") :].split("\n\n")[0]
    assert "NaN " not in summary.split("mean loss", 1)[1]
    assert " textbook    float32        0     0     0           - " in summary


def test_the_command_summaries_are_not_cut() -> None:
    result = run("--help")
    commands = result.stdout[result.stdout.index("Commands:") :]
    assert "..." not in commands
    assert "flag the unstable rows." in " ".join(commands.split())


@pytest.mark.parametrize("command", [[], ["compare"], ["trace"]])
def test_every_help_line_fits_80_columns(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0
    long = [line for line in result.stdout.splitlines() if len(line) > 80]
    assert long == []
