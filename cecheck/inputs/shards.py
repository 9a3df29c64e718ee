"""An input split over many files (shards), read as one.

An input names its shards in one of three ways (:func:`expand`):

- a glob pattern (``'run/logits-*.npy'``, quoted so that cecheck, not the shell, expands it):
  the files it matches, in natural order (``logits-2`` before ``logits-10``);
- a directory: every file in it whose extension a reader knows, in natural order;
- ``@list.txt``: the files listed in that text file, one a line, in the listed order (blank
  lines and lines starting with ``#`` skipped; a relative path is relative to the list).

A path or pattern may be an fsspec URL (:mod:`cecheck.inputs.urls`). Logits shards and labels
shards pair in that order; each pair is opened as one file would be, and the pairs must agree:
as many of each, the same task, label form, classes, stored dtype and shape beyond the first
axis (a mismatch is one sentence). The shards stack along their first axis: rows keep their
number in the whole input (:class:`~cecheck.inputs.source.Shards` tells each row's shard and
its row there).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from cecheck.errors import InputError
from cecheck.inputs import urls
from cecheck.inputs.source import Pairs, Shards, Source

_PATTERN = re.compile(r"[*?\[]")

Opener = Callable[[str, "str | None"], Source]  # (logits, labels) -> the pair's Source


@dataclass(frozen=True)
class Shard:
    """One shard: its files, where its rows start in the whole input, and how many."""

    logits: str
    labels: str | None
    first_row: int
    rows: int

    @property
    def name(self) -> str:
        """The shard's name in reports: its logits file."""
        return self.logits


def is_sharded(name: str) -> bool:
    """Whether ``name`` names many files: a pattern, a directory or an ``@list`` (a file of
    that very name is one file, whatever its characters)."""
    if os.path.isfile(name):
        return False
    if name.startswith("@"):
        return True
    if _PATTERN.search(name):
        return True
    if urls.is_url(name):
        return not name.startswith("file://") and _url_is_dir(name)
    return os.path.isdir(name)


def expand(name: str, known: tuple[str, ...]) -> list[str]:
    """The files ``name`` names (see the module), in order; ``known``: the extensions read."""
    if name.startswith("@"):
        files = _listed(name[1:])
    elif urls.is_url(name) and not name.startswith("file://"):
        files = _url_files(name, known)
    else:
        path = name[len("file://") :] if name.startswith("file://") else name
        if os.path.isdir(path):
            found = [os.path.join(path, f) for f in os.listdir(path)]
            files = sorted((f for f in found if _known(f, known)), key=natural)
        else:
            files = sorted(glob.glob(path), key=natural)
    if not files:
        raise InputError(f"{name} names no file: check the pattern, directory or list")
    return files


def open_shards(
    logits: str, labels: str | None, known: tuple[str, ...], opener: Opener
) -> tuple[Source, list[Shard]]:
    """The shards of ``logits`` (and ``labels``), paired and checked, and their Source: every
    shard's rows in order, as one input. ``opener`` opens one pair (as ``open_inputs``)."""
    lg = expand(logits, known)
    lb = expand(labels, known) if labels is not None else None
    if lb is not None and len(lb) != len(lg):
        raise InputError(
            f"{logits} names {len(lg)} files and {labels} names {len(lb)}: give one labels "
            "file per logits file (they pair in order)"
        )
    shards: list[Shard] = []
    first: Source | None = None
    warnings: dict[str, None] = {}
    for i, path in enumerate(lg):
        pair = None if lb is None else lb[i]
        src = opener(path, pair)
        if first is None:
            first = src
        else:
            _check_same(first, src)
        shards.append(Shard(path, pair, sum(s.rows for s in shards), src.n_rows))
        warnings |= dict.fromkeys(src.warnings)
        for name in {path, pair} - {None}:
            urls.release(str(name))  # checked: a worker reads it again
    assert first is not None
    total = sum(s.rows for s in shards)
    lead = (total // _rest(first.lead_shape), *first.lead_shape[1:])
    per_row = first.logits_shape[len(first.lead_shape) :]
    labels_row = first.labels_shape[len(first.lead_shape) :]
    layout = Shards(tuple(s.name for s in shards), tuple(s.first_row for s in shards))
    ragged: set[int] | None = set() if first.ragged is not None else None
    whole = dataclasses.replace(
        first,
        logits_name=logits,
        labels_name=labels if labels is not None else logits,
        logits_shape=(*lead, *per_row),
        labels_shape=(*lead, *labels_row),
        lead_shape=lead,
        warnings=tuple(warnings),
        _read=_reader(shards, opener, ragged),
        ragged=ragged,
        shards=layout,
    )
    return whole, shards


def shard_view(src: Source, shard: Shard, lead_shape: tuple[int, ...]) -> Source:
    """A shard's own Source numbered as part of the whole input (of ``lead_shape``)."""
    if src.n_rows != shard.rows:
        raise InputError(f"{shard.name} holds {src.n_rows} rows, not {shard.rows}: was it changed?")
    return dataclasses.replace(
        src,
        lead_shape=lead_shape,
        shards=Shards((shard.name,), (shard.first_row,)),
        first_row=shard.first_row,
    )


def _reader(
    shards: list[Shard], opener: Opener, ragged: set[int] | None = None
) -> Callable[[int], Pairs]:
    def read(rows: int) -> Pairs:
        for shard in shards:
            src = opener(shard.logits, shard.labels)
            if src.n_rows != shard.rows:
                raise InputError(
                    f"{shard.name} holds {src.n_rows} rows, not {shard.rows}: was it changed?"
                )
            for pair in src.chunks(rows):
                if ragged is not None and src.ragged:  # in the whole input's numbers
                    ragged.update(shard.first_row + r for r in src.ragged)
                yield pair
            for name in {shard.logits, shard.labels} - {None}:
                urls.release(str(name))

    return read


def _check_same(first: Source, src: Source) -> None:
    """One sentence when a shard does not stack with the first one."""
    name, other = first.logits_name, src.logits_name
    for what, a, b in (
        ("task", first.task, src.task),
        ("label form", first.label_form, src.label_form),
        ("number of classes", first.n_classes, src.n_classes),
        ("stored dtype", first.logits_dtype, src.logits_dtype),
        ("shape beyond the first axis", first.lead_shape[1:], src.lead_shape[1:]),
    ):
        if a != b:
            raise InputError(
                f"shard {other} has {what} {_show(b)} but {name} has {_show(a)}: every shard "
                "of an input must hold the same kind of rows"
            )


def _show(value: object) -> str:
    return str(tuple(value)) if isinstance(value, tuple) else str(value)


def _rest(lead: tuple[int, ...]) -> int:
    n = 1
    for k in lead[1:]:
        n *= k
    return max(1, n)


def natural(name: str) -> list[object]:
    """A sort key that orders the numbers in names by value: ``a-2`` before ``a-10``."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _known(path: str, known: tuple[str, ...]) -> bool:
    return os.path.splitext(path)[1].lower() in known


def _listed(path: str) -> list[str]:
    """The files of a list file: one a line, relative to the list's directory."""
    try:
        with open(urls.local(path), encoding="utf-8") as f:
            lines = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the list {path} ({e}): give a text file of paths") from None
    base = os.path.dirname(path)
    out = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        absolute = urls.is_url(line) or os.path.isabs(line)
        out.append(line if absolute or urls.is_url(path) else os.path.join(base, line))
    return out


def _url_is_dir(url: str) -> bool:
    fs, path = urls.filesystem(url)
    try:
        return bool(fs.isdir(path))
    except OSError:
        return False


def _url_files(url: str, known: tuple[str, ...]) -> list[str]:
    fs, path = urls.filesystem(url)
    try:
        if _PATTERN.search(path):
            found = fs.glob(path)
        else:
            found = [p for p in fs.ls(path, detail=False) if _known(p, known)]
    except OSError as e:
        raise InputError(f"cannot list {url} ({e}): check the URL and the access") from None
    return sorted((fs.unstrip_protocol(p) for p in found), key=natural)
