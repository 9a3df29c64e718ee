"""``--format markdown``: a compact report for a GitHub Actions job summary.

``cecheck compare ... --format markdown >> "$GITHUB_STEP_SUMMARY"`` appends a header line
(inputs, shapes, task, dtypes), the summary per path and dtype, the flag and cause counts, the
worst flagged rows (at most :data:`MAX_ROWS`) and the closing sentence, as GitHub-flavoured
Markdown tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cecheck import precision as prec
from cecheck.output.base import Reporter
from cecheck.output.headroom import markdown_line
from cecheck.output.numbers import label_text, spell, spell_bits, spell_error
from cecheck.output.words import (
    CAUSE_WORDS,
    closing_sentence,
    describe_flags,
    fail_on_words,
    flag_words,
    header_lines,
    loss_text,
    row_name,
)

if TYPE_CHECKING:
    from cecheck.report import Report

MAX_ROWS = 10  # flagged rows a job summary shows, whatever --top says
FILE_LINES = ("input", "logits", "labels")  # header lines that name a file


class MarkdownReporter(Reporter):
    """The report as GitHub-flavoured Markdown, written when the run is done."""

    title = "Markdown"

    def finish(self, report: Report) -> None:
        self.out.write(markdown(report, self.options.fail_on))


def markdown(report: Report, fail_on: Sequence[str] = ()) -> str:
    """The whole Markdown report, ending in a newline."""
    blocks = [_header(report), _summary(report)]
    headroom = markdown_line(report)
    if headroom is not None:
        blocks.append(_escape(headroom))
    if report.counts or report.cause_counts:
        blocks.append(_counts(report))
    if report.top:
        blocks.append(_rows(report))
    closing = f"**{_escape(closing_sentence(report))}**"
    failed = report.failed(fail_on)
    if failed:
        closing += f"\n\n{_escape(fail_on_words(failed))}"
    blocks.append(closing)
    return "\n\n".join(blocks) + "\n"


def _header(report: Report) -> str:
    """A title, then one line: what was read and what is computed."""
    lines = header_lines(report.source, report.settings)
    (_, version), rest = lines[0], lines[1:]
    parts = [
        f"{name} `{words}`" if name in FILE_LINES else f"{name} {_escape(words)}"
        for name, words in rest
    ]
    return f"### cecheck compare ({version})\n\n" + " · ".join(parts)


def _summary(report: Report) -> str:
    """One line per path and dtype: rows NaN and inf, the worst error and the bits kept."""
    title = f"Loss per path and dtype over {report.scored_rows} scored of {report.rows} rows:"
    header = ["path", "dtype", "NaN", "inf", "mean loss", "worst rel. error", "bits correct"]
    body = [
        [
            p.path,
            p.dtype,
            str(p.nan),
            str(p.inf),
            spell(p.mean) if p.finite + p.nan + p.inf else "-",
            spell_error(p.worst_rel_error),
            spell_bits(p.bits_correct, prec.get(p.dtype).bits),
        ]
        for p in report.summary
    ]
    return title + "\n\n" + _table(header, body, right=range(2, 7))


def _counts(report: Report) -> str:
    """How many rows carry each flag and each cause, and what it means."""
    src, s = report.source, report.settings
    body = [[str(n), f"`{f}`", flag_words(f, src, s)] for f, n in report.counts.items()]
    body += [[str(n), f"`{c}`", CAUSE_WORDS[c]] for c, n in report.cause_counts.items()]
    return _table(["rows", "flag or cause", "what it means"], body, right=[0])


def _rows(report: Report) -> str:
    """The worst flagged rows: a line each, every loss column, and its flags in words."""
    src, s = report.source, report.settings
    shown = report.top[:MAX_ROWS]
    losses = [f"{p}_{d}" for p in s.paths for d in s.dtypes]
    header = ["row", "label", *(c.replace("_", " ") for c in losses), "reference", "flagged"]
    body = [
        [
            row_name(r, src),
            label_text(r.label),
            *(loss_text(r, c) for c in losses),
            spell(r.values["reference"]),
            describe_flags(r, src, s),
        ]
        for r in shown
    ]
    title = f"Worst flagged rows ({len(shown)} of {report.flagged_rows}"
    title += "; * diverged from float64):" if any("*" in c for b in body for c in b[2:-2]) else "):"
    return title + "\n\n" + _table(header, body, right=range(2, len(header) - 1))


def _table(header: Sequence[str], body: Sequence[Sequence[str]], right: Sequence[int]) -> str:
    """A GitHub-flavoured Markdown table; the ``right`` columns right-aligned."""
    rule = ["--:" if i in right else "---" for i in range(len(header))]
    lines = [header, rule, *body]
    return "\n".join("| " + " | ".join(_escape(c) for c in line) + " |" for line in lines)


def _escape(text: str) -> str:
    """A cell's text on one line, ``|`` escaped so that it stays in its cell."""
    return " ".join(text.split()).replace("|", "\\|")
