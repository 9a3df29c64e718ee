"""Numbers as the reports spell them: one function, :func:`spell`, for every loss and value."""

from __future__ import annotations

import math

import numpy as np

from cecheck import precision as prec


def spell(x: float, dtype: str | None = None) -> str:
    """``x`` as text; NaN and inf spelled out (``NaN``, ``inf``, ``-inf``).

    Two spellings, on purpose: without ``dtype``, 6 significant digits, as the tables and
    the Markdown summary show losses side by side; with a ``dtype``, the fewest digits that
    read back to ``x`` in that dtype, as ``cecheck trace`` shows each step
    (:func:`format_value` computes that one).

    >>> spell(500.0), spell(float("nan")), spell(2.0 / 3.0), spell(0.66650390625, "float16")
    ('500', 'NaN', '0.666667', '0.6665')
    """
    if dtype is not None or not math.isfinite(x):
        return format_value(x, dtype or "float64")
    return f"{x:.6g}"


def label_text(label: object) -> str:
    """A row's label as a cell: a float target in its shortest form (``0.5``), ``-`` for a
    class-index label that is not a whole number, else as is."""
    if label is None:
        return "-"
    if isinstance(label, float):
        return f"{label:g}"
    return str(label)


def spell_error(rel: float | None) -> str:
    """A relative error in 2 significant digits (``1.2e-07``); ``-`` where there is none."""
    return "-" if rel is None else f"{rel:.2g}"


def spell_bits(correct: float | None, bits: int) -> str:
    """Bits correct out of the dtype's ``bits`` (``23.7/24``); ``-`` where not judged."""
    return "-" if correct is None else f"{correct:.1f}/{bits}"


def format_value(x: float, dtype: str) -> str:
    """``x``, a value of ``dtype``, in the fewest significant digits that read back to it.

    float16 needs up to 5 digits, bfloat16 4, float32 9 and float64 17; a value of a narrow
    format therefore shows exactly the digits that format holds. Positional between 1e-4
    and 1e6, scientific otherwise; non-finite as ``NaN``, ``inf``, ``-inf``.
    """
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    storage = prec.get(dtype).storage
    target = np.array(x).astype(storage)
    with np.errstate(over="ignore"):  # a shorter text may round past the format's largest
        for digits in range(1, 18):
            if np.array(float(f"{x:.{digits - 1}e}")).astype(storage) == target:
                break
    if 1e-4 <= abs(x) < 1e6:
        return np.format_float_positional(
            x, precision=digits, unique=False, fractional=False, trim="-"
        )
    return np.format_float_scientific(x, precision=digits - 1, unique=False, trim="-", exp_digits=1)
