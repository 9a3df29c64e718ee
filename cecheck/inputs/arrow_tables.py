"""What the Parquet and Arrow readers share: a stream of pyarrow record batches as a Table.

Columns of numbers, and list columns (fixed-size or variable lists of numbers, one row's
logits each, as a Hugging Face dataset stores them), whose values keep their dtype (float16
stays float16). Variable lists take the most common length among the first rows: a row of
another length is read as NaN and recorded in :attr:`Table.ragged` (the engine flags it
``ragged_logits``), unless most of the first rows differ from it, an InputError. pandas'
index columns are
recognised from the file's pandas metadata. pyarrow is imported only by the readers that
call :func:`need_pyarrow`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from cecheck.errors import InputError
from cecheck.inputs.files import reason
from cecheck.inputs.source import HEAD_ROWS, Columns, grouped
from cecheck.inputs.tables import Index, Table

# rows -> the file's record batches in order, each of at most that many rows or of any size
Batches = Callable[[int], Iterator[Any]]


def need_pyarrow(path: str, what: str) -> Any:
    """The pyarrow module, or an InputError saying how to install it to read ``what``."""
    try:
        import pyarrow as pa
    except ImportError:
        raise InputError(
            f"{path} is {what}, which needs pyarrow: pip install 'cecheck[parquet]'"
        ) from None
    return pa


def arrow_table(path: str, schema: Any, n_rows: int, batches: Batches, again: str) -> Table:
    """The Table of a file whose ``schema`` and ``batches`` pyarrow reads.

    ``again``: how to make the file anew, for the message about a corrupt one.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not len(schema):
        raise InputError(f"{path} has no columns: write the logits and labels to it")
    index = _pandas_index(schema)
    lists: dict[int, int] = {}
    for j, fld in enumerate(schema):
        if j in index:  # pandas' index, left out: it may hold anything
            continue
        listed = _is_list(pa, fld.type)
        values = fld.type.value_type if listed else fld.type
        if not (pa.types.is_integer(values) or pa.types.is_floating(values)
                or pa.types.is_boolean(values)):  # fmt: skip
            raise InputError(
                f"{path} column {fld.name!r} holds {fld.type} values, not numbers: "
                "store logits and labels as float or int columns"
            )
        if listed:
            lists[j] = fld.type.list_size if pa.types.is_fixed_size_list(fld.type) else -1

    def read(rows: int) -> Iterator[Any]:
        """The record batches, each cut into pieces of at most ``rows`` rows."""
        try:
            for batch in batches(rows):
                batch.validate(full=True)  # list offsets inside the file, before they are used
                for at in range(0, batch.num_rows, rows):
                    yield batch.slice(at, rows)
        except (pa.ArrowException, OSError, ValueError) as e:
            raise InputError(f"{path} is corrupt ({reason(e)}): {again}") from None

    ragged: dict[int, set[int]] = {}
    for j, width in lists.items():
        if width < 0:  # variable lists: as long as most of the first ones
            lists[j] = _common_length(pc, read(max(1, min(n_rows, HEAD_ROWS))), j, path, schema)
            ragged[j] = set()

    def list_column(values: Any, j: int, first_row: int) -> np.ndarray:
        width = lists[j]
        lengths = pc.list_value_length(values).fill_null(width).to_numpy()
        other = lengths != width
        if not values.null_count and not other.any():
            return column(pa, values.flatten()).reshape(-1, width)
        kept = values.is_valid().to_numpy(zero_copy_only=False) & ~other
        if other.any():  # a row of another length: NaN, flagged ragged_logits
            ragged[j].update((first_row + np.flatnonzero(other)).tolist())
            values = values.filter(pa.array(kept))
        flat = column(pa, values.flatten()).reshape(-1, width)  # the null rows left out
        out = np.full((len(kept), width), np.nan, flat.dtype if flat.dtype.kind == "f" else "f8")
        out[kept] = flat  # a null row: NaN
        return out

    def blocks(rows: int) -> Iterator[Columns]:
        start = 0
        for batch in read(rows):
            yield [list_column(c, j, start) if j in lists else column(pa, c)
                   for j, c in enumerate(batch.columns)]  # fmt: skip
            start += batch.num_rows

    return Table(
        path,
        tuple(f"column {f.name!r}" for f in schema),
        tuple(_dtype(pa, f.type) for f in schema),
        n_rows,
        lambda rows, groups: grouped(blocks(rows), rows, groups),
        lambda row, j: f"{path} row {row}, column {schema[j].name!r}",
        tuple(index.values()),
        lists,
        ragged,
    )


def _is_list(pa: Any, t: Any) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def _dtype(pa: Any, t: Any) -> np.dtype:
    """The numpy dtype of a column's values (a list column's: of the values in its lists)."""
    dtype: np.dtype = np.dtype((t.value_type if _is_list(pa, t) else t).to_pandas_dtype())
    return dtype


def column(pa: Any, values: Any) -> np.ndarray:
    """A column of numbers as numpy, its dtype kept; a null becomes NaN, as in a CSV."""
    if values.null_count and not pa.types.is_floating(values.type):
        values = values.cast(pa.float64())
    return np.asarray(values.to_numpy(zero_copy_only=False))


def _common_length(pc: Any, batches: Iterator[Any], j: int, path: str, schema: Any) -> int:
    """The most common length of the lists in column ``j`` among the first rows (the first
    batch's or more, up to :data:`HEAD_ROWS`) that are not null (0 if there is none); an
    InputError when fewer than half of them have it."""
    seen: list[np.ndarray] = []
    try:
        for batch in batches:
            seen.append(pc.list_value_length(batch.column(j)).drop_null().to_numpy())
            if sum(map(len, seen)) >= HEAD_ROWS:
                break
    finally:
        batches.close()  # type: ignore[attr-defined]
    lengths = np.concatenate(seen) if seen else np.zeros(0, np.int64)
    if not len(lengths):
        return 0
    values, counts = np.unique(lengths, return_counts=True)
    k = int(np.argmax(counts))  # the smallest of equally common lengths
    if 2 * counts[k] < len(lengths):
        raise InputError(
            f"{path} column {schema[j].name!r} holds lists of {len(values)} different "
            f"lengths in its first {len(lengths)} rows, the most common ({values[k]}) in only "
            f"{counts[k]}: give every row the same number of logits"
        )
    return int(values[k])


def _pandas_index(schema: Any) -> dict[int, Index]:
    """The columns that hold pandas' index, by position.

    ``DataFrame.to_parquet`` (and ``to_feather``) store a RangeIndex as metadata only, and
    any other index as columns named in the file's pandas metadata (``__index_level_0__``
    when unnamed).
    """
    try:
        names = (schema.pandas_metadata or {}).get("index_columns", [])
    except ValueError:  # metadata that is not JSON: not pandas'
        names = []
    why = "named so in the file's pandas metadata, as DataFrame.to_parquet writes the index"
    keep_it = "to read it as data, write the frame with df.reset_index().to_parquet(path)"
    return {
        j: Index(j, why, keep_it, False)
        for j, name in enumerate(schema.names)
        if name in names or re.fullmatch(r"__index_level_\d+__", name)
    }
