"""Two reporters with no rich text: strict JSON, and CSV streamed row by row (the formats are
listed in :mod:`cecheck.output.registry`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cecheck.output.base import Reporter
from cecheck.output.csvtext import chunk_text

if TYPE_CHECKING:
    from cecheck.report import Report
    from cecheck.rows import ChunkRows


class JsonReporter(Reporter):
    """The report as one strict-JSON object (:meth:`~cecheck.report.Report.to_dict`)."""

    title = "JSON"

    def finish(self, report: Report) -> None:
        report.write_json(self.out, self.options.fail_on)


class CsvReporter(Reporter):
    """One line per input row, written chunk by chunk as the rows are computed, from the
    chunk's columns (:mod:`cecheck.output.csvtext`: the bytes of
    :func:`~cecheck.report.write_csv_frame`, without a DataFrame)."""

    title = "CSV"
    all_rows = True  # always every row
    wrote_header = False

    @property
    def streams(self) -> bool:
        return True

    def chunk(self, rows: ChunkRows) -> None:
        self.out.write(chunk_text(rows.columns(), header=not self.wrote_header))
        self.wrote_header = True

    def finish(self, report: Report) -> None:
        """Every row is written already."""
