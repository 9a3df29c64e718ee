"""PyTorch files (``.pt``, ``.pth``): a tensor, a dict of tensors, or a tuple/list of two.

They are loaded only by ``torch.load(weights_only=True, mmap=True)``: torch's restricted
unpickler builds tensors, containers and numbers and refuses anything else, so no code in
the file ever runs. torch is imported only here, when such a file is opened.
"""

from __future__ import annotations

from typing import Any

from cecheck.errors import InputError
from cecheck.inputs.arrays import array_part, as_array
from cecheck.inputs.files import Choice, Reader, missing_key, reason
from cecheck.inputs.source import PairReader, Part, zip_parts

_WHAT = "a tensor, a dict of tensors, or a tuple or list (logits, labels)"


def load(path: str) -> Any:
    """What the file holds, as torch's weights-only loader builds it, or an InputError."""
    try:
        import torch
    except ImportError:
        raise InputError(
            f"{path} is a PyTorch file, which needs torch: pip install 'cecheck[torch]'"
        ) from None
    try:
        return torch.load(path, weights_only=True, mmap=True, map_location="cpu")
    except Exception as e:  # torch raises many kinds for a file it refuses or cannot parse
        raise InputError(
            f"{path} cannot be loaded with torch.load(weights_only=True) ({reason(e)}), and "
            f"cecheck never unpickles anything else: save {_WHAT} with torch.save"
        ) from None


def _tensor(name: str, value: Any) -> Part:
    torch = __import__("torch")
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{name} is a {type(value).__name__}, not a tensor: save {_WHAT}")
    return array_part(name, as_array(value, name), stored=True)


def open_pt(path: str, choice: Choice, which: tuple[str, ...]) -> list[Part]:
    """The tensors ``which`` (``"logits"``, ``"labels"``) of a PyTorch file."""
    held = load(path)
    torch = __import__("torch")
    if isinstance(held, torch.Tensor):
        if len(which) == 2:
            raise InputError(
                f"{path} holds one tensor, the logits: give the labels as a second file, or "
                "save a dict {'logits': ..., 'labels': ...}"
            )
        return [_tensor(path, held)]
    if isinstance(held, dict):
        parts = []
        for key, option in (choice.key(w) for w in which):
            if key not in held:
                raise missing_key(path, key, held, "tensor", option)
            parts.append(_tensor(f"{path}[{key!r}]", held[key]))
        return parts
    if isinstance(held, (tuple, list)) and len(held) == 2:
        at = {"logits": 0, "labels": 1}
        return [_tensor(f"{path}[{at[w]}]", held[at[w]]) for w in which]
    raise InputError(f"{path} holds a {type(held).__name__}: save {_WHAT}")


def _both(path: str, choice: Choice) -> tuple[Part, Part, PairReader]:
    lg, lb = open_pt(path, choice, ("logits", "labels"))
    return lg, lb, zip_parts(lg, lb)


PT = Reader(single=lambda path, choice, which: open_pt(path, choice, (which,))[0], both=_both)
