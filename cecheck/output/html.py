"""``--format html``: the report as one self-contained HTML page, with figures.

``cecheck compare ... --format html -o report.html`` writes a single file that opens offline:
the figures are inline SVG drawn by matplotlib (the ``cecheck[html]`` extra; glyphs as paths),
the style is inline, there is no script and no URL. Without ``-o`` the page goes to stdout.

The page: the header, a one-line verdict, the summary per path and dtype, headroom with a
figure of the rows' margins and largest logits against each dtype's cliffs, the distribution
of each path's bits correct per dtype, the flags and causes, the worst flagged rows, their
explanations grouped by identical words, PyTorch's batch means over the run (with
``--batch-size``) and, for ``(B, T, C)`` logits, where in the sequence the flagged rows fall.

Every number shown is the JSON report's (:meth:`~cecheck.report.Report.to_dict`): the element
holding it carries ``data-json`` (its place in the JSON, such as ``summary/0/nan``) and
``data-value`` (its JSON value), so a test (or a script) can read them back. The figures'
data are gathered while the rows stream (:class:`~cecheck.distributions.Distributions`), in
memory that does not grow with the input.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cecheck import precision as prec
from cecheck.output.base import Reporter
from cecheck.output.explain import grouped_explanations
from cecheck.output.headroom import TITLE as HEADROOM_TITLE
from cecheck.output.headroom import cliff_row, cliff_words, factor_text, lse_line
from cecheck.output.numbers import label_text, spell, spell_bits, spell_error
from cecheck.output.verdict import verdict_line
from cecheck.output.words import (
    CAUSE_WORDS,
    closing_sentence,
    fail_on_words,
    flag_words,
    header_lines,
    loss_text,
    plural,
    row_name,
)

if TYPE_CHECKING:
    from cecheck.distributions import Distributions
    from cecheck.inputs import Source
    from cecheck.report import Report
    from cecheck.rows import ChunkRows
    from cecheck.settings import Settings

INSTALL = "pip install 'cecheck[html]'"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 72em; padding: 0 1em;
       color: #222; line-height: 1.4; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
dl.header { display: grid; grid-template-columns: max-content 1fr; gap: 0.1em 1em; }
dl.header dt { font-weight: bold; }
dl.header dd { margin: 0; overflow-wrap: anywhere; }
.verdict { font-size: 1.1em; font-weight: bold; padding: 0.6em 0.8em; border-radius: 4px; }
.verdict.ok { background: #e8f5e9; border-left: 6px solid #2e7d32; }
.verdict.bad { background: #fdecea; border-left: 6px solid #b00020; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { padding: 0.2em 0.6em; border-bottom: 1px solid #eee; text-align: left;
         vertical-align: top; }
th { border-bottom: 2px solid #ccc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.bad { color: #b00020; }
.low { color: #a15c00; font-weight: bold; }
figure { margin: 0.8em 0; }
figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #555; }
.warning { color: #a15c00; }
.muted { color: #555; }
ul.explanations li { margin-bottom: 0.3em; }
code { font-size: 0.95em; }
div.wide { overflow-x: auto; }
table.rows { font-size: 0.85em; }
table.rows th { text-align: center; }
table.rows td:first-child { white-space: nowrap; }
"""


def missing_matplotlib() -> str | None:
    """Why ``--format html`` cannot run here (matplotlib absent), or None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f"--format html draws its figures with matplotlib: {INSTALL}"
    return None


class HtmlReporter(Reporter):
    """The report as one HTML page; the figures' data gathered from every chunk."""

    title = "HTML"
    data: Distributions | None = None

    @classmethod
    def missing(cls) -> str | None:
        return missing_matplotlib()

    @property
    def streams(self) -> bool:
        return True

    def start(self, source: Source, settings: Settings) -> None:
        from cecheck.distributions import Distributions

        self.data = Distributions(source, settings)

    def chunk(self, rows: ChunkRows) -> None:
        assert self.data is not None
        self.data.add(rows.chunk)

    def finish(self, report: Report) -> None:
        assert self.data is not None
        self.data.finish()
        self.out.write(page(report, self.data, self.options.fail_on))


# ---------------------------------------------------------------- the page


def page(report: Report, data: Distributions, fail_on: Sequence[str] = ()) -> str:
    """The whole HTML document, ending in a newline."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>cecheck: {_e(_title(report))}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{body(report, data, fail_on)}</body>\n</html>\n"
    )


def body(report: Report, data: Distributions | None, fail_on: Sequence[str] = ()) -> str:
    """The page's body: every section, in order (``data`` None: without the figures)."""
    j = Json(report.to_dict(fail_on))
    sections: list[Callable[[], str]] = [
        lambda: _header(report),
        lambda: _verdict(report, j, fail_on),
        lambda: _summary(report, j),
        lambda: _headroom(report, j, data),
        lambda: _errors(data),
        lambda: _counts(report, j),
        lambda: _rows(report, j),
        lambda: _explanations(report),
        lambda: _batches(report, j, data),
        lambda: _sequence(report, data),
    ]
    return "".join(section() for section in sections)


class Json:
    """The JSON report, to mark each number with its place and value in it."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def get(self, key: str) -> Any:
        value: Any = self.data
        for part in key.split("/"):
            value = value[int(part)] if isinstance(value, list) else value[part]
        return value

    def num(self, key: str, text: str, cls: str = "") -> str:
        """``text`` (the number as the reports spell it) marked with its JSON place and value."""
        value = json.dumps(self.get(key), allow_nan=False)
        klass = f' class="{cls}"' if cls else ""
        return f'<span{klass} data-json="{_e(key)}" data-value="{_e(value)}">{_e(text)}</span>'


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _title(report: Report) -> str:
    src = report.source
    if src.logits_name == src.labels_name:
        return src.logits_name
    return f"{src.logits_name}, {src.labels_name}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int]) -> str:
    """A table of cells already HTML (the ``numeric`` columns right-aligned)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    lines = [
        "<tr>"
        + "".join(
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    ]
    return (
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(lines)
        + ("\n</tbody>\n</table>\n")
    )


def _figure(svg: str | None, caption: str) -> str:
    if svg is None:
        return ""
    return f"<figure>\n{svg}\n<figcaption>{_e(caption)}</figcaption>\n</figure>\n"


def _header(report: Report) -> str:
    lines = header_lines(report.source, report.settings)
    (_, version), rest = lines[0], lines[1:]
    items = "".join(f"<dt>{_e(name)}</dt><dd>{_e(words)}</dd>\n" for name, words in rest)
    warnings = "".join(f'<p class="warning">warning: {_e(w)}</p>\n' for w in report.source.warnings)
    return (
        f"<header>\n<h1>cecheck compare <small>({_e(version)})</small></h1>\n"
        f'<dl class="header">\n{items}</dl>\n{warnings}</header>\n'
    )


def _verdict(report: Report, j: Json, fail_on: Sequence[str]) -> str:
    """The closing sentence, first; the rows flagged; the ``--fail-on`` verdict if met."""
    failed = report.failed(fail_on)
    bad = report.flagged_rows > 0 or bool(failed)
    counts = ", ".join(
        f"{j.num(f'rows/{key}', str(j.get(f'rows/{key}')))} {key}"
        for key in ("total", "scored", "ignored", "flagged")
    )
    fail = f' <span class="bad">{_e(fail_on_words(failed))}.</span>' if failed else ""
    return (
        f'<p id="verdict" class="verdict {"bad" if bad else "ok"}">'
        f"{_e(verdict_line(report))}</p>\n"
        f'<p id="counts" class="muted">Rows: {counts}.{fail}</p>\n'
        f'<p id="closing">{_e(closing_sentence(report))}</p>\n'
    )


def _summary(report: Report, j: Json) -> str:
    ignored = report.counts.get("ignored", 0)
    title = f"Loss per path and dtype over {plural(report.scored_rows, 'scored row')}"
    if report.rows != report.scored_rows:
        title += f" (of {report.rows}" + (f"; {ignored} ignored)" if ignored else ")")
    rows = []
    for i, p in enumerate(report.summary):
        k = f"summary/{i}"
        bits = prec.get(p.dtype).bits
        correct = spell_bits(p.bits_correct, bits).split("/")[0]
        rows.append(
            [
                _e(p.path),
                _e(p.dtype),
                j.num(f"{k}/finite", str(p.finite)),
                j.num(f"{k}/nan", str(p.nan), "bad" if p.nan else ""),
                j.num(f"{k}/inf", str(p.inf), "bad" if p.inf else ""),
                j.num(f"{k}/mean", spell(p.mean)),
                j.num(f"{k}/worst_rel_error", spell_error(p.worst_rel_error)),
                j.num(f"{k}/bits_correct", correct) + (f" / {bits}" if correct != "-" else ""),
            ]
        )
    header = ["path", "dtype", "finite", "NaN", "inf", "mean loss", "worst rel. error",
              "bits correct"]  # fmt: skip
    return f"<section id='summary'>\n<h2>{_e(title)}</h2>\n" + (
        _table(header, rows, range(2, 8)) + "</section>\n"
    )


def _headroom(report: Report, j: Json, data: Distributions | None) -> str:
    h = report.headroom
    if h is None:
        return ""
    from cecheck.output import plots

    src, minimum = report.source, report.settings.min_headroom
    rows = []
    for i, c in enumerate(h.cliffs):
        k = f"headroom/paths/{i}"
        low = c.breaks and c.factor < minimum
        factor = factor_text(c.factor)
        shown = j.num(f"{k}/factor", factor.lstrip("×"), "low" if low else "")
        rows.append(
            [
                _e(c.path),
                _e(c.dtype),
                ("×" if factor.startswith("×") else "") + shown,
                _e(cliff_row(c, src)),
                _e(cliff_words(c)),
                j.num(f"{k}/rows_past", str(c.rows_past)),
            ]
        )
    lp = h.log_partition
    lse = (
        f"log Σ exp(z): mean {j.num('headroom/log_partition/mean', spell(lp.mean))}, "
        f"max {j.num('headroom/log_partition/max', spell(lp.max))}; z-loss "
        f"{j.num('headroom/log_partition/z_loss', spell(lp.z_loss))}"
        if lp is not None and lp.rows
        else _e(lse_line(lp, src))
    )
    caption = (
        "Left: each row's margin lse - z_y (its float64 loss) against the margin past which "
        "the target's probability rounds to 0 in each dtype (the naive path's cliff). Right: "
        "each row's largest logit against where exp of it overflows each dtype (the textbook "
        "path's first cliff). Both axes symmetric-log; bins fixed."
    )
    return (
        f"<section id='headroom'>\n<h2>{_e(HEADROOM_TITLE)}</h2>\n"
        + _table(["path", "dtype", "factor", "row", "then", "rows past"], rows, (2, 5))
        + f"<p>{lse + ' ' if lse else ''}(minimum headroom ×{minimum:g}).</p>\n"
        + ("" if data is None or lp is None else _figure(plots.headroom_figure(data), caption))
        + "</section>\n"
    )


def _errors(data: Distributions | None) -> str:
    if data is None:
        return ""
    from cecheck.output import plots

    caption = (
        "Rows by bits correct: how many leading bits of the float64 reference loss each path "
        "keeps in each dtype (the right edge is every bit; NaN/inf rows are counted apart)."
    )
    figure = plots.error_figure(data)
    if figure is None:
        return ""
    return (
        "<section id='errors'>\n<h2>How far each path is from the float64 loss</h2>\n"
        + _figure(figure, caption)
        + "</section>\n"
    )


def _counts(report: Report, j: Json) -> str:
    if not report.counts and not report.cause_counts:
        return ""
    src, s = report.source, report.settings
    rows = [
        [j.num(f"counts/{f}", str(n)), f"<code>{_e(f)}</code>", _e(flag_words(f, src, s))]
        for f, n in report.counts.items()
    ] + [
        [j.num(f"causes/{c}", str(n)), f"<code>{_e(c)}</code>", _e(CAUSE_WORDS[c])]
        for c, n in report.cause_counts.items()
    ]
    return (
        "<section id='counts-table'>\n<h2>Flags and causes</h2>\n"
        + _table(["rows", "flag or cause", "what it means"], rows, (0,))
        + "</section>\n"
    )


def _rows(report: Report, j: Json) -> str:
    """The worst flagged rows: a line each, the losses grouped by dtype under a second
    header line (the words of each row's flags are in the explanations below)."""
    if not report.top:
        return ""
    src, s = report.source, report.settings
    columns = [(p, d) for d in s.dtypes for p in s.paths]
    lines = []
    for i, r in enumerate(report.top):
        k = f"flagged/{i}"
        cells = [
            j.num(f"{k}/row", str(r.row)) if len(src.lead_shape) == 1 else _e(row_name(r, src)),
            _e(label_text(r.label)),
        ]
        for p, d in columns:
            text = loss_text(r, f"{p}_{d}")
            value = r.values[f"{p}_{d}"]
            shown = j.num(f"{k}/losses/{p}_{d}", text.rstrip("*"))
            bad = ' class="num bad"' if not math.isfinite(value) else ' class="num"'
            cells.append(f"<td{bad}>{shown}{'*' if text.endswith('*') else ''}</td>")
        reference = j.num(f"{k}/reference", spell(r.values["reference"]))
        cells.append(f'<td class="num">{reference}</td>')
        lines.append("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells))
    dtypes = "".join(f'<th colspan="{len(s.paths)}">{_e(d)}</th>' for d in s.dtypes)
    paths = "".join(f"<th>{_e(p)}</th>" for _, p in ((d, p) for d in s.dtypes for p in s.paths))
    head = (
        f'<tr><th rowspan="2">row</th><th rowspan="2">label</th>{dtypes}'
        f'<th rowspan="2">reference<br>float64</th></tr>\n<tr>{paths}</tr>'
    )
    title = f"Worst flagged rows ({len(report.top)} of {report.flagged_rows})"
    star = any("*" in loss_text(r, f"{p}_{d}") for r in report.top for p, d in columns)
    note = "<p>* diverged from float64 beyond rtol/atol</p>\n" if star else ""
    return (
        f"<section id='rows'>\n<h2>{_e(title)}</h2>\n<div class=\"wide\">\n"
        f'<table class="rows">\n<thead>{head}</thead>\n<tbody>\n'
        + "</tr>\n".join(lines)
        + "</tr>\n</tbody>\n</table>\n</div>\n"
        + note
        + "</section>\n"
    )


def _explanations(report: Report) -> str:
    if not report.top:
        return ""
    items = "".join(
        f"<li><b>{_e(('rows ' if len(names) > 1 else 'row ') + ', '.join(names))}:</b> "
        f"{_e(words)}.</li>\n"
        for names, words in grouped_explanations(report.top, report.source, report.settings)
    )
    more = report.flagged_rows - len(report.top)
    tail = (
        f"<p>… and {plural(more, 'more flagged row')} (--top N to show more, --format csv "
        "for every row)</p>\n"
        if more > 0
        else ""
    )
    return (
        "<section id='explanations'>\n<h2>Why</h2>\n"
        f'<ul class="explanations">\n{items}</ul>\n{tail}</section>\n'
    )


def _batches(report: Report, j: Json, data: Distributions | None) -> str:
    b = report.batches
    if b is None:
        return ""
    from cecheck.output import plots

    rows = [
        [
            _e(column),
            j.num(f"batches/columns/{column}/nan", str(c.nan), "bad" if c.nan else ""),
            j.num(f"batches/columns/{column}/inf", str(c.inf), "bad" if c.inf else ""),
            j.num(
                f"batches/columns/{column}/worst_mean",
                "-" if c.worst_mean is None else spell(c.worst_mean),
            ),
            j.num(
                f"batches/columns/{column}/worst_batch",
                "-" if c.worst_batch is None else str(c.worst_batch),
            ),
        ]
        for column, c in b.columns.items()
    ]
    issues = "".join(f"<li><b>{i.span}:</b> {_e(i.reason)}.</li>\n" for i in b.issues)
    count = j.num("batches/nonfinite_batches", str(b.nonfinite_batches))
    listing = (
        f"<p>{count} batches with a NaN or inf mean"
        + (" (the first listed):" if b.truncated else ":")
        + f"</p>\n<ul>\n{issues}</ul>\n"
        if b.nonfinite_batches
        else f"<p>Every batch mean is finite ({count} NaN or inf).</p>\n"
    )
    batches = "1 batch" if b.batches == 1 else f"{b.batches} batches"
    title = f"PyTorch's reduction='mean' over {batches} of {b.size()}"
    trace = None if data is None else data.batch_trace
    figure = None if trace is None else plots.batch_figure(trace)
    caption = (
        "Each column's batch mean over the run; batches whose mean is NaN or inf are shaded "
        "red and marked ▼ at the top."
    )
    header = ["column", "NaN batches", "inf batches", "largest mean", "in batch"]
    return (
        f"<section id='batches'>\n<h2>{_e(title)}</h2>\n"
        + _table(header, rows, (1, 2, 3, 4))
        + listing
        + _figure(figure, caption)
        + "</section>\n"
    )


def _sequence(report: Report, data: Distributions | None) -> str:
    if data is None or data.positions is None:
        return ""
    from cecheck.output import plots

    caption = (
        f"Flagged rows per position along the last leading axis ({data.sequence_length} "
        f"positions of {tuple(report.source.lead_shape)}); the strip shades each position by "
        "the share of its rows flagged."
    )
    return (
        "<section id='sequence'>\n<h2>Where in the sequence the flagged rows fall</h2>\n"
        + _figure(plots.sequence_figure(data), caption)
        + "</section>\n"
    )
