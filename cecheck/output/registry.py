"""The registry of output formats: :data:`REPORTERS` maps each ``--format`` name to where its
reporter class (a :class:`~cecheck.output.base.Reporter`) lives.

A new format is one module with its reporter and one line here. The names cost no import
(``--format``'s choices, ``cecheck --help``); :func:`reporter` imports the class a run asks for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cecheck.output.base import Reporter

REPORTERS = {
    "table": "cecheck.output.tables:TableReporter",
    "json": "cecheck.output.reporters:JsonReporter",
    "csv": "cecheck.output.reporters:CsvReporter",
    "markdown": "cecheck.output.markdown:MarkdownReporter",
    "html": "cecheck.output.html:HtmlReporter",
}


def reporter(name: str) -> type[Reporter]:
    """The reporter class of the format ``name``, a key of :data:`REPORTERS`."""
    module, _, attribute = REPORTERS[name].partition(":")
    found: type[Reporter] = getattr(importlib.import_module(module), attribute)
    return found
