"""Inputs named by an fsspec URL (``s3://``, ``gs://``, ``memory://``, ``file://``...).

A URL is read through fsspec, where it is installed (with the package of its protocol, such
as s3fs): the file is copied, streamed in blocks, to a local temporary file of the same name,
which the readers then memory-map or stream as any file (memory stays bounded by the chunk
size; the disk holds the file while it is read). ``file://`` is the local path itself. The
copies of a process are removed when it exits, or by :func:`release`.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from typing import Any

from cecheck.errors import InputError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*(::[A-Za-z][A-Za-z0-9+.-]*)*://")
_copies: dict[str, str] = {}  # URL -> its local copy
_directory: list[str] = []  # the process's temporary directory, made on first use


def is_url(name: str) -> bool:
    """Whether ``name`` is a URL (``protocol://...``) rather than a path."""
    return bool(_URL.match(name))


def filesystem(url: str) -> tuple[Any, str]:
    """fsspec's filesystem of ``url`` and the path in it; an InputError without fsspec or the
    protocol's package."""
    try:
        import fsspec
    except ImportError:
        raise InputError(
            f"{url} is a URL: reading URLs needs fsspec (pip install fsspec, and the package "
            "of its protocol, such as s3fs or gcsfs)"
        ) from None
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise InputError(f"cannot read {url}: {' '.join(str(e).split())}") from None
    return fs, path


def local(name: str) -> str:
    """A local path holding ``name``: the path itself, or a copy of the URL's file."""
    if not is_url(name):
        return name
    if name.startswith("file://"):
        return name[len("file://") :]
    if name in _copies:
        return _copies[name]
    fs, path = filesystem(name)
    try:
        if not fs.isfile(path):
            what = "is not a file" if fs.exists(path) else "does not exist"
            raise InputError(f"{name} {what}: check the URL")
        if not _directory:
            _directory.append(tempfile.mkdtemp(prefix="cecheck-"))
            atexit.register(shutil.rmtree, _directory[0], True)
        folder = tempfile.mkdtemp(dir=_directory[0])
        copy = os.path.join(folder, os.path.basename(path.rstrip("/")) or "input")
        fs.get_file(path, copy)
    except OSError as e:
        raise InputError(f"cannot read {name} ({e}): check the URL and the access") from None
    _copies[name] = copy
    return copy


def release(name: str) -> None:
    """Remove the local copy of the URL ``name`` if there is one (after its rows are read)."""
    copy = _copies.pop(name, None)
    if copy is not None:
        shutil.rmtree(os.path.dirname(copy), ignore_errors=True)


def named(message: str, names: dict[str, str]) -> str:
    """``message`` with each local copy's path replaced by its URL (``names``: copy -> URL)."""
    for copy, url in names.items():
        if copy != url:
            message = message.replace(copy, url)
    return message
