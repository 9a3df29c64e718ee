"""CSV/TSV text read by pyarrow: windows of text, each parsed on every core.

The text is read in windows of about :data:`WINDOW_BYTES`, cut at line ends, which pyarrow
parses in blocks of :data:`BLOCK_BYTES` on every core (its streaming reader is
single-threaded), so memory is bounded by the window and chunk sizes, not by the file; a
first pass counts the rows, splitting cells without converting them.
pyarrow takes what it reads exactly as pandas would: rows of one length, every cell a
decimal number (correctly rounded, as Python's ``float()``) or one of pandas' missing values
(NaN). Anything else goes to pandas (:mod:`cecheck.inputs.csv_pandas`), whose values and
errors are the reference: the whole file, when the first pass finds rows of another length
or lines pandas skips; or the rest of it, from the first batch holding a cell pyarrow cannot
convert or converts where pandas would not ("NAN", "+nan").
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from typing import Any

import numpy as np

from cecheck.inputs.source import Columns

WINDOW_BYTES = 16 << 20  # the text read at once, parsed on every core...
BLOCK_BYTES = 1 << 20  # ... a block on each
# The cells that read as a missing value (NaN): pandas' defaults (pandas.read_csv's na_values).
NULL_VALUES = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
               "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan",
               "null")  # fmt: skip


class ArrowCsv:
    """One CSV/TSV file as pyarrow reads it; ``skip``: the header row, if there is one."""

    def __init__(self, path: str, sep: str, skip: int, n_columns: int) -> None:
        import pyarrow as pa  # only here: callers check that it is installed

        self.pa, self.path, self.sep, self.skip = pa, path, sep, skip
        self.keys = [f"f{j}" for j in range(n_columns)]

    def _options(self, types: dict[int, Any], skip: int, block: int) -> dict[str, Any]:
        """pyarrow's options for the columns ``types`` names (column -> pyarrow type)."""
        import pyarrow.csv as pacsv

        return {
            "read_options": pacsv.ReadOptions(
                column_names=self.keys, skip_rows=skip, block_size=block
            ),
            "parse_options": pacsv.ParseOptions(delimiter=self.sep),
            "convert_options": pacsv.ConvertOptions(
                include_columns=[self.keys[j] for j in types],
                column_types={self.keys[j]: t for j, t in types.items()},
                null_values=list(NULL_VALUES),
                quoted_strings_can_be_null=True,
            ),
        }

    def _batches(self, types: dict[int, Any]) -> Generator[Any, None, None]:
        """The record batches of the columns ``types`` names: the text in windows of about
        :data:`WINDOW_BYTES` cut at line ends, each read by pyarrow's multi-threaded reader
        (its streaming reader is single-threaded, and keeps the text it read: memory grew
        with the file). A line end always ends a row here, as it does for pyarrow's own cuts
        into blocks."""
        import pyarrow.csv as pacsv

        skip = self.skip
        for text in _windows(self.path, WINDOW_BYTES):
            options = self._options(types, skip, BLOCK_BYTES)
            yield from pacsv.read_csv(self.pa.py_buffer(text), **options).to_batches()
            skip = 0

    def n_rows(self) -> int | None:
        """The data rows, or None where pandas must read the file: a row of another length,
        a line pandas skips (only spaces, in a file of one column), or text pyarrow cannot
        split. A plain file is counted by its line ends (:func:`plain_rows`); any other has
        its cells split, not converted: about a third of the time of reading the numbers."""
        plain = plain_rows(self.path, self.sep, self.skip)
        if plain is not None:
            return plain
        pa = self.pa
        import pyarrow.compute as pc

        one = len(self.keys) == 1
        n = 0
        try:
            for batch in self._batches({0: pa.string() if one else pa.binary()}):
                if one and pc.any(pc.utf8_is_space(batch.column(0))).as_py():
                    return None
                n += batch.num_rows
        except (pa.ArrowException, OSError):
            return None
        return n

    def blocks(self, used: Sequence[int]) -> Iterator[Columns | None]:
        """Blocks of rows as float64 columns (NaN in the place of columns not ``used``), as
        the record batches come; a None, and no more, at the first batch pandas must read."""
        pa = self.pa
        batches = self._batches(dict.fromkeys(used, pa.float64()))
        try:
            for batch in batches:
                block: Columns = [np.broadcast_to(np.nan, batch.num_rows)] * len(self.keys)
                for values, j in zip(batch.columns, used, strict=True):
                    block[j] = _float64(values)
                    if np.count_nonzero(np.isnan(block[j])) > values.null_count:
                        yield None  # a NaN cell that is not a missing value: "NAN", "+nan"
                        return
                yield block
        except (pa.ArrowException, OSError):
            yield None
        finally:
            batches.close()


def plain_rows(path: str, sep: str, skip: int) -> int | None:
    """The rows of a plain file, counted from its line ends; None for any other file.

    Plain: past the ``skip`` header lines, lines that end in ``\\n`` alone, with no quote,
    no space, no tab but the separator, no other control character, and no blank line (nor,
    in a TSV file, a line that starts with a tab). Each line of it is then a row for pandas
    and pyarrow alike; a row of another length is found as it is parsed (pyarrow refuses it,
    and pandas reads on from there, as it reads such rows). Bytes are compared, not cells
    split: several times faster than counting with pyarrow.
    """
    tsv = sep == "\t"
    blank = b"\n\t" if tsv else b"\n"  # a line that starts so is blank to pandas, or may be
    lines, last = 0, ord("\n")  # as if a line had just ended
    with open(path, "rb") as f:
        for _ in range(skip):
            line = f.readline()
            if not line.endswith(b"\n") or b"\r" in line:
                return None  # another line end
        while chunk := f.read(WINDOW_BYTES):
            a = np.frombuffer(chunk, dtype=np.uint8)
            ends = np.flatnonzero(a == ord("\n"))
            starts = a[ends[ends + 1 < len(a)] + 1]  # the first byte of each line but the last
            # below '#': control characters, space, '!' and '"': only line ends (and tabs)
            low = np.count_nonzero(a < ord("#"))
            if low != len(ends) + (np.count_nonzero(a == ord("\t")) if tsv else 0):
                return None
            if (last == ord("\n") and a[0] in blank) or np.isin(starts, list(blank)).any():
                return None
            lines += len(ends)
            last = int(a[-1])
    return lines + (last != ord("\n"))


def _windows(path: str, size: int) -> Iterator[bytes]:
    """The bytes of a file in windows that each end at a line end (the last at the end of the
    file): about :data:`BLOCK_BYTES` first (the first rows are read alone, at open, for
    inference), then twice as many each time, up to about ``size``."""
    rest, want = b"", min(size, BLOCK_BYTES)
    with open(path, "rb") as f:
        while chunk := f.read(want):
            text = rest + chunk
            cut = max(text.rfind(b"\n"), text.rfind(b"\r")) + 1
            if cut:
                yield text[:cut]
            rest, want = text[cut:], min(size, 2 * want)
    if rest:
        yield rest


def _float64(values: Any) -> np.ndarray:
    """A pyarrow float64 array as numpy, its nulls NaN: read from its buffers (no copy
    without nulls), as pyarrow's own ``to_numpy`` would, but without importing pandas."""
    validity, data = values.buffers()
    n, at = len(values), values.offset
    out = np.frombuffer(data, dtype=np.float64, count=n, offset=at * 8)
    if values.null_count:
        bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
        out = np.where(bits[at : at + n].view(bool), out, np.nan)
    return out
