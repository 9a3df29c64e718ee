"""The precisions a path can be emulated in, and how each is emulated.

float32 and float64 are numpy's own arithmetic: every ufunc call rounds its result to the
dtype, and sums over classes use numpy's pairwise summation in that dtype.

float16 and bfloat16 are emulated: values are held in float32 arrays, and the result of
every elementary operation (subtract, exp, log, log1p, divide, multiply, ...) is rounded to
the narrow format (round to nearest even, overflow to inf, gradual underflow) before the
next operation uses it. An operation computed in float32 and rounded once to an 11- or
8-bit significand is the correctly rounded result except in rare double-rounding cases.
Sums over classes accumulate in float32 and are rounded once, which is what numpy does for
float16 and what PyTorch does for both on CPU.

bfloat16 is ml_dtypes' type, imported only when a bfloat16 value is touched (its import
takes about half a second): a run in float32 and float64 never loads it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cecheck.arraytypes import Array
from cecheck.choices import DTYPES

__all__ = ["DTYPES", "PRECISIONS", "Precision", "get", "names"]


@dataclass(frozen=True)
class Precision:
    """A floating-point format a path is computed in."""

    name: str  # the format itself, :attr:`storage`, by its numpy or ml_dtypes name
    work: np.dtype  # the numpy dtype arithmetic is carried out in
    bits: int  # significand bits, the implicit one included

    @functools.cached_property
    def storage(self) -> np.dtype:
        """The format itself as a numpy dtype (bfloat16's imports ml_dtypes)."""
        if self.name == "bfloat16":
            import ml_dtypes

            bf16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
            return bf16
        return np.dtype(self.name)

    @functools.cached_property
    def finfo(self) -> Any:
        """The machine limits of the format: numpy's ``finfo``, ml_dtypes' for bfloat16."""
        if self.name == "bfloat16":
            import ml_dtypes

            return ml_dtypes.finfo(self.storage)
        return np.finfo(self.storage)

    @property
    def emulated(self) -> bool:
        return self.storage != self.work

    def round(self, x: Array) -> Array:
        """Round ``x`` (held in ``work``) to this format; a no-op for float32/float64."""
        if self.emulated:
            with np.errstate(over="ignore"):  # beyond the format's range: inf, as it should
                return x.astype(self.storage).astype(self.work)
        return x

    def cast(self, x: npt.ArrayLike) -> Array:
        """The input values as this format would store them, held in ``work``."""
        with np.errstate(over="ignore"):  # float64 beyond float32's range: inf
            return self.round(np.asarray(x, dtype=self.work))

    @property
    def max_exp_arg(self) -> float:
        """The largest x whose exp(x) is finite in this format."""
        return float(np.log(np.float64(self.finfo.max)))

    @property
    def max(self) -> float:
        return float(self.finfo.max)

    @property
    def tiny(self) -> float:
        """The smallest positive normal number of this format."""
        return float(self.finfo.smallest_normal)

    @property
    def smallest(self) -> float:
        """The smallest positive (subnormal) number of this format."""
        return float(self.finfo.smallest_subnormal)

    @property
    def eps(self) -> float:
        """The machine epsilon: the distance from 1 to the next number of this format."""
        return 2.0 ** (1 - self.bits)

    def half_spacing(self, x: float) -> float:
        """Half the distance between neighbouring numbers of this format near ``x``: the
        rounding error of storing ``x`` (0 for 0 and non-finite ``x``)."""
        if x == 0 or not math.isfinite(x):
            return 0.0
        return 2.0 ** (math.floor(math.log2(abs(x))) - self.bits)


PRECISIONS = {
    "float16": Precision("float16", np.dtype(np.float32), 11),
    "bfloat16": Precision("bfloat16", np.dtype(np.float32), 8),
    "float32": Precision("float32", np.dtype(np.float32), 24),
    "float64": Precision("float64", np.dtype(np.float64), 53),
}


def names(dtypes: str | Iterable[str]) -> tuple[str, ...]:
    """The dtype names of ``"float16,float32"`` or of a sequence such as ``["float16"]``.

    A string is a comma list (one name is a list of one), never a sequence of characters.
    Names are checked later, by :func:`get`.
    """
    if isinstance(dtypes, str):
        return tuple(n.strip() for n in dtypes.split(",") if n.strip())
    return tuple(dtypes)


def get(name: str) -> Precision:
    """The Precision called ``name``; ValueError listing the choices otherwise."""
    try:
        return PRECISIONS[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}: choose from {', '.join(DTYPES)}") from None


def widen(values: Any, *, copy: bool = False) -> Array:
    """``values`` as float64 (no copy unless ``copy``, when they already are).

    A signalling NaN (a NaN whose quiet bit is clear: bit garbage in a corrupted dump) raises
    the invalid flag when it is cast, which numpy would print as a RuntimeWarning; it is a
    NaN like any other (its row is flagged ``nonfinite_input``), so the flag is ignored.
    """
    with np.errstate(invalid="ignore"):
        return np.array(values, dtype=np.float64, copy=copy or None)
