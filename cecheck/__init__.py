"""cecheck: find the rows where a cross-entropy loss blows up, and say why."""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from cecheck._version import __version__

if TYPE_CHECKING:
    from cecheck.engine import compare
    from cecheck.errors import InputError
    from cecheck.report import Report
    from cecheck.trace import Trace, trace

__all__ = ["InputError", "Report", "Trace", "__version__", "compare", "trace"]

# The public names, imported on first use: ``import cecheck`` (and ``cecheck --help``, which
# imports the package) loads no numpy.
_LAZY = {
    "compare": "cecheck.engine",
    "InputError": "cecheck.errors",
    "Report": "cecheck.report",
    "Trace": "cecheck.trace",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cecheck' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """``cecheck.trace`` is the function :func:`cecheck.trace.trace`, also once the module of
    the same name is imported (importing a module sets its package's attribute of its name;
    the module stays in ``sys.modules``)."""

    @property
    def trace(self) -> Any:
        return importlib.import_module("cecheck.trace").trace

    @trace.setter
    def trace(self, _module: Any) -> None:
        pass


sys.modules[__name__].__class__ = _Package
