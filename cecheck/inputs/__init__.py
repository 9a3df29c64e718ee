"""The one door through which data enters cecheck: read logits and labels, infer the task.

A reader per format (:data:`READERS`, by file extension) turns what training code dumped
into stored arrays; :func:`open_inputs` and :func:`from_arrays` make a :class:`Source` of
them: shapes, the inferred task and label form, warnings, and an iterator over row chunks.
Memory stays bounded by the chunk size: ``.npy`` and ``.safetensors`` are memory-mapped,
``.pt``/``.pth`` too (by ``torch.load(weights_only=True, mmap=True)``), CSV/TSV is streamed
(by pyarrow's CSV reader, or pandas'), Parquet and Arrow are read by batches. Inference
looks only at the first :data:`HEAD_ROWS` rows; a problem in a later chunk raises from the
chunk iterator.

File-level problems raise :class:`~cecheck.errors.InputError` with one sentence naming the
file; row-level problems pass through for the engine to flag per row. Nothing is ever
unpickled. The modules: ``source`` (the Source and re-chunking), ``files`` (checks made
before opening, the Reader of the registry), ``arrays`` (in-memory arrays and tensors),
``numpy_files``, ``safetensors_files``, ``torch_files``, ``tables`` (label and logits
columns, pandas' index), ``delimited`` (CSV/TSV, read by ``csv_arrow`` or ``csv_pandas``),
``parquet`` and ``arrow_files`` (Arrow IPC, Feather), both through ``arrow_tables`` (list
columns), ``labels`` (task and label-form inference, label conversion). pandas, pyarrow,
ml_dtypes and torch are imported only by what needs them.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from cecheck.errors import InputError
from cecheck.inputs import (
    arrow_files,
    delimited,
    numpy_files,
    parquet,
    safetensors_files,
    torch_files,
    urls,
)
from cecheck.inputs.arrays import array_part, as_array
from cecheck.inputs.files import Choice, Reader, check_file
from cecheck.inputs.labels import (
    INVALID_LABEL,
    LABEL_FORMS,
    LOOKS_LIKE_PROBABILITIES,
    TASKS,
    class_indices,
    finish,
)
from cecheck.inputs.recorded import Recorded
from cecheck.inputs.source import HEAD_ROWS, HEAD_VALUES, Pairs, Source, zip_parts

__all__ = [
    "FORMATS",
    "HEAD_ROWS",
    "HEAD_VALUES",
    "INVALID_LABEL",
    "LABEL_FORMS",
    "LOOKS_LIKE_PROBABILITIES",
    "READERS",
    "TASKS",
    "InputError",
    "Pairs",
    "Recorded",
    "Source",
    "as_array",
    "class_indices",
    "from_arrays",
    "open_inputs",
    "recorded_settings",
]

# A new format is a module with its Reader, and one line here.
READERS: dict[str, Reader] = {
    ".npy": numpy_files.NPY,
    ".npz": numpy_files.NPZ,
    ".csv": delimited.CSV,
    ".tsv": delimited.TSV,
    ".parquet": parquet.PARQUET,
    ".arrow": arrow_files.ARROW,
    ".feather": arrow_files.ARROW,
    ".safetensors": safetensors_files.SAFETENSORS,
    ".pt": torch_files.PT,
    ".pth": torch_files.PT,
}
FORMATS = tuple(READERS)


def from_arrays(
    logits: Any,
    labels: Any,
    *,
    task: str = "auto",
    logits_name: str = "logits",
    labels_name: str = "labels",
) -> Source:
    """A Source over in-memory arrays, validated like the file readers.

    ``logits`` and ``labels``: numpy arrays, lists, torch tensors or other array-likes, as
    :func:`as_array` reads them.
    """
    lg = array_part(logits_name, as_array(logits, logits_name), stored=False)
    lb = array_part(labels_name, as_array(labels, labels_name), stored=False)
    return finish(lg, lb, zip_parts(lg, lb), task, (logits_name, labels_name))


def open_inputs(
    logits_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str] | None = None,
    *,
    task: str = "auto",
    label_column: str | int = "label",
    logits_key: str = "logits",
    labels_key: str = "labels",
    logits_column: str | None = None,
) -> Source:
    """Open one file holding both logits and labels, or a logits file and a labels file.

    One file: an ``.npz`` with both keys, or a CSV/TSV/Parquet/Arrow/Feather file with a
    label column (``label_column``: a header name, or a 0-based position for a CSV without
    header); the other columns are the logits. Two files: each in any format; table columns
    are all logits (or all labels: one column per row label, C columns for soft/multihot
    labels). In Parquet, Arrow and Feather the logits may be one list column (C values per
    row, as a Hugging Face dataset stores them): ``logits_column``, or inferred when the
    table has exactly one list column; other columns are then left out.

    A path may be an fsspec URL (``s3://bucket/logits.npy``, ``memory://``...) where fsspec
    is installed (:mod:`cecheck.inputs.urls`).
    """
    names = (str(logits_path), str(labels_path if labels_path is not None else logits_path))
    files = (urls.local(names[0]), urls.local(names[1]))  # a URL: a local copy (fsspec)
    try:
        source = _open(
            files,
            labels_path is not None,
            task,
            Choice(label_column, logits_key, labels_key, logits_column),
        )
    except InputError as e:
        raise InputError(urls.named(str(e), dict(zip(files, names, strict=True)))) from None
    warnings = tuple(urls.named(w, dict(zip(files, names, strict=True))) for w in source.warnings)
    return dataclasses.replace(
        source, logits_name=names[0], labels_name=names[1], warnings=warnings
    )


def _open(files: tuple[str, str], two: bool, task: str, choice: Choice) -> Source:
    if not two:
        lg, lb, pairs = READERS[check_file(files[0], FORMATS)].both(files[0], choice)
        return finish(lg, lb, pairs, task, files)
    lg = READERS[check_file(files[0], FORMATS)].single(files[0], choice, "logits")
    lb = READERS[check_file(files[1], FORMATS)].single(files[1], choice, "labels")
    return finish(lg, lb, zip_parts(lg, lb), task, files)


def recorded_settings(path: str | os.PathLike[str]) -> Recorded | None:
    """The settings ``path`` records, when it is a loss dump of :func:`cecheck.torch.watch`
    (the loss, its arguments, the dtypes it ran in); None for any other file.

    Raises :class:`InputError` when the file cannot be read or its record is malformed.
    """
    name = str(path)
    reader = READERS[check_file(name, FORMATS)]
    return None if reader.recorded is None else reader.recorded(name)
