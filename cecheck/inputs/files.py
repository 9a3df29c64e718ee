"""What every reader shares: the checks made before a file is opened, the sentence quoting
a library's error, and :class:`Reader`, the entry of the registry in ``__init__``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cecheck.errors import InputError
from cecheck.inputs.source import PairReader, Part

if TYPE_CHECKING:
    from cecheck.inputs.recorded import Recorded


@dataclass(frozen=True)
class Choice:
    """What the person chose inside a file: the label and logits columns of a table, the keys
    of arrays. ``logits_column`` None: the table's one list column, or all but the label."""

    label_column: str | int = "label"
    logits_key: str = "logits"
    labels_key: str = "labels"
    logits_column: str | None = None

    def key(self, which: str) -> tuple[str, str]:
        """The key of the ``which`` ("logits" or "labels") array, and the option naming it."""
        if which == "logits":
            return self.logits_key, "--logits-key"
        return self.labels_key, "--labels-key"


@dataclass(frozen=True)
class Reader:
    """How one format is read: as a file of one array, and as a file holding both."""

    # (path, choice, "logits" or "labels") -> that array
    single: Callable[[str, Choice, str], Part]
    # (path, choice) -> (logits, labels, their rows read in step)
    both: Callable[[str, Choice], tuple[Part, Part, PairReader]]
    # path -> the settings the file records (a cecheck loss dump), or None; None: the format
    # records none
    recorded: Callable[[str], Recorded | None] | None = None


def missing_key(path: str, key: str, held: Iterable[str], noun: str, option: str) -> InputError:
    """A file without the array (``noun``) named ``key``: what it holds, which option chooses."""
    keys = ", ".join(repr(k) for k in held) or f"no {noun}s"
    return InputError(f"{path} has no {noun} {key!r} (it holds {keys}): choose one with {option}")


def reason(error: BaseException) -> str:
    """The first line of a library's error message, to quote inside our one sentence."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_file(path: str, formats: Sequence[str]) -> str:
    """The file's extension, after checking that it exists, is one of ``formats``, has bytes."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path} does not exist: check the path")
    if not p.is_file():
        raise InputError(f"{path} is not a file: give the path of a data file")
    ext = p.suffix.lower()
    if ext not in formats:
        raise InputError(
            f"{path} has an unsupported extension '{ext}': cecheck reads "
            f"{', '.join(formats)} files, so convert it or rename it to the right extension"
        )
    if p.stat().st_size == 0:
        raise InputError(f"{path} is empty: write the data to it again")
    return ext
