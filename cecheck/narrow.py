"""float16 and bfloat16 on the C kernel: the numpy specification's bits.

In a 16-bit format the kernel is not within a bound of the specification: it is the
specification, bit for bit (tests/test_narrow_kernel.py), in a pass of its own per format
(``narrow_index`` in ``_kernel.c``, run by :mod:`cecheck.fast`): each step in float32
rounded to the format where :mod:`cecheck.precision` rounds it, by integer operations (to
nearest even, overflow to inf, gradual underflow); sums in float32 in numpy's pairwise
order; an elementary function of a value of the format (the textbook path's float32 exp and
log, PyTorch's log) a table of its 65,536 values filled by the specification's own numpy
calls (:func:`tables`); PyTorch's ``exp(z - max)`` of a float32 argument the kernel's
float64 exp rounded to float32, as the specification rounds numpy's float64 exp (they differ
by an ulp of float64 in places, which changes the float32 rounding only for an exp within
that ulp of a float32 tie: none in 10**7 samples); only the target's is needed exactly when
a float32 exp's sum, within a proven bound of the exact one, decides the rounded sum and
probability the paths take (else the row takes the exact exps); the textbook exps of a row
whose max reaches :func:`exp_overflow_at` sum to inf, and only the target's is looked up.
Rows with a logit that is not finite in the format (NaN, inf, a -inf mask, beyond 65504 in
float16) are recomputed by numpy.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from cecheck import precision as prec
from cecheck.arraytypes import Array


@functools.cache
def tables(formats: tuple[str, ...]) -> Array:
    """The narrow kernel's tables for float16 and bfloat16 (``formats``, one or both, in that
    order): float32 (k, 3, 65536), for each value of the format (by its bits) the
    specification's own results of the textbook path's exp and log (numpy's float32
    functions, rounded: :func:`cecheck.losses.textbook_multiclass`) and of PyTorch's log
    (:func:`cecheck.frameworks.torch_common.elementary`, rounded)."""
    from cecheck.frameworks.torch_common import elementary

    blocks = []
    for d in formats:
        p, x = prec.get(d), _values(d)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            blocks.append((p.round(np.exp(x)), p.round(np.log(x)), p.round(elementary(np.log, x))))
    return np.ascontiguousarray(np.array(blocks), dtype=np.float32)


def _values(d: str) -> Array:
    """Every value of the format ``d`` (float16 or bfloat16), by its bits, as float32."""
    return np.arange(1 << 16, dtype=np.uint16).view(prec.get(d).storage).astype(np.float32)


@functools.cache
def exp_overflow_at(formats: tuple[str, ...]) -> Array:
    """float32 (k,): for each format of ``formats`` (as :func:`tables`), the least value
    whose textbook exp in :func:`tables` is inf (:func:`overflow_threshold`), from which on
    the kernel knows a row's exp overflows from its max alone, without its look-ups (inf
    where the table does not overflow so: then the look-ups tell)."""
    exps = tables(formats)[:, 0]
    at = [overflow_threshold(_values(d), e) for d, e in zip(formats, exps, strict=True)]
    return np.array(at, dtype=np.float32)


def overflow_threshold(x: Array, e: Array) -> float:
    """The least of the values ``x`` whose exp ``e`` is inf, if the inf exps are exactly
    those of the values at or above it and every other exp of a value that is not NaN is
    >= 0 (so that a row of such values, one of them at or above it, has an exp sum of inf
    exactly); else inf (for every row finite in the format: never)."""
    numbers = ~np.isnan(x)  # NaN is not ordered: never a row's max in the kernel
    x, e = x[numbers], e[numbers]
    over = e == np.inf
    if not over.any() or not (e >= 0).all():
        return np.inf
    at = x[over].min()
    return float(at) if np.array_equal(over, x >= at) else np.inf


def widen_bfloat16(bits: Array) -> Array:
    """bfloat16 values held as their uint16 bits, as float32: each pattern shifted left by 16
    bits, so every value (inf and NaN too) is exactly the same. By the C kernel when it is
    built (a third of numpy's time, which casts, then shifts); else by numpy."""
    from cecheck import fast  # which imports this module

    b = np.ascontiguousarray(bits, dtype=np.uint16)
    out = np.empty(b.shape, dtype=np.float32)
    if fast.installed():
        fast.kernel().widen_bfloat16(b.reshape(-1), out.reshape(-1), 0, b.size)
    else:
        np.left_shift(b, 16, dtype=np.uint32, out=out.view(np.uint32))
    return out


class Bfloat16Rows:
    """bfloat16 logits held as their stored bits (uint16), read as float32 where read.

    The C kernel's multiclass pass reads the bits themselves (half the bytes of float32, and
    no widened copy of the chunk); everything else sees float32 values, exactly the widened
    ones: an index or a mask widens only what it picks (a row, a few rows, the targets'
    logits), a row slice or ``reshape`` is another Bfloat16Rows, and ``np.asarray`` or any
    other ndarray attribute widens the whole block once. Made by the ``.safetensors`` reader
    for :meth:`cecheck.inputs.Source.chunks` with ``lazy=True`` (the engine's kernel path);
    any other reader of a Source gets plain float32 arrays.
    """

    dtype = np.dtype(np.float32)
    __hash__ = None  # type: ignore[assignment]  # compared as its values, like an ndarray

    def __init__(self, bits: Array) -> None:
        self.bits = bits
        self._wide: Array | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.bits.shape)

    @property
    def ndim(self) -> int:
        return int(self.bits.ndim)

    @property
    def size(self) -> int:
        return int(self.bits.size)

    def __len__(self) -> int:
        return len(self.bits)

    def widened(self) -> Array:
        """The whole block as float32 (widened once, then kept: read-only, as a memory map's
        rows are)."""
        if self._wide is None:
            self._wide = widen_bfloat16(self.bits)
            self._wide.flags.writeable = False
        return self._wide

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Array:
        wide = self.widened()
        if dtype is not None and np.dtype(dtype) != wide.dtype:
            return wide.astype(dtype)
        return wide.copy() if copy else wide

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            return Bfloat16Rows(self.bits[key])
        if self._wide is not None:
            return self._wide[key]
        picked = np.asarray(self.bits[key])
        wide = widen_bfloat16(picked).reshape(picked.shape)
        return wide if wide.ndim else wide[()]

    def reshape(self, *shape: Any) -> Bfloat16Rows:
        return Bfloat16Rows(self.bits.reshape(*shape))

    def astype(self, dtype: Any, copy: bool = True) -> Any:
        if np.dtype(dtype) == self.dtype and not copy:
            return self
        return self.widened().astype(dtype, copy=copy)

    def __getattr__(self, name: str) -> Any:  # max, min, sum, ...: of the float32 values
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.widened(), name)


def raw(z: Array | Bfloat16Rows) -> Array:
    """What the C kernel reads of logits: the bits of bfloat16 rows, else ``z`` itself."""
    return z.bits if isinstance(z, Bfloat16Rows) else z


def stored(z: Array | Bfloat16Rows) -> Array:
    """:func:`raw`, C-contiguous: the multiclass kernel's input."""
    return np.ascontiguousarray(raw(z))


def _of_the_values(name: str) -> Any:
    def op(self: Bfloat16Rows, *args: Any) -> Any:
        return getattr(self.widened(), name)(*args)

    op.__name__ = name
    return op


# Operators work on the float32 values too (Python looks them up on the class, past
# __getattr__): z == inf, -z, z - m, iteration over the rows...
for _name in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__add__", "__radd__",
              "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
              "__pow__", "__rpow__", "__neg__", "__pos__", "__abs__", "__iter__", "__bool__",
              "__float__", "__int__", "__matmul__", "__rmatmul__"):  # fmt: skip
    setattr(Bfloat16Rows, _name, _of_the_values(_name))
