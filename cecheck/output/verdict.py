"""The report in one line, first in the table and on the HTML page: :func:`verdict_line`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cecheck.output.words import and_list, input_problems, plural

if TYPE_CHECKING:
    from cecheck.report import Report


def verdict_line(report: Report) -> str:
    """The report in one line, in the style of pytest's last line: how many rows are
    flagged, each path's dtypes that give NaN or inf with their rows, and the paths finite
    everywhere (``cecheck: 11 of 256 rows flagged — NaN/inf in textbook float16 (3), naive
    float16 (1); stable finite``; ``textbook float32/float64 (16)``: 16 rows in each). Rows
    whose input has no loss come first (``1 row with +inf logits (an overflowing output
    layer); every path finite on the other rows``): a path is "finite" over the rows it
    scores."""
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
    problems = input_problems(report)
    parts = [and_list(problems)] if problems else []
    rest = " on the other rows" if problems else ""
    if report.scored_rows == 0:
        parts.append("no row left to score")
    elif broken:
        parts.append(f"NaN/inf in {', '.join(broken)}")
        if finite:
            parts.append(f"{and_list(finite)} finite{rest}")
    elif finite:
        parts.append(f"every path finite{rest}")
    return f"{head} — {'; '.join(parts)}" if parts else head
