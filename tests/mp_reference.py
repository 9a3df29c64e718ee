"""Exact cross-entropy losses with mpmath, the yardstick every loss test measures against.

Each function takes one row of float64 inputs (converted to ``mpf`` exactly: every float64
is a binary fraction) and evaluates the *textbook definition* of the loss, with no max
shift and no ``log1p``, in :data:`DPS` decimal digits, then rounds once to the nearest
float64:

- multiclass: ``log(sum_j exp(z_j)) - z_y``
- soft labels: ``sum_i t_i * (log(sum_j exp(z_j)) - z_i)``
- binary: ``(1 - t) * log(1 + exp(z)) + t * log(1 + exp(-z))``, i.e.
  ``-(t log sigmoid(z) + (1 - t) log(1 - sigmoid(z)))`` with the logs written out
- multilabel: the mean over classes of the binary loss

This is deliberately not the algorithm of ``cecheck.losses``: it gets its accuracy from
brute precision rather than from rearranging the formula, so the two can be checked
against each other.

How accurate: mpmath has an unbounded exponent range, so ``exp`` cannot overflow. The only
error is the rounding of the working precision: ``log(sum exp)`` is accurate to about
``10**-DPS`` relative, so the difference ``lse - z_y`` carries an absolute error below
``|lse| * 10**-DPS``. For logits up to 1e5 in magnitude that is below 1e-440, far below
the smallest normal float64 (2.2e-308): every loss that is a normal float64 comes out
correctly rounded (a relative error under 1e-130 before the final rounding). A loss
smaller than about 1e-440 may come out as 0; no test asserts on such values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mpmath
import numpy as np

DPS = 450  # decimal digits: see the module docstring for why this is enough


def _mpf_row(values: Sequence[float] | np.ndarray) -> list[mpmath.mpf]:
    """Each value as an exact mpf (float64 -> mpf is exact)."""
    return [mpmath.mpf(float(v)) for v in np.asarray(values, dtype=np.float64).ravel()]


def _lse(z: list[mpmath.mpf]) -> mpmath.mpf:
    return mpmath.log(mpmath.fsum(mpmath.exp(v) for v in z))


def _softplus(x: mpmath.mpf) -> mpmath.mpf:
    """``log(1 + exp(x))`` straight from the definition."""
    return mpmath.log(1 + mpmath.exp(x))


def multiclass(z: Sequence[float] | np.ndarray, y: int) -> float:
    """``log(sum_j exp(z_j)) - z_y``, exactly, rounded to float64."""
    with mpmath.workdps(DPS):
        zz = _mpf_row(z)
        return float(_lse(zz) - zz[int(y)])


def multiclass_repeated(values: Sequence[float], counts: Sequence[int], y: int) -> float:
    """:func:`multiclass` of a row holding ``values[i]`` ``counts[i]`` times, target a class
    of value ``values[y]``: ``log(sum_i counts_i exp(v_i)) - v_y`` (a vocabulary of 262,144
    classes in a few terms), exactly, rounded to float64."""
    with mpmath.workdps(DPS):
        vv = _mpf_row(values)
        total = mpmath.fsum(int(n) * mpmath.exp(v) for v, n in zip(vv, counts, strict=True))
        return float(mpmath.log(total) - vv[int(y)])


def soft(z: Sequence[float] | np.ndarray, t: Sequence[float] | np.ndarray) -> float:
    """``sum_i t_i (log(sum_j exp(z_j)) - z_i)``, exactly, rounded to float64.

    A class with ``t_i = 0`` adds nothing, even where ``z_i = -inf`` (a masked class:
    ``0 * inf`` is taken as 0, the convention ``0 log 0 = 0``).
    """
    with mpmath.workdps(DPS):
        zz, tt = _mpf_row(z), _mpf_row(t)
        lse = _lse(zz)
        terms = (ti * (lse - zi) for ti, zi in zip(tt, zz, strict=True) if ti != 0)
        return float(mpmath.fsum(terms))


def _binary_mp(z: mpmath.mpf, t: mpmath.mpf) -> mpmath.mpf:
    return (1 - t) * _softplus(z) + t * _softplus(-z)


def binary(z: float, t: float) -> float:
    """``-(t log sigmoid(z) + (1 - t) log(1 - sigmoid(z)))``, exactly, rounded to float64."""
    with mpmath.workdps(DPS):
        return float(_binary_mp(mpmath.mpf(float(z)), mpmath.mpf(float(t))))


def multilabel(z: Sequence[float] | np.ndarray, t: Sequence[float] | np.ndarray) -> float:
    """The mean over classes of :func:`binary`, exactly, rounded to float64."""
    with mpmath.workdps(DPS):
        zz, tt = _mpf_row(z), _mpf_row(t)
        total = mpmath.fsum(_binary_mp(zi, ti) for zi, ti in zip(zz, tt, strict=True))
        return float(total / len(zz))


def rows(kind: str, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The exact loss of every row, for ``kind`` in index/soft/binary/multilabel."""
    by_kind: dict[str, Callable[..., float]] = {
        "index": multiclass,
        "soft": soft,
        "binary": binary,
        "multilabel": multilabel,
    }
    fn = by_kind[kind]
    return np.array([fn(zi, li) for zi, li in zip(z, labels, strict=True)], dtype=np.float64)
