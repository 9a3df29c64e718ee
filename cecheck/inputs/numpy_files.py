"""``.npy`` (memory-mapped, read chunk by chunk) and ``.npz`` files; nothing is unpickled."""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from cecheck.errors import InputError
from cecheck.inputs.arrays import array_part, check_dtype
from cecheck.inputs.files import Choice, Reader, missing_key, reason
from cecheck.inputs.source import PairReader, Part, zip_parts

_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError,
               NotImplementedError)  # fmt: skip


def open_npy(path: str) -> Part:
    """A memory-mapped .npy: the header is checked first, so no bad array is ever mapped."""
    with open(path, "rb") as f:
        shape, dtype, offset = _npy_header(f, path)
    check_dtype(path, dtype, stored=True)
    need = offset + math.prod(shape) * dtype.itemsize
    if os.path.getsize(path) < need:
        raise InputError(
            f"{path} is truncated (its header promises {need} bytes, the file has "
            f"{os.path.getsize(path)}): save the array again with numpy.save"
        )
    if math.prod(shape) == 0:
        return array_part(path, np.zeros(shape, dtype), stored=True)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise InputError(
            f"{path} cannot be read as a .npy file ({reason(e)}): save it again"
        ) from None
    return array_part(path, array, stored=True)


def _npy_header(f: Any, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset from a .npy header, read without touching the data."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _fortran, dtype = read(f)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as e:
        raise InputError(
            f"{name} is not a valid .npy file ({reason(e)}): save the array with numpy.save"
        ) from None
    if any(n < 0 for n in shape):
        raise InputError(f"{name} has a corrupt header (shape {shape}): save it again")
    return tuple(shape), dtype, f.tell()


def open_npz(path: str, keys: Sequence[tuple[str, str]]) -> list[Part]:
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
                    raise missing_key(path, key, present, "array", option)
                name = f"{path}[{key!r}]"
                parts.append(array_part(name, _read_member(zf, key, name), stored=True))
            return parts
    except _ZIP_ERRORS as e:
        raise InputError(
            f"{path} is not a readable .npz file, corrupt or truncated ({reason(e)}): "
            "save the arrays again with numpy.savez"
        ) from None


def _read_member(zf: zipfile.ZipFile, key: str, name: str) -> np.ndarray:
    info = zf.getinfo(key + ".npy")
    with zf.open(info) as f:
        shape, dtype, offset = _npy_header(f, name)
    check_dtype(name, dtype, stored=True)
    if offset + math.prod(shape) * dtype.itemsize > info.file_size:
        raise InputError(f"{name} is truncated: save the arrays again with numpy.savez")
    with zf.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _npy_both(path: str, _choice: Choice) -> tuple[Part, Part, PairReader]:
    raise InputError(f"{path} holds one array, the logits: give the labels as a second file")


def _npz_both(path: str, choice: Choice) -> tuple[Part, Part, PairReader]:
    lg, lb = open_npz(path, [choice.key("logits"), choice.key("labels")])
    return lg, lb, zip_parts(lg, lb)


NPY = Reader(single=lambda path, _choice, _which: open_npy(path), both=_npy_both)
NPZ = Reader(single=lambda path, choice, which: open_npz(path, [choice.key(which)])[0],
             both=_npz_both)  # fmt: skip
