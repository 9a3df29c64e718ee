"""Two reporters with no rich text: strict JSON, and CSV streamed row by row (the formats are
listed in :mod:`cecheck.output.registry`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cecheck.output.base import Reporter
from cecheck.report import write_csv_frame

if TYPE_CHECKING:
    from cecheck.report import Report
    from cecheck.rows import ChunkRows


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
