"""cecheck: find the rows where a cross-entropy loss blows up, and say why."""

from cecheck._version import __version__
from cecheck.engine import compare
from cecheck.errors import InputError
from cecheck.report import Report
from cecheck.trace import Trace, trace

__all__ = ["InputError", "Report", "Trace", "__version__", "compare", "trace"]
