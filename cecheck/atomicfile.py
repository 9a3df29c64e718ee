"""Write a file all at once or not at all.

:func:`atomic_text_file` writes to a temporary file beside the target and renames it over
the target only when the block ends without an exception. A run that fails, is interrupted
(Ctrl-C) or loses its pipe leaves the previous file as it was and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from typing import TextIO


def _temporary_name(directory: str, name: str) -> str:
    """A hidden name beside ``name`` no other writer picks: 12 random hex digits.

    From :func:`os.urandom`, as :func:`secrets.token_hex` takes them, without importing
    :mod:`secrets` (which loads OpenSSL's library: 3 MB of memory and 4 ms of start-up)."""
    return os.path.join(directory, f".{name}.{os.urandom(6).hex()}.tmp")


@contextlib.contextmanager
def atomic_text_file(path: str | os.PathLike[str]) -> Iterator[TextIO]:
    """A text stream (UTF-8, newlines as written) that becomes ``path`` when the block succeeds.

    The temporary file is in the target's directory, so the final :func:`os.replace` is one
    atomic rename. It is created with the permissions of a newly created file (0o666 less
    the umask), or those of the file it replaces. A symlink is written through: the file it
    points to is replaced and the link kept. Raises OSError if the temporary file cannot be
    created or written; on any exception (KeyboardInterrupt included) the temporary file is
    removed and the exception propagates.
    """
    target = os.path.realpath(path)
    directory, name = os.path.split(target)
    temp = _temporary_name(directory, name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(temp, flags, 0o666)  # the umask applies, as to any new file
    try:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temp, stat.S_IMODE(os.stat(target).st_mode))
        with open(fd, "w", encoding="utf-8", newline="") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def write_new_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path``, a name not yet taken, all at once or not at all.

    The bytes go to a temporary file beside ``path``, flushed to disk, which is then linked
    to ``path``: the name appears only with the whole file behind it, and an existing file is
    never replaced (FileExistsError; the caller picks another name). The temporary name is
    removed in every case. Raises OSError if the file cannot be written.
    """
    directory, name = os.path.split(os.path.abspath(path))
    temp = _temporary_name(directory, name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(temp, flags, 0o666)  # the umask applies, as to any new file
    try:
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
