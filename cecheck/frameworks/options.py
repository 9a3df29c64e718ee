"""The values of ``--label-smoothing`` and ``--class-weights``, checked as PyTorch would
check them. The one module of :mod:`cecheck.frameworks` that reads a file: the class
weights file the user names.
"""

from __future__ import annotations

import os
import re

import numpy as np

from cecheck.arraytypes import Array
from cecheck.settings import check_label_smoothing

__all__ = ["check_label_smoothing", "parse_class_weights"]


def parse_class_weights(text_or_path: str, n_classes: int) -> Array:
    """Class weights from a comma list (``"1,2.5,0.5"``) or a file of ``n_classes`` numbers.

    A file is read when ``text_or_path`` names one: a ``.npy`` array (no pickles) or text with
    the numbers separated by commas, spaces or newlines. Raises ValueError with one sentence
    for a missing file, a value that is not a number, the wrong count, a negative or
    non-finite weight, or weights that are all 0 (every mean would be 0/0).
    """
    source = text_or_path.strip()
    if os.path.isfile(source):
        where = f"class weights file {source}"
        weights = _read_weights_file(source, where)
    else:
        where = "class weights"
        weights = _weights_from_list(source)
    return _checked_weights(weights, where, n_classes)


def _read_weights_file(path: str, where: str) -> Array:
    """The numbers of a ``.npy`` array or a text file: the only code that reads a file."""
    if path.endswith(".npy"):
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"{where} is not a readable .npy array ({e})") from None
        if values.dtype.kind not in "fiu":
            raise ValueError(f"{where} holds {values.dtype} values, not numbers")
        return np.asarray(values, dtype=np.float64).ravel()
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {where}: {e}") from None
    return _numbers(text, where)


def _weights_from_list(source: str) -> Array:
    """The numbers of a comma list given on the command line (not the name of a file)."""
    if not source:
        raise ValueError("class weights are empty: give C numbers such as 1,2,0.5 or a file")
    if not re.search(r"[,\s]", source) and not _is_number(source):
        raise ValueError(
            f"class weights {source!r}: no such file, and not a comma-separated list of numbers"
        )
    return _numbers(source, "class weights")


def _checked_weights(weights: Array, where: str, n_classes: int) -> Array:
    """``weights`` if they are ``n_classes`` finite numbers >= 0, not all 0; else ValueError."""
    if weights.size != n_classes:
        raise ValueError(
            f"{where}: expected {n_classes} weights (one per class), got {weights.size}"
        )
    if not np.isfinite(weights).all():
        raise ValueError(f"{where}: every weight must be a finite number")
    if (weights < 0).any():
        i = int(np.flatnonzero(weights < 0)[0])
        raise ValueError(f"{where}: weights must be >= 0, class {i} has {weights[i]:g}")
    if not (weights > 0).any():
        raise ValueError(f"{where}: all weights are 0, so every mean would be 0/0")
    return weights


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _numbers(text: str, where: str) -> Array:
    tokens = [tok for tok in re.split(r"[,\s]+", text.strip()) if tok]
    for tok in tokens:
        if not _is_number(tok):
            raise ValueError(f"{where}: {tok!r} is not a number")
    return np.array([float(tok) for tok in tokens], dtype=np.float64)
