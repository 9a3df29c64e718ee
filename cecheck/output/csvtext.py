"""The CSV report's text, written from a chunk's columns (:func:`cecheck.rows.chunk_columns`)
without a DataFrame: the bytes pandas' ``to_csv(index=False, float_format="%.17g",
na_rep="nan")`` writes for the same rows (:func:`cecheck.report.write_csv_frame`), faster.

Floats are spelled as ``"%.17g" % value`` (17 significant digits, so they read back to the
same float64; ``nan``, ``inf``, ``-inf``, ``-0``), integers as ``str``, a missing label as
``nan``; a text holding a comma, a quote or a line end is quoted as the ``csv`` module quotes
it. The float columns are spelled by the C formatter ``cecheck._csvtext`` where it is built,
else in Python, with the same bytes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from cecheck.arraytypes import Array

# A column of cecheck.rows.chunk_columns, and as the C formatter takes it.
Column = Array | list[Any] | tuple[Array, ...]
Cells = Array | list[str] | tuple[Array, ...]

_SPECIAL = (",", '"', "\n", "\r")  # a cell holding one of these may need quotes


def chunk_text(columns: dict[str, Column], *, header: bool) -> str:
    """One chunk's lines (after the header line if ``header``), each ended by a newline."""
    head = ",".join(_quoted(list(columns))) + "\n" if header else ""
    return head + lines([_cells(values) for values in columns.values()])


def lines(columns: Sequence[Cells]) -> str:
    """The rows of ``columns`` as CSV lines: by the C formatter where it is built."""
    try:
        from cecheck import _csvtext
    except ImportError:
        return python_lines(columns)
    text: str = _csvtext.lines(columns)
    return text


def python_lines(columns: Sequence[Cells]) -> str:
    """:func:`lines` in Python: the same text, slower."""
    texts = []
    for cells in columns:
        if isinstance(cells, tuple):  # an index: quoted, as it holds commas
            axes = [map(str, a.tolist()) for a in cells]
            texts.append([_quoted_index(i) for i in zip(*axes, strict=True)])
        elif isinstance(cells, np.ndarray):
            spell = "%.17g".__mod__ if cells.dtype.kind == "f" else str
            texts.append(list(map(spell, cells.tolist())))
        else:
            texts.append(cells)
    return "".join(",".join(row) + "\n" for row in zip(*texts, strict=True))


def _quoted_index(index: tuple[str, ...]) -> str:
    return '"' + ",".join(index) + '"' if len(index) > 1 else index[0]


def _cells(values: Column) -> Cells:
    """A column as :func:`lines` takes it: float64 or int64 numbers, an index (int64 per
    axis), or texts (labels and flags, quoted where they must be; a missing label ``nan``)."""
    if isinstance(values, tuple):
        return tuple(np.ascontiguousarray(a, dtype=np.int64) for a in values)
    if isinstance(values, np.ndarray):
        dtype = np.float64 if values.dtype.kind == "f" else np.int64
        return np.ascontiguousarray(values, dtype=dtype)
    types = set(map(type, values))
    if types == {float}:  # binary targets
        return np.array(values, dtype=np.float64)
    if types <= {int}:
        return list(map(str, values))
    if types == {str}:
        return _quoted(values)
    return [_cell(v) for v in values]


def _cell(value: object) -> str:
    if value is None:
        return "nan"
    if isinstance(value, float):
        return f"{value:.17g}"
    return _quoted([str(value)])[0]


def _quoted(texts: list[str]) -> list[str]:
    """Texts as CSV cells, quoted where the ``csv`` module (which pandas writes with) quotes
    them: a text holding a comma, a quote or a line end (its quotes doubled)."""
    joined = "".join(texts)
    if any(c in joined for c in _SPECIAL[1:]):  # quotes or line ends: as the csv module says
        return [_csv_cell(t) if any(c in t for c in _SPECIAL) else t for t in texts]
    if "," not in joined:
        return texts
    return ['"' + t + '"' if "," in t else t for t in texts]


def _csv_cell(text: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([text])
    return out.getvalue()[:-1]
