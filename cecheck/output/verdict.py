"""The report in one line, first in the table and on the HTML page: :func:`verdict_line`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cecheck.output.words import and_list, plural

if TYPE_CHECKING:
    from cecheck.report import Report


def verdict_line(report: Report) -> str:
    """The report in one line, in the style of pytest's last line: how many rows are
    flagged, each path's dtypes that give NaN or inf with their rows, and the paths finite
    everywhere (``cecheck: 11 of 256 rows flagged — NaN/inf in textbook float16 (3), naive
    float16 (1); stable finite``; ``textbook float32/float64 (16)``: 16 rows in each)."""
    rows = plural(report.rows, "row")
    head = (
        f"cecheck: {report.flagged_rows} of {rows} flagged"
        if report.flagged_rows
        else f"cecheck: nothing flagged in {rows}"
    )
    broken, finite = [], []
    for name in dict.fromkeys(p.path for p in report.summary if p.path != "reference"):
        bad = {p.dtype: p.nan + p.inf for p in report.summary if p.path == name and p.nan + p.inf}
        if not bad:
            finite.append(name)
        elif len(set(bad.values())) == 1:  # textbook float32/float64 (16): 16 rows in each
            broken.append(f"{name} {'/'.join(bad)} ({next(iter(bad.values()))})")
        else:
            broken.append(f"{name} " + ", ".join(f"{d} ({n})" for d, n in bad.items()))
    if not broken:
        return f"{head} — every path finite" if finite else head
    tail = f"; {and_list(finite)} finite" if finite else ""
    return f"{head} — NaN/inf in {', '.join(broken)}{tail}"
