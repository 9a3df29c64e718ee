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
probability the paths take (else the row takes the exact exps). Rows with a logit that is
not finite in the format (NaN, inf, a -inf mask, beyond 65504 in float16) are recomputed by
numpy.
"""

from __future__ import annotations

import functools

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
        p = prec.get(d)
        x = np.arange(1 << 16, dtype=np.uint16).view(p.storage).astype(np.float32)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            blocks.append((p.round(np.exp(x)), p.round(np.log(x)), p.round(elementary(np.log, x))))
    return np.ascontiguousarray(np.array(blocks), dtype=np.float32)


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
