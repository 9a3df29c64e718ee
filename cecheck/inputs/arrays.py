"""Arrays in memory: numpy arrays, lists, torch tensors; the dtype check every array passes."""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from cecheck.errors import InputError
from cecheck.inputs.files import reason
from cecheck.inputs.source import Part

_KINDS = {"c": "complex numbers", "U": "text", "S": "bytes", "M": "dates", "m": "time spans"}


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
            f"{name} is not a rectangular array of numbers ({reason(e)}): fix it"
        ) from None


def unpack(value: Any, labels: Any) -> tuple[Any, Any]:
    """The logits and labels of a dict holding both, as ``safetensors.torch.load_file`` or
    ``torch.load`` return it (keys ``logits`` and ``labels``); anything else as it came."""
    if labels is not None or not isinstance(value, Mapping):
        return value, labels
    missing = [k for k in ("logits", "labels") if k not in value]
    if missing:
        held = ", ".join(repr(k) for k in value) or "nothing"
        raise InputError(
            f"the dict given as logits has no {' or '.join(repr(k) for k in missing)} (it holds "
            f"{held}): pass compare(d[logits_key], d[labels_key])"
        )
    return value["logits"], value["labels"]


def _from_torch(torch: Any, tensor: Any, name: str) -> np.ndarray:
    """A torch tensor's values as numpy: detached, on the CPU, bit for bit."""
    try:
        t = tensor.detach().cpu().resolve_conj().resolve_neg()
        if t.layout != torch.strided:
            t = t.to_dense()
        same_bits = _TORCH_FLOATS.get(str(t.dtype).removeprefix("torch."))
        if same_bits is None:
            return np.asarray(t.numpy())
        import ml_dtypes  # only here and for the dtypes it made: it takes ~0.5 s to import

        bits, ml_dtype = same_bits  # numpy has no such float: read the bits, then view them
        values: np.ndarray = t.contiguous().view(getattr(torch, bits)).numpy()
        return values.view(getattr(ml_dtypes, ml_dtype))
    except (RuntimeError, TypeError, ValueError, NotImplementedError) as e:
        raise InputError(
            f"{name} is a torch tensor cecheck cannot read ({reason(e)}): pass "
            "tensor.detach().cpu().float().numpy()"
        ) from None


# torch float formats numpy lacks: the integer type of the same width, and the ml_dtypes float
_TORCH_FLOATS = {
    "bfloat16": ("int16", "bfloat16"),
    "float8_e4m3fn": ("uint8", "float8_e4m3fn"),
    "float8_e4m3fnuz": ("uint8", "float8_e4m3fnuz"),
    "float8_e5m2": ("uint8", "float8_e5m2"),
    "float8_e5m2fnuz": ("uint8", "float8_e5m2fnuz"),
}


def array_part(name: str, array: np.ndarray, *, stored: bool) -> Part:
    """An array (in memory or memory-mapped) as a Part read in row blocks."""
    check_dtype(name, array.dtype, stored=stored)
    return Part(
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


def check_dtype(name: str, dtype: np.dtype, *, stored: bool) -> None:
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
    import ml_dtypes  # loaded already: it made the dtype

    try:
        ml_dtypes.finfo(dtype)
    except ValueError:
        return False
    return True
