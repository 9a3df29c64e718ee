"""The :class:`Source` the engine reads, the stored arrays it is made of, and re-chunking.

A reader turns a file into :class:`Part` objects (the logits, the labels), each a stream of
row blocks of whatever size the format reads best; the functions here re-cut those streams
into chunks of exactly the rows the engine asks for, copying each value at most once.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from cecheck.errors import InputError

HEAD_ROWS = 4096  # rows looked at for inference and warnings: bounded, whatever the file size
HEAD_VALUES = 1 << 20  # ... and about this many logits at most (32 rows of 32,000 classes)

Pairs = Iterator[tuple[np.ndarray, np.ndarray]]
PairReader = Callable[[int, int], Pairs]  # (rows, lead ndim) -> (logits, labels) as stored
Columns = list[np.ndarray]  # one block of consecutive rows, as equal-length arrays


@dataclass(frozen=True)
class Source:
    """Logits and labels, readable in row chunks; what the engine consumes."""

    logits_name: str  # the path as given, or "logits" for an in-memory array
    labels_name: str  # the path as given (same as logits_name for a one-file input)
    logits_shape: tuple[int, ...]  # as stored
    labels_shape: tuple[int, ...]  # as stored
    lead_shape: tuple[int, ...]  # shape of the rows: (N,) or e.g. (B, T) for (B, T, C) logits
    n_classes: int  # C; 1 for binary
    task: str  # one of TASKS
    label_form: str  # one of LABEL_FORMS
    logits_dtype: str  # stored dtype name, e.g. "float32", "int64", "float16"
    warnings: tuple[str, ...]
    _read: Callable[[int], Pairs] = field(repr=False, compare=False)
    # Rows whose logits could not be formed (a list of another length: a NaN row), added as
    # they are read, before their chunk is given; None when the format cannot hold such a row.
    ragged: set[int] | None = field(default=None, repr=False, compare=False)
    # An input of many files (cecheck.inputs.shards): the shards' names and first rows; and
    # the number of this source's first row in that input (a shard read on its own).
    shards: Shards | None = field(default=None, repr=False, compare=False)
    first_row: int = 0

    @property
    def n_rows(self) -> int:
        """The number of rows (one loss each): the product of ``lead_shape``."""
        return math.prod(self.lead_shape)

    def chunks(self, rows: int, *, lazy: bool = False) -> Pairs:
        """Consecutive row chunks of at most ``rows`` rows, in order.

        logits: ``(n, C)`` for multiclass/multilabel, ``(n,)`` for binary; float16, float32 or
        float64 as stored (integers cast to float64, other floats such as bfloat16 to float32);
        possibly a read-only view of a memory map. labels: index form -> int64 ``(n,)``;
        onehot/soft/multihot -> float64 ``(n, C)``; binary -> float64 ``(n,)``.
        ``lazy``: bfloat16 logits stay as stored, each chunk a
        :class:`~cecheck.narrow.Bfloat16Rows` (the C kernel reads the bits), not widened.
        Raises InputError for a file-level problem found past the first chunk.
        """
        if rows < 1:
            raise ValueError(f"rows must be at least 1, got {rows}")
        return self._read(rows) if lazy else _widened(self._read(rows))


def _widened(pairs: Pairs) -> Pairs:
    """``pairs`` with lazily widened bfloat16 logits as float32 arrays."""
    try:
        for logits, labels in pairs:
            yield np.asarray(logits), labels
    finally:
        close = getattr(pairs, "close", None)
        if close is not None:
            close()


@dataclass(frozen=True)
class Shards:
    """The files of an input split over many: each shard's name and its first row."""

    names: tuple[str, ...]
    starts: tuple[int, ...]  # each shard's first row in the whole input, ascending

    def locate(self, row: int) -> tuple[str, int]:
        """The shard holding the whole input's ``row``, and the row's number in it."""
        i = max(0, bisect.bisect_right(self.starts, row) - 1)
        return self.names[i], row - self.starts[i]


@dataclass(frozen=True)
class Part:
    """One array as stored (the logits or the labels), before the task is known."""

    name: str  # for messages, e.g. "data.npz['logits']"
    shape: tuple[int, ...]
    dtype: np.dtype
    blocks: Callable[[int, int], Iterator[Columns]]  # (rows, lead ndim) -> [block]
    notes: tuple[str, ...] = ()  # warnings about how it was read
    ragged: set[int] | None = None  # see Source.ragged
    stored: str | None = None  # the stored dtype's name, when the blocks hold it widened


def chunk_parts(blocks: Iterator[Columns], rows: int) -> Iterator[list[Columns]]:
    """Re-cut a stream of row blocks into chunks of exactly ``rows`` rows (the last fewer).

    Each chunk comes as the views of the blocks that make it up, in order: nothing is copied.
    """
    parts: list[Columns] = []
    have = 0
    for block in blocks:
        at, n = 0, len(block[0])
        while at < n:
            take = min(rows - have, n - at)
            parts.append([b[at : at + take] for b in block])
            at, have = at + take, have + take
            if have == rows:
                yield parts
                parts, have = [], 0
    if parts:
        yield parts


def exact(blocks: Iterator[Columns], rows: int) -> Iterator[Columns]:
    """Blocks of exactly ``rows`` rows (the last fewer); a block already that size is not copied."""
    for parts in chunk_parts(blocks, rows):
        yield parts[0] if len(parts) == 1 else [np.concatenate(c) for c in zip(*parts, strict=True)]


def grouped(
    blocks: Iterator[Columns], rows: int, groups: Sequence[Sequence[int]]
) -> Iterator[list[np.ndarray]]:
    """Chunks of exactly ``rows`` rows (the last fewer) as one array per group of columns.

    A group of one column gives ``(n,)``, a group of k columns ``(n, k)`` in row order. Each
    value is copied once, straight from the blocks into the chunk (a one-column group inside
    one block is not copied at all), rather than concatenated and then stacked.
    """
    for parts in chunk_parts(blocks, rows):
        yield [_gather([[p[i] for i in group] for p in parts]) for group in groups]


def _gather(pieces: list[Columns]) -> np.ndarray:
    """Consecutive row pieces of the same columns as one array, like concatenate and stack.

    A column is ``(n,)``, or ``(n, k)`` for a list column, which is a group by itself."""
    if len(pieces) == 1 and len(pieces[0]) == 1:
        return pieces[0][0]
    width = len(pieces[0])
    dtype = np.result_type(*{c.dtype for cols in pieces for c in cols})
    n = sum(len(cols[0]) for cols in pieces)
    out = np.empty((n, *pieces[0][0].shape[1:]) if width == 1 else (n, width), dtype)
    at = 0
    for cols in pieces:
        m = len(cols[0])
        if width == 1:
            out[at : at + m] = cols[0]
        else:
            np.stack(cols, axis=1, out=out[at : at + m])
        at += m
    return out


def zip_parts(lg: Part, lb: Part) -> PairReader:
    """Logits and labels from two sources, read in step."""

    def pairs(rows: int, nd: int) -> Pairs:
        both = itertools.zip_longest(exact(lg.blocks(rows, nd), rows),
                                     exact(lb.blocks(rows, nd), rows))  # fmt: skip
        for a, b in both:
            if a is None or b is None or len(a[0]) != len(b[0]):
                raise InputError(
                    f"{lg.name} and {lb.name} ran out of rows at different places: "
                    "give one label per row"
                )
            yield a[0], b[0]

    return pairs
