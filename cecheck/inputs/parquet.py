"""Parquet files, read by batches with pyarrow; pandas' index columns recognised."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from cecheck.errors import InputError
from cecheck.inputs.files import reason
from cecheck.inputs.source import Columns, grouped
from cecheck.inputs.tables import Index, Table, table_reader


def open_parquet(path: str) -> Table:
    """A Parquet file, read by batches; pyarrow is imported only here and for CSV."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(
            f"{path} is a Parquet file, which needs pyarrow: pip install 'cecheck[parquet]'"
        ) from None
    try:
        pf = pq.ParquetFile(path)
        schema, n_rows = pf.schema_arrow, pf.metadata.num_rows
    except (pa.ArrowException, OSError, ValueError) as e:
        raise InputError(
            f"{path} is not a readable Parquet file ({reason(e)}): write it again"
        ) from None
    index = _parquet_index(schema)
    for j, fld in enumerate(schema):
        if j in index:  # pandas' index, left out: it may hold anything
            continue
        if not (pa.types.is_integer(fld.type) or pa.types.is_floating(fld.type)
                or pa.types.is_boolean(fld.type)):  # fmt: skip
            raise InputError(
                f"{path} column {fld.name!r} holds {fld.type} values, not numbers: "
                "store logits and labels as float or int columns"
            )
    if not len(schema):
        raise InputError(f"{path} has no columns: write the logits and labels to it")

    def column(values: Any) -> np.ndarray:
        if values.null_count and not pa.types.is_floating(values.type):
            values = values.cast(pa.float64())  # a null becomes NaN, as in a CSV
        return np.asarray(values.to_numpy(zero_copy_only=False))

    def blocks(rows: int) -> Iterator[Columns]:
        try:
            for batch in pf.iter_batches(batch_size=rows):
                yield [column(c) for c in batch.columns]
        except (pa.ArrowException, OSError, ValueError) as e:
            raise InputError(
                f"{path} is corrupt ({reason(e)}): write the Parquet file again"
            ) from None

    return Table(
        path,
        tuple(f"column {f.name!r}" for f in schema),
        tuple(np.dtype(f.type.to_pandas_dtype()) for f in schema),
        n_rows,
        lambda rows, groups: grouped(blocks(rows), rows, groups),
        lambda row, j: f"{path} row {row}, column {schema[j].name!r}",
        tuple(index.values()),
    )


def _parquet_index(schema: Any) -> dict[int, Index]:
    """The columns of a Parquet file that hold pandas' index, by position.

    ``DataFrame.to_parquet`` stores a RangeIndex as metadata only, and any other index as
    columns named in the file's pandas metadata (``__index_level_0__`` when unnamed).
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


PARQUET = table_reader(open_parquet)
