"""An exact sum of float64 values, kept as an integer: adding is associative and commutative.

Every finite float64 is a whole multiple of ``2**-1126`` (a 53-bit mantissa times a power
of two no smaller than the subnormals'), so a sum of them is an integer count of that unit,
which a Python int holds exactly whatever the number of terms. Two :class:`ExactSum` merge by
adding their integers: a sum over shards, in any grouping, is the very sum over the
concatenated rows, and its mean (rounded once, correctly) is the same to the last bit.

Vectorised: the values are split into mantissa halves and exponents; the halves are
added per exponent by :func:`numpy.bincount` (exact in float64: 27-bit halves, at most
``2**25`` of them a call), and only the few distinct exponents become Python ints. That pass
costs some 40 µs whatever its size, so the values added are kept (copied) until
:data:`_BATCH` of them are in, then summed in one pass: a run adds a chunk's few hundred
losses to each of its sums, and pays the fixed cost once per batch rather than per chunk.
"""

from __future__ import annotations

import numpy as np

from cecheck.arraytypes import Array

_SCALE = 1126  # the sum is ``total * 2**-_SCALE``
_BIAS = 1100  # frexp exponents run from -1073 (subnormals) to 1024
_SLICE = 1 << 25  # values a bincount at most: 2**25 halves below 2**27 sum below 2**52
_BATCH = 1 << 14  # values kept before they are summed (128 KB of float64)


# The non-finite values an ExactSum has seen, as bits: its sum is then theirs (IEEE's).
_NAN, _PLUS_INF, _MINUS_INF = 1, 2, 4


class ExactSum:
    """The exact sum of the float64 values added: NaN once a NaN (or both infinities) is in,
    ±inf once an infinity is, as a float64 sum gives them."""

    def __init__(self, total: int = 0) -> None:
        self._total = total  # in units of 2**-1126, of the finite values summed so far
        self._special = 0  # _NAN | _PLUS_INF | _MINUS_INF: the non-finite values seen
        self._kept: list[Array] = []  # values added, not summed yet
        self._kept_size = 0

    @property
    def total(self) -> int:
        """The sum in units of ``2**-1126``."""
        self._sum_kept()
        return self._total

    def add(self, values: Array) -> None:
        """Add ``values`` (float64) exactly."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size >= _BATCH:
            self._sum(v)
            return
        self._kept.append(v.copy())  # a copy: the caller's array may change
        self._kept_size += v.size
        if self._kept_size >= _BATCH:
            self._sum_kept()

    def _sum_kept(self) -> None:
        if self._kept:
            self._sum(np.concatenate(self._kept))
            self._kept, self._kept_size = [], 0

    def _sum(self, v: Array) -> None:
        finite = np.isfinite(v)
        if not finite.all():  # the headroom's squares of log-partitions past 1e154, say
            odd = v[~finite]
            self._special |= (
                _NAN * bool(np.isnan(odd).any())
                | _PLUS_INF * bool((odd == np.inf).any())
                | _MINUS_INF * bool((odd == -np.inf).any())
            )
            v = v[finite]
        for i in range(0, v.size, _SLICE):
            self._total += _exact(v[i : i + _SLICE])

    def merge(self, other: ExactSum) -> None:
        self._total += other.total
        self._special |= other._special

    def value(self) -> float:
        """The sum, rounded once to float64 (inf past float64's range)."""
        return self.mean(1)

    def mean(self, n: int) -> float:
        """The sum divided by ``n``, rounded once (NaN for ``n`` 0)."""
        if not n:
            return float("nan")
        self._sum_kept()
        if self._special:
            both = _PLUS_INF | _MINUS_INF
            nan = self._special & _NAN or self._special & both == both
            return float("nan") if nan else float("inf" if self._special & _PLUS_INF else "-inf")
        return _divide(self.total, n)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ExactSum)
            and self.total == other.total  # sums what is kept
            and self._special == other._special
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it was

    def __repr__(self) -> str:
        return f"ExactSum(total={self.total}, special={self._special})"


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
