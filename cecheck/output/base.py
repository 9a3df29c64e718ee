"""What every reporter is: fed a run's start, its chunks of rows and its Report."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TextIO

if TYPE_CHECKING:
    from rich.console import Console

    from cecheck.inputs import Source
    from cecheck.report import Report
    from cecheck.rows import ChunkRows
    from cecheck.settings import Settings


@dataclass(frozen=True)
class Options:
    """The command line's say in the rendering."""

    fail_on: tuple[str, ...] = ()  # the --fail-on conditions (the JSON and table name them)
    all_rows: bool = False  # --all: every row, streamed chunk by chunk
    quiet: bool = False  # --quiet: the table prints only the closing sentence


class Reporter:
    """One output format. The CLI calls :meth:`start` before the rows are computed, then
    :meth:`chunk` with each chunk's rows if :attr:`streams`, then :meth:`finish`.

    Subclasses set :attr:`title` (the format's name in messages) and :attr:`all_rows`
    (whether ``--all`` means something to the format), and override what they need.
    """

    title: ClassVar[str] = ""
    all_rows: ClassVar[bool] = False

    def __init__(self, out: TextIO, make_console: Callable[[], Console], options: Options) -> None:
        self.out = out
        self.make_console = make_console  # a rich Console writing to ``out``
        self.options = options

    @classmethod
    def missing(cls) -> str | None:
        """Why this format cannot run here (an optional dependency is not installed, said
        with the command that installs it), or None. Asked before any input is read."""
        return None

    @functools.cached_property
    def console(self) -> Console:
        """The Console of the reporters that print rich text, made on first use (so a run
        whose format prints none does not import rich)."""
        return self.make_console()

    @property
    def streams(self) -> bool:
        """Whether :meth:`chunk` wants every chunk's rows (a run without it makes no rows)."""
        return False

    def start(self, source: Source, settings: Settings) -> None:
        """What is read and computed is known; no row is computed yet."""

    def chunk(self, rows: ChunkRows) -> None:
        """One chunk's rows, in row order (only when :attr:`streams`)."""

    def finish(self, report: Report) -> None:
        """The run is done: render what it found."""
        raise NotImplementedError
