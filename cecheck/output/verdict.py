"""The report in one line, first on a page and last on stderr: :func:`verdict_line`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cecheck.output.words import and_list, plural

if TYPE_CHECKING:
    from cecheck.report import Report


def verdict_line(report: Report) -> str:
    """The report in one line, in the style of pytest's last line: how many rows are
    flagged, and each path's NaN/inf per dtype (``cecheck: 3 of 4096 rows flagged — naive
    NaN/inf in float16 (3 rows); stable finite``)."""
    rows = plural(report.rows, "row")
    head = (
        f"cecheck: {report.flagged_rows} of {rows} flagged"
        if report.flagged_rows
        else f"cecheck: nothing flagged in {rows}"
    )
    parts = []
    for path in dict.fromkeys(p.path for p in report.summary if p.path != "reference"):
        bad = [
            f"{p.dtype} ({plural(p.nan + p.inf, 'row')})"
            for p in report.summary
            if p.path == path and p.nan + p.inf
        ]
        parts.append(f"{path} NaN/inf in {and_list(bad)}" if bad else f"{path} finite")
    return head + (" — " + "; ".join(parts) if parts else "")
