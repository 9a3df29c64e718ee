"""CSV and TSV files: every cell a float64, with a header row or without.

The first record decides whether the file has a header: it has one unless every cell of it
is a number or empty. The rows are read by pyarrow
(:mod:`cecheck.inputs.csv_arrow`) where pyarrow is installed, else by pandas
(:mod:`cecheck.inputs.csv_pandas`), whose values and one-line errors are the reference for
both; pyarrow hands over to pandas any file, or the rest of one, that is not plain numbers.
Either way the file is streamed: memory is bounded by the chunk size, not the file.
"""

from __future__ import annotations

import collections
import csv
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np

from cecheck.errors import InputError
from cecheck.inputs.csv_arrow import ArrowCsv
from cecheck.inputs.csv_pandas import PandasCsv
from cecheck.inputs.files import reason
from cecheck.inputs.source import HEAD_ROWS, Columns, grouped
from cecheck.inputs.tables import Index, Table, table_reader

# pandas' name for a column with an empty header ("Unnamed: 0"; "Unnamed: 0.1" if repeated)
_UNNAMED = re.compile(r"Unnamed: \d+(\.\d+)*")
GZIP_MAGIC = b"\x1f\x8b"  # the first bytes of a gzip file (RFC 1952)
# the fewest rows whose first column holding 0, 1, 2, ... marks a headerless index
INDEX_MIN_ROWS = 3


def open_csv(path: str) -> Table:
    return _open(path, ",")


def open_tsv(path: str) -> Table:
    return _open(path, "\t")


def _open(path: str, sep: str) -> Table:
    """A CSV/TSV file: every cell a float64, with or without a header row."""
    first, first_line_alone = _first_record(path, sep)
    header = not all(_is_number(c) for c in first)
    names = _pandas_names(first) if header else None
    if names is not None:
        columns = tuple(f"column {c!r}" for c in names)
    else:
        columns = tuple(f"column {j + 1}" for j in range(len(first)))
    first_line = 2 if header else 1
    by_pandas = PandasCsv(path, sep, header, columns)
    by_arrow, n_rows = None, None
    # pyarrow skips the header as the first line of text: only where it is that alone
    if _have_pyarrow() and (first_line_alone or not header):
        by_arrow = ArrowCsv(path, sep, int(header), len(columns))
        n_rows = by_arrow.n_rows()
    if n_rows is None:  # pandas reads it all
        by_arrow, n_rows = None, by_pandas.n_rows()

    def blocks(rows: int, used: set[int]) -> Iterator[Columns]:
        """Blocks of rows from pyarrow while it reads them as pandas would, then pandas."""
        done = 0  # rows pyarrow delivered
        if by_arrow is not None:
            for block in by_arrow.blocks(sorted(used)):
                if block is None:
                    break
                yield block
                done += len(block[0])
            else:
                return
        yield from by_pandas.blocks(rows, done, used)

    def chunks(rows: int, groups: Sequence[Sequence[int]]) -> Iterator[list[np.ndarray]]:
        return grouped(blocks(rows, {j for g in groups for j in g}), rows, groups)

    table = Table(
        path,
        columns,
        (np.dtype(np.float64),) * len(columns),
        n_rows,
        chunks,
        lambda row, j: f"{path} line {row + first_line}, {columns[j]}",
    )
    return replace(table, index=_csv_index(table, names))


def _have_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def _first_record(path: str, sep: str) -> tuple[list[str], bool]:
    """The cells of the first record that is not a blank line (empty, or only spaces and
    tabs, which pandas skips too), and whether it is the first line of the file by itself
    (no blank line before it, no line end inside its quotes)."""
    try:
        with open(path, "rb") as raw:
            if raw.read(2) == GZIP_MAGIC:
                raise InputError(
                    f"{path} is gzip-compressed, not text: decompress it (gunzip) first"
                )
        with open(path, encoding="utf-8-sig", newline="") as f:
            records = csv.reader(f, delimiter=sep)
            for record in records:
                if len(record) > 1 or (record and record[0].strip(" \t")):
                    return record, records.line_num == 1
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text: export it as a UTF-8 CSV") from None
    except csv.Error as e:
        raise InputError(f"{path} cannot be parsed ({reason(e)}): fix the file") from None
    raise InputError(f"{path} holds no data: write the rows to it again")


def _is_number(cell: str) -> bool:
    """True if a cell is a number or empty (a missing value, not a column name)."""
    if not cell.strip():
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _pandas_names(header: list[str]) -> list[str]:
    """The column names as pandas reads them: an empty one "Unnamed: j", a repeated one "x.1"."""
    names = [name or f"Unnamed: {j}" for j, name in enumerate(header)]
    counts: collections.Counter[str] = collections.Counter()
    for j, name in enumerate(names):
        seen = counts[name]
        while seen:  # as pandas: "x", "x" -> "x", "x.1"; and again if "x.1" is taken
            counts[name] = seen + 1
            name = f"{name}.{seen}"
            seen = counts[name]
        names[j] = name
        counts[name] = seen + 1
    return names


def _csv_index(table: Table, names: Sequence[str] | None) -> tuple[Index, ...]:
    """The columns of a CSV that hold pandas' index; ``names``: the header, or None.

    With a header: the leading columns whose header is empty, as ``DataFrame.to_csv`` writes
    the index (every level of it). Without: a first column holding 0, 1, 2, ... in the first
    rows, as ``to_csv(header=False)`` writes it (its later rows are checked as they are read).
    """
    if names is not None:
        leading = itertools.takewhile(lambda n: n.strip() == "" or _UNNAMED.fullmatch(n), names)
        why = "its header is empty, as DataFrame.to_csv writes the index"
        keep_it = "to read it as data, give it a header name"
        return tuple(Index(j, why, keep_it, False) for j, _ in enumerate(leading))
    if len(table.columns) < 2 or table.n_rows < INDEX_MIN_ROWS:
        return ()
    head = table.chunks(min(HEAD_ROWS, table.n_rows), [[0]])
    try:
        first = next(head)[0]
    except InputError:  # a bad cell: reported with its line when the rows are read
        return ()
    finally:
        head.close()  # type: ignore[attr-defined]
    if not np.array_equal(first, np.arange(len(first))):
        return ()
    why = "it holds the row numbers 0, 1, 2, ..., as DataFrame.to_csv(header=False) writes it"
    return (Index(0, why, "to read it as data, add a header row naming the columns", True),)


CSV = table_reader(open_csv)
TSV = table_reader(open_tsv)
