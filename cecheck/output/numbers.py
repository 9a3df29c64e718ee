"""Numbers as the reports spell them: one function, :func:`spell`, for every loss and value."""

from __future__ import annotations

import math

from cecheck.trace import format_value


def spell(x: float, dtype: str | None = None) -> str:
    """``x`` as text; NaN and inf spelled out (``NaN``, ``inf``, ``-inf``).

    Two spellings, on purpose: without ``dtype``, 6 significant digits, as the tables and
    the Markdown summary show losses side by side; with a ``dtype``, the fewest digits that
    read back to ``x`` in that dtype, as ``cecheck trace`` shows each step
    (:func:`cecheck.trace.format_value` computes that one).

    >>> spell(500.0), spell(float("nan")), spell(2.0 / 3.0), spell(2.0 / 3.0, "float16")
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
