"""An exact sum of float64 values, kept as an integer: adding is associative and commutative.

Every finite float64 is a whole multiple of ``2**-1126`` (a 53-bit mantissa times a power
of two no smaller than the subnormals'), so a sum of them is an integer count of that unit,
which a Python int holds exactly whatever the number of terms. Two :class:`ExactSum` merge by
adding their integers: a sum over shards, in any grouping, is the very sum over the
concatenated rows, and its mean (rounded once, correctly) is the same to the last bit.

Vectorised: a chunk's values are split into mantissa halves and exponents; the halves are
added per exponent by :func:`numpy.bincount` (exact in float64: 27-bit halves, at most
``2**25`` of them a call), and only the few distinct exponents become Python ints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cecheck.arraytypes import Array

_SCALE = 1126  # the sum is ``total * 2**-_SCALE``
_BIAS = 1100  # frexp exponents run from -1073 (subnormals) to 1024
_SLICE = 1 << 25  # values a bincount at most: 2**25 halves below 2**27 sum below 2**52


@dataclass
class ExactSum:
    """The exact sum of the finite float64 values added (the caller leaves NaN and inf out)."""

    total: int = 0  # in units of 2**-1126

    def add(self, values: Array) -> None:
        """Add ``values`` (finite float64) exactly."""
        v = np.asarray(values, dtype=np.float64).ravel()
        for i in range(0, v.size, _SLICE):
            self.total += _exact(v[i : i + _SLICE])

    def merge(self, other: ExactSum) -> None:
        self.total += other.total

    def value(self) -> float:
        """The sum, rounded once to float64 (inf past float64's range)."""
        return _divide(self.total, 1)

    def mean(self, n: int) -> float:
        """The sum divided by ``n``, rounded once (NaN for ``n`` 0)."""
        return _divide(self.total, n) if n else float("nan")


def _divide(total: int, n: int) -> float:
    try:
        return total / (n << _SCALE)  # int / int: correctly rounded
    except OverflowError:
        return float("inf") if total > 0 else float("-inf")


def _exact(v: Array) -> int:
    if v.size == 0:
        return 0
    mantissa, exponent = np.frexp(v)  # v = mantissa * 2**exponent, 0.5 <= |mantissa| < 1
    m = (mantissa * 2.0**53).astype(np.int64)  # exact: 53 bits
    hi, lo = m >> 26, m & ((1 << 26) - 1)  # m = hi * 2**26 + lo, lo >= 0
    at = (exponent + _BIAS).astype(np.intp)
    width = 2 * _BIAS
    sum_hi = np.bincount(at, weights=hi.astype(np.float64), minlength=width)
    sum_lo = np.bincount(at, weights=lo.astype(np.float64), minlength=width)
    total = 0
    for e in np.flatnonzero((sum_hi != 0) | (sum_lo != 0)):
        units = (int(sum_hi[e]) << 26) + int(sum_lo[e])  # in units of 2**(e - BIAS - 53)
        total += units << (int(e) - _BIAS - 53 + _SCALE)
    return total
