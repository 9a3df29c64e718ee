"""The rich Console of a report (imported only by a run that prints with rich)."""

from __future__ import annotations

import errno
import os

from rich.console import Console


class ReportConsole(Console):
    """A Console that lets a closed pipe reach the group (:mod:`cecheck.cli.group`), which
    exits 141; rich would exit 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
