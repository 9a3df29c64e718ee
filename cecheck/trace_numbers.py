"""Numbers as the trace's sentences quote them: two significant digits, a format's largest
and smallest numbers, and probabilities far below float64's range given by their logs."""

from __future__ import annotations

import math

from cecheck.output.numbers import format_value
from cecheck.precision import Precision


def sci(x: float) -> str:
    """Two significant digits: ``3.4e38``, ``6.0e-8``; plain between 0.01 and 1e5."""
    if not math.isfinite(x) or x == 0:
        return format_value(float(x), "float64")
    if 1e-2 <= abs(x) < 1e5:
        return f"{x:.2g}"
    mant, exp = f"{x:.1e}".split("e")
    return f"{mant}e{int(exp)}"


def big(x: float) -> str:
    """A format's largest number as people quote it: 65504, 3.4e38, 1.8e308."""
    return format_value(float(x), "float64") if abs(x) < 1e5 else sci(x)


def small(p: Precision) -> str:
    """The smallest positive (subnormal) number of the format."""
    return sci(float(p.finfo.smallest_subnormal))


def from_log(log_value: float) -> str:
    """``exp(log_value)`` as two significant digits, even far below float64's range."""
    if log_value > -700:
        return sci(math.exp(log_value))
    exp10 = log_value / math.log(10)
    e = math.floor(exp10)
    mant = round(10 ** (exp10 - e), 1)
    if mant >= 10:
        mant, e = mant / 10, e + 1
    return f"{mant:.1f}e{e}"
