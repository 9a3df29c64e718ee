"""Catch the batch where a PyTorch loss turns NaN: save it, say why, stop (or go on).

:func:`watch` wraps ``F.cross_entropy``, ``F.binary_cross_entropy_with_logits``,
``nn.CrossEntropyLoss`` or ``nn.BCEWithLogitsLoss``. The wrapped loss is called as it is (the
same value, the same gradients, bit for bit); the wrapper then reads one boolean from the
device, whether the loss is finite. When it is not, it writes the logits and targets in their
own dtype, with the loss's arguments as metadata (:data:`cecheck.inputs.recorded.KEYS`), to a
new ``.safetensors`` file that ``cecheck compare DUMP`` reads with those settings; it prints
one line on stderr naming the file and cecheck's verdict, and raises :class:`NonFiniteLoss`.

Importing this module imports torch; ``import cecheck`` does not.
"""

from __future__ import annotations

import inspect
import os
import sys
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NonFiniteLoss", "NonFiniteLossWarning", "Watched", "watch"]

ON_NONFINITE = ("raise", "warn")
MAX_DUMPS = 5  # files one wrapper writes at most, so a run that NaNs every step stays small

_FUNCTIONS = {
    F.cross_entropy: "cross_entropy",
    F.binary_cross_entropy_with_logits: "binary_cross_entropy_with_logits",
}
_MODULES = {
    nn.CrossEntropyLoss: "cross_entropy",
    nn.BCEWithLogitsLoss: "binary_cross_entropy_with_logits",
}


class NonFiniteLoss(FloatingPointError):
    """The watched loss returned NaN or inf; the message names the dump and the verdict."""

    def __init__(self, message: str, path: str | None = None, step: int = -1) -> None:
        super().__init__(message)
        self.path = path  # the dump, or None when none was written
        self.step = step

    def __reduce__(self) -> tuple[Any, ...]:  # pickled whole, as between processes
        return type(self), (str(self), self.path, self.step)


class NonFiniteLossWarning(RuntimeWarning):
    """``on_nonfinite="warn"``: the loss was NaN or inf, and training goes on."""


def watch(
    loss_fn: Any,
    dump_dir: str | os.PathLike[str],
    *,
    on_nonfinite: str = "raise",
    every: int = 1,
    max_dumps: int = MAX_DUMPS,
    max_rows: int | None = None,
) -> Watched:
    """``loss_fn`` wrapped: called the same way, with the same result, watched for NaN/inf.

    ``loss_fn``: ``F.cross_entropy``, ``F.binary_cross_entropy_with_logits``, or an
    ``nn.CrossEntropyLoss``/``nn.BCEWithLogitsLoss`` instance. The wrapper takes the same
    arguments, and ``step=`` (the step recorded in a dump; by default the wrapper counts its
    calls from 0). ``every``: check the loss on every ``every``-th call only (each check is
    one device-to-host copy of a boolean). ``max_dumps``: files written at most; later
    failures are still raised or warned. ``max_rows``: a dump keeps at most this many rows,
    those with a NaN or inf logit first, then an evenly spaced sample of the others (for a
    large vocabulary: a dump holds B·T·V logits), and their positions as ``row_index``;
    None keeps every row. ``on_nonfinite``: ``"raise"`` a
    :class:`NonFiniteLoss`, or ``"warn"`` (a :class:`NonFiniteLossWarning`) and go on.
    """
    if on_nonfinite not in ON_NONFINITE:
        raise ValueError(f"on_nonfinite must be 'raise' or 'warn', got {on_nonfinite!r}")
    if every < 1:
        raise ValueError(f"every must be a whole number of calls >= 1, got {every}")
    if max_dumps < 0:
        raise ValueError(f"max_dumps must be >= 0, got {max_dumps}")
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be None or a number of rows >= 1, got {max_rows}")
    name = _loss_name(loss_fn)
    return Watched(loss_fn, name, os.fspath(dump_dir), on_nonfinite, every, max_dumps, max_rows)


def _loss_name(loss_fn: Any) -> str:
    for module, name in _MODULES.items():
        if isinstance(loss_fn, module):
            return name
    for function, name in _FUNCTIONS.items():
        if loss_fn is function:
            return name
    raise TypeError(
        "cecheck.torch.watch wraps F.cross_entropy, F.binary_cross_entropy_with_logits, "
        f"nn.CrossEntropyLoss and nn.BCEWithLogitsLoss, not {loss_fn!r}"
    )


class Watched(nn.Module):
    """A loss wrapped by :func:`watch` (a module, so a wrapped loss module's weights follow
    ``.to(device)`` as before)."""

    def __init__(
        self,
        loss_fn: Any,
        name: str,
        dump_dir: str,
        on_nonfinite: str,
        every: int,
        max_dumps: int,
        max_rows: int | None,
    ) -> None:
        super().__init__()
        self.loss_fn = loss_fn
        self.name = name
        self.dump_dir = dump_dir
        self.on_nonfinite = on_nonfinite
        self.every = every
        self.max_dumps = max_dumps
        self.max_rows = max_rows
        self.calls = 0
        self.dumps: list[str] = []

    def forward(
        self, input: Any, target: Any, *args: Any, step: int | None = None, **kwargs: Any
    ) -> Any:
        loss = self.loss_fn(input, target, *args, **kwargs)
        calls = self.calls
        self.calls += 1
        if calls % self.every == 0:
            finite = torch.isfinite(loss)
            if not (finite if loss.ndim == 0 else finite.all()):  # one boolean read
                self._caught(loss, input, target, args, kwargs, calls if step is None else step)
        return loss

    def _caught(
        self, loss: Any, input: Any, target: Any, args: Any, kwargs: Any, step: int
    ) -> None:
        """Save the batch, say where and why, then raise or warn."""
        from cecheck import dump  # the failure path only: numpy, safetensors, the engine

        arguments = self._arguments(input, target, args, kwargs)
        with torch.no_grad():
            tensors, meta = dump.batch(
                self.name, input, target, arguments, loss, step, self.max_rows
            )
        path, saved = self._save(tensors, meta, step)
        rank = f" on rank {meta['rank']}" if "rank" in meta else ""
        sentence = f"cecheck: loss {meta['loss_value']} at step {step}{rank}: {saved}"
        if self.on_nonfinite == "warn":  # the warning is the line on stderr
            warnings.warn(sentence, NonFiniteLossWarning, stacklevel=4)
            return
        print(sentence, file=sys.stderr, flush=True)
        raise NonFiniteLoss(sentence, path, step)

    def _arguments(self, input: Any, target: Any, args: Any, kwargs: Any) -> dict[str, Any]:
        """The loss's effective arguments (the module's, or the call's with the defaults)."""
        fn = self.loss_fn
        if isinstance(fn, nn.Module):
            got = {
                k: getattr(fn, k)
                for k in ("weight", "pos_weight", "ignore_index", "label_smoothing", "reduction")
                if hasattr(fn, k)
            }
        else:
            bound = inspect.signature(fn).bind(input, target, *args, **kwargs)
            bound.apply_defaults()
            got = dict(bound.arguments)
            legacy = got.pop("size_average"), got.pop("reduce")
            if legacy != (None, None):  # the deprecated pair, as torch reads it
                from torch.nn import _reduction

                got["reduction"] = _reduction.legacy_get_string(*legacy, emit_warning=False)
            del got["input"], got["target"]
        return got

    def _save(
        self, tensors: dict[str, Any], meta: dict[str, str], step: int
    ) -> tuple[str | None, str]:
        """The new dump's path (None when none is written) and what to say about it."""
        from cecheck import dump

        if len(self.dumps) >= self.max_dumps:
            return None, f"not saved (max_dumps={self.max_dumps} written already)"
        try:
            path = dump.write(self.dump_dir, tensors, meta, step)
        except OSError as e:
            return None, f"could not save the batch in {self.dump_dir} ({e.strerror or e})"
        self.dumps.append(path)
        return path, f"batch saved to {path}. {dump.verdict(path)}"
