"""Parquet files, read by batches with pyarrow; list columns and pandas' index recognised."""

from __future__ import annotations

from cecheck.errors import InputError
from cecheck.inputs.arrow_tables import arrow_table, need_pyarrow
from cecheck.inputs.files import reason
from cecheck.inputs.tables import Table, table_reader


def open_parquet(path: str) -> Table:
    """A Parquet file, read by batches; pyarrow is imported only here and for CSV/Arrow."""
    pa = need_pyarrow(path, "a Parquet file")
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        schema, n_rows = pf.schema_arrow, pf.metadata.num_rows
    except (pa.ArrowException, OSError, ValueError) as e:
        raise InputError(
            f"{path} is not a readable Parquet file ({reason(e)}): write it again"
        ) from None
    return arrow_table(
        path,
        schema,
        n_rows,
        lambda rows: pf.iter_batches(batch_size=rows),
        "write the Parquet file again",
    )


PARQUET = table_reader(open_parquet)
