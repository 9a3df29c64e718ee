"""Rows whose logits overflow a cast to a narrower dtype (the ``cast_overflow`` flag of
:mod:`cecheck.diagnose`)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from cecheck.arraytypes import Array
from cecheck.precision import Precision
from cecheck.rowends import RowEnds


def cast_overflow_rows(
    logits: Array, precisions: Iterable[Precision], ends: RowEnds | None = None
) -> dict[str, Array]:
    """Per dtype narrower than the stored logits: rows with a finite logit that casts to inf.

    A cast rounds monotonically, so a row of finite (n, C) logits has one exactly where its
    largest or its smallest logit casts to inf: two passes over the chunk for every dtype,
    not a cast of each, none when the kernel read them (``ends``, :mod:`cecheck.rowends`).
    The rows holding a NaN or inf (a -inf mask) are cast whole.
    """
    out: dict[str, Array] = {}
    narrower = [p for p in precisions if float(np.finfo(logits.dtype).max) > p.max]
    if not narrower:
        return out
    if logits.ndim == 2 and logits.shape[1] > 0:
        if ends is None:
            top, low = logits.max(axis=1), logits.min(axis=1)
        else:  # the same values, in the logits' dtype
            top, low = ends.max.astype(logits.dtype), ends.min.astype(logits.dtype)
        whole = np.flatnonzero(~(np.isfinite(top) & np.isfinite(low)))
    else:
        top, low, whole = None, None, np.arange(len(logits))
    for p in narrower:
        with np.errstate(invalid="ignore"):
            hit = np.zeros(len(logits), dtype=bool)
            if top is not None and low is not None:
                hit = np.isinf(p.cast(top)) | np.isinf(p.cast(low))
            if whole.size:
                z = logits[whole]
                each = np.isinf(p.cast(z)) & np.isfinite(z)
                hit[whole] = np.any(each, axis=1) if each.ndim == 2 else each
        out[p.name] = hit
    return out
