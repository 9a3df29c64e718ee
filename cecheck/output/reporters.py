"""The registry of output formats, :data:`REPORTERS` (``--format`` is a choice of its keys),
and the built-in reporters: the table for people, strict JSON, and CSV streamed row by row."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cecheck.output.base import Reporter
from cecheck.output.markdown import MarkdownReporter
from cecheck.output.tables import chunk_rows, header, print_report
from cecheck.output.words import closing_sentence
from cecheck.report import write_csv_frame

if TYPE_CHECKING:
    from cecheck.inputs import Source
    from cecheck.report import Report
    from cecheck.rows import ChunkRows
    from cecheck.settings import Settings


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


class JsonReporter(Reporter):
    """The report as one strict-JSON object (:meth:`~cecheck.report.Report.to_dict`)."""

    title = "JSON"

    def finish(self, report: Report) -> None:
        report.write_json(self.out, self.options.fail_on)


class CsvReporter(Reporter):
    """One line per input row, written chunk by chunk as the rows are computed."""

    title = "CSV"
    all_rows = True  # always every row
    wrote_header = False

    @property
    def streams(self) -> bool:
        return True

    def chunk(self, rows: ChunkRows) -> None:
        write_csv_frame(rows.frame(), self.out, header=not self.wrote_header)
        self.wrote_header = True

    def finish(self, report: Report) -> None:
        """Every row is written already."""


REPORTERS: dict[str, type[Reporter]] = {
    "table": TableReporter,
    "json": JsonReporter,
    "csv": CsvReporter,
    "markdown": MarkdownReporter,
}
