"""CSV/TSV text read by pyarrow: windows of text, each parsed on every core.

The file is mapped, and read in windows of about :data:`WINDOW_BYTES`, cut at line ends,
which pyarrow parses in blocks of :data:`BLOCK_BYTES` on every core (its streaming reader is
single-threaded), so memory is bounded by the window and chunk sizes, not by the file. Each
window is a view of the mapped file (not a copy), read first without pandas' missing values
(faster) and again with them only where that fails, and parsed on a thread while the caller
uses the rows of the window before. A first pass counts the rows: in a plain file, its line
ends (in C, one pass over the bytes); in any other, pyarrow splits the cells.
pyarrow takes what it reads exactly as pandas would: rows of one length, every cell a
decimal number (correctly rounded, as Python's ``float()``) or one of pandas' missing values
(NaN). Anything else goes to pandas (:mod:`cecheck.inputs.csv_pandas`), whose values and
errors are the reference: the whole file, when the first pass finds rows of another length
or lines pandas skips; or the rest of it, from the first batch holding a cell pyarrow cannot
convert or converts where pandas would not ("NAN", "+nan").
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from cecheck.inputs.source import Columns

T = TypeVar("T")
R = TypeVar("R")
WINDOW_BYTES = 16 << 20  # the text read at once, parsed on every core...
BLOCK_BYTES = 1 << 20  # ... a block on each
COUNTERS = 2  # the threads that count the rows of a plain file
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
        self.plain = False  # counted by plain_rows: no quote in it, read without quoting

    def _read(self, text: memoryview, types: dict[int, Any], skip: int, nulls: bool) -> Any:
        """One window of text as a pyarrow table of the columns ``types`` names (column ->
        pyarrow type), read by pyarrow's multi-threaded reader in blocks of
        :data:`BLOCK_BYTES`; with pandas' missing values (``nulls``: :data:`NULL_VALUES`) or
        none, which reads a little faster."""
        import pyarrow.csv as pacsv

        keys = self.keys
        window = text[:]  # a view of its own: released once pyarrow lets go of it
        try:
            return pacsv.read_csv(
                self.pa.py_buffer(window),
                read_options=pacsv.ReadOptions(
                    column_names=keys, skip_rows=skip, block_size=BLOCK_BYTES
                ),
                # no quote in a plain file: its cells are the same split without quoting,
                # which pyarrow's parser does faster
                parse_options=pacsv.ParseOptions(
                    delimiter=self.sep, quote_char=False if self.plain else '"'
                ),
                convert_options=pacsv.ConvertOptions(
                    include_columns=[keys[j] for j in types],
                    column_types={keys[j]: t for j, t in types.items()},
                    null_values=list(NULL_VALUES) if nulls else [],
                    quoted_strings_can_be_null=True,
                ),
            )
        finally:
            _let_go(window)

    def _batches(self, types: dict[int, Any]) -> Generator[Any, None, None]:
        """The record batches of the columns ``types`` names: the text in windows of about
        :data:`WINDOW_BYTES` cut at line ends, each read by pyarrow's multi-threaded reader
        (its streaming reader is single-threaded, and keeps the text it read: memory grew
        with the file). A line end always ends a row here, as it does for pyarrow's own cuts
        into blocks."""
        skip = self.skip
        for text in _windows(self.path, WINDOW_BYTES):
            yield from self._read(text, types, skip, True).to_batches()
            skip = 0

    def n_rows(self) -> int | None:
        """The data rows, or None where pandas must read the file: a row of another length,
        a line pandas skips (only spaces, in a file of one column), or text pyarrow cannot
        split. A plain file is counted by its line ends (:func:`plain_rows`); any other has
        its cells split, not converted: about a third of the time of reading the numbers."""
        plain = plain_rows(self.path, self.sep, self.skip)
        if plain is not None:
            self.plain = True
            return plain
        if _odd_quotes(self.path):  # a quote left open: pyarrow ends it at the end of the
            return None  # file, pandas says so (pandas' error is the one to give)
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
        the record batches come; a None, and no more, at the first batch pandas must read.
        Past the first window, each is read on a thread while the blocks of the one before
        are used (pyarrow's reader releases the GIL): reading and computing overlap."""
        windows = _windows(self.path, WINDOW_BYTES)
        skips = itertools.chain([self.skip], itertools.repeat(0))
        read = _read_ahead(
            zip(windows, skips, strict=False), lambda w: self._window_blocks(w[0], used, w[1])
        )
        try:
            for blocks in read:
                for block in blocks:
                    yield block
                    if block is None:
                        return
        except OSError:
            yield None
        finally:
            read.close()
            windows.close()

    def _window_blocks(
        self, text: memoryview, used: Sequence[int], skip: int
    ) -> list[Columns | None]:
        """The blocks of one window of text, read first without missing values: a window
        without one (no cell pyarrow refuses, no NaN) is then read as with them, since each
        of :data:`NULL_VALUES` is a cell pyarrow refuses or reads as NaN. Any other window
        is read again with them; a None in the place of its first batch pandas must read."""
        pa = self.pa
        types = dict.fromkeys(used, pa.float64())
        with contextlib.suppress(pa.ArrowException):
            blocks = self._converted(self._read(text, types, skip, False), used)
            if None not in blocks:
                return blocks
        try:
            return self._converted(self._read(text, types, skip, True), used)
        except pa.ArrowException:
            return [None]

    def _converted(self, table: Any, used: Sequence[int]) -> list[Columns | None]:
        """The record batches of ``table`` as blocks, up to the first with a NaN cell that is
        not a missing value ("NAN", "+nan": pandas reads it), given as a None."""
        blocks: list[Columns | None] = []
        for batch in table.to_batches():
            block: Columns = [np.broadcast_to(np.nan, batch.num_rows)] * len(self.keys)
            for values, j in zip(batch.columns, used, strict=True):
                block[j] = _float64(values)
                # NaN cells are counted only where there is one (the minimum is NaN then):
                # a column without is looked at once, without an array of flags
                if np.isnan(np.min(block[j], initial=np.inf)) and (
                    np.count_nonzero(np.isnan(block[j])) > values.null_count
                ):
                    blocks.append(None)
                    return blocks
            blocks.append(block)
        return blocks


def plain_rows(path: str, sep: str, skip: int) -> int | None:
    """The rows of a plain file, counted from its line ends; None for any other file.

    Plain: past the ``skip`` header lines (without a quote, which may open a cell that never
    closes: pandas' error), lines that end in ``\\n`` alone, with no quote,
    no space, no tab but the separator, no other control character, and no blank line (nor,
    in a TSV file, a line that starts with a tab). Each line of it is then a row for pandas
    and pyarrow alike; a row of another length is found as it is parsed (pyarrow refuses it,
    and pandas reads on from there, as it reads such rows). Bytes are classified, not cells
    split (in C, :func:`cecheck._csvtext.plain_lines`, where it is built): many times faster
    than counting with pyarrow. The file is mapped, not copied, and its windows are counted
    on :data:`COUNTERS` threads (the C counter releases the GIL), each window's pages given
    back once counted, in order.
    """
    text = _Mapped(path)
    pool = ThreadPoolExecutor(COUNTERS, thread_name_prefix="cecheck-csv-count")
    try:
        at = 0
        for _ in range(skip):
            end = text.map.find(b"\n", at)
            if end < 0 or text.map.find(b"\r", at, end) >= 0:
                return None  # another line end
            if text.map.find(b'"', at, end) >= 0:
                return None  # a quote: it may be left open, and the rows with it
            at = end + 1
        n = len(text.map)

        def count(i: int) -> int:
            """The line ends of the window at ``i``, or -1 if it is not plain."""
            before = text.map[i - 1] if i > at else ord("\n")  # as if a line had just ended
            with memoryview(text.map) as view:
                return _plain_lines(view[i : i + WINDOW_BYTES], sep == "\t", before)[0]

        lines = 0
        for i, ends in zip(
            range(at, n, WINDOW_BYTES), pool.map(count, range(at, n, WINDOW_BYTES)), strict=True
        ):
            if ends < 0:
                return None
            lines += ends
            text.release(min(i + WINDOW_BYTES, n))
        return lines + (n > at and text.map[n - 1] != ord("\n"))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        text.close()


def plain_lines(text: Any, tsv: bool, last: int) -> tuple[int, int]:
    """The line ends in the bytes ``text`` and its last byte; -1 line ends if it is not plain
    (see :func:`plain_rows`). ``last``: the byte before ``text`` (``\\n`` at a line start).
    The same as ``cecheck._csvtext.plain_lines`` (used where it is built), in numpy."""
    w = np.frombuffer(text, dtype=np.uint8)
    if not len(w):
        return 0, last
    ends = w == ord("\n")
    n = int(np.count_nonzero(ends))
    # below '#': control characters, space, '!' and '"': only line ends (and tabs)
    tabs = np.count_nonzero(w == ord("\t")) if tsv else 0
    if np.count_nonzero(w < ord("#")) != n + tabs:
        return -1, last
    # a line that starts with a line end (or, in a TSV file, a tab) is blank to pandas,
    # or may be
    starts_blank = ends[1:] | (w[1:] == ord("\t")) if tsv else ends[1:]
    first_blank = w[0] == ord("\n") or (tsv and w[0] == ord("\t"))
    if (last == ord("\n") and first_blank) or np.count_nonzero(ends[:-1] & starts_blank):
        return -1, last
    return n, int(w[-1])


try:
    from cecheck._csvtext import plain_lines as _plain_lines
except ImportError:  # not built (no C compiler at install): numpy
    _plain_lines = plain_lines


def _odd_quotes(path: str) -> bool:
    """Whether the file holds an odd number of double quotes (a quoted cell left open)."""
    text = _Mapped(path)
    try:
        return bool(np.count_nonzero(np.frombuffer(text.map, dtype=np.uint8) == ord('"')) % 2)
    finally:
        text.close()


class _Mapped:
    """A file mapped into memory (read-only), its pages given back as they are read, so that
    the memory a read holds stays about a window, whatever the size of the file."""

    def __init__(self, path: str) -> None:
        with open(path, "rb") as f:
            empty = os.fstat(f.fileno()).st_size == 0  # an empty file cannot be mapped
            self.map = b"" if empty else mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.released = 0

    def close(self) -> None:
        """Unmapped now, and the file closed (when an error left a view of it behind, when
        that view goes)."""
        if isinstance(self.map, mmap.mmap):
            with contextlib.suppress(BufferError):
                self.map.close()

    def release(self, end: int) -> None:
        """The pages before ``end`` are read: the system may drop them."""
        end -= end % mmap.PAGESIZE
        if end > self.released and isinstance(self.map, mmap.mmap) and _DONTNEED is not None:
            self.map.madvise(_DONTNEED, self.released, end - self.released)
            self.released = end


_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)  # not on every system


def _windows(path: str, size: int) -> Generator[memoryview, None, None]:
    """The bytes of a file in windows that each end at a line end (the last at the end of the
    file): about :data:`BLOCK_BYTES` first (the first rows are read alone, at open, for
    inference), then twice as many each time, up to about ``size``. Each window is a view of
    the mapped file, not a copy: read it before asking for the one after the next (its pages
    are then given back)."""
    text = _Mapped(path)
    n = len(text.map)
    at = read = 0
    want = min(size, BLOCK_BYTES)
    try:
        with memoryview(text.map) as view:
            while read < n:
                read = min(n, read + want)
                end = text.map.rfind(b"\n", at, read)  # then a "\r" after it, if any
                cut = max(end, text.map.rfind(b"\r", max(at, end + 1), read)) + 1
                if cut > at:
                    yield view[at:cut]
                    text.release(at)  # the windows before this one: read
                    at = cut
                want = min(size, 2 * want)
            if at < n:
                yield view[at:n]
    finally:
        text.close()


def _let_go(window: memoryview) -> None:
    """Release a view of the mapped file once pyarrow has let go of it: its threads drop
    their last reference to the text they read a moment after ``read_csv`` returns (a few
    milliseconds at most), and the file cannot be unmapped and closed while a view of it is
    held. Past a second, it is left to close when pyarrow lets go."""
    deadline = time.monotonic() + 1
    while True:
        try:
            window.release()
            return
        except BufferError:
            if time.monotonic() > deadline:
                return
            time.sleep(1e-4)


def _read_ahead(items: Iterator[T], read: Callable[[T], R]) -> Generator[R, None, None]:
    """``read(item)`` of each item, in order: the first at once (a look at the first rows
    reads no more), then each on a thread while the one before it is used, so that ``read``
    (which releases the GIL) overlaps with the caller. The items are asked for one ahead."""
    items = iter(items)
    for item in itertools.islice(items, 1):
        yield read(item)
    pool = ThreadPoolExecutor(1, thread_name_prefix="cecheck-csv")
    try:
        ahead = None
        for item in items:
            future = pool.submit(read, item)
            if ahead is not None:
                yield ahead.result()
            ahead = future
        if ahead is not None:
            yield ahead.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
