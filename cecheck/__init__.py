"""cecheck: find the rows where a cross-entropy loss blows up, and say why."""

__version__ = "0.1.0"

from cecheck.engine import compare  # noqa: E402
from cecheck.errors import InputError  # noqa: E402
from cecheck.report import Report  # noqa: E402

__all__ = ["InputError", "Report", "__version__", "compare"]
