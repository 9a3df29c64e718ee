"""Arrow IPC and Feather inputs, and logits as one list column in Arrow, Feather and Parquet.

Each layout must read back exactly what was written (bit for bit, float16 kept), stream by
record batch, and give the same report as the same values in ``.npy`` files; bad files are
exit 2 with one line.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from cecheck.cli import cecheck
from cecheck.errors import InputError
from cecheck.inputs import HEAD_ROWS, open_inputs

pa = pytest.importorskip("pyarrow", reason="Arrow, Feather and Parquet need pyarrow")
import pyarrow.feather as feather  # noqa: E402
import pyarrow.ipc as ipc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

N, C = 50, 4
RNG = np.random.default_rng(15)
LOGITS16 = (RNG.standard_normal((N, C)) * 8).astype(np.float16)
LOGITS16[3, 1] = np.float16(65504)  # a row that overflows float16's exp
LOGITS32 = (RNG.standard_normal((N, C)) * 30).astype(np.float32)
LABELS = RNG.integers(0, C, N).astype(np.int64)
BATCH = 7  # rows per record batch (row group) as written


def plain(x: np.ndarray) -> pa.Table:
    return pa.table({**{f"z{k}": x[:, k] for k in range(C)}, "label": LABELS})


def fixed_list(x: np.ndarray) -> pa.Table:
    values = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), C)
    return pa.table({"label": LABELS, "logits": values})


def variable_list(x: np.ndarray) -> pa.Table:
    return pa.table({"logits": pa.array(list(x), pa.list_(pa.from_numpy_dtype(x.dtype))),
                     "label": LABELS})  # fmt: skip


def large_list(x: np.ndarray) -> pa.Table:
    return pa.table({"logits": pa.array(list(x), pa.large_list(pa.from_numpy_dtype(x.dtype))),
                     "label": LABELS})  # fmt: skip


def arrow_file(table: pa.Table, path: Path) -> Path:
    path = path.with_suffix(".arrow")
    with ipc.new_file(path, table.schema) as w:
        w.write_table(table, max_chunksize=BATCH)
    return path


def arrow_stream(table: pa.Table, path: Path) -> Path:
    path = path.with_suffix(".arrow")
    with ipc.new_stream(path, table.schema) as w:
        w.write_table(table, max_chunksize=BATCH)
    return path


def feather_v2(table: pa.Table, path: Path) -> Path:  # lz4-compressed, pyarrow's default
    path = path.with_suffix(".feather")
    feather.write_feather(table, path, chunksize=BATCH)
    return path


def feather_v1(table: pa.Table, path: Path) -> Path:
    path = path.with_suffix(".feather")
    with warnings.catch_warnings():  # writing version 1 is deprecated; reading it is not
        warnings.simplefilter("ignore", DeprecationWarning)
        feather.write_feather(table, path, version=1)
    return path


def parquet(table: pa.Table, path: Path) -> Path:
    path = path.with_suffix(".parquet")
    pq.write_table(table, path, row_group_size=BATCH)
    return path


Writer = Callable[[pa.Table, Path], Path]
NAME = {arrow_file: "arrow file", arrow_stream: "arrow stream", feather_v2: "feather v2",
        feather_v1: "feather v1", parquet: "parquet"}.get  # fmt: skip
WRITERS: dict[str, Writer] = {
    "arrow file": arrow_file,
    "arrow stream": arrow_stream,
    "feather v2": feather_v2,
    "parquet": parquet,
}
LAYOUTS = {"fixed list": fixed_list, "variable list": variable_list, "large list": large_list}


def read_all(path: Path, rows: int, **choice: str) -> tuple[np.ndarray, np.ndarray]:
    source = open_inputs(path, **choice)  # type: ignore[arg-type]
    chunks = list(source.chunks(rows))
    assert all(len(lg) <= rows for lg, _ in chunks)
    return np.concatenate([lg for lg, _ in chunks]), np.concatenate([lb for _, lb in chunks])


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("x", [LOGITS16, LOGITS32], ids=["float16", "float32"])
@pytest.mark.parametrize("write", [arrow_file, arrow_stream, feather_v2, feather_v1], ids=NAME)
@pytest.mark.parametrize("rows", [3, BATCH, 20, 1000])  # smaller than a batch, larger, all
def test_plain_columns_read_exactly(
    tmp_path: Path, write: Writer, x: np.ndarray, rows: int
) -> None:
    if write is feather_v1 and x.dtype == np.float16:
        pytest.skip("Feather version 1 has no float16")
    path = write(plain(x), tmp_path / "data")
    logits, labels = read_all(path, rows)
    assert same_bits(logits, x)
    assert np.array_equal(labels, LABELS)


@pytest.mark.parametrize("x", [LOGITS16, LOGITS32], ids=["float16", "float32"])
@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=list(LAYOUTS))
@pytest.mark.parametrize("write", WRITERS.values(), ids=list(WRITERS))
@pytest.mark.parametrize("rows", [3, 20])
def test_a_list_column_reads_exactly(
    tmp_path: Path, write: Writer, layout: Callable[[np.ndarray], pa.Table], x: np.ndarray,
    rows: int,
) -> None:  # fmt: skip
    path = write(layout(x), tmp_path / "data")
    source = open_inputs(path)
    assert (source.logits_shape, source.logits_dtype) == ((N, C), x.dtype.name)
    assert (source.task, source.label_form) == ("multiclass", "index")
    logits, labels = read_all(path, rows)
    assert same_bits(logits, x)
    assert np.array_equal(labels, LABELS)


def test_the_logits_column_is_chosen_among_two_list_columns(tmp_path: Path) -> None:
    table = variable_list(LOGITS32).append_column(
        "input_ids", pa.array([[1, 2, 3]] * N, pa.list_(pa.int32()))
    )
    path = feather_v2(table, tmp_path / "two")
    with pytest.raises(InputError, match=r"2 list columns .*--logits-column"):
        open_inputs(path)
    logits, _ = read_all(path, 9, logits_column="logits")
    assert same_bits(logits, LOGITS32)


def test_a_list_column_in_a_logits_file_and_labels_in_another(tmp_path: Path) -> None:
    path = arrow_file(pa.table({"logits": variable_list(LOGITS16)["logits"]}), tmp_path / "lg")
    np.save(tmp_path / "labels.npy", LABELS)
    source = open_inputs(path, tmp_path / "labels.npy")
    logits = np.concatenate([lg for lg, _ in source.chunks(8)])
    assert same_bits(logits, LOGITS16)


def test_a_null_list_is_a_row_of_nan(tmp_path: Path) -> None:
    rows = [list(r) for r in LOGITS32.astype(np.float64)]
    rows[5] = None  # type: ignore[call-overload]
    table = pa.table({"logits": pa.array(rows, pa.list_(pa.float32())), "label": LABELS})
    logits, _ = read_all(arrow_file(table, tmp_path / "nulls"), 4)
    assert np.isnan(logits[5]).all()
    assert same_bits(np.delete(logits, 5, axis=0), np.delete(LOGITS32, 5, axis=0))


# ---------------------------------------------------------------- the same report as .npy


def run(*args: str) -> Result:
    return CliRunner().invoke(cecheck, ["compare", *args], catch_exceptions=False)


def report(*args: str) -> tuple[str, dict[str, object]]:
    """Every row as CSV, and the JSON report but for the file names."""
    dtypes = ("--dtypes", "float16,float32,float64")
    rows, result = run(*args, *dtypes, "--format", "csv"), run(*args, *dtypes, "--format", "json")
    assert rows.exit_code == 0, rows.stderr
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    del out["inputs"]
    return rows.stdout, out


@pytest.mark.parametrize("write", [parquet, feather_v2, arrow_stream], ids=NAME)
def test_a_hugging_face_table_gives_the_report_of_npy_files(tmp_path: Path, write: Writer) -> None:
    np.save(tmp_path / "logits.npy", LOGITS16)
    np.save(tmp_path / "labels.npy", LABELS)
    path = write(variable_list(LOGITS16), tmp_path / "hf")
    expected = report(str(tmp_path / "logits.npy"), str(tmp_path / "labels.npy"))
    assert report(str(path)) == expected
    assert report(str(path), "--logits-column", "logits") == expected


# ---------------------------------------------------------------- bad files: exit 2, one line


def one_error(result: Result) -> str:
    assert result.exit_code == 2, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


@pytest.mark.parametrize("write", WRITERS.values(), ids=list(WRITERS))
def test_ragged_rows_are_flagged_and_the_others_computed(tmp_path: Path, write: Writer) -> None:
    n = HEAD_ROWS + 100  # a row past the first rows is flagged as the rows are read
    logits = (RNG.standard_normal((n, C)) * 8).astype(np.float32)
    labels = RNG.integers(0, C, n).astype(np.int64)
    rows: list[list[float]] = [list(map(float, r)) for r in logits]
    ragged = [2, HEAD_ROWS + 50]
    rows[ragged[0]] = rows[ragged[0]][:3]
    rows[ragged[1]] = [*rows[ragged[1]], 1.0]
    table = pa.table({"logits": pa.array(rows, pa.list_(pa.float32())), "label": labels})
    path = str(write(table, tmp_path / "ragged"))
    result = run(path, "--format", "json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["counts"]["ragged_logits"] == 2
    assert out["rows"]["scored"] == n - 2
    assert [(r["row"], r["flags"]) for r in out["flagged"][:3]] == [
        (i, ["ragged_logits"]) for i in ragged
    ] + [(out["flagged"][2]["row"], out["flagged"][2]["flags"])]
    assert "ragged_logits" not in out["flagged"][2]["flags"]
    assert run(path, "--fail-on", "input").exit_code == 1
    # the other rows: as the same values in .npy files (rows are computed independently)
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", labels)
    lines = run(path, "--format", "csv").stdout.splitlines()
    npy = str(tmp_path / "logits.npy"), str(tmp_path / "labels.npy")
    expected = run(*npy, "--format", "csv").stdout.splitlines()
    kept = [i for i in range(n + 1) if i - 1 not in ragged]  # line 0: the header
    assert [lines[i] for i in kept] == [expected[i] for i in kept]


def test_trace_of_a_ragged_row_says_so(tmp_path: Path) -> None:
    rows = [[1.0, 2.0, 3.0], [1.0, 2.0], [0.0, 0.0, 200.0], [1.0, 1.0, 1.0]]
    table = pa.table({"logits": rows, "label": np.array([0, 1, 0, 0])})
    path = str(feather_v2(table, tmp_path / "ragged"))
    trace = ["trace", path, "--dtypes", "float16"]
    line = one_error(CliRunner().invoke(cecheck, [*trace, "--row", "1"]))
    assert line == (
        "Error: row 1's list of logits has another length than the other rows' (3): "
        "the row is not scored, so it has no loss to trace"
    )
    # without --row: the worst row with a loss (row 2 overflows float16), not the ragged one
    result = CliRunner().invoke(cecheck, trace)
    assert result.exit_code == 0, result.stderr
    assert "row        2: the worst flagged row" in result.stdout


@pytest.mark.parametrize("write", WRITERS.values(), ids=list(WRITERS))
def test_lists_of_mostly_different_lengths(tmp_path: Path, write: Writer) -> None:
    rows = [[0.5, -1.0, 2.0, 0.0, 1.0][: 3 + i % 3] for i in range(30)]
    table = pa.table({"logits": rows, "label": np.zeros(30, np.int64)})
    line = one_error(run(str(write(table, tmp_path / "ragged"))))
    assert "column 'logits' holds lists of 3 different lengths in its first 30 rows" in line
    assert "the most common (3) in only 10: give every row the same number of logits" in line


def test_two_list_columns_without_logits_column(tmp_path: Path) -> None:
    table = variable_list(LOGITS32).append_column("soft", variable_list(LOGITS32)["logits"])
    line = one_error(run(str(arrow_file(table, tmp_path / "two"))))
    assert "2 list columns ('logits', 'soft'): choose the one" in line
    assert "--logits-column" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "has no column 'label' (its columns are 'logits', 'y')"),
        (("--label-column", "y", "--logits-column", "z"), "has no column 'z' besides the label"),
        (("--label-column", "y", "--logits-column", "y"), "has no column 'y' besides the label"),
    ],
)
def test_a_missing_column(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    table = pa.table({"logits": variable_list(LOGITS32)["logits"], "y": LABELS})
    path = feather_v2(table, tmp_path / "missing")
    assert expected in one_error(run(str(path), *args))
    assert run(str(path), "--label-column", "y").exit_code == 0


@pytest.mark.parametrize("ext", [".arrow", ".feather"])
@pytest.mark.parametrize(
    "damage",
    [lambda b: b"junk" * 20, lambda b: b[: len(b) // 2], lambda b: b[:300] + b"\0" * 40 + b[340:]],
    ids=["junk", "truncated", "overwritten"],
)
def test_a_corrupt_file(tmp_path: Path, ext: str, damage: Callable[[bytes], bytes]) -> None:
    write = arrow_file if ext == ".arrow" else feather_v2
    path = write(fixed_list(LOGITS32), tmp_path / "good")
    bad = tmp_path / f"bad{ext}"
    bad.write_bytes(damage(path.read_bytes()))
    assert f"{bad} is not a readable " in one_error(run(str(bad)))


def test_a_column_of_text(tmp_path: Path) -> None:
    path = arrow_file(plain(LOGITS32).append_column("text", pa.array(["a"] * N)), tmp_path / "t")
    assert "column 'text' holds string values, not numbers" in one_error(run(str(path)))


@pytest.mark.parametrize(("ext", "what"), [(".arrow", "an Arrow"), (".feather", "a Feather")])
def test_without_pyarrow_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ext: str, what: str
) -> None:
    path = (arrow_file if ext == ".arrow" else feather_v2)(plain(LOGITS32), tmp_path / "d")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(InputError, match=rf"is {what} file, which needs pyarrow: pip install "):
        open_inputs(path)
