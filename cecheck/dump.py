"""The loss dump :mod:`cecheck.torch` writes when a loss turns NaN or inf, and the verdict on it.

:func:`batch` lays a failing call's logits and targets out as cecheck reads them (classes on
the last axis, rows on the others), in the dtype torch held them in, with the loss's settings
as string metadata (:data:`cecheck.inputs.recorded.KEYS`); :func:`write` saves them as a new
``.safetensors`` file; :func:`verdict` reads that file back the way ``cecheck compare DUMP``
does and returns the first line of its closing sentence. Imported on the failure path only.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from cecheck._version import __version__
from cecheck.atomicfile import write_new_file
from cecheck.inputs import recorded


def batch(
    name: str,
    input: Any,
    target: Any,
    arguments: dict[str, Any],
    loss: Any,
    step: int,
    max_rows: int | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The tensors of a dump (``logits``, ``labels``, and ``weight``/``pos_weight`` when given,
    on the CPU) and its metadata, for the loss ``name`` called with ``arguments``.

    ``max_rows``: keep at most this many rows (see :func:`_sample`), with ``row_index``."""
    logits, labels = input.detach(), target.detach()
    meta = {recorded.MARK: recorded.FORMAT, "loss": name}
    if name == "cross_entropy":
        task = "multiclass"
        if logits.ndim == 1:  # one unbatched sample
            logits, labels = logits.unsqueeze(0), labels.unsqueeze(0)
        elif logits.ndim > 2:  # (N, C, d1, ...): the classes go last, as cecheck reads them
            meta["class_dim"] = "1"
            logits = logits.movedim(1, -1)
            if labels.is_floating_point():  # probabilities, shaped like the logits
                labels = labels.movedim(1, -1)
        args = {
            "ignore_index": int(arguments["ignore_index"]),
            "label_smoothing": float(arguments["label_smoothing"]),
            "reduction": arguments["reduction"],
        }
    else:
        one = logits.ndim == 0 or logits.shape[-1] == 1
        task = "binary" if one or logits.ndim == 1 else "multilabel"
        if one:
            logits, labels = logits.reshape(-1), labels.reshape(-1)
        args = {"reduction": arguments["reduction"]}
    tensors = {}
    if max_rows is not None:
        logits, labels, kept, total = _sample(logits, labels, task, max_rows)
        if kept is not None:
            tensors["row_index"] = _cpu(kept)
            meta["rows_kept"] = f"{len(kept)} of {total}"
    tensors |= {"logits": _cpu(logits), "labels": _cpu(labels)}
    for key in ("weight", "pos_weight"):
        if arguments.get(key) is not None:
            tensors[key] = _cpu(arguments[key].detach())
            args[key] = True
    meta |= {
        "arguments": json.dumps(args),
        "task": task,
        "loss_value": _value(loss),
        "step": str(step),
        "logits_dtype": _name(input.dtype),
        "device": str(input.device),
        "torch_version": torch.__version__,
        "cecheck_version": __version__,
    }
    device = input.device.type
    if torch.is_autocast_enabled(device):
        meta["autocast_dtype"] = _name(torch.get_autocast_dtype(device))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        meta["rank"] = str(torch.distributed.get_rank())
        meta["world_size"] = str(torch.distributed.get_world_size())
    return tensors, meta


def _sample(logits: Any, labels: Any, task: str, max_rows: int) -> tuple[Any, Any, Any, int]:
    """At most ``max_rows`` rows: those with a NaN or inf logit first, then an evenly spaced
    sample of the others; the rows flattened to ``(n, C)`` (``(n,)`` for binary), their
    positions in that order (None when every row fits), and the number of rows."""
    binary = task == "binary"
    rows = logits.reshape(-1) if binary else logits.reshape(-1, logits.shape[-1])
    n = rows.shape[0]
    if n <= max_rows:
        return logits, labels, None, n
    index = binary or labels.shape == logits.shape[:-1]  # one label a row, or one per class
    per_row = labels.reshape(n) if index else labels.reshape(n, -1)
    finite = torch.isfinite(rows) if binary else torch.isfinite(rows).all(dim=-1)
    bad = torch.nonzero(~finite).reshape(-1)[:max_rows]
    others = torch.nonzero(finite).reshape(-1)
    k = min(max_rows - len(bad), len(others))
    picks = others[torch.linspace(0, len(others) - 1, k).round().long()] if k else others[:0]
    kept = torch.sort(torch.cat([bad, picks])).values
    return rows[kept], per_row[kept], kept, n


def _cpu(t: Any) -> Any:
    """A contiguous CPU copy of its own (safetensors refuses tensors that share memory)."""
    return t.to("cpu", copy=True).contiguous()


def _name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _value(loss: Any) -> str:
    """``nan``, ``inf`` or ``-inf``; for an unreduced loss, how many values are not finite."""
    if loss.ndim == 0:
        return repr(float(loss))
    bad = int((~torch.isfinite(loss)).sum())
    return f"{bad} of {loss.numel()} values not finite"


def write(dump_dir: str, tensors: dict[str, Any], meta: dict[str, str], step: int) -> str:
    """Save a new dump in ``dump_dir`` (made if needed) and return its path. The name says the
    step (and the rank); an existing file is never replaced: a second dump of the same step
    gets ``-2``, ``-3``... Written all at once or not at all. Raises OSError."""
    from safetensors.torch import save

    data = save(tensors, metadata=meta)
    os.makedirs(dump_dir, exist_ok=True)
    rank = f"-rank{meta['rank']}" if "rank" in meta else ""
    base = os.path.join(dump_dir, f"cecheck-loss-step{step}{rank}")
    n = 1
    while True:
        path = f"{base}.safetensors" if n == 1 else f"{base}-{n}.safetensors"
        try:
            write_new_file(path, data)
        except FileExistsError:
            n += 1
            continue
        return path


def verdict(path: str) -> str:
    """What ``cecheck compare PATH`` concludes, in its one verdict line (without its
    ``cecheck:``) and the worst flagged row, computed in this process."""
    from cecheck import engine, inputs
    from cecheck.output.verdict import verdict_line
    from cecheck.output.words import row_name

    try:
        rec = inputs.recorded_settings(path)
        if rec is None:
            raise inputs.InputError(f"{path} records no settings")
        report = engine.compare(
            inputs.open_inputs(path, task=rec.task),
            dtypes=rec.dtypes,
            ignore_index=rec.ignore_index,
            label_smoothing=rec.label_smoothing,
            class_weights=rec.class_weights,
            batch_size=rec.batch_size,
            framework=rec.framework,
        )
    except (inputs.InputError, ValueError) as e:
        return f"cecheck could not diagnose it ({' '.join(str(e).split())})"
    worst = f" (worst: row {row_name(report.top[0], report.source)})" if report.top else ""
    return verdict_line(report).removeprefix("cecheck: ") + worst
