"""A class-index label that is not a whole number is a row problem, not a file problem.

A fraction, NaN or an empty CSV cell flags its row ``invalid_label`` (losses NaN, left out of
the totals); the other rows are computed (checked against ``mp_reference``, mpmath rounded
once to float64); the run exits 0 unless ``--fail-on input``. Labels that are mostly
fractions are not class indices at all: a file-level InputError.
"""

from __future__ import annotations

import json
from pathlib import Path

import mp_reference as mp
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result
from textcheck import flat

import cecheck
import cecheck.inputs.csv_arrow
from cecheck import InputError, compare
from cecheck.cli import cecheck as cecheck_cli
from cecheck.inputs import HEAD_ROWS, INVALID_LABEL, from_arrays, open_inputs

Z = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0], [2.0, 2.0, 2.0], [-3.0, 0.0, 3.0]])
Y = [0.5, 1.0, np.nan, 2.0]  # rows 0 and 2 have no class
BAD = [0, 2]
GOOD = [1, 3]
FLOAT64_RTOL = 1e-13


def write(d: Path, fmt: str) -> list[str]:
    """Z and Y in one of the formats: the paths to pass to open_inputs or the CLI."""
    if fmt == "npy":
        np.save(d / "z.npy", Z)
        np.save(d / "y.npy", np.array(Y))
        return [str(d / "z.npy"), str(d / "y.npy")]
    if fmt == "npz":
        np.savez(d / "both.npz", logits=Z, labels=np.array(Y))
        return [str(d / "both.npz")]
    # CSV: the NaN is an empty cell, the 0.5 a cell of text
    lines = ["z0,z1,z2,label"]
    lines += [",".join(f"{v:g}" for v in z) + "," + ("" if np.isnan(y) else f"{y:g}")
              for z, y in zip(Z, Y, strict=True)]  # fmt: skip
    (d / "data.csv").write_text("\n".join(lines) + "\n")
    return [str(d / "data.csv")]


FORMATS = ["npy", "npz", "csv"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_non_integer_label_is_read_as_an_invalid_label(tmp_path: Path, fmt: str) -> None:
    source = open_inputs(*write(tmp_path, fmt))
    assert (source.task, source.label_form) == ("multiclass", "index")
    _, labels = next(source.chunks(10))
    assert labels.tolist() == [INVALID_LABEL, 1, INVALID_LABEL, 2]


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_row_is_flagged_and_the_others_computed(tmp_path: Path, fmt: str) -> None:
    report = compare(open_inputs(*write(tmp_path, fmt)), top=10)
    assert report.counts["invalid_label"] == 2
    assert report.scored_rows == 2
    frame = report.to_frame()
    for i in BAD:
        assert "invalid_label" in frame["flags"][i].split(";")
        assert np.isnan(frame.loc[i, ["naive_float32", "stable_float64", "reference"]]).all()
        assert frame["label"][i] is pd.NA
    want = [mp.multiclass(Z[i], int(Y[i])) for i in GOOD]
    np.testing.assert_allclose(frame["reference"][GOOD], want, rtol=FLOAT64_RTOL, atol=0)
    np.testing.assert_allclose(frame["stable_float64"][GOOD], want, rtol=FLOAT64_RTOL, atol=0)
    assert frame["flags"][GOOD].tolist() == ["", ""]
    assert [r.row for r in report.top] == BAD


def test_the_rows_with_a_class_keep_their_label_in_the_row_frame() -> None:
    frame = compare(Z, Y).to_frame()
    assert frame["label"].tolist() == [pd.NA, 1, pd.NA, 2]


def test_a_row_beyond_the_first_chunk_is_flagged_too(tmp_path: Path) -> None:
    n = 5000
    y = (np.arange(n) % 3).astype(np.float64)
    y[4500] = 1.5
    z = np.random.default_rng(0).normal(size=(n, 3))
    report = compare(z, y)
    assert report.counts["invalid_label"] == 1
    assert report.top[0].row == 4500


@pytest.mark.parametrize("block_bytes", [None, 4096])  # one block, or many blocks of text
@pytest.mark.parametrize("cell", ["2.5", "", "nan"])
def test_a_csv_row_beyond_the_first_chunk_is_flagged_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cell: str, block_bytes: int | None
) -> None:
    if block_bytes is not None:  # many record batches from pyarrow's threads
        monkeypatch.setattr(cecheck.inputs.csv_arrow, "WINDOW_BYTES", block_bytes)
    lines = [f"{i % 7},{-(i % 5)},{i % 2}" for i in range(HEAD_ROWS + 10)]
    lines[HEAD_ROWS + 5] = f"3,4,{cell}"
    (tmp_path / "big.csv").write_text("z0,z1,label\n" + "\n".join(lines) + "\n")
    report = compare(open_inputs(tmp_path / "big.csv"))
    assert report.counts["invalid_label"] == 1
    assert report.top[0].row == HEAD_ROWS + 5
    assert report.scored_rows == HEAD_ROWS + 9


def test_trace_says_the_row_has_no_loss() -> None:
    # inferred from the one row: a fraction as the only label is no class index at all
    with pytest.raises(InputError, match=r"labels: the label 0.5 is a fraction, not a class index"):
        cecheck.trace([1.0, 2.0], 0.5)
    with pytest.raises(ValueError, match=r"not a whole number .*no loss to trace"):
        cecheck.trace([1.0, 2.0], 0.5, task="multiclass", label_form="index")


def test_the_trace_command_passes_over_the_row(tmp_path: Path) -> None:
    np.save(tmp_path / "z.npy", Z)
    np.save(tmp_path / "y.npy", np.array([1.0, 0.5, np.nan, 2.0]))
    paths = [str(tmp_path / "z.npy"), str(tmp_path / "y.npy")]
    picked = CliRunner().invoke(cecheck_cli, ["trace", *paths], catch_exceptions=False)
    assert picked.exit_code == 0, picked.stderr
    assert "every flagged row has no loss (a label out of range or not a whole number" in flat(
        picked.stdout
    )
    row1 = CliRunner().invoke(cecheck_cli, ["trace", *paths, "--row", "1"])
    assert row1.exit_code == 2
    assert row1.stderr.splitlines() == [
        "Error: row 1: the class label is not a whole number (a fraction, NaN or an empty "
        "cell), so the row has no loss to trace"
    ]


def run(*args: str) -> Result:
    return CliRunner().invoke(cecheck_cli, ["compare", *args], catch_exceptions=False)


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_cli_exits_0_unless_fail_on_input(tmp_path: Path, fmt: str) -> None:
    paths = write(tmp_path, fmt)
    assert run(*paths).exit_code == 0
    failed = run(*paths, "--fail-on", "input")
    assert failed.exit_code == 1
    assert "--fail-on input met" in failed.stderr


def test_the_json_report_shows_the_flag(tmp_path: Path) -> None:
    result = run(*write(tmp_path, "csv"), "--format", "json")
    data = json.loads(result.stdout)
    assert data["counts"]["invalid_label"] == 2
    assert data["rows"]["scored"] == 2
    rows = {r["row"]: r for r in data["flagged"]}
    assert set(rows) == set(BAD)
    assert rows[0]["flags"] == ["invalid_label"]
    assert rows[0]["label"] is None
    assert rows[0]["reference"] == "nan"
    assert rows[0]["severity"] == "input"


def test_the_csv_report_shows_the_flag(tmp_path: Path) -> None:
    result = run(*write(tmp_path, "npy"), "--format", "csv")
    from io import StringIO

    frame = pd.read_csv(StringIO(result.stdout), keep_default_na=False)
    assert frame["flags"].tolist() == ["invalid_label", "", "invalid_label", ""]
    assert frame["label"].tolist() == ["nan", "1", "nan", "2"]  # as any missing value
    assert frame["reference"][0] == "nan"


def test_the_table_explains_the_flag_in_plain_words(tmp_path: Path) -> None:
    text = flat(run(*write(tmp_path, "npz")).stdout)
    # the counts table and the worst rows both say what is wrong with the label
    assert "invalid_label" in text
    assert "the class label is not a whole number (a fraction, NaN or an empty cell)" in text
    assert "not scored" in text
    assert "None" not in text  # the label column shows "-" for such a row


def test_mostly_fractional_labels_are_not_class_indices() -> None:
    # (N,) labels with C >= 2 logits can only be class indices: if most are fractions, the
    # file holds something else (e.g. probabilities of one class), a file-level problem
    y = np.array([0.2, 0.7, 1.0, 0.4, 0.9])
    with pytest.raises(InputError, match=r"labels: 4 of the first 5 labels are fractions"):
        from_arrays(np.zeros((5, 2)), y)


def test_binary_soft_targets_stay_soft_targets() -> None:
    source = from_arrays(np.array([0.3, -2.0, 5.0]), np.array([0.25, 0.5, 1.0]))
    assert (source.task, source.label_form) == ("binary", "binary")
    report = compare(np.array([0.3, -2.0, 5.0]), np.array([0.25, 0.5, 1.0]))
    assert "invalid_label" not in report.counts


def test_a_stored_int64_minimum_is_out_of_range_not_invalid() -> None:
    report = compare(Z[:2], np.array([np.iinfo(np.int64).min, 1]))
    assert report.counts == {"label_out_of_range": 1}
