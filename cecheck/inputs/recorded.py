"""The settings a file carries: what the training step that wrote it computed.

A loss dump written by :func:`cecheck.torch.watch` is a ``.safetensors`` file whose string
metadata records the loss and its arguments (:data:`KEYS`); :func:`parse` turns that metadata
into a :class:`Recorded`, the options ``cecheck compare DUMP`` applies unless the command line
names them. Both sides use this module, so the writer and the reader agree on one format.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cecheck.choices import DTYPES, TASKS
from cecheck.errors import InputError

# The metadata key that marks a dump, and its value: the format and its version.
MARK = "cecheck"
FORMAT = "loss-dump/1"
LOSSES = ("cross_entropy", "binary_cross_entropy_with_logits")
REDUCTIONS = ("mean", "sum", "none")
# What a dump's metadata holds (every value a string, as safetensors requires), for the README
# and the writer; "autocast_dtype", "rank" and "world_size" only where they apply.
KEYS = {
    MARK: f"{FORMAT!r}: the file is a cecheck loss dump, in this version of the format",
    "loss": "the loss function: " + " or ".join(LOSSES),
    "arguments": "its arguments as JSON: ignore_index, label_smoothing, reduction (cross "
    "entropy); reduction (binary); weight and pos_weight: true when that tensor is in the file",
    "task": "the task cecheck computes: " + ", ".join(TASKS),
    "class_dim": "the axis torch took the classes from (1 for (N, C, d1, ...) logits, which the "
    "dump stores with the classes last)",
    "loss_value": "the value the loss returned (nan, inf, -inf; for reduction='none' the count "
    "of non-finite values)",
    "step": "the step: the wrapper's count of calls, or the step= passed to it",
    "logits_dtype": "the logits' dtype as torch held them (they are stored in it)",
    "autocast_dtype": "autocast's dtype on the logits' device, when autocast was on",
    "rank": "torch.distributed's rank, when it was initialised",
    "world_size": "torch.distributed's world size, when it was initialised",
    "device": "the logits' device",
    "rows_kept": "with max_rows: how many rows the dump keeps, of how many (their positions "
    "are the tensor row_index)",
    "torch_version": "torch.__version__",
    "cecheck_version": "cecheck.__version__",
}


@dataclass(frozen=True)
class Recorded:
    """The options a dump records, as the command line would give them."""

    loss: str
    task: str
    ignore_index: int
    label_smoothing: float
    class_weights: tuple[float, ...] | None
    dtypes: tuple[str, ...]  # the stored and autocast dtypes, float32 and float64
    batch_size: int | None  # reduction='mean' over a multiclass batch: the whole batch (N)
    notes: tuple[str, ...]  # what the file records that cecheck does not apply
    framework: str = "torch"

    def options(self) -> dict[str, Any]:
        """The recorded values by the name of ``cecheck compare``'s parameters."""
        weights = self.class_weights
        return {
            "task": self.task,
            "dtypes": self.dtypes,
            "framework": self.framework,
            "ignore_index": self.ignore_index,
            "label_smoothing": self.label_smoothing,
            "class_weights": None if weights is None else ",".join(repr(w) for w in weights),
            "batch_size": self.batch_size,
        }


def _bad(path: str, what: str) -> InputError:
    return InputError(
        f"{path} has cecheck dump metadata, but {what}: write the dump again with "
        "cecheck.torch.watch, or give the settings as options with a copy of the tensors"
    )


def _int(path: str, meta: Mapping[str, str], key: str) -> int | None:
    if key not in meta:
        return None
    try:
        return int(meta[key])
    except ValueError:
        raise _bad(path, f"its {key} {meta[key]!r} is not a whole number") from None


def parse(
    path: str,
    meta: Mapping[str, Any] | None,
    shapes: Mapping[str, tuple[int, ...]],
    tensor: Callable[[str], np.ndarray],
) -> Recorded | None:
    """The settings recorded in a dump's metadata ``meta``; None when it is not a dump.

    ``shapes``: the file's tensors and their shapes; ``tensor``: reads one (the weights).
    A malformed dump raises :class:`InputError` with one sentence naming ``path``.
    """
    if not meta or MARK not in meta:
        return None
    if meta[MARK] != FORMAT:
        raise _bad(path, f"its format {meta[MARK]!r} is not {FORMAT!r}, the one this cecheck reads")
    if not all(isinstance(v, str) for v in meta.values()):
        raise _bad(path, "its metadata values are not all strings")
    for key in ("loss", "arguments", "task", "logits_dtype"):
        if key not in meta:
            raise _bad(path, f"it lacks the key {key!r}")
    if meta["loss"] not in LOSSES:
        raise _bad(path, f"its loss {meta['loss']!r} is not one of {', '.join(LOSSES)}")
    if meta["task"] not in TASKS:
        raise _bad(path, f"its task {meta['task']!r} is not one of {', '.join(TASKS)}")
    for key in ("logits_dtype", "autocast_dtype"):
        if key in meta and meta[key] not in DTYPES:
            raise _bad(path, f"its {key} {meta[key]!r} is not one of {', '.join(DTYPES)}")
    _int(path, meta, "step")
    try:
        args = json.loads(meta["arguments"])
    except ValueError:
        raise _bad(path, "its arguments are not JSON") from None
    if not isinstance(args, dict):
        raise _bad(path, "its arguments are not a JSON object")
    return _recorded(path, meta, args, shapes, tensor)


def _recorded(
    path: str,
    meta: Mapping[str, str],
    args: dict[str, Any],
    shapes: Mapping[str, tuple[int, ...]],
    tensor: Callable[[str], np.ndarray],
) -> Recorded:
    ignore_index = args.get("ignore_index", -100)
    smoothing = args.get("label_smoothing", 0.0)
    reduction = args.get("reduction", "mean")
    if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
        raise _bad(path, f"its ignore_index {ignore_index!r} is not a whole number")
    number = isinstance(smoothing, int | float) and not isinstance(smoothing, bool)
    if not (number and 0.0 <= smoothing <= 1.0):
        raise _bad(path, f"its label_smoothing {smoothing!r} is not a number in [0, 1]")
    if reduction not in REDUCTIONS:
        raise _bad(path, f"its reduction {reduction!r} is not one of {', '.join(REDUCTIONS)}")
    saved = [k for k in ("weight", "pos_weight") if args.get(k) is True]
    for key in saved:
        if key not in shapes:
            raise _bad(path, f"its arguments name a {key} that the file does not hold")
    weights = None
    notes = []
    multiclass = meta["loss"] == "cross_entropy"
    if multiclass and "weight" in saved:
        w = np.asarray(tensor("weight"), dtype=np.float64)
        weights = tuple(float(v) for v in w.reshape(-1))
    elif saved:
        notes.append(
            f"{path} records a {' and a '.join(saved)} that cecheck does not apply to the "
            "sigmoid loss: the rows are computed unweighted"
        )
    sampled = "row_index" in shapes
    if sampled:
        notes.append(
            f"{path} keeps {meta.get('rows_kept', 'some')} rows (max_rows): the row numbers "
            "are positions among them, and its tensor row_index holds the batch's ones"
        )
    stored = [meta[k] for k in ("logits_dtype", "autocast_dtype") if k in meta]
    # reduction='mean' over a multiclass batch: the mean of the whole batch, as one batch of
    # its N samples (rows of (N, C) logits; sequences of (N, d..., C), N·d... rows)
    logits_shape = shapes.get("logits", (0,))
    whole = multiclass and reduction == "mean" and math.prod(logits_shape[:-1]) > 0
    batch = logits_shape[0] if whole and not sampled else None
    return Recorded(
        loss=meta["loss"],
        task=meta["task"],
        ignore_index=ignore_index,
        label_smoothing=float(smoothing),
        class_weights=weights,
        dtypes=tuple(dict.fromkeys([*stored, "float32", "float64"])),
        batch_size=batch,
        notes=tuple(notes),
    )
