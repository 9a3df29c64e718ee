"""Arrow IPC files (``.arrow``: the file or the stream format) and Feather files
(``.feather``: version 2 is the Arrow IPC file format; version 1 as pyarrow reads it).

The file is memory-mapped and read record batch by record batch, each cut into pieces of
at most the rows asked for; the pages read are dropped from this process's resident memory
as it goes, as for ``.npy``, so memory does not grow with the file. A compressed file's
batches are decompressed one at a time. Columns as in Parquet (:mod:`arrow_tables`).
"""

from __future__ import annotations

import contextlib
import mmap
import warnings
from collections.abc import Iterator
from typing import Any

from cecheck.errors import InputError
from cecheck.inputs.arrow_tables import arrow_table, need_pyarrow
from cecheck.inputs.files import reason
from cecheck.inputs.tables import Table, table_reader

_FEATHER_V1 = b"FEA1"


def open_arrow(path: str) -> Table:
    """An Arrow IPC file or stream, or a Feather file, read by record batches."""
    what = "a Feather file" if path.lower().endswith(".feather") else "an Arrow file"
    pa = need_pyarrow(path, what)
    import pyarrow.ipc as ipc

    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    again = f"write the {what.split()[-2]} file again"
    try:
        if mapped[:4] == _FEATHER_V1:
            return _feather_v1(pa, path, again)
        data = pa.py_buffer(mapped)
        try:
            reader = ipc.open_file(data)
        except pa.ArrowInvalid:  # no footer: the stream format
            reader = None
        if reader is not None:
            schema = reader.schema
            n_rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))

            def batches(_rows: int) -> Iterator[Any]:
                for i in range(reader.num_record_batches):
                    yield reader.get_batch(i)
                    _release(mapped)

        else:
            schema = ipc.open_stream(data).schema
            n_rows = sum(b.num_rows for b in ipc.open_stream(data))

            def batches(_rows: int) -> Iterator[Any]:
                for batch in ipc.open_stream(data):
                    yield batch
                    _release(mapped)

    except (pa.ArrowException, OSError, ValueError) as e:
        raise InputError(
            f"{path} is not a readable {what.split()[-2]} file ({reason(e)}): {again}"
        ) from None
    _release(mapped)
    return arrow_table(path, schema, n_rows, batches, again)


def _feather_v1(pa: Any, path: str, again: str) -> Table:
    """A Feather version 1 file, which pyarrow reads whole (memory-mapped, uncompressed)."""
    import pyarrow.feather as feather

    with warnings.catch_warnings():  # pyarrow deprecates version 1 (for its writer, too)
        warnings.simplefilter("ignore", DeprecationWarning)
        table = feather.read_table(path, memory_map=True)
    return arrow_table(path, table.schema, table.num_rows, lambda _rows: iter(table.to_batches()),
                       again)  # fmt: skip


def _release(mapped: mmap.mmap) -> None:
    """Drop the map's pages from resident memory; a page used again is read again."""
    if hasattr(mmap, "MADV_DONTNEED"):
        with contextlib.suppress(OSError, ValueError):
            mapped.madvise(mmap.MADV_DONTNEED)


ARROW = table_reader(open_arrow)
