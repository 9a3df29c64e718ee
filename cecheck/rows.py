"""A chunk's per-row results, built here only: as :class:`~cecheck.report.RowRecord` (the
report's worst rows, the table's ``--all``), as columns (the CSV stream) and as a DataFrame
(:meth:`~cecheck.report.Report.iter_frames`).

:class:`ChunkRows` hands a chunk to the reporters, which read its rows without knowing the
pipeline's :class:`~cecheck.pipeline.ChunkResult`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cecheck import families
from cecheck.arraytypes import Array
from cecheck.report import RowRecord

if TYPE_CHECKING:
    import pandas as pd

    from cecheck.inputs import Source
    from cecheck.output.csvtext import Column
    from cecheck.pipeline import ChunkResult
    from cecheck.settings import Settings


def chunk_records(
    chunk: ChunkResult, source: Source, s: Settings, rows: Array | None = None
) -> list[RowRecord]:
    """The chunk's ``rows`` (positions in the chunk; every row by default) as RowRecords."""
    diag = chunk.diagnosis
    positions = np.arange(chunk.labels.shape[0]) if rows is None else rows
    labels = row_labels(chunk.labels[positions], source.label_form)
    flag_lists, cause_lists = diag.flag_lists(rows), diag.cause_lists(rows)
    records = []
    for j, i in enumerate(positions):
        row = chunk.start + int(i)
        z = chunk.logits[i]
        shard, shard_row = (None, None) if source.shards is None else source.shards.locate(row)
        records.append(
            RowRecord(
                row=row,
                index=tuple(int(v) for v in np.unravel_index(row, source.lead_shape)),
                label=labels[j],
                max_logit=float(np.max(z)) if np.ndim(z) else float(z),
                values={c: float(chunk.values[c][i]) for c in s.columns},
                flags=flag_lists[j],
                causes=cause_lists[j],
                severity=int(diag.severity[i]),
                rank=int(diag.rank[i]),
                error=float(diag.error[i]),
                shard=shard,
                shard_row=shard_row,
                row_sum=(
                    float(np.sum(z, dtype=np.float64))
                    if "invalid_probability" in flag_lists[j]
                    else None
                ),
            )
        )
    return records


def chunk_columns(chunk: ChunkResult, source: Source, s: Settings) -> dict[str, Column]:
    """The per-row columns, in order: row, [index], [batch], label, every loss column, flags,
    causes (arrays of numbers, lists of labels and texts), as :func:`chunk_frame` and the CSV
    report (:mod:`cecheck.output.csvtext`) show them.

    ``index`` (the row's index over the leading axes, one array per axis; ``b,t`` in the
    frame) only for N-d logits; ``batch`` (the row's batch number: ``row // batch_size``, or
    over N-d logits, where a batch counts sequences, the row's sequence ``// batch_size``)
    only with a batch size.
    """
    n = chunk.labels.shape[0]
    rows = np.arange(chunk.start, chunk.start + n)
    data: dict[str, Column] = {"row": rows}
    if source.shards is not None:  # the row's file, and its row there
        starts = np.asarray(source.shards.starts, dtype=np.int64)
        which = np.maximum(np.searchsorted(starts, rows, side="right") - 1, 0)
        data["shard"] = [source.shards.names[i] for i in which.tolist()]
        data["shard_row"] = rows - starts[which]
    if len(source.lead_shape) > 1:
        data["index"] = tuple(np.unravel_index(rows, source.lead_shape))
    if s.batch_size is not None:
        data["batch"] = rows // (s.batch_size * math.prod(source.lead_shape[1:]))
    data["label"] = row_labels(chunk.labels, source.label_form)
    data.update({c: chunk.values[c] for c in s.columns})
    diag = chunk.diagnosis
    data["flags"] = _joined(diag.flags, diag.flag_lists)
    data["causes"] = _joined(diag.causes, diag.cause_lists)
    return data


def _joined(matrix: Array, lists: Callable[[Array], list[list[str]]]) -> list[str]:
    """Each row's names (``lists`` of the rows holding any), ``;``-separated; ``""`` if none."""
    texts = [""] * matrix.shape[0]
    rows = np.flatnonzero(matrix.any(axis=1))
    for i, names in zip(rows.tolist(), lists(rows), strict=True):
        texts[i] = ";".join(names)
    return texts


def chunk_frame(chunk: ChunkResult, source: Source, s: Settings) -> pd.DataFrame:
    """One line per row, the columns of :func:`chunk_columns`."""
    import pandas as pd  # only here: a run that makes no frame does not pay for the import

    data: dict[str, object] = dict(chunk_columns(chunk, source, s))
    index = data.get("index")
    if isinstance(index, tuple):
        data["index"] = _index_texts(index)
    labels = data["label"]
    # a label that is not a whole number is missing (<NA>) in a column that stays integral
    if isinstance(labels, list) and None in labels:
        data["label"] = pd.Series(labels, dtype="Int64")
    frame: pd.DataFrame = pd.DataFrame(data)
    return frame


@dataclass(frozen=True)
class ChunkRows:
    """One computed chunk, as the reporters read it: where it starts, and its rows."""

    chunk: ChunkResult
    source: Source
    settings: Settings

    @property
    def start(self) -> int:
        """The flat number of the chunk's first row."""
        return self.chunk.start

    def __len__(self) -> int:
        return int(self.chunk.labels.shape[0])

    def records(self) -> list[RowRecord]:
        """Every row of the chunk, in row order."""
        return chunk_records(self.chunk, self.source, self.settings)

    def frame(self) -> pd.DataFrame:
        """Every row of the chunk as a DataFrame (see :func:`chunk_frame`)."""
        return chunk_frame(self.chunk, self.source, self.settings)

    def columns(self) -> dict[str, Column]:
        """Every row of the chunk as columns (see :func:`chunk_columns`)."""
        return chunk_columns(self.chunk, self.source, self.settings)


def _index_texts(index: tuple[Array, ...]) -> list[str]:
    """Each row's index over the leading axes as text: ``3,17``."""
    axes = [map(str, a.tolist()) for a in index]
    return [",".join(i) for i in zip(*axes, strict=True)]


def row_labels(labels: Array, label_form: str) -> list[object]:
    """A scalar per row: the class index, the binary target, or for (N, C) labels a summary."""
    return families.of_form(label_form).show_labels(labels)
