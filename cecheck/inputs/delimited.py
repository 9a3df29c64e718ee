"""CSV and TSV files, read by pyarrow's streaming CSV reader.

pyarrow parses blocks of :data:`BLOCK_BYTES` of text on every core and hands over record
batches, so memory is bounded by the block and chunk sizes, not the file. Every cell reads
as float64, correctly rounded (as Python's ``float()``); a cell among :data:`NULL_VALUES`
reads as NaN. The row count is taken by a first pass that splits the text into cells but
converts none. The first record decides whether the file has a header: it has one unless
every cell of it is a number or empty.
"""

from __future__ import annotations

import collections
import csv
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from cecheck.errors import InputError
from cecheck.inputs.files import reason
from cecheck.inputs.source import HEAD_ROWS, Columns, grouped
from cecheck.inputs.tables import Index, Table, table_reader

BLOCK_BYTES = 1 << 20  # the text pyarrow parses at once, on one core
# The cells that read as a missing value (NaN): pandas' defaults, which cecheck used before.
NULL_VALUES = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
               "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan",
               "null")  # fmt: skip
# pandas' name for a column with an empty header ("Unnamed: 0"; "Unnamed: 0.1" if repeated)
_UNNAMED = re.compile(r"Unnamed: \d+(\.\d+)*")
# the fewest rows whose first column holding 0, 1, 2, ... marks a headerless index
INDEX_MIN_ROWS = 3
# how pyarrow says which cell is not a number
_NOT_A_NUMBER = re.compile(r"In CSV column #(\d+): CSV conversion error to double: "
                           r"invalid value '(.*)'$", re.S)  # fmt: skip


def open_csv(path: str) -> Table:
    return _open(path, ",")


def open_tsv(path: str) -> Table:
    return _open(path, "\t")


def _open(path: str, sep: str) -> Table:
    """A CSV/TSV file: every cell a float64, with or without a header row."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError:
        raise InputError(
            f"{path} is a CSV/TSV file, which cecheck reads with pyarrow: pip install pyarrow"
        ) from None
    first = _first_record(path, sep)
    header = not all(_is_number(c) for c in first)
    names = _pandas_names(first) if header else None
    if names is not None:
        columns = tuple(f"column {c!r}" for c in names)
    else:
        columns = tuple(f"column {j + 1}" for j in range(len(first)))
    keys = [f"f{j}" for j in range(len(columns))]
    first_line = 2 if header else 1

    def batches(types: dict[int, Any]) -> Iterator[Any]:
        """The record batches of the columns ``types`` names (column -> pyarrow type)."""
        wrong_width: list[Any] = []

        def on_wrong_width(row: Any) -> str:  # pyarrow's threads call it: append is atomic
            wrong_width.append(row)
            return "error"

        convert = pacsv.ConvertOptions(
            include_columns=[keys[j] for j in types],
            column_types={keys[j]: t for j, t in types.items()},
            null_values=list(NULL_VALUES),
            quoted_strings_can_be_null=True,
        )
        try:
            with pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(
                    column_names=keys, skip_rows=int(header), block_size=BLOCK_BYTES
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=sep, invalid_row_handler=on_wrong_width
                ),
                convert_options=convert,
            ) as reader:
                yield from reader
        except (pa.ArrowException, OSError) as e:
            raise problem(e, wrong_width) from None

    def problem(error: Exception, wrong_width: list[Any]) -> InputError:
        """The InputError of a pyarrow error, naming the line and column where it can."""
        if wrong_width and header and wrong_width[0].actual_columns > len(keys):
            return InputError(f"{path} has a row with more cells than the header: fix it")
        text = reason(error)
        if "UTF8" in text:
            return InputError(f"{path} is not UTF-8 text: export it as a UTF-8 CSV")
        match = _NOT_A_NUMBER.match(text)
        if match is not None:
            j, cell = int(match[1]), match[2]
            row = row_of(j, cell)
            if row is not None:
                return not_a_number(row, j, cell)
        return InputError(f"{path} cannot be parsed ({text}): fix the file")

    def text(j: int) -> Iterator[tuple[int, Any]]:
        """Column ``j`` read as text: (its first row, its cells) of each batch."""
        start = 0
        for batch in batches({j: pa.string()}):
            yield start, batch.column(0)
            start += batch.num_rows

    def row_of(j: int, cell: str) -> int | None:
        """The first row of column ``j`` that holds ``cell``."""
        import pyarrow.compute as pc

        for start, values in text(j):
            at = pc.index(values, cell).as_py()
            if at >= 0:
                return start + int(at)
        return None

    def cell_at(j: int, row: int) -> str:
        for start, values in text(j):
            if row < start + len(values):
                return str(values[row - start].as_py())
        raise AssertionError(f"{path} has fewer than {row + 1} rows")

    def not_a_number(row: int, j: int, cell: str) -> InputError:
        return InputError(
            f"{path} line {first_line + row}, {columns[j]}: {cell!r} is not a number: "
            "fix or remove that cell"
        )

    def blocks(used: Sequence[int]) -> Iterator[Columns]:
        """Blocks of rows as record batches hold them, NaN in the place of unused columns."""
        start = 0
        for batch in batches(dict.fromkeys(used, pa.float64())):
            block = [np.broadcast_to(np.nan, batch.num_rows)] * len(keys)
            for values, j in zip(batch.columns, used, strict=True):
                block[j] = values.to_numpy(zero_copy_only=False)
                if np.count_nonzero(np.isnan(block[j])) > values.null_count:
                    # pyarrow reads "NAN", "+nan"... as NaN; cecheck refuses them, as pandas did
                    row = start + _first_nan(values)
                    raise not_a_number(row, j, cell_at(j, row))
            start += batch.num_rows
            yield block

    def chunks(rows: int, groups: Sequence[Sequence[int]]) -> Iterator[list[np.ndarray]]:
        return grouped(blocks(sorted({j for g in groups for j in g})), rows, groups)

    n_rows = sum(b.num_rows for b in batches({0: pa.binary()}))  # split into cells, no more
    table = Table(
        path,
        columns,
        (np.dtype(np.float64),) * len(columns),
        n_rows,
        chunks,
        lambda row, j: f"{path} line {row + first_line}, {columns[j]}",
    )
    return replace(table, index=_csv_index(table, names))


def _first_nan(values: Any) -> int:
    import pyarrow.compute as pc

    return int(pc.index(pc.is_nan(values), True).as_py())


def _first_record(path: str, sep: str) -> list[str]:
    """The cells of the first record that is not a blank line."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            for record in csv.reader(f, delimiter=sep):
                if record:
                    return record
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
