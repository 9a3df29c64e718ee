"""pandas' index in a CSV, TSV or Parquet file is left out of the logits, with a warning.

``DataFrame.to_csv()`` writes the index as a first column with an empty header (pandas reads
it back as ``Unnamed: 0``); ``to_csv(header=False)`` as a first column holding 0..N-1;
``to_parquet()`` as a column named in the file's pandas metadata (``__index_level_0__``
unless it is a RangeIndex, which is stored as metadata only). Read as a logit, the index
turns 2-class data into 3 classes and every row into an overflow.
"""

from __future__ import annotations

from pathlib import Path

import mp_reference as mp
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from textcheck import flat

import cecheck.inputs.csv_arrow
from cecheck import InputError, compare
from cecheck.cli import cecheck as cecheck_cli
from cecheck.inputs import HEAD_ROWS, open_inputs

RNG = np.random.default_rng(12)
N = 2000
Z = RNG.normal(scale=3.0, size=(N, 2))
Y = RNG.integers(0, 2, size=N)
FLOAT64_RTOL = 1e-13


def frame() -> pd.DataFrame:
    df = pd.DataFrame(Z, columns=["a", "b"])
    df["label"] = Y
    return df


def read_all(source: cecheck.inputs.Source) -> tuple[np.ndarray, np.ndarray]:
    chunks = list(source.chunks(700))
    return np.concatenate([x for x, _ in chunks]), np.concatenate([y for _, y in chunks])


def assert_index_left_out(source: cecheck.inputs.Source, column: str) -> None:
    assert source.n_classes == 2
    assert source.logits_shape == (N, 2)
    logits, labels = read_all(source)
    np.testing.assert_array_equal(logits, Z)
    np.testing.assert_array_equal(labels, Y)
    [warning] = [w for w in source.warnings if "pandas' index" in w]
    assert column in warning


def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many blocks of text for pyarrow's threads: many record batches per chunk."""
    monkeypatch.setattr(cecheck.inputs.csv_arrow, "WINDOW_BYTES", 4096)


@pytest.mark.parametrize("blocks", [False, True], ids=["one block", "many blocks"])
@pytest.mark.parametrize("sep", [",", "\t"], ids=["csv", "tsv"])
def test_to_csv_with_its_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sep: str, blocks: bool
) -> None:
    if blocks:
        small_blocks(monkeypatch)
    path = tmp_path / ("d.csv" if sep == "," else "d.tsv")
    frame().to_csv(path, sep=sep)
    assert path.read_text().startswith(f"{sep}a{sep}b{sep}label\n0{sep}")
    assert_index_left_out(open_inputs(path), "'Unnamed: 0'")


def test_an_index_of_text_is_dropped_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an index of text (sample ids) is not numbers: a column left out is never parsed
    small_blocks(monkeypatch)
    df = frame()
    df.index = [f"img_{i:05d}.png" for i in range(N)]
    df.to_csv(tmp_path / "d.csv")
    assert_index_left_out(open_inputs(tmp_path / "d.csv"), "'Unnamed: 0'")


def test_a_csv_written_twice_has_two_index_columns(tmp_path: Path) -> None:
    # read back without index_col=0 and written again: pandas' index, then the old one
    frame().to_csv(tmp_path / "once.csv")
    pd.read_csv(tmp_path / "once.csv").to_csv(tmp_path / "twice.csv")
    source = open_inputs(tmp_path / "twice.csv")
    assert source.n_classes == 2
    assert len([w for w in source.warnings if "pandas' index" in w]) == 2


def test_losses_are_those_of_the_data_without_the_index(tmp_path: Path) -> None:
    frame().iloc[:50].to_csv(tmp_path / "d.csv")
    report = compare(open_inputs(tmp_path / "d.csv"))
    assert report.source.n_classes == 2
    want = [mp.multiclass(Z[i], int(Y[i])) for i in range(50)]
    got = next(report.frames())["reference"].to_numpy()
    np.testing.assert_allclose(got, want, rtol=FLOAT64_RTOL, atol=0)
    assert "naive_nan:float32" not in report.counts


@pytest.mark.parametrize("blocks", [False, True], ids=["one block", "many blocks"])
def test_to_csv_without_header_holds_the_row_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blocks: bool
) -> None:
    if blocks:
        small_blocks(monkeypatch)
    frame().to_csv(tmp_path / "d.csv", header=False)
    source = open_inputs(tmp_path / "d.csv", label_column=3)
    assert_index_left_out(source, "column 1")


def test_two_files_without_header(tmp_path: Path) -> None:
    pd.DataFrame(Z).to_csv(tmp_path / "z.csv", header=False)
    pd.DataFrame(Y).to_csv(tmp_path / "y.csv", header=False)
    source = open_inputs(tmp_path / "z.csv", tmp_path / "y.csv")
    assert source.logits_shape == (N, 2)
    assert source.labels_shape == (N,)
    logits, labels = read_all(source)
    np.testing.assert_array_equal(logits, Z)
    np.testing.assert_array_equal(labels, Y)
    assert len(source.warnings) == 2  # one per file


@pytest.mark.parametrize("blocks", [False, True], ids=["one block", "many blocks"])
def test_row_numbers_that_stop_past_the_first_chunk_are_an_input_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blocks: bool
) -> None:
    if blocks:
        small_blocks(monkeypatch)
    n = HEAD_ROWS + 100
    first = np.arange(n, dtype=float)
    first[HEAD_ROWS + 50] = 7.0  # the column was not pandas' index after all
    table = np.column_stack([first, np.zeros(n), np.ones(n), np.arange(n) % 2])
    pd.DataFrame(table).to_csv(tmp_path / "d.csv", header=False, index=False)
    source = open_inputs(tmp_path / "d.csv", label_column=3)  # decided on the first rows
    assert source.n_classes == 2
    line = HEAD_ROWS + 51
    with pytest.raises(InputError, match=rf"d.csv line {line}, column 1: 7 breaks the row "):
        read_all(source)


def test_a_named_first_column_is_data_whatever_it_holds(tmp_path: Path) -> None:
    # a header names what a column holds: a sweep of logits 0, 1, 2, ... stays data
    df = pd.DataFrame({"z0": np.arange(100.0), "z1": np.zeros(100), "label": 0})
    df.to_csv(tmp_path / "sweep.csv", index=False)
    source = open_inputs(tmp_path / "sweep.csv")
    assert source.n_classes == 2
    assert source.warnings == ()


def test_short_files_and_the_label_column_are_never_taken_for_the_index(tmp_path: Path) -> None:
    (tmp_path / "two.csv").write_text("0,5,1\n1,3,0\n")  # 0, 1: too few rows to tell
    assert open_inputs(tmp_path / "two.csv", label_column=2).n_classes == 2
    (tmp_path / "labels_first.csv").write_text("".join(f"{i},0.5,1.5\n" for i in range(3)))
    assert open_inputs(tmp_path / "labels_first.csv", label_column=0).n_classes == 2
    (tmp_path / "z.npy").write_bytes(b"")
    np.save(tmp_path / "z.npy", np.zeros((3, 4)))
    (tmp_path / "y.csv").write_text("0\n1\n2\n")  # the only column: the labels
    assert open_inputs(tmp_path / "z.npy", tmp_path / "y.csv").labels_shape == (3,)


def test_the_cli_says_so_on_stderr(tmp_path: Path) -> None:
    frame().to_csv(tmp_path / "d.csv")
    result = CliRunner().invoke(
        cecheck_cli, ["compare", str(tmp_path / "d.csv"), "--format", "json"]
    )
    assert result.exit_code == 0
    said = flat(result.stderr)
    assert "warning: " in said
    assert "column 'Unnamed: 0'" in said
    assert "give it a header name" in said
    assert '"classes": 2' in result.stdout


# ---------------------------------------------------------------- Parquet


def test_to_parquet_with_a_range_index_stores_no_column(tmp_path: Path) -> None:
    frame().to_parquet(tmp_path / "d.parquet")
    source = open_inputs(tmp_path / "d.parquet")
    assert source.n_classes == 2
    assert source.warnings == ()


@pytest.mark.parametrize("name", [None, "sample"])
def test_to_parquet_with_another_index_stores_it_as_a_column(
    tmp_path: Path, name: str | None
) -> None:
    df = frame().sample(frac=1.0, random_state=0)  # shuffled: not a RangeIndex
    df.index.name = name
    df.to_parquet(tmp_path / "d.parquet")
    source = open_inputs(tmp_path / "d.parquet")
    column = "'__index_level_0__'" if name is None else "'sample'"
    assert source.n_classes == 2
    logits, labels = read_all(source)
    np.testing.assert_array_equal(logits, df[["a", "b"]].to_numpy())
    np.testing.assert_array_equal(labels, df["label"].to_numpy())
    [warning] = source.warnings
    assert column in warning
    assert "pandas' index" in warning


def test_a_parquet_index_chosen_as_the_label_column_is_the_label(tmp_path: Path) -> None:
    df = frame().set_index("label")
    df.to_parquet(tmp_path / "d.parquet")
    source = open_inputs(tmp_path / "d.parquet")
    assert source.n_classes == 2
    assert source.warnings == ()
