"""How pyarrow reads a CSV (cecheck/inputs/csv_arrow.py): the row count of a plain file in C
or numpy, windows of the mapped file, the first read without missing values."""

from __future__ import annotations

import itertools
import mmap
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cecheck.inputs.csv_arrow as csv_arrow
from cecheck.inputs import open_inputs

try:
    from cecheck import _csvtext
except ImportError:
    if os.environ.get("CECHECK_REQUIRE_KERNEL"):
        raise RuntimeError("the C extension cecheck._csvtext was not built") from None
    _csvtext = None  # type: ignore[assignment]

needs_c = pytest.mark.skipif(_csvtext is None, reason="cecheck._csvtext was not built")
pa = pytest.importorskip("pyarrow", reason="pyarrow reads CSV files only where installed")


PLAIN_TEXT = st.lists(st.sampled_from([b"1", b"-2.5e3", b",", b"\t", b"\n"]), max_size=30)
ODD_BYTE = st.sampled_from([b" ", b'"', b"\r", b"\x00", b"!", b"#", b"\x7f", b"\xff", b"\n"])


@needs_c
@settings(max_examples=300, deadline=None)
@given(
    tokens=PLAIN_TEXT,
    odd=st.one_of(st.none(), st.tuples(st.integers(0, 30), ODD_BYTE)),
    cuts=st.lists(st.integers(0, 60), max_size=3),
    tsv=st.booleans(),
    last=st.sampled_from([ord("\n"), ord("1"), ord("\t")]),
)
def test_the_line_ends_are_counted_in_c_as_in_numpy(
    tokens: list[bytes], odd: tuple[int, bytes] | None, cuts: list[int], tsv: bool, last: int
) -> None:
    if odd is not None:  # a byte that makes the text not plain, or may
        tokens.insert(min(odd[0], len(tokens)), odd[1])
    text = b"".join(tokens)
    # piece by piece, each piece's last byte carried to the next, as plain_rows counts
    bounds = [0, *sorted(c for c in cuts if c < len(text)), len(text)]
    by_c, by_numpy = last, last
    for a, b in itertools.pairwise(bounds):
        piece = memoryview(text)[a:b]
        n, by_c = _csvtext.plain_lines(piece, tsv, by_c)
        m, by_numpy = csv_arrow.plain_lines(piece, tsv, by_numpy)
        assert (n, by_c) == (m, by_numpy)
        if n < 0:
            break


# every class of byte the counter tells apart: plain ones, line ends, separators, and bytes
# below '#' (or next to it, or past 127: unsigned) that make a text not plain
BYTE_CLASSES = st.sampled_from(b"0123456789.,e-" + b"\n" * 4 + b'\t\t !"#\r\x00\x7f\x80\xff')


@needs_c
@settings(max_examples=500, deadline=None)
@given(
    plain=st.lists(st.sampled_from(b"0123456789.,e-\n\n\n"), max_size=400),
    odd=st.lists(st.tuples(st.integers(0, 400), BYTE_CLASSES), max_size=3),
    start=st.integers(0, 16),
    tsv=st.booleans(),
    last=st.sampled_from([ord("\n"), ord("1"), ord("\t")]),
)
def test_the_c_counter_of_16_bytes_at_once_agrees_with_numpy(
    plain: list[int], odd: list[tuple[int, int]], start: int, tsv: bool, last: int
) -> None:
    # long enough texts for the 16-byte vectors (and the bytes one by one before and after
    # them), each starting anywhere in a vector: a byte of any class anywhere in them
    text = bytearray(plain)
    for at, byte in odd:
        text.insert(min(at, len(text)), byte)
    piece = memoryview(bytes(text))[start:]
    assert _csvtext.plain_lines(piece, tsv, last) == csv_arrow.plain_lines(piece, tsv, last)


@needs_c
@settings(max_examples=300, deadline=None)
@given(text=st.binary(max_size=300), tsv=st.booleans(), last=st.integers(0, 255))
def test_the_c_counter_agrees_with_numpy_on_any_bytes(text: bytes, tsv: bool, last: int) -> None:
    assert _csvtext.plain_lines(text, tsv, last) == csv_arrow.plain_lines(text, tsv, last)


@needs_c
def test_the_c_counter_looks_at_every_byte_of_a_long_text() -> None:
    # past its 255 vectors of 16 bytes counted at once (each line end in a lane's byte),
    # and each vector's first byte against the one before it
    line = b"1.5,-2e3,7\n"
    text = line * 1000
    assert _csvtext.plain_lines(text, False, ord("\n")) == (1000, ord("\n"))
    assert _csvtext.plain_lines(b"\n" * 9000, False, ord("1"))[0] == -1
    ends = (b"1\n" * 5000)[1:]  # a line end in every other byte: 255 in a lane's byte
    assert _csvtext.plain_lines(ends, False, ord("1")) == (5000, ord("\n"))
    for at in [0, 1, 15, 16, 17, 4080, 4081, 4095, 4096, 4097, len(text) - 1]:
        for byte in [b" ", b'"', b"\r", b"\t", b"\x00"]:
            bad = text[:at] + byte + text[at + 1 :]
            assert _csvtext.plain_lines(bad, False, ord("\n"))[0] == -1, (at, byte)
    starts = [i + 1 for i in range(len(text) - 1) if text[i] == ord("\n")]
    for at in [starts[0], *(s for s in starts if s % 4096 < 12)]:
        blank = text[:at] + b"\n" + text[at + 1 :]
        assert _csvtext.plain_lines(blank, False, ord("\n"))[0] == -1, at
        assert _csvtext.plain_lines(text[:at] + b"\t" + text[at + 1 :], True, 10)[0] == -1
    assert _csvtext.plain_lines(b"\n" + text, False, ord("\n"))[0] == -1
    assert _csvtext.plain_lines(b"\n" + text, False, ord("1")) == (1001, ord("\n"))


@pytest.mark.parametrize("counter", ["c", "numpy"])
def test_a_large_plain_file_is_counted_window_by_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counter: str
) -> None:
    if counter == "c" and _csvtext is None:
        pytest.skip("cecheck._csvtext was not built")
    if counter == "numpy":
        monkeypatch.setattr(csv_arrow, "_plain_lines", csv_arrow.plain_lines)
    monkeypatch.setattr(csv_arrow, "WINDOW_BYTES", 4096)
    path = tmp_path / "x.csv"
    body = "".join(f"{i * 0.25},{-i},{i % 3}\n" for i in range(3000))
    path.write_text("a,b,label\n" + body)
    assert csv_arrow.plain_rows(str(path), ",", 1) == 3000
    path.write_text("a,b,label\n" + body[:-1])  # no last line end
    assert csv_arrow.plain_rows(str(path), ",", 1) == 3000
    lines = body.splitlines(keepends=True)
    path.write_text("a,b,label\n" + "".join(lines[:2000]) + "\n" + "".join(lines[2000:]))
    assert csv_arrow.plain_rows(str(path), ",", 1) is None  # a blank line, past a window


def test_every_missing_value_is_refused_or_nan_when_read_without_them() -> None:
    # what lets a window be read first without pandas' missing values: a window in which
    # none is refused and none reads as NaN holds none of them
    import pyarrow.csv as pacsv

    options = pacsv.ConvertOptions(column_types={"a": pa.float64()}, null_values=[])
    for cell in csv_arrow.NULL_VALUES:
        text = pa.py_buffer(f"a,b\n1,1\n{cell},1\n".encode())
        try:
            values = pacsv.read_csv(text, convert_options=options).column("a").to_numpy()
        except pa.ArrowInvalid:
            continue
        assert np.isnan(values[1]), cell


@pytest.mark.parametrize("cell", ["", "-nan", "-NaN", "NA", "nan"])
def test_a_window_with_a_missing_value_is_read_again_with_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cell: str
) -> None:
    # as pandas: a missing value is a NaN, positive even where written "-nan"; the windows
    # before and after it are read without missing values
    monkeypatch.setattr(csv_arrow, "BLOCK_BYTES", 64)
    monkeypatch.setattr(csv_arrow, "WINDOW_BYTES", 64)
    reads: list[bool] = []
    read = csv_arrow.ArrowCsv._read

    def spy(self: csv_arrow.ArrowCsv, *args: object) -> object:
        reads.append(bool(args[-1]))
        return read(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(csv_arrow.ArrowCsv, "_read", spy)
    rows = [f"{i}.5,{-i},{i % 2}" for i in range(40)]
    rows[20] = f"{cell},1,0"
    path = tmp_path / "x.csv"
    path.write_text("a,b,label\n" + "\n".join(rows) + "\n")
    source = open_inputs(path)
    reads.clear()  # opening reads the first rows: for inference
    x, _ = next(source.chunks(40))
    assert np.isnan(x[20, 0])
    assert not np.signbit(x[20, 0])
    expected = np.array([[i + 0.5, -i] for i in range(40)])
    np.testing.assert_array_equal(np.delete(x, 20, axis=0), np.delete(expected, 20, axis=0))
    assert reads.count(True) == 1  # one window read again, the others once
    assert len(reads) > 3


def test_the_windows_are_views_of_the_mapped_file(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("".join(f"{i},{i}\n" for i in range(1000)))
    windows = csv_arrow._windows(str(path), 1024)
    first = next(windows)
    assert isinstance(first, memoryview)
    assert first.readonly
    assert isinstance(first.obj, mmap.mmap)
    windows.close()


def open_files(path: Path) -> int:
    fds = Path("/proc/self/fd")
    return sum(os.path.realpath(fds / fd) == str(path.resolve()) for fd in os.listdir(fds))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")
@pytest.mark.parametrize("window", [4096, 1 << 20])
def test_the_file_is_closed_as_soon_as_a_read_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window: int
) -> None:
    # pyarrow's threads let go of the text a moment after read_csv returns; the reader waits
    # for that, then unmaps and closes the file: every time, whether read to the end or left
    monkeypatch.setattr(csv_arrow, "BLOCK_BYTES", min(window, 1 << 16))
    monkeypatch.setattr(csv_arrow, "WINDOW_BYTES", window)
    path = tmp_path / "x.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},{-i},1\n" for i in range(30_000)))
    source = open_inputs(path)
    for _ in range(15):
        chunks = source.chunks(100)
        next(chunks)
        assert open_files(path) == 1
        chunks.close()  # type: ignore[attr-defined]
        assert open_files(path) == 0
        assert sum(len(x) for x, _ in source.chunks(7000)) == 30_000
        assert open_files(path) == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("cecheck-csv")]


def test_windows_past_the_first_are_read_on_a_thread_one_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_arrow, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(csv_arrow, "WINDOW_BYTES", 4096)
    readers: list[str] = []
    window_blocks = csv_arrow.ArrowCsv._window_blocks

    def spy(self: csv_arrow.ArrowCsv, *args: object) -> object:
        readers.append(threading.current_thread().name)
        return window_blocks(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(csv_arrow.ArrowCsv, "_window_blocks", spy)
    path = tmp_path / "x.csv"
    z = np.arange(20_000.0) / 4
    path.write_text("a,b,label\n" + "".join(f"{v},{-v},1\n" for v in z))
    blocks = csv_arrow.ArrowCsv(str(path), ",", 1, 3).blocks([0, 1])
    first = next(blocks)
    assert first is not None
    assert readers == ["MainThread"]  # a look at the first rows reads no more
    rest = list(blocks)
    assert readers[0] == "MainThread"
    assert len(readers) > 10
    assert all(name.startswith("cecheck-csv") for name in readers[1:])
    got = np.concatenate([b[0] for b in [first, *rest] if b is not None])
    np.testing.assert_array_equal(got, z)
    assert np.isnan(first[2]).all()  # a column not used


@pytest.mark.parametrize(
    ("text", "plain"),
    [("a,b,label\n1.5,2,0\n3,4,1\n", True), ('a,b,label\n"1.5",2,0\n3,4,1\n', False)],
)
def test_only_a_plain_file_is_parsed_without_quoting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, plain: bool
) -> None:
    # a plain file holds no quote (its count says so): split without quoting, its cells are
    # the same; any other file is split with quoting, as pandas splits it
    import pyarrow.csv as pacsv

    quoting: list[object] = []
    read_csv = pacsv.read_csv

    def spy(*args: object, parse_options: pacsv.ParseOptions, **kwargs: object) -> object:
        quoting.append(parse_options.quote_char)
        return read_csv(*args, parse_options=parse_options, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pacsv, "read_csv", spy)
    (tmp_path / "x.csv").write_text(text)
    source = open_inputs(tmp_path / "x.csv")
    x, _ = next(source.chunks(10))
    np.testing.assert_array_equal(x, [[1.5, 2.0], [3.0, 4.0]])
    assert quoting
    assert set(quoting) == ({False} if plain else {'"'})
