"""Tables (CSV/TSV, Parquet, Arrow): named columns, the label column, pandas' index left out.

A format module opens its file as a :class:`Table`; :func:`table_reader` makes the
registry's :class:`~cecheck.inputs.files.Reader` of it: a table of logits (or of labels), or
one table holding both, its label column chosen by name or position. The logits are the
other columns, or one column (a list column holds a row's C logits, as a Hugging Face
dataset stores them): the one named by ``--logits-column``, else the table's only list column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from cecheck.errors import InputError
from cecheck.inputs.files import Choice, Reader
from cecheck.inputs.source import PairReader, Pairs, Part

# (rows, groups of column indices) -> chunks of exactly that many rows (the last fewer), one
# array per group: (n,) for a group of one column, (n, k) for k columns or a list column of k
# values per row (always a group by itself); see source.grouped
TableChunks = Callable[[int, Sequence[Sequence[int]]], Iterator[list[np.ndarray]]]


@dataclass(frozen=True)
class Index:
    """A table column that holds pandas' index, as ``to_csv``/``to_parquet`` write it."""

    column: int
    why: str  # how it was recognised
    keep_it: str  # how to have it read as data instead
    row_numbers: bool  # recognised by holding 0, 1, 2, ...: checked on every row as read


@dataclass(frozen=True)
class Table:
    """A CSV, Parquet or Arrow file: named numeric columns, read in chunks of rows."""

    name: str
    columns: tuple[str, ...]  # as shown in messages: "column 'x3'" or "column 3"
    dtypes: tuple[np.dtype, ...]
    n_rows: int
    chunks: TableChunks
    place: Callable[[int, int], str]  # (row, column index) -> "line 7, column 'x3'"
    index: tuple[Index, ...] = ()  # the columns that hold pandas' index
    lists: Mapping[int, int] = field(default_factory=dict)  # list column -> values per row
    # variable list column -> its rows of another length (read as NaN), added as read
    ragged: Mapping[int, set[int]] = field(default_factory=dict)


def table_reader(open_table: Callable[[str], Table]) -> Reader:
    """The registry entry of a table format, from the function that opens its files."""

    def single(path: str, choice: Choice, which: str) -> Part:
        table = open_table(path)
        chosen = _logits_index(table, choice.logits_column, None) if which == "logits" else None
        table, columns = _without_index(table, keep=chosen)
        return _table_part(table, columns if chosen is None else [chosen])

    def both(path: str, choice: Choice) -> tuple[Part, Part, PairReader]:
        table = open_table(path)
        j = _label_index(table, choice.label_column)
        chosen = _logits_index(table, choice.logits_column, j)
        table, columns = _without_index(table, keep=j)
        others = [i for i in columns if i != j] if chosen is None else [chosen]
        if not others:
            raise InputError(f"{path} holds only the label column: add the logit columns")
        lg, lb = _table_part(table, others), _table_part(table, [j])

        def pairs(rows: int, _nd: int) -> Pairs:
            for chunk in table.chunks(rows, [others, [j]]):
                yield chunk[0], chunk[1]

        return lg, lb, pairs

    return Reader(single=single, both=both)


def _label_index(table: Table, label_column: str | int) -> int:
    """The position of the label column in a one-file table."""
    if isinstance(label_column, int):
        if -len(table.columns) <= label_column < len(table.columns):
            return label_column % len(table.columns)
        raise InputError(f"{table.name} has no column {label_column}: check the label column")
    wanted = f"column {label_column!r}"
    if wanted in table.columns:
        return table.columns.index(wanted)
    if not table.columns[0].startswith("column '"):
        raise InputError(
            f"{table.name} has no header row, so the label column {label_column!r} cannot be "
            f"found: add a header row, give its 0-based position (--label-column "
            f"{len(table.columns) - 1} for the last column) or give the labels as a second file"
        )
    raise InputError(
        f"{table.name} has no column {label_column!r} (its columns are "
        f"{_names(table, range(len(table.columns)))}): choose the label column with "
        "--label-column"
    )


def _logits_index(table: Table, chosen: str | None, label: int | None) -> int | None:
    """The logits column: the one named ``chosen``, else the only list column that is not
    the ``label`` column; None when there is no list column (the logits are the others)."""
    if chosen is not None:
        wanted = f"column {chosen!r}"
        if wanted not in table.columns or table.columns.index(wanted) == label:
            raise InputError(
                f"{table.name} has no column {chosen!r} besides the label column (its columns "
                f"are {_names(table, range(len(table.columns)))}): choose the logits column "
                "with --logits-column"
            )
        return table.columns.index(wanted)
    lists = [i for i in table.lists if i != label]
    if len(lists) > 1:
        raise InputError(
            f"{table.name} holds {len(lists)} list columns ({_names(table, lists)}): choose "
            "the one that holds the logits with --logits-column"
        )
    return lists[0] if lists else None


def _names(table: Table, idx: Sequence[int] | range) -> str:
    return ", ".join(table.columns[i][len("column ") :] for i in idx)


def _table_part(table: Table, idx: list[int]) -> Part:
    """Some columns of a table as one stored array: (N,) for one column, (N, k) for k
    columns or for one list column of k values per row."""
    listed = [i for i in idx if i in table.lists]
    if listed and len(idx) > 1:
        raise InputError(
            f"{table.name} holds the list column {_names(table, listed[:1])} and other "
            "columns: choose the logits column with --logits-column, or write only it"
        )
    if listed:
        shape: tuple[int, ...] = (table.n_rows, table.lists[listed[0]])
    else:
        shape = (table.n_rows,) if len(idx) == 1 else (table.n_rows, len(idx))
    dtype = np.result_type(*(table.dtypes[i] for i in idx))
    return Part(
        table.name,
        shape,
        dtype,
        lambda rows, _nd: table.chunks(rows, [idx]),
        tuple(_index_note(table, x) for x in table.index),
        table.ragged.get(listed[0]) if listed else None,
    )


# ---------------------------------------------------------------- pandas' index


def _without_index(table: Table, keep: int | None) -> tuple[Table, list[int]]:
    """The table without pandas' index columns, and the positions of the columns left.

    ``keep``: the label column, never left out; nor is the only column of a table. Where a
    column was recognised by its row numbers (decided on the first rows), the chunks of the
    table returned check every row as it is read: a row that breaks them is an InputError.
    """
    index = tuple(x for x in table.index if x.column != keep)
    left = [i for i in range(len(table.columns)) if i not in {x.column for x in index}]
    if not left:
        index, left = (), list(range(len(table.columns)))
    checked = [x.column for x in index if x.row_numbers]
    chunks = table.chunks if not checked else _row_numbers_checked(table, checked)
    return replace(table, index=index, chunks=chunks), left


def _index_note(table: Table, x: Index) -> str:
    return (
        f"{table.name}: {table.columns[x.column]} is pandas' index ({x.why}), not data, so "
        f"it was left out; {x.keep_it}"
    )


def _row_numbers_checked(table: Table, checked: list[int]) -> TableChunks:
    """``table.chunks`` that also reads the ``checked`` columns and checks that they hold
    the row numbers, raising an InputError naming the first row that does not."""

    def chunks(rows: int, groups: Sequence[Sequence[int]]) -> Iterator[list[np.ndarray]]:
        start = 0
        for chunk in table.chunks(rows, [*groups, *([c] for c in checked)]):
            for c, values in zip(checked, chunk[len(groups) :], strict=True):
                wrong = values != np.arange(start, start + len(values))
                if wrong.any():
                    i = int(np.argmax(wrong))
                    raise InputError(
                        f"{table.place(start + i, c)}: {values[i]:g} breaks the row numbers "
                        "0, 1, 2, ... of the first rows, for which cecheck read this column "
                        "as pandas' index and left it out: add a header row naming the "
                        "columns (a named column is read as data), or fix the file"
                    )
            start += len(chunk[-1])
            yield chunk[: len(groups)]

    return chunks
