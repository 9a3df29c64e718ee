"""The report for people, as rich renderables: a header (inputs, shapes, task, dtypes), a
summary table (one line per path and dtype), the counts of each flag and cause, the worst
flagged rows side by side with a sentence or two on why each failed, and the closing
sentence. The words come from :mod:`cecheck.output.words` and :mod:`cecheck.output.explain`.
:class:`TableReporter` is ``--format table``.

Every piece is a plain renderable, so tests render it into a recording Console. Nothing here
needs colour to be read: NaN and inf are spelled out, and a value that diverged from float64
carries a ``*``.
"""

from __future__ import annotations

import io
import itertools
import math
import posixpath
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from cecheck import families
from cecheck import frameworks as fw
from cecheck import precision as prec
from cecheck.diagnose import NOT_FLAGGED
from cecheck.output.base import Reporter
from cecheck.output.explain import grouped_explanations
from cecheck.output.headroom import headroom_table
from cecheck.output.numbers import label_text, spell, spell_bits, spell_error
from cecheck.output.verdict import verdict_line
from cecheck.output.words import (
    CAUSE_WORDS,
    and_list,
    closing_sentence,
    fail_on_words,
    flag_words,
    header_lines,
    loss_text,
    plural,
    row_name,
)

if TYPE_CHECKING:
    from cecheck.inputs import Source
    from cecheck.report import PathSummary, Report, RowRecord
    from cecheck.rows import ChunkRows
    from cecheck.settings import Settings


# ---------------------------------------------------------------- header and tables


def header(source: Source, settings: Settings) -> RenderableType:
    """What was read and what is computed: files, shapes, task, label form, dtypes."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, words in header_lines(source, settings):
        grid.add_row(name, words)
        if name in ("input", "labels") and source.shards is not None:  # an input of many files
            grid.add_row("shards", plural(len(source.shards.names), "file") + ", rows in order")
    return grid


def short_dtype(dtype: str) -> str:
    """The dtype's short name for a narrow table: ``f16``, ``bf16``, ``f32``, ``f64``."""
    return dtype.replace("bfloat", "bf").replace("float", "f")


def summary_table(report: Report, *, narrow: bool = False) -> Table:
    """One line per path and dtype: finite/NaN/inf counts, mean loss, worst error, bits;
    ``narrow``: short dtype names (:func:`short_dtype`) and headers, one space between the
    columns and no finite count, for a terminal of 60 columns."""
    ignored = report.counts.get("ignored", 0)
    title = f"Loss per path and dtype over {plural(report.scored_rows, 'scored row')}"
    if report.rows != report.scored_rows:
        title += f" (of {report.rows}"
        title += f"; {ignored} ignored)" if ignored else ")"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    if narrow:  # one space between the columns, none cut
        table.padding = (0, 0, 0, 1)
    table.add_column("path", no_wrap=narrow)
    table.add_column("dtype", no_wrap=narrow)
    heads: tuple[str, ...] = (
        "finite",
        "NaN",
        "inf",
        "mean loss",
        "worst\nrel. error",
        "bits\ncorrect",
    )
    if narrow:  # the finite rows are the others: their column goes
        heads = ("NaN", "inf", "mean\nloss", "rel.\nerror", "bits")
    for name in heads:
        table.add_column(name, justify="right", no_wrap=narrow)
    dtypes = report.settings.dtypes
    for p in report.summary:
        bits = prec.get(p.dtype).bits
        table.add_row(
            p.path,
            short_dtype(p.dtype) if narrow else p.dtype,
            *(() if narrow else (str(p.finite),)),
            Text(str(p.nan), style="red" if p.nan else ""),
            Text(str(p.inf), style="red" if p.inf else ""),
            mean_cell(p),
            spell_error(p.worst_rel_error),
            spell_bits(p.bits_correct, bits),
            end_section=p.path == report.settings.paths[-1] and p.dtype == dtypes[-1],
        )
    return table


def mean_cell(p: PathSummary) -> Text:
    """The mean loss: red when NaN or inf rows make it so; ``-`` over no scored row."""
    if not p.finite + p.nan + p.inf:
        return Text("-")
    return Text(spell(p.mean), style="red" if (p.nan or p.inf) and math.isnan(p.mean) else "")


def counts_table(report: Report) -> Table | None:
    """How many rows carry each flag and each cause; None when nothing was flagged."""
    if not report.counts and not report.cause_counts:
        return None
    src, s = report.source, report.settings
    table = Table(title="Flags and causes", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)  # fmt: skip
    table.add_column("rows", justify="right")
    table.add_column("flag or cause", no_wrap=True)
    table.add_column("what it means", overflow="fold")
    flags = list(report.counts.items())
    for i, (flag, n) in enumerate(flags):
        table.add_row(str(n), flag, flag_words(flag, src, s), end_section=i == len(flags) - 1)
    for cause, n in report.cause_counts.items():
        table.add_row(str(n), cause, CAUSE_WORDS[cause])
    return table


def _value_cell(record: RowRecord, column: str) -> Text:
    value, text = record.values[column], loss_text(record, column)
    if not math.isfinite(value):
        return Text(text, style="bold red")
    return Text(text, style="yellow" if text.endswith("*") else "")


def _rows_table(
    records: Sequence[RowRecord],
    source: Source,
    dtypes: Sequence[str],
    title: str | None,
    paths: Sequence[str],
    narrow: bool = False,
) -> Table:
    """Rows side by side: a line per path, a column per dtype, and the reference
    (``narrow``: one space between the columns)."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    if narrow:
        table.padding = (0, 0, 0, 1)
    table.add_column("row", no_wrap=True)
    sharded = any(r.shard is not None for r in records)
    if sharded:  # an input of many files: the row's file and its row there
        table.add_column("shard:row", overflow="fold")
    table.add_column("label", overflow="fold")
    value = "p" if paths == fw.PROB_PATHS else "logit"
    name = value if families.of(source).one_logit else f"max {value}"
    table.add_column(name, justify="right", no_wrap=True)
    table.add_column("path", no_wrap=True)
    for d in dtypes:
        table.add_column(d, justify="right", no_wrap=True)
    table.add_column("reference", justify="right", no_wrap=True)
    for record in records:
        for i, path in enumerate(paths):
            first = i == 0
            table.add_row(
                row_name(record, source) if first else "",
                *([_shard_cell(record) if first else ""] if sharded else []),
                label_text(record.label) if first else "",
                spell(record.max_logit) if first else "",
                path,
                *(_value_cell(record, f"{path}_{d}") for d in dtypes),
                _value_cell(record, "reference") if first else "",
            )
    return table


def _shard_cell(record: RowRecord) -> str:
    """``logits-3.npy:17``: the shard's file name (not its directory) and the row there."""
    return f"{posixpath.basename(str(record.shard))}:{record.shard_row}"


def _fits(table: Table, width: int) -> bool:
    console = Console(width=10_000, file=io.StringIO(), color_system=None)
    return Measurement.get(console, console.options, table).maximum <= width


def rows_tables(
    records: Sequence[RowRecord],
    source: Source,
    settings: Settings,
    width: int,
    title: str | None,
) -> list[Table]:
    """The rows as tables no wider than ``width``: the dtypes split over several if needed."""
    dtypes = list(settings.dtypes)
    tables: list[Table] = []
    # as few tables as fit, dtypes spread evenly; the columns closer together if none does
    for narrow, n_groups in itertools.product((False, True), range(1, len(dtypes) + 1)):
        bounds = [round(i * len(dtypes) / n_groups) for i in range(n_groups + 1)]
        groups = [dtypes[a:b] for a, b in itertools.pairwise(bounds)]
        tables = [
            _rows_table(records, source, g, title if j == 0 else None, settings.paths, narrow)
            for j, g in enumerate(groups)
        ]
        if all(_fits(t, width) for t in tables):
            break
    return tables


def explanations(records: Sequence[RowRecord], source: Source, settings: Settings) -> Table:
    """A line or two per row: what is flagged, and why, in words; rows whose words are the
    same share one entry (``rows 28, 52, 125: ...``)."""
    groups = grouped_explanations(records, source, settings)
    labels = [f"rows {', '.join(n)}:" if len(n) > 1 else f"row {n[0]}:" for n, _ in groups]
    # a list of rows wraps within the width of the longest single row's label
    width = max(
        [len(f"row {n[0]}:") for n, _ in groups] + [len(f"rows {n[0]},") for n, _ in groups]
    )
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", max_width=width)
    grid.add_column(overflow="fold")
    for label, (_, words) in zip(labels, groups, strict=True):
        grid.add_row(label, Text(words + "."))
    return grid


# ---------------------------------------------------------------- the whole report


def print_report(
    report: Report,
    console: Console,
    *,
    fail_on: Iterable[str] = (),
    show_header: bool = True,
    show_rows: bool = True,
) -> None:
    """Header, summary, counts, the worst flagged rows and the closing sentence."""
    src, s = report.source, report.settings
    if show_header:  # the verdict first, as pytest and ruff end: the header then says on what
        console.print(Text(verdict_line(report), style="bold"))
        console.print()
        console.print(header(src, s))
        console.print()
    summary = summary_table(report)
    if not _fits(summary, console.width):
        summary = summary_table(report, narrow=True)
    console.print(summary)
    for renderable in framework_notes(report):
        console.print(renderable)
    headroom = headroom_table(report)
    if headroom is not None:
        console.print(headroom)
        console.print()
    if report.batches is not None:
        console.print(batch_table(report))
        console.print(batch_issues(report))
    counts = counts_table(report)
    if counts is not None:
        console.print(counts)
    if show_rows and report.top:
        title = f"Worst flagged rows ({len(report.top)} of {report.flagged_rows})"
        for table in rows_tables(report.top, src, s, console.width, title):
            console.print(table)
        if any(f.startswith("diverged:") for r in report.top for f in r.flags):
            console.print("* diverged from float64 beyond rtol/atol")
        console.print(explanations(report.top, src, s))
        more = report.flagged_rows - len(report.top)
        if more > 0:
            console.print(
                f"… and {more} more flagged {'row' if more == 1 else 'rows'} "
                "(--top N or --all to show more, --format csv for every row)"
            )
        console.print()
    console.print(Text(closing_sentence(report), style="bold"))
    failed = report.failed(fail_on)
    if failed:
        console.print(fail_on_words(failed))


def framework_notes(report: Report) -> list[RenderableType]:
    """Probability input: the conventions legend and the plain word that no stable path
    exists; label smoothing of soft targets: PyTorch's rule. Nothing by default."""
    out: list[RenderableType] = []
    if report.settings.inputs == "probs":
        legend = Table(
            title="Conventions (paths on probabilities)",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        legend.add_column("path", no_wrap=True)
        legend.add_column("rule", overflow="fold")
        for path, rule in fw.CONVENTIONS.items():
            legend.add_row(path, Text(rule))
        out += [legend, Text(fw.NO_STABLE_PATH), Text("")]
    smoothing = report.settings.label_smoothing
    out += [Text(n) for n in fw.smoothing_notes(smoothing, families.of(report.source).soft_targets)]
    return out


MAX_BATCH_LINES = 10  # batch issues the table lists; the JSON keeps up to 100


def batch_table(report: Report) -> Table:
    """PyTorch's batch means per column: NaN and inf batches, the largest finite mean."""
    b = report.batches
    assert b is not None
    last = b.last_batch_rows
    shorter = f", the last of {b.size(last)}" if last != b.rows_per_batch else ""
    batches = "1 batch" if b.batches == 1 else f"{b.batches} batches"
    table = Table(
        title=f"PyTorch's reduction='mean' over {batches} of {b.size()}" + shorter,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("column", no_wrap=True)
    for name in ("NaN\nbatches", "inf\nbatches", "largest\nmean", "in\nbatch"):
        table.add_column(name, justify="right")
    for column, c in b.columns.items():
        table.add_row(
            column,
            Text(str(c.nan), style="red" if c.nan else ""),
            Text(str(c.inf), style="red" if c.inf else ""),
            "-" if c.worst_mean is None else spell(c.worst_mean),
            "-" if c.worst_batch is None else str(c.worst_batch),
        )
    return table


def batch_issues(report: Report) -> RenderableType:
    """One line per batch whose mean is NaN or inf: where, in which columns, and why."""
    b = report.batches
    assert b is not None
    if not b.nonfinite_batches:
        return Text("Every batch mean is finite.\n")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(overflow="fold")
    for issue in b.issues[:MAX_BATCH_LINES]:
        by_reason: dict[str, list[str]] = {}
        for column, reason in issue.reasons.items():
            by_reason.setdefault(reason, []).append(column)
        for i, (reason, columns) in enumerate(by_reason.items()):
            kinds = and_list(sorted({spell(issue.means[c]) for c in columns}))
            where = "every column" if len(columns) == len(issue.means) else and_list(columns)
            grid.add_row(
                f"{issue.span}:" if i == 0 else "",
                Text(f"{kinds} in {where} — {reason}."),
            )
    more = b.nonfinite_batches - min(len(b.issues), MAX_BATCH_LINES)
    lines: list[RenderableType] = [grid]
    if more > 0:
        lines.append(Text(f"… and {more} more NaN or inf {'batch' if more == 1 else 'batches'}"))
    lines.append(Text(""))
    return Group(*lines)


def chunk_rows(rows: ChunkRows, width: int) -> list[RenderableType]:
    """One chunk of ``--all``: every row side by side, then the words for the flagged ones."""
    source, settings = rows.source, rows.settings
    records = rows.records()
    last = rows.start + len(records) - 1
    title = f"Rows {rows.start}..{last} of {source.n_rows}"
    out: list[RenderableType] = list(rows_tables(records, source, settings, width, title))
    flagged = [r for r in records if r.severity < NOT_FLAGGED]
    if flagged:
        out.append(explanations(flagged, source, settings))
    out.append(Text(""))
    return [Group(*out)]


# ---------------------------------------------------------------- the reporter


class TableReporter(Reporter):
    """The report for people: rich tables and plain words; ``--all`` streams every row."""

    title = "the table"
    all_rows = True

    @property
    def streams(self) -> bool:
        return self.options.all_rows and not self.options.quiet

    def start(self, source: Source, settings: Settings) -> None:
        if self.streams:  # the header comes first, the rows as they are computed
            self.console.print(header(source, settings))

    def chunk(self, rows: ChunkRows) -> None:
        for renderable in chunk_rows(rows, self.console.width):
            self.console.print(renderable)

    def finish(self, report: Report) -> None:
        if self.options.quiet:
            self.console.print(closing_sentence(report))
            return
        print_report(
            report,
            self.console,
            fail_on=self.options.fail_on,
            show_header=not self.options.all_rows,
            show_rows=not self.options.all_rows,
        )
