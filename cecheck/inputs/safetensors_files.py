"""``.safetensors`` files: the header read as the format specifies, the tensors memory-mapped.

The format (https://huggingface.co/docs/safetensors): an unsigned 64-bit little-endian header
size N, N bytes of JSON mapping each tensor's name to its ``dtype``, ``shape`` and
``data_offsets`` (begin and end in the byte buffer that follows the header; an optional
``__metadata__`` entry holds strings), then the buffer itself, little-endian. Every check is
made on the header before a tensor is mapped; a tensor is then read chunk by chunk like a
``.npy`` (:func:`~cecheck.inputs.arrays.array_part`), so memory does not grow with the file.
No package is needed, and nothing is ever executed.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import struct
from collections.abc import Iterator, Sequence
from typing import Any, cast

import numpy as np

from cecheck.errors import InputError
from cecheck.inputs import recorded
from cecheck.inputs.arrays import array_part
from cecheck.inputs.files import Choice, Reader, missing_key, reason
from cecheck.inputs.recorded import Recorded
from cecheck.inputs.source import Columns, PairReader, Part, zip_parts

MAX_HEADER = 100_000_000  # bytes: the limit the safetensors package itself sets

# The format's dtypes numpy has, little-endian
_NUMPY = {
    "BOOL": "?", "U8": "u1", "I8": "i1", "U16": "<u2", "I16": "<i2", "U32": "<u4",
    "I32": "<i4", "U64": "<u8", "I64": "<i8", "F16": "<f2", "F32": "<f4", "F64": "<f8",
}  # fmt: skip
# ... and those it lacks, as ml_dtypes' types of the same bits (imported only for them)
_ML_DTYPES = {
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
}


def _again(path: str) -> str:
    return f"{path} is not a valid .safetensors file"


def read_header(path: str) -> tuple[dict[str, Any], int]:
    """The tensors' entries (``__metadata__`` left out) and where the byte buffer starts."""
    header, start, _ = _read(path)
    return header, start


def _read(path: str) -> tuple[dict[str, Any], int, Any]:
    """:func:`read_header`, and the ``__metadata__`` entry (None when there is none)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InputError(
                f"{_again(path)} (it is {size} bytes, shorter than the 8-byte header size): "
                "save it again with safetensors"
            )
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or 8 + n > size:
            raise InputError(
                f"{_again(path)}: its header claims {n} bytes, more than the "
                f"{min(MAX_HEADER, size - 8)} it can hold, so it is truncated or corrupt; "
                "save it again with safetensors"
            )
        text = f.read(n)
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError(
            f"{_again(path)}: its header is not JSON ({reason(e)}); save it again with safetensors"
        ) from None
    if not isinstance(header, dict):
        raise InputError(f"{_again(path)}: its header is not a JSON object; save it again")
    meta = header.pop("__metadata__", None)
    _check_offsets(path, header, size - 8 - n)
    return header, 8 + n, meta


def _check_offsets(path: str, header: dict[str, Any], buffer: int) -> None:
    """Each entry well formed, inside the buffer, the size its shape says, none overlapping."""
    spans = []
    for key, entry in header.items():
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("dtype"), str)
            and _ints(entry.get("shape"), None)
            and _ints(entry.get("data_offsets"), 2)
        )
        if not ok:
            raise InputError(
                f"{_again(path)}: the header entry {key!r} lacks a dtype, shape or "
                "data_offsets; save it again with safetensors"
            )
        begin, end = entry["data_offsets"]
        if not 0 <= begin <= end <= buffer:
            raise InputError(
                f"{_again(path)}: tensor {key!r} lies at bytes {begin}..{end} of a "
                f"{buffer}-byte buffer, so the file is truncated or corrupt; save it again"
            )
        spans.append((begin, end, key))
    spans.sort()
    for (_, end, a), (begin, _, b) in itertools.pairwise(spans):
        if begin < end:
            raise InputError(
                f"{_again(path)}: tensors {a!r} and {b!r} overlap in the byte buffer; "
                "save it again with safetensors"
            )


def _ints(value: Any, length: int | None) -> bool:
    """A list of non-negative ints (of ``length`` items when given)."""
    return (
        isinstance(value, list)
        and (length is None or len(value) == length)
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    )


def _dtype(path: str, key: str, name: str) -> np.dtype:
    if name in _NUMPY:
        return np.dtype(_NUMPY[name])
    if name in _ML_DTYPES:
        import ml_dtypes  # ~0.5 s: only for the formats numpy lacks

        narrow: np.dtype[Any] = np.dtype(getattr(ml_dtypes, _ML_DTYPES[name]))
        return narrow
    known = ", ".join([*_NUMPY, *_ML_DTYPES])
    raise InputError(
        f"{path} tensor {key!r} has dtype {name}, which cecheck does not read ({known}): "
        "save it in one of these"
    )


def open_safetensors(path: str, keys: Sequence[tuple[str, str]]) -> list[Part]:
    """Tensors chosen by key, each memory-mapped once its header entry is checked."""
    header, start = read_header(path)
    parts = []
    for key, option in keys:
        if key not in header:
            raise missing_key(path, key, header, "tensor", option)
        entry = header[key]
        bf16 = entry["dtype"] == "BF16"  # read as its bits: no ml_dtypes import (~0.5 s)
        dtype = np.dtype("<u2") if bf16 else _dtype(path, key, entry["dtype"])
        shape = tuple(entry["shape"])
        begin, end = entry["data_offsets"]
        if end - begin != math.prod(shape) * dtype.itemsize:
            raise InputError(
                f"{_again(path)}: tensor {key!r} of shape {shape} and dtype {entry['dtype']} "
                f"needs {math.prod(shape) * dtype.itemsize} bytes but has {end - begin}; "
                "save it again"
            )
        name = f"{path}[{key!r}]"
        if math.prod(shape) == 0:
            array = np.zeros(shape, dtype)
        else:
            array = np.memmap(path, dtype=dtype, mode="r", offset=start + begin, shape=shape)
        part = array_part(name, array, stored=True)
        parts.append(_widened(part) if bf16 else part)
    return parts


def _widened(bits: Part) -> Part:
    """A bfloat16 tensor held as its uint16 bits, read as float32: the same sign, exponent
    and leading mantissa bits, so every value (inf and NaN too) is exactly the same. Each
    block is a :class:`~cecheck.narrow.Bfloat16Rows`: the kernel reads its bits, anything
    else its float32 values (see :meth:`cecheck.inputs.Source.chunks`)."""
    from cecheck.narrow import Bfloat16Rows

    def blocks(rows: int, nd: int) -> Iterator[Columns]:
        for block in bits.blocks(rows, nd):  # read as float32 arrays are (duck-typed)
            yield [cast(np.ndarray, Bfloat16Rows(b)) for b in block]

    return dataclasses.replace(bits, dtype=np.dtype(np.float32), blocks=blocks, stored="bfloat16")


def _both(path: str, choice: Choice) -> tuple[Part, Part, PairReader]:
    lg, lb = open_safetensors(path, [choice.key("logits"), choice.key("labels")])
    return lg, lb, zip_parts(lg, lb)


def _recorded(path: str) -> Recorded | None:
    """The settings a cecheck loss dump records in its metadata; None for another file."""
    header, _, meta = _read(path)
    if meta is not None and not isinstance(meta, dict):
        raise InputError(f"{_again(path)}: its __metadata__ is not a JSON object; save it again")
    shapes = {key: tuple(entry["shape"]) for key, entry in header.items()}

    def tensor(key: str) -> np.ndarray:
        part = open_safetensors(path, [(key, key)])[0]
        return np.concatenate([b[0] for b in part.blocks(max(1, part.shape[0]), 1)])

    return recorded.parse(path, meta, shapes, tensor)


SAFETENSORS = Reader(
    single=lambda path, choice, which: open_safetensors(path, [choice.key(which)])[0],
    both=_both,
    recorded=_recorded,
)
