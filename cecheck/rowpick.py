"""The row ``cecheck trace`` walks: given as ``--row``, read from an input, or the worst flagged.

:func:`parse_row` reads ``--row`` (a flat row number or an index tuple), :func:`read_row`
reads that row's logits and label from a :class:`~cecheck.inputs.Source` chunk by chunk,
:func:`pick_row` finds the worst row ``compare`` flags when no row is given, and
:func:`trace_row` traces the row picked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from cecheck import inputs
from cecheck.arraytypes import Array
from cecheck.trace import Trace, trace

if TYPE_CHECKING:
    from cecheck.settings import Settings


@dataclass(frozen=True)
class RowPick:
    """A row of a Source: its flat number, index tuple, and how it was chosen."""

    row: int
    index: tuple[int, ...]
    origin: str | None = None


def _plural_axes(n: int) -> str:
    return "1 axis" if n == 1 else f"{n} axes"


def parse_row(text: str, lead_shape: tuple[int, ...]) -> RowPick:
    """``--row`` as a flat row number (``"17"``) or an index tuple (``"3,17"``).

    Raises ValueError with one sentence when the text is not numbers, the tuple has the
    wrong length, or the row is out of range.
    """
    n_rows = math.prod(lead_shape)
    parts = [s.strip() for s in text.split(",")]
    try:
        numbers = [int(s) for s in parts]
    except ValueError:
        raise ValueError(
            f"--row {text!r} is not a row number or an index tuple such as 3,17"
        ) from None
    if len(numbers) == 1:
        row = numbers[0]
        if not 0 <= row < n_rows:
            raise ValueError(
                f"row {row} is out of range: the input has {n_rows} rows (0..{n_rows - 1})"
            )
        index = tuple(int(i) for i in np.unravel_index(row, lead_shape))
        return RowPick(row, index)
    if len(numbers) != len(lead_shape):
        raise ValueError(
            f"row index {text} has {len(numbers)} numbers but the rows have "
            f"{_plural_axes(len(lead_shape))} (shape {_shape(lead_shape)}): give {len(lead_shape)} "
            "numbers, or one flat row number"
        )
    for i, (n, size) in enumerate(zip(numbers, lead_shape, strict=True)):
        if not 0 <= n < size:
            raise ValueError(
                f"row index {text} is out of range: axis {i} has size {size} (0..{size - 1})"
            )
    return RowPick(int(np.ravel_multi_index(numbers, lead_shape)), tuple(numbers))


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def read_row(source: inputs.Source, row: int) -> tuple[Array, Array]:
    """The logits and label of flat row ``row``, reading chunk by chunk (bounded memory)."""
    from cecheck.engine import chunk_rows  # the engine imports inputs; keep this module light

    start = 0
    chunks = source.chunks(chunk_rows(source.n_classes))
    try:
        for logits, labels in chunks:
            n = labels.shape[0]
            if row < start + n:
                return np.array(logits[row - start]), np.array(labels[row - start])
            start += n
    finally:
        close = getattr(chunks, "close", None)  # release the file of a generator left early
        if close is not None:
            close()
    raise ValueError(f"row {row} is out of range: the input has {start} rows")


def pick_row(
    source: inputs.Source, settings: Settings, progress: Callable[[int], None] | None = None
) -> RowPick:
    """The worst flagged row that has a loss (a class label in range, logits of the row
    length), or row 0 if none is flagged.

    One pass of :func:`cecheck.engine.run` over ``source`` with ``settings`` (so the same
    rows are flagged as by ``compare``); ``progress`` as there.
    """
    from cecheck import engine

    report = engine.run(source, replace(settings, top=max(settings.top, 50)), progress=progress)
    traceable = [
        r
        for r in report.top  # label None: not a whole number; no loss to trace
        if r.label is not None and not {"label_out_of_range", "ragged_logits"} & set(r.flags)
    ]
    all_nan = all_nan_rows(source, [r.row for r in traceable if "nan_input" in r.causes])
    telling = [r for r in traceable if r.row not in all_nan]
    for r in telling or traceable:  # rows of NaN logits only when no other row is flagged
        flags = ", ".join(r.flags)
        causes = f" (cause: {', '.join(r.causes)})" if r.causes else ""
        which = "the worst flagged row"
        if telling and all_nan:
            which += f" whose logits are not all NaN ({plural_rows(len(all_nan))} of NaN skipped)"
        return RowPick(r.row, r.index, f"{which}: {flags}{causes}")
    index = tuple(0 for _ in source.lead_shape)
    if report.flagged_rows:
        return RowPick(
            0,
            index,
            "every flagged row has no loss (a label out of range or not a whole number, or "
            "logits of another length), so row 0",
        )
    return RowPick(0, index, "no row is flagged, so row 0")


def plural_rows(n: int) -> str:
    return "1 row" if n == 1 else f"{n} rows"


def all_nan_rows(source: inputs.Source, rows: Sequence[int]) -> set[int]:
    """Which of ``rows`` have logits that are all NaN (one pass, up to the last of them)."""
    from cecheck.engine import chunk_rows

    wanted, found = np.sort(np.asarray(rows, dtype=np.int64)), set[int]()
    if not wanted.size:
        return found
    start = 0
    chunks = source.chunks(chunk_rows(source.n_classes))
    try:
        for logits, labels in chunks:
            n = labels.shape[0]
            here = wanted[(wanted >= start) & (wanted < start + n)]
            for row in here:
                z = np.asarray(logits[row - start], dtype=np.float64)
                if np.isnan(z).all():
                    found.add(int(row))
            start += n
            if start > wanted[-1]:
                break
    finally:
        close = getattr(chunks, "close", None)  # release the file of a generator left early
        if close is not None:
            close()
    return found


def trace_row(
    source: inputs.Source, settings: Settings, pick: RowPick, paths: Sequence[str]
) -> Trace:
    """The trace of row ``pick`` of ``source`` in the dtypes of ``settings``, along ``paths``;
    the trace names the row and how it was picked.

    Raises ValueError with one sentence for a row whose class-index label is the
    ``ignore_index`` (it has no loss), or a label :func:`~cecheck.trace.trace` rejects.
    """
    z, y = read_row(source, pick.row)
    if source.ragged is not None and pick.row in source.ragged:
        raise ValueError(
            f"row {pick.row}'s list of logits has another length than the other rows' "
            f"({source.n_classes}): the row is not scored, so it has no loss to trace"
        )
    if source.label_form == "index" and int(y) == settings.ignore_index:
        raise ValueError(
            f"row {pick.row} has label {settings.ignore_index}, the --ignore-index: the row is "
            "skipped, so it has no loss to trace"
        )
    try:
        t = trace(
            z,
            y,
            task=source.task,
            label_form=source.label_form,
            dtypes=settings.dtypes,
            paths=paths,
            framework=settings.framework,
            label_smoothing=settings.label_smoothing,
            class_weights=settings.class_weights,
            inputs=settings.inputs,
        )
    except ValueError as e:
        raise ValueError(f"row {pick.row}: {e}") from None
    return replace(t, row=pick.row, index=pick.index, origin=pick.origin)
