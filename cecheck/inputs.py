"""The one door through which data enters cecheck: read logits and labels, infer the task.

Readers turn what training code dumped (``.npy``, ``.npz``, ``.csv``/``.tsv``, ``.parquet``;
one file holding both, or two files) into a :class:`Source`: shapes, the inferred task and
label form, warnings, and an iterator over row chunks. Memory stays bounded by the chunk
size: ``.npy`` is memory-mapped, CSV is cut into pieces of text parsed on every core (by a C
parser, or pandas where a piece is not plain decimal numbers; a file that is not plain
numbers: one pandas reader, ``chunksize`` rows at a time),
Parquet is read by batches.
Inference looks only at the first :data:`HEAD_ROWS` rows; a problem in a later chunk raises
from the chunk iterator.

File-level problems raise :class:`~cecheck.errors.InputError` with one sentence naming the
file; row-level problems (NaN logits, labels out of range, class indices that are not whole
numbers, soft labels not summing to 1) pass through for the engine to flag per row. Nothing
is ever unpickled.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import io
import itertools
import math
import mmap
import os
import re
import sys
import warnings
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import ml_dtypes
import numpy as np

from cecheck.errors import InputError

TASKS = ("binary", "multiclass", "multilabel")
LABEL_FORMS = ("index", "onehot", "soft", "multihot", "binary")
FORMATS = (".npy", ".npz", ".csv", ".tsv", ".parquet")
# The class-index label of a row whose label is not a whole number (a fraction, NaN, an
# empty CSV cell): the row is flagged ``invalid_label``. No stored label reads as it (an
# integer label is clipped to +-2^62, out of range but still itself).
INVALID_LABEL = int(np.iinfo(np.int64).min)
HEAD_ROWS = 4096  # rows looked at for inference and warnings: bounded, whatever the file size
HEAD_VALUES = 1 << 20  # ... and about this many logits at most (32 rows of 32,000 classes)
# CSV text one thread parses at once: at most PIECE_BYTES (it bounds memory and keeps every
# core busy), at least MIN_PIECE_BYTES (what a thread is worth), and about one chunk
PIECE_BYTES = 4 << 20
MIN_PIECE_BYTES = 1 << 16
COUNT_SPLIT_BYTES = 8 << 20  # a CSV at least this big has its lines counted on every core

Pairs = Iterator[tuple[np.ndarray, np.ndarray]]
_Columns = list[np.ndarray]  # one block of consecutive rows, as equal-length arrays
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError,
               NotImplementedError)  # fmt: skip
_KINDS = {"c": "complex numbers", "U": "text", "S": "bytes", "M": "dates", "m": "time spans"}


@dataclass(frozen=True)
class Source:
    """Logits and labels, readable in row chunks; what the engine consumes."""

    logits_name: str  # the path as given, or "logits" for an in-memory array
    labels_name: str  # the path as given (same as logits_name for a one-file input)
    logits_shape: tuple[int, ...]  # as stored
    labels_shape: tuple[int, ...]  # as stored
    lead_shape: tuple[int, ...]  # shape of the rows: (N,) or e.g. (B, T) for (B, T, C) logits
    n_classes: int  # C; 1 for binary
    task: str  # one of TASKS
    label_form: str  # one of LABEL_FORMS
    logits_dtype: str  # stored dtype name, e.g. "float32", "int64", "float16"
    warnings: tuple[str, ...]
    _read: Callable[[int], Pairs] = field(repr=False, compare=False)

    @property
    def n_rows(self) -> int:
        """The number of rows (one loss each): the product of ``lead_shape``."""
        return math.prod(self.lead_shape)

    def chunks(self, rows: int) -> Pairs:
        """Consecutive row chunks of at most ``rows`` rows, in order.

        logits: ``(n, C)`` for multiclass/multilabel, ``(n,)`` for binary; float16, float32 or
        float64 as stored (integers cast to float64, other floats such as bfloat16 to float32);
        possibly a read-only view of a memory map. labels: index form -> int64 ``(n,)``;
        onehot/soft/multihot -> float64 ``(n, C)``; binary -> float64 ``(n,)``.
        Raises InputError for a file-level problem found past the first chunk.
        """
        if rows < 1:
            raise ValueError(f"rows must be at least 1, got {rows}")
        return self._read(rows)


@dataclass(frozen=True)
class _Part:
    """One array as stored (the logits or the labels), before the task is known."""

    name: str  # for messages, e.g. "data.npz['logits']"
    shape: tuple[int, ...]
    dtype: np.dtype
    blocks: Callable[[int, int], Iterator[_Columns]]  # (rows, lead ndim) -> [block]
    notes: tuple[str, ...] = ()  # warnings about how it was read


@dataclass(frozen=True)
class _Index:
    """A table column that holds pandas' index, as ``to_csv``/``to_parquet`` write it."""

    column: int
    why: str  # how it was recognised
    keep_it: str  # how to have it read as data instead
    row_numbers: bool  # recognised by holding 0, 1, 2, ...: checked on every row as read


@dataclass(frozen=True)
class _Table:
    """A CSV or Parquet file: named numeric columns, read in chunks of rows."""

    name: str
    columns: tuple[str, ...]  # as shown in messages: "column 'x3'" or "column 3"
    dtypes: tuple[np.dtype, ...]
    n_rows: int
    # (rows, groups of column indices) -> chunks of exactly that many rows (the last fewer),
    # one array per group: (n,) for a group of one column, else (n, k); see _grouped
    chunks: Callable[[int, Sequence[Sequence[int]]], Iterator[list[np.ndarray]]]
    place: Callable[[int, int], str]  # (row, column index) -> "line 7, column 'x3'"
    index: tuple[_Index, ...] = ()  # the columns that hold pandas' index


# ---------------------------------------------------------------- public entry points


def from_arrays(
    logits: Any,
    labels: Any,
    *,
    task: str = "auto",
    logits_name: str = "logits",
    labels_name: str = "labels",
) -> Source:
    """A Source over in-memory arrays, validated like the file readers.

    ``logits`` and ``labels``: numpy arrays, lists, torch tensors or other array-likes, as
    :func:`as_array` reads them.
    """
    lg = _array_part(logits_name, as_array(logits, logits_name), stored=False)
    lb = _array_part(labels_name, as_array(labels, labels_name), stored=False)
    return _finish(lg, lb, _zip_parts(lg, lb), task, (logits_name, labels_name))


def open_inputs(
    logits_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str] | None = None,
    *,
    task: str = "auto",
    label_column: str | int = "label",
    logits_key: str = "logits",
    labels_key: str = "labels",
) -> Source:
    """Open one file holding both logits and labels, or a logits file and a labels file.

    One file: an ``.npz`` with both keys, or a CSV/TSV/Parquet file with a label column
    (``label_column``: a header name, or a 0-based position for a CSV without header); the
    other columns are the logits. Two files: each in any format; CSV/Parquet columns are all
    logits (or all labels: one column per row label, C columns for soft/multihot labels).
    """
    names = (str(logits_path), str(labels_path if labels_path is not None else logits_path))
    if labels_path is None:
        lg, lb, pairs = _open_one(names[0], label_column, logits_key, labels_key)
        return _finish(lg, lb, pairs, task, names)
    lg = _open_single(names[0], logits_key, "--logits-key")
    lb = _open_single(names[1], labels_key, "--labels-key")
    return _finish(lg, lb, _zip_parts(lg, lb), task, names)


# ---------------------------------------------------------------- opening files


def _reason(error: BaseException) -> str:
    """The first line of a library's error message, to quote inside our one sentence."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _open_single(path: str, key: str, option: str) -> _Part:
    ext = _check_file(path)
    if ext == ".npy":
        return _open_npy(path)
    if ext == ".npz":
        return _open_npz(path, [(key, option)])[0]
    table, columns = _without_index(_open_table(path, ext), keep=None)
    return _table_part(table, columns)


def _open_one(
    path: str, label_column: str | int, logits_key: str, labels_key: str
) -> tuple[_Part, _Part, Callable[[int, int], Pairs]]:
    ext = _check_file(path)
    if ext == ".npy":
        raise InputError(f"{path} holds one array, the logits: give the labels as a second file")
    if ext == ".npz":
        lg, lb = _open_npz(path, [(logits_key, "--logits-key"), (labels_key, "--labels-key")])
        return lg, lb, _zip_parts(lg, lb)
    table = _open_table(path, ext)
    j = _label_index(table, label_column)
    table, columns = _without_index(table, keep=j)
    others = [i for i in columns if i != j]
    if not others:
        raise InputError(f"{path} holds only the label column: add the logit columns")
    lg, lb = _table_part(table, others), _table_part(table, [j])

    def pairs(rows: int, _nd: int) -> Pairs:
        for chunk in table.chunks(rows, [others, [j]]):
            yield chunk[0], chunk[1]

    return lg, lb, pairs


def _check_file(path: str) -> str:
    """The file's extension, after checking that it exists, is a supported format, has bytes."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path} does not exist: check the path")
    if not p.is_file():
        raise InputError(f"{path} is not a file: give the path of a data file")
    ext = p.suffix.lower()
    if ext not in FORMATS:
        raise InputError(
            f"{path} has an unsupported extension '{ext}': cecheck reads "
            f"{', '.join(FORMATS)} files, so convert it or rename it to the right extension"
        )
    if p.stat().st_size == 0:
        raise InputError(f"{path} is empty: write the data to it again")
    return ext


def _open_npy(path: str) -> _Part:
    """A memory-mapped .npy: the header is checked first, so no bad array is ever mapped."""
    with open(path, "rb") as f:
        shape, dtype, offset = _npy_header(f, path)
    _check_dtype(path, dtype, stored=True)
    need = offset + math.prod(shape) * dtype.itemsize
    if os.path.getsize(path) < need:
        raise InputError(
            f"{path} is truncated (its header promises {need} bytes, the file has "
            f"{os.path.getsize(path)}): save the array again with numpy.save"
        )
    if math.prod(shape) == 0:
        return _array_part(path, np.zeros(shape, dtype), stored=True)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise InputError(
            f"{path} cannot be read as a .npy file ({_reason(e)}): save it again"
        ) from None
    return _array_part(path, array, stored=True)


def _npy_header(f: Any, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset from a .npy header, read without touching the data."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _fortran, dtype = read(f)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as e:
        raise InputError(
            f"{name} is not a valid .npy file ({_reason(e)}): save the array with numpy.save"
        ) from None
    if any(n < 0 for n in shape):
        raise InputError(f"{name} has a corrupt header (shape {shape}): save it again")
    return tuple(shape), dtype, f.tell()


def _open_npz(path: str, keys: Sequence[tuple[str, str]]) -> list[_Part]:
    """Arrays chosen by key from an .npz.

    Zip members cannot be memory-mapped, so each chosen array is read into memory once;
    for a huge input prefer a .npy file, which is mapped and read chunk by chunk.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            present = [n[: -len(".npy")] for n in zf.namelist() if n.endswith(".npy")]
            parts = []
            for key, option in keys:
                if key not in present:
                    held = ", ".join(repr(k) for k in present) or "no arrays"
                    raise InputError(
                        f"{path} has no array {key!r} (it holds {held}): choose one with {option}"
                    )
                name = f"{path}[{key!r}]"
                parts.append(_array_part(name, _read_member(zf, key, name), stored=True))
            return parts
    except _ZIP_ERRORS as e:
        raise InputError(
            f"{path} is not a readable .npz file, corrupt or truncated ({_reason(e)}): "
            "save the arrays again with numpy.savez"
        ) from None


def _read_member(zf: zipfile.ZipFile, key: str, name: str) -> np.ndarray:
    info = zf.getinfo(key + ".npy")
    with zf.open(info) as f:
        shape, dtype, offset = _npy_header(f, name)
    _check_dtype(name, dtype, stored=True)
    if offset + math.prod(shape) * dtype.itemsize > info.file_size:
        raise InputError(f"{name} is truncated: save the arrays again with numpy.savez")
    with zf.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def as_array(value: Any, name: str = "logits") -> np.ndarray:
    """What a model returns as a numpy array of the same values, or an InputError.

    numpy arrays, lists and other array-likes as :func:`numpy.asarray` reads them; a torch
    tensor detached and moved to the CPU, bfloat16 and the float8 formats as the ml_dtypes
    array of the same bits (their exact values, never rounded through another format).
    torch is never imported here: a tensor can only exist once its module is. A path or
    None is refused with a sentence that says how to open files.
    """
    if value is None or isinstance(value, (str, bytes, os.PathLike)):
        what = "None" if value is None else f"a path ({os.fsdecode(value)})"
        raise InputError(
            f"{name} is {what}, not an array: files are opened by "
            "cecheck.inputs.open_inputs(logits_path, labels_path), whose Source "
            "cecheck.compare takes as its logits"
        )
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return _from_torch(torch, value, name)
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as e:
        raise InputError(
            f"{name} is not a rectangular array of numbers ({_reason(e)}): fix it"
        ) from None


def _from_torch(torch: Any, tensor: Any, name: str) -> np.ndarray:
    """A torch tensor's values as numpy: detached, on the CPU, bit for bit."""
    try:
        t = tensor.detach().cpu().resolve_conj().resolve_neg()
        if t.layout != torch.strided:
            t = t.to_dense()
        same_bits = _TORCH_FLOATS.get(str(t.dtype).removeprefix("torch."))
        if same_bits is None:
            return np.asarray(t.numpy())
        bits, ml_dtype = same_bits  # numpy has no such float: read the bits, then view them
        return t.contiguous().view(getattr(torch, bits)).numpy().view(ml_dtype)
    except (RuntimeError, TypeError, ValueError, NotImplementedError) as e:
        raise InputError(
            f"{name} is a torch tensor cecheck cannot read ({_reason(e)}): pass "
            "tensor.detach().cpu().float().numpy()"
        ) from None


# torch float formats numpy lacks: the integer type of the same width, and the ml_dtypes float
_TORCH_FLOATS = {
    "bfloat16": ("int16", ml_dtypes.bfloat16),
    "float8_e4m3fn": ("uint8", ml_dtypes.float8_e4m3fn),
    "float8_e4m3fnuz": ("uint8", ml_dtypes.float8_e4m3fnuz),
    "float8_e5m2": ("uint8", ml_dtypes.float8_e5m2),
    "float8_e5m2fnuz": ("uint8", ml_dtypes.float8_e5m2fnuz),
}


def _array_part(name: str, array: np.ndarray, *, stored: bool) -> _Part:
    _check_dtype(name, array.dtype, stored=stored)
    return _Part(
        name,
        tuple(array.shape),
        array.dtype,
        lambda rows, nd: ([b] for b in _row_blocks(array, nd, rows)),
    )


def _row_blocks(array: np.ndarray, nd: int, rows: int) -> Iterator[np.ndarray]:
    """Blocks of rows flattened over the first ``nd`` axes in C order, without a full copy."""
    lead = array.shape[:nd]
    n = math.prod(lead)
    flat = None
    if nd == 1:
        flat = array
    elif array.flags.c_contiguous:
        flat = array.reshape((n, *array.shape[nd:]))
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        if flat is not None:
            yield np.asarray(flat[start:stop])
        else:  # e.g. a Fortran-order N-d memmap: gather just these rows
            yield np.asarray(array[np.unravel_index(np.arange(start, stop), lead)])
        _release(array)


def _release(array: np.ndarray) -> None:
    """Drop a memory map's pages from this process's resident memory once a block is used.

    Without it a pass over a 2 GB .npy counts 2 GB resident (the pages stay mapped). The map
    is read-only and shared, so a page touched again is simply read again from the page
    cache: this never changes data, it only bounds memory by the chunk size.
    """
    m = getattr(array, "_mmap", None)
    if m is not None and hasattr(mmap, "MADV_DONTNEED"):
        with contextlib.suppress(OSError, ValueError):
            m.madvise(mmap.MADV_DONTNEED)


def _check_dtype(name: str, dtype: np.dtype, *, stored: bool) -> None:
    """Refuse anything that is not real numbers: objects, text, complex, records."""
    if dtype.hasobject:
        if stored:
            raise InputError(
                f"{name} holds a pickled object array, which cecheck never loads: save the "
                "values with numpy.save(path, array.astype('float32'))"
            )
        raise InputError(f"{name} holds Python objects, not numbers: convert it to floats")
    if dtype.kind in "biuf" or _is_ml_float(dtype):
        return
    what = _KINDS.get(dtype.kind, "records" if dtype.fields else f"values of type {dtype}")
    raise InputError(f"{name} holds {what}, not real numbers: save plain float or int arrays")


def _is_ml_float(dtype: np.dtype) -> bool:
    """True for the ml_dtypes floats (bfloat16, float8...), which numpy calls kind 'V'."""
    if dtype.kind != "V" or dtype.fields is not None:
        return False
    try:
        ml_dtypes.finfo(dtype)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- CSV, TSV and Parquet


def _open_table(path: str, ext: str) -> _Table:
    if ext == ".parquet":
        return _open_parquet(path)
    return _open_csv(path, "\t" if ext == ".tsv" else ",")


def _open_csv(path: str, sep: str) -> _Table:
    """A CSV/TSV file: numbers parse as float64, with or without a header row."""
    import pandas as pd

    def read(**kw: Any) -> Any:
        return pd.read_csv(path, sep=sep, index_col=False, **kw)

    with _csv_errors(path), _strict_pandas():
        first = read(header=None, nrows=1, dtype=str, keep_default_na=False)
        header = not all(_is_number(str(c)) for c in first.iloc[0])
        names = None
        if header:
            names = [str(c) for c in read(nrows=0).columns]
            columns = tuple(f"column {c!r}" for c in names)
        else:
            columns = tuple(f"column {i + 1}" for i in range(first.shape[1]))
        kw: dict[str, Any] = (
            {"header": 0} if header else {"header": None, "names": list(range(len(columns)))}
        )
        counted = _count_plain_lines(path, header)
        n_rows = counted
        if n_rows is None:  # quotes, blank lines, bare carriage returns: the parser counts
            n_rows = sum(len(c) for c in read(usecols=[0], dtype=str, chunksize=1 << 16, **kw))
    first_line = 2 if header else 1
    row_bytes = os.path.getsize(path) / max(1, n_rows)

    def serial(rows: int, done: int, used: set[int]) -> Iterator[_Columns]:
        """Blocks of rows parsed by one pandas reader, the first ``done`` rows skipped; only
        the ``used`` columns are read as numbers."""
        line = first_line + done
        # read() runs inside _csv_errors: the items of a with statement are entered in order
        with _csv_errors(path), read(chunksize=rows, **kw) as reader:
            while (frame := _next_frame(reader)) is not None:
                if done:  # skip the rows the parallel reader delivered
                    skip = min(done, len(frame))
                    frame, done = frame.iloc[skip:], done - skip
                    if not len(frame):
                        continue
                yield _csv_columns(frame, path, columns, line, used)
                line += len(frame)

    def chunks(rows: int, groups: Sequence[Sequence[int]]) -> Iterator[list[np.ndarray]]:
        done = 0  # rows already delivered by the parallel reader
        if counted is not None:  # a plain file: cut into pieces, parsed on every core
            piece_bytes = int(min(max(rows * row_bytes, MIN_PIECE_BYTES), PIECE_BYTES))
            for chunk in _parallel_csv_chunks(path, sep, header, counted, rows, groups,
                                              piece_bytes):  # fmt: skip
                if chunk is None:  # a piece that is not plain numbers: read on serially
                    break
                yield chunk
                done += len(chunk[0])
            else:
                return
        yield from _grouped(serial(rows, done, {j for g in groups for j in g}), rows, groups)

    table = _Table(
        path,
        columns,
        (np.dtype(np.float64),) * len(columns),
        n_rows,
        chunks,
        lambda row, j: f"{path} line {row + first_line}, {columns[j]}",
    )
    return replace(table, index=_csv_index(table, names))


def _count_plain_lines(path: str, header: bool) -> int | None:
    """The data rows of a plain CSV, by counting line ends (~50x faster than parsing it).

    None when the file is not plain ASCII numbers and commas: a quote (a quoted cell may hold
    a line end), a line that is empty or starts with whitespace (the parser skips blank
    lines), a carriage return that does not end a line, or a non-ASCII byte (the parser
    checks the encoding). Then only the parser can count the rows.
    """
    lines = _count_lf_lines(path)
    if lines is None:  # spaces, tabs or CRLF line ends: the slower, more general count
        lines = _count_lines_in_detail(path)
    if lines is None:
        return None
    return lines - 1 if header else lines


def _count_lf_lines(path: str) -> int | None:
    """The lines of a file of printable ASCII and LF line ends only, else None.

    The common case, counted in 1 MB windows that stay in the CPU cache (~3x faster than
    :func:`_count_lines_in_detail`), a range of the file on each core: every byte at or
    below a space must be a line end, and no line end may follow another (an empty line),
    nor start the file.
    """
    size = os.path.getsize(path)
    parts = min(_csv_workers(), size) if size >= COUNT_SPLIT_BYTES else 1  # none empty
    starts = [size * i // parts for i in range(parts)]
    stops = [*starts[1:], size]
    if parts == 1:
        spans = [_count_lf_span(path, 0, size)]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(parts) as pool:
            spans = list(pool.map(_count_lf_span, [path] * parts, starts, stops))
    lines, ended = 0, True  # a virtual line end before the first byte
    for span in spans:
        if span is None:
            return None
        count, starts_ended, ends_ended = span
        if ended and starts_ended:
            return None  # an empty first line, or an empty line where two ranges meet
        lines, ended = lines + count, ends_ended
    return lines if ended else lines + 1  # a last line without a line end counts too


def _count_lf_span(path: str, start: int, stop: int) -> tuple[int, bool, bool] | None:
    """Bytes start:stop of a file (not empty) as :func:`_count_lf_lines` checks them.

    (line ends, whether the first byte is one, whether the last is one), else None.
    """
    window = 1 << 20
    buf = bytearray(window)
    view = memoryview(buf)
    is_end = np.empty(window, dtype=bool)
    pairs = np.empty(window, dtype=bool)
    lines, first, ended = 0, None, False
    with open(path, "rb") as f:
        f.seek(start)
        while (left := stop - start) > 0 and (n := f.readinto(view[: min(window, left)])):
            start += n
            text = buf if n == window else buf[:n]
            if not text.isascii() or text.find(b'"') >= 0:
                return None
            a = np.frombuffer(buf, dtype=np.uint8, count=n)
            ends = is_end[:n]
            np.equal(a, ord("\n"), out=ends)
            count = int(np.count_nonzero(ends))
            if np.count_nonzero(a <= ord(" ")) != count or (ended and ends[0]):
                return None  # whitespace or a control byte, or an empty line
            if n > 1 and np.logical_and(ends[1:], ends[:-1], out=pairs[: n - 1]).any():
                return None  # an empty line
            first = bool(ends[0]) if first is None else first
            lines, ended = lines + count, bool(ends[-1])
    return lines, bool(first), ended


def _count_lines_in_detail(path: str) -> int | None:
    """The lines of a plain file (as :func:`_count_plain_lines` describes), else None."""
    lines = 0
    last = b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            if not block.isascii():
                return None  # the parser checks the encoding
            # with the byte before the block (a virtual line end before the file)
            a = np.frombuffer(last + block, dtype=np.uint8)
            if block.find(b'"') >= 0:
                return None
            ends = np.flatnonzero(a[:-1] == ord("\n"))  # line ends with a byte after them
            if bool((a[ends + 1] <= ord(" ")).any()):
                return None  # an empty line, or one starting with whitespace
            if block.find(b"\r") >= 0:
                cr = np.flatnonzero(a[:-1] == ord("\r"))
                if a[-1] == ord("\r") or bool((a[cr + 1] != ord("\n")).any()):
                    return None  # a carriage return that does not end a line
            lines += len(ends)
            last = block[-1:]
    # The virtual line end before the first byte counts the last line, and a line end as
    # the file's last byte is not counted (nothing follows it): so lines are counted once.
    return lines


def _csv_workers() -> int:
    """Threads that parse CSV pieces: one per CPU this process may use, at most 4."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity outside Linux
        n = os.cpu_count() or 1
    return max(1, min(4, n))


def _parallel_csv_chunks(
    path: str,
    sep: str,
    header: bool,
    n_rows: int,
    rows: int,
    groups: Sequence[Sequence[int]],
    piece_bytes: int,
) -> Iterator[list[np.ndarray] | None]:
    """The chunks of a plain CSV (as :func:`_grouped` gives them), parsed on every core.

    Only for files :func:`_count_plain_lines` counted: ASCII, no quotes, no empty lines, so
    every line end ends a row and the file can be cut at line ends into pieces
    (:func:`_csv_pieces`). A thread takes a piece, counts its lines (so it knows, once the
    pieces before it are counted, which rows it holds), parses it, then copies the columns
    straight into the rows of the chunks they belong to: one copy, on every core. At most
    two pieces per thread are in flight, so memory stays bounded by the piece and chunk sizes.
    A piece parses with :func:`_csv_parser` (plain decimal numbers, correctly rounded,
    without the GIL: pandas holds it in parts and scales poorly over threads) or, outside
    that parser's grammar, with its own pandas C parser and the settings of the serial
    reader. A cell reads as the same number either way, but for the sign of "-0": pandas
    reads it as +0 in a column of integers, the C parser as -0.0 (no loss changes).

    A piece that is not plain numbers (a parse error, text, True/False, a row with more or
    fewer cells) or rows beyond ``n_rows`` end the stream, after the chunks completed before
    it, with a None: the serial reader reads on from there, with its values or its error
    naming the line.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

    n_columns = 1 + max(max(g) for g in groups)
    used = {j for g in groups for j in g}  # the others (pandas' index) may hold anything
    parse = _csv_parser()
    lock = threading.Condition()  # guards the two dicts and the flag below
    firsts = {0: 0}  # piece number -> its first row, once the pieces before it are counted
    chunks: dict[int, list[np.ndarray]] = {}  # chunk number -> its arrays, being filled
    stopped = False

    def first_row(k: int, lines: int) -> int | None:
        """The first row of piece ``k`` of ``lines`` lines, once the pieces before it are
        counted (and so the first row of the next piece)."""
        with lock:
            while k not in firsts and not stopped:
                lock.wait()
            if stopped:
                return None
            firsts[k + 1] = firsts[k] + lines
            lock.notify_all()
            return firsts[k]

    def chunk(c: int) -> list[np.ndarray]:
        """The arrays of chunk ``c``, made by the first piece that reaches it."""
        with lock:
            if c not in chunks:
                n = min(rows, n_rows - c * rows)
                chunks[c] = [np.empty((n,) if len(g) == 1 else (n, len(g))) for g in groups]
            return chunks[c]

    def numbers(text: bytes, lines: int) -> _Columns | None:
        """The columns of a piece of ``lines`` lines if every one reads as numbers, else None:
        by the C parser if the whole piece is in its grammar, else by pandas."""
        if parse is not None:
            out = np.empty((lines, n_columns))
            if parse(text, ord(sep), out) == lines:
                return [out[:, j] for j in range(n_columns)]
        frame = pd.read_csv(io.BytesIO(text), sep=sep, header=None, index_col=False,
                            low_memory=False)  # fmt: skip
        if frame.shape[1] != n_columns:
            return None
        cols = [_plain_numbers(frame.iloc[:, j]) if j in used else np.broadcast_to(np.nan, lines)
                for j in range(n_columns)]  # fmt: skip
        return None if any(c is None for c in cols) else cast(_Columns, cols)

    def read(k: int, start: int, end: int) -> int | None:
        """Piece ``k`` (bytes start:end) into its chunks: the row after its last, or None."""
        try:
            with open(path, "rb") as f:
                f.seek(start)
                text = f.read(end - start)
            lines = int(np.count_nonzero(np.frombuffer(text, dtype=np.uint8) == ord("\n")))
            lines += not text.endswith(b"\n")  # the last line of a file may lack its line end
            first = first_row(k, lines)
            cols = None if first is None else numbers(text, lines)
        except Exception:  # whatever it is, the serial reader reports it with its line
            return None
        if cols is None or first is None:
            return None
        stop = first + len(cols[0])
        if stop != firsts[k + 1] or stop > n_rows:
            return None
        for c in range(first // rows, (stop - 1) // rows + 1):
            lo, hi = max(first, c * rows), min(stop, (c + 1) * rows)
            for out, group in zip(chunk(c), groups, strict=True):
                dst = out[lo - c * rows : hi - c * rows]
                if len(group) == 1:
                    dst[...] = cols[group[0]][lo - first : hi - first]
                else:
                    for i, j in enumerate(group):  # a column at a time: no temporary array
                        dst[:, i] = cols[j][lo - first : hi - first]
        return stop

    workers = _csv_workers()
    todo = _csv_pieces(path, header, piece_bytes)
    with ThreadPoolExecutor(workers) as pool:
        reading = collections.deque(
            pool.submit(read, *p) for p in itertools.islice(todo, 2 * workers)
        )
        delivered = 0
        try:
            while reading:
                placed = reading.popleft().result()  # every row before it is in its chunk
                if placed is None:
                    break
                for p in itertools.islice(todo, 1):  # keep the threads busy meanwhile
                    reading.append(pool.submit(read, *p))
                while delivered < n_rows and placed >= min(n_rows, delivered + rows):
                    with lock:
                        out = chunks.pop(delivered // rows)
                    yield out
                    delivered += len(out[0])
        finally:
            with lock:  # stopped early: release the threads waiting for a count
                stopped = True
                lock.notify_all()
            for fut in reading:
                fut.cancel()
            todo.close()
    if delivered < n_rows:
        yield None


def _csv_parser() -> Callable[[bytes, int, np.ndarray], int] | None:
    """The C parser of plain pieces (``cecheck/_csvparse.c``), or None where it was not built.

    ``parse(text, sep, out)`` reads exactly ``len(out)`` lines of ``out.shape[1]`` cells into
    float64 ``out`` and returns the row count, or -1 if anything is outside its grammar.
    """
    if importlib.util.find_spec("cecheck._csvparse") is None:
        return None
    from cecheck import _csvparse

    return _csvparse.parse


def _csv_pieces(
    path: str, header: bool, piece_bytes: int
) -> Generator[tuple[int, int, int], None, None]:
    """Numbered byte ranges (k, start, end) of whole data lines, about ``piece_bytes`` each.

    A range ends at the first line end at or past ``piece_bytes`` from its start, or at the
    end of the file.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if header:
            f.readline()
        start = f.tell()
        for k in itertools.count():
            if start >= size:
                return
            f.seek(min(start + piece_bytes, size) - 1)
            f.readline()
            yield k, start, f.tell()
            start = f.tell()


def _plain_numbers(cells: Any) -> np.ndarray | None:
    """A parsed column as stored if pandas read it as numbers (floats or integers), else None.

    No copy. Booleans, text and anything else give None: how pandas reads those depends on
    the other cells of the block, so the serial reader, whose blocks do not depend on the
    number of threads, decides.
    """
    if isinstance(cells.dtype, np.dtype) and cells.dtype.kind in "iuf":
        return np.asarray(cells.to_numpy())
    return None


@contextlib.contextmanager
def _strict_pandas() -> Iterator[None]:
    """Make pandas' ParserWarning (a row longer than the header: data dropped) an error."""
    from pandas.errors import ParserWarning

    with warnings.catch_warnings():  # only catches: cecheck never emits Python warnings
        warnings.simplefilter("error", ParserWarning)
        yield


def _next_frame(reader: Any) -> Any:
    """The next chunk of a pandas reader, or None; strict only around the read itself."""
    with _strict_pandas():
        return next(reader, None)


@contextlib.contextmanager
def _csv_errors(path: str) -> Iterator[None]:
    """Turn pandas' parse errors into one InputError naming the file."""
    from pandas.errors import ParserWarning

    try:
        yield
    except ParserWarning:
        raise InputError(f"{path} has a row with more cells than the header: fix it") from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text: export it as a UTF-8 CSV") from None
    except (ValueError, OSError, IndexError) as e:
        reason = _reason(e)
        if "No columns to parse" in reason:
            raise InputError(f"{path} holds no data: write the rows to it again") from None
        raise InputError(f"{path} cannot be parsed ({reason}): fix the file") from None


def _is_number(cell: str) -> bool:
    """True if a cell is a number or empty (a missing value, not a column name)."""
    if not cell.strip():
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _csv_columns(
    frame: Any, path: str, columns: Sequence[str], first_line: int, used: set[int]
) -> _Columns:
    """The columns of a parsed chunk as float64, or an InputError at the first non-number.

    A column not ``used`` (pandas' index, left out) is not read: NaN in its place.
    """
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    if frame.shape[1] != len(columns):
        raise InputError(f"{path} line {first_line}: the rows have a varying number of cells")
    out = []
    for j in range(frame.shape[1]):
        if j not in used:
            out.append(np.broadcast_to(np.nan, len(frame)))
            continue
        cells = frame.iloc[:, j]
        numbers = _plain_numbers(cells)
        if numbers is not None:
            out.append(numbers.astype(np.float64, copy=False))
            continue
        if not (is_numeric_dtype(cells) or is_bool_dtype(cells)):
            numbers = pd.to_numeric(cells, errors="coerce")
            bad = (numbers.isna() & cells.notna()).to_numpy()
            if bad.any():
                i = int(np.argmax(bad))
                raise InputError(
                    f"{path} line {first_line + i}, {columns[j]}: {cells.iloc[i]!r} is not a "
                    "number: fix or remove that cell"
                )
            cells = numbers
        out.append(cells.to_numpy(dtype=np.float64, na_value=np.nan))
    return out


def _open_parquet(path: str) -> _Table:
    """A Parquet file, read by batches; pyarrow is imported only here (the parquet extra)."""
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
            f"{path} is not a readable Parquet file ({_reason(e)}): write it again"
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

    def blocks(rows: int) -> Iterator[_Columns]:
        try:
            for batch in pf.iter_batches(batch_size=rows):
                yield [column(c) for c in batch.columns]
        except (pa.ArrowException, OSError, ValueError) as e:
            raise InputError(
                f"{path} is corrupt ({_reason(e)}): write the Parquet file again"
            ) from None

    return _Table(
        path,
        tuple(f"column {f.name!r}" for f in schema),
        tuple(np.dtype(f.type.to_pandas_dtype()) for f in schema),
        n_rows,
        lambda rows, groups: _grouped(blocks(rows), rows, groups),
        lambda row, j: f"{path} row {row}, column {schema[j].name!r}",
        tuple(index.values()),
    )


def _parquet_index(schema: Any) -> dict[int, _Index]:
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
        j: _Index(j, why, keep_it, False)
        for j, name in enumerate(schema.names)
        if name in names or re.fullmatch(r"__index_level_\d+__", name)
    }


def _label_index(table: _Table, label_column: str | int) -> int:
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
            "found: add a header row, or give the labels as a second file"
        )
    raise InputError(
        f"{table.name} has no column {label_column!r} (its columns are "
        f"{', '.join(c[len('column ') :] for c in table.columns)}): choose the label "
        "column with --label-column"
    )


def _table_part(table: _Table, idx: list[int]) -> _Part:
    """Some columns of a table as one stored array: (N,) for one column, else (N, k)."""
    shape = (table.n_rows,) if len(idx) == 1 else (table.n_rows, len(idx))
    dtype = np.result_type(*(table.dtypes[i] for i in idx))
    return _Part(
        table.name,
        shape,
        dtype,
        lambda rows, _nd: table.chunks(rows, [idx]),
        tuple(_index_note(table, x) for x in table.index),
    )


# ---------------------------------------------------------------- pandas' index

# pandas' name for a column with an empty header ("Unnamed: 0"; "Unnamed: 0.1" if repeated)
_UNNAMED = re.compile(r"Unnamed: \d+(\.\d+)*")
# the fewest rows whose first column holding 0, 1, 2, ... marks a headerless index
INDEX_MIN_ROWS = 3


def _without_index(table: _Table, keep: int | None) -> tuple[_Table, list[int]]:
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


def _index_note(table: _Table, x: _Index) -> str:
    return (
        f"{table.name}: {table.columns[x.column]} is pandas' index ({x.why}), not data, so "
        f"it was left out; {x.keep_it}"
    )


def _row_numbers_checked(
    table: _Table, checked: list[int]
) -> Callable[[int, Sequence[Sequence[int]]], Iterator[list[np.ndarray]]]:
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


def _csv_index(table: _Table, names: Sequence[str] | None) -> tuple[_Index, ...]:
    """The columns of a CSV that hold pandas' index; ``names``: the header, or None.

    With a header: the leading columns whose header is empty, as ``DataFrame.to_csv`` writes
    the index (every level of it). Without: a first column holding 0, 1, 2, ... in the first
    rows, as ``to_csv(header=False)`` writes it (its later rows are checked as they are read).
    """
    if names is not None:
        leading = itertools.takewhile(lambda n: n.strip() == "" or _UNNAMED.fullmatch(n), names)
        why = "its header is empty, as DataFrame.to_csv writes the index"
        keep_it = "to read it as data, give it a header name"
        return tuple(_Index(j, why, keep_it, False) for j, _ in enumerate(leading))
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
    return (_Index(0, why, "to read it as data, add a header row naming the columns", True),)


# ---------------------------------------------------------------- chunking


def _chunk_parts(blocks: Iterator[_Columns], rows: int) -> Iterator[list[_Columns]]:
    """Re-cut a stream of row blocks into chunks of exactly ``rows`` rows (the last fewer).

    Each chunk comes as the views of the blocks that make it up, in order: nothing is copied.
    """
    parts: list[_Columns] = []
    have = 0
    for block in blocks:
        at, n = 0, len(block[0])
        while at < n:
            take = min(rows - have, n - at)
            parts.append([b[at : at + take] for b in block])
            at, have = at + take, have + take
            if have == rows:
                yield parts
                parts, have = [], 0
    if parts:
        yield parts


def _exact(blocks: Iterator[_Columns], rows: int) -> Iterator[_Columns]:
    """Blocks of exactly ``rows`` rows (the last fewer); a block already that size is not copied."""
    for parts in _chunk_parts(blocks, rows):
        yield parts[0] if len(parts) == 1 else [np.concatenate(c) for c in zip(*parts, strict=True)]


def _grouped(
    blocks: Iterator[_Columns], rows: int, groups: Sequence[Sequence[int]]
) -> Iterator[list[np.ndarray]]:
    """Chunks of exactly ``rows`` rows (the last fewer) as one array per group of columns.

    A group of one column gives ``(n,)``, a group of k columns ``(n, k)`` in row order. Each
    value is copied once, straight from the blocks into the chunk (a one-column group inside
    one block is not copied at all), rather than concatenated and then stacked.
    """
    for parts in _chunk_parts(blocks, rows):
        yield [_gather([[p[i] for i in group] for p in parts]) for group in groups]


def _gather(pieces: list[_Columns]) -> np.ndarray:
    """Consecutive row pieces of the same columns as one array, like concatenate and stack."""
    if len(pieces) == 1 and len(pieces[0]) == 1:
        return pieces[0][0]
    width = len(pieces[0])
    dtype = np.result_type(*{c.dtype for cols in pieces for c in cols})
    n = sum(len(cols[0]) for cols in pieces)
    out = np.empty((n,) if width == 1 else (n, width), dtype)
    at = 0
    for cols in pieces:
        m = len(cols[0])
        if width == 1:
            out[at : at + m] = cols[0]
        else:
            np.stack(cols, axis=1, out=out[at : at + m])
        at += m
    return out


def _zip_parts(lg: _Part, lb: _Part) -> Callable[[int, int], Pairs]:
    """Logits and labels from two sources, read in step."""

    def pairs(rows: int, nd: int) -> Pairs:
        both = itertools.zip_longest(_exact(lg.blocks(rows, nd), rows),
                                     _exact(lb.blocks(rows, nd), rows))  # fmt: skip
        for a, b in both:
            if a is None or b is None or len(a[0]) != len(b[0]):
                raise InputError(
                    f"{lg.name} and {lb.name} ran out of rows at different places: "
                    "give one label per row"
                )
            yield a[0], b[0]

    return pairs


# ---------------------------------------------------------------- inference and conversion


@dataclass(frozen=True)
class _Shape:
    task: str | None  # None: decided from the label values (onehot, soft or multihot)
    lead: tuple[int, ...]
    n_classes: int
    per_row: bool  # one label per row (index or binary) rather than one per class


def _infer_shape(lg: _Part, lb: _Part, task: str) -> _Shape:
    """Task, rows and classes from the shapes alone, as DESIGN.md describes."""
    ls, ys = lg.shape, lb.shape
    if not ls:
        raise InputError(f"{lg.name} is a single number: give one logit (or C) per row")
    if len(ls) == 1 or ls[-1] == 1:  # one logit per row
        lead = ls if len(ls) == 1 else ls[:-1]
        if task == "multilabel" and len(ls) > 1 and ys == ls:  # (N, 1): one sigmoid per row
            return _Shape(task, lead, 1, per_row=False)
        if task == "multiclass":  # one class: every loss is 0, cecheck.pipeline warns
            _check_rows(lg, lb, (lead, (*lead, 1)))
            per_row = len(ls) == 1 or lb.shape == lead
            return _Shape(task, lead, 1, per_row)
        if task == "multilabel":
            raise InputError(
                f"{lg.name} has one logit per row (shape {ls}), fewer than the 2 classes "
                f"{task} needs: give one logit per class, or use the binary task"
            )
        _check_rows(lg, lb, (lead, (*lead, 1)))
        return _Shape("binary", lead, 1, per_row=True)
    lead, c = ls[:-1], ls[-1]
    if task == "binary":
        if ys != ls:
            raise InputError(
                f"{lg.name} has {c} logits per row (shape {ls}) but the binary task needs one: "
                "choose the multiclass or multilabel task"
            )
        return _Shape("binary", ls, 1, per_row=True)  # (B, T) logits, (B, T) targets
    if c < 2:
        raise InputError(f"{lg.name} has shape {ls}, fewer than 2 classes: check the logits")
    if task == "multilabel":
        _check_rows(lg, lb, (ls,))
        return _Shape(task, lead, c, per_row=False)
    _check_rows(lg, lb, (lead, (*lead, 1), ls))
    per_row = ys != ls
    return _Shape("multiclass" if per_row else (None if task == "auto" else task), lead, c, per_row)


def _check_rows(lg: _Part, lb: _Part, allowed: Sequence[tuple[int, ...]]) -> None:
    if lb.shape not in allowed:
        want = " or ".join(str(s) for s in allowed)
        raise InputError(
            f"{lg.name} has shape {lg.shape} but {lb.name} has shape {lb.shape}: "
            f"give labels of shape {want}"
        )


def _label_form(shape: _Shape, head: np.ndarray) -> tuple[str, str]:
    """(task, label form): index/binary from the shape, the others from the first chunk."""
    if shape.per_row:
        return ("binary", "binary") if shape.task == "binary" else ("multiclass", "index")
    if shape.task == "multilabel":
        return "multilabel", "multihot"
    with np.errstate(all="ignore"):  # NaN and inf labels are row problems, not ours
        y = head.astype(np.float64)
        zero_one = bool(np.all((y == 0) | (y == 1)))
        onehot = zero_one and bool(np.all(y.sum(axis=1) == 1))
    if shape.task == "multiclass" or onehot or not zero_one:
        return "multiclass", "onehot" if onehot else "soft"
    return "multilabel", "multihot"


def _logits_out(dtype: np.dtype) -> np.dtype:
    """The dtype logits are handed over in: the stored float, or the nearest one."""
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        return dtype.newbyteorder("=")
    if dtype.kind == "f" or dtype.kind in "biu":  # long double, integers, booleans
        return np.dtype(np.float64)
    return np.dtype(np.float32)  # bfloat16 and the float8 formats fit float32 exactly


def class_indices(y: np.ndarray) -> np.ndarray:
    """Class-index labels as int64; a fraction, NaN or inf becomes :data:`INVALID_LABEL`."""
    if y.dtype.kind in "biu":
        if y.dtype == np.uint64:  # only uint64 holds values beyond int64
            return np.minimum(y, 2**62).astype(np.int64)
        if y.dtype.itemsize == 8:  # only int64 holds INVALID_LABEL
            return np.maximum(y, -(2**62)).astype(np.int64)
        return y.astype(np.int64)
    y = y.astype(np.float64)
    with np.errstate(invalid="ignore"):  # NaN and inf are the invalid labels
        bad = ~np.isfinite(y) | (y != np.floor(y))
        out = np.clip(y, -(2**62), 2**62).astype(np.int64)  # out of range stays out of range
    if bad.any():
        out[bad] = INVALID_LABEL
    return out


def _check_fractions(lb: _Part, labels: np.ndarray) -> None:
    """Refuse per-row labels that are mostly fractions: they are not class indices.

    With C >= 2 logits a row's one label can only be a class index, so a few fractions (or
    NaN) are bad rows, flagged ``invalid_label``; but when most of the first rows hold
    fractions the labels are something else, such as one class's probability.
    """
    if labels.dtype.kind not in "fV":
        return
    y = labels.astype(np.float64).reshape(-1)
    with np.errstate(invalid="ignore"):
        fractions = np.isfinite(y) & (y != np.floor(y))
    n = int(np.count_nonzero(fractions))
    if 2 * n > len(y):
        example = f"{y[np.argmax(fractions)]:g}"
        if len(y) == 1:
            what = f"the label {example} is a fraction, not a class index (a whole number 0..C-1)"
        else:
            what = (f"{n} of the first {len(y)} labels are fractions such as {example}, so "
                    "they are not class indices (whole numbers 0..C-1)")  # fmt: skip
        raise InputError(
            f"{lb.name}: {what}: give class indices, or soft labels as one probability per "
            "class (shape (N, C))"
        )


def _converter(
    shape: _Shape, form: str, lg: _Part
) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    out = _logits_out(lg.dtype)

    def convert(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(logits)
        x = logits.astype(out, copy=False)
        x = x.reshape(n) if shape.task == "binary" else x.reshape(n, shape.n_classes)
        if form == "index":
            return x, class_indices(labels.reshape(n))
        y = labels.astype(np.float64)
        return x, y.reshape(n) if form == "binary" else y.reshape(n, shape.n_classes)

    return convert


def _multihot_warning(name: str, task: str, form: str, labels: np.ndarray) -> str | None:
    """A sentence when 0/1 labels were read as multi-hot though nearly every row is one-hot.

    Inference follows the rule (a row with no 1 or several 1s makes the labels multi-hot),
    but a one-hot file with a few broken rows is more likely than a multilabel file whose
    rows nearly all hold exactly one class: say so, and how to choose.
    """
    if task != "auto" or form != "multihot" or labels.ndim != 2:
        return None
    one_class = float(np.mean(labels.sum(axis=1) == 1))
    if one_class < 0.9:
        return None
    return (
        f"{name}: {one_class:.0%} of the label rows hold exactly one 1, so these may be "
        "one-hot labels with a few bad rows, yet the others made cecheck read them as "
        "multi-hot (task multilabel); pass --task multiclass to treat them as one-hot, and the "
        "bad rows are flagged invalid_label"
    )


# The words every looks-like-probabilities warning holds (with inputs="probs" it is dropped).
LOOKS_LIKE_PROBABILITIES = "probabilities, not logits"


def _probability_warning(name: str, task: str, logits: np.ndarray) -> str | None:
    """A warning when the first chunk of logits looks like probabilities (softmax/sigmoid)."""
    with np.errstate(all="ignore"):
        x = logits.astype(np.float64)
        if not bool(np.all((x >= 0) & (x <= 1))):
            return None
        n = len(x)
        if task != "multiclass":
            return (
                f"{name}: every logit in the first {n} rows lies in [0, 1], so these look like "
                f"sigmoid {LOOKS_LIKE_PROBABILITIES}: cecheck treats them as logits, so the "
                "losses are not your training loss; export the values before the sigmoid"
            )
        tol = 1e-2 if logits.dtype.itemsize <= 2 else 1e-4
        if not np.allclose(x.sum(axis=1), 1.0, rtol=0, atol=tol):
            return None
    return (
        f"{name}: every row of the first {n} lies in [0, 1] and sums to 1, so these look like "
        f"softmax {LOOKS_LIKE_PROBABILITIES}: cecheck treats them as logits, so the losses are "
        "not your training loss and nothing can overflow; export the values before the softmax"
    )


def _finish(
    lg: _Part, lb: _Part, pairs: Callable[[int, int], Pairs], task: str, names: tuple[str, str]
) -> Source:
    """Infer the task and label form from shapes and the first chunk; build the Source."""
    if task not in ("auto", *TASKS):
        raise ValueError(f"task must be 'auto' or one of {TASKS}, got {task!r}")
    shape = _infer_shape(lg, lb, task)
    n_rows = math.prod(shape.lead)
    if n_rows == 0:
        raise InputError(f"{lg.name} holds no rows (shape {lg.shape}): give at least one row")
    head_rows = max(1, min(HEAD_ROWS, HEAD_VALUES // max(1, shape.n_classes)))
    head = pairs(head_rows, len(shape.lead))
    try:
        head_logits, head_labels = next(head)
    finally:
        close = getattr(head, "close", None)  # release the file of a generator left early
        if close is not None:
            close()
    task_, form = _label_form(shape, head_labels)
    if form == "index":
        _check_fractions(lb, head_labels)
    shape = _Shape(task_, shape.lead, shape.n_classes, shape.per_row)
    convert = _converter(shape, form, lg)
    first_logits, _ = convert(head_logits, head_labels)
    found = (
        *dict.fromkeys((*lg.notes, *lb.notes)),  # one file: the same notes in both parts
        _probability_warning(lg.name, task_, first_logits),
        _multihot_warning(lb.name, task, form, head_labels),
    )

    def read(rows: int) -> Pairs:
        start = 0
        for logits, labels in pairs(rows, len(shape.lead)):
            yield convert(logits, labels)
            start += len(logits)
        if start != n_rows:
            raise InputError(f"{lg.name} held {start} rows, not {n_rows}: was it changed?")

    return Source(
        logits_name=names[0],
        labels_name=names[1],
        logits_shape=lg.shape,
        labels_shape=lb.shape,
        lead_shape=shape.lead,
        n_classes=shape.n_classes,
        task=task_,
        label_form=form,
        logits_dtype=lg.dtype.name,
        warnings=tuple(w for w in found if w),
        _read=read,
    )
