"""Rows whose logits overflow a cast to a narrower dtype (the ``cast_overflow`` flag of
:mod:`cecheck.diagnose`)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from cecheck.arraytypes import Array
from cecheck.precision import Precision


def cast_overflow_rows(logits: Array, precisions: Iterable[Precision]) -> dict[str, Array]:
    """Per dtype narrower than the stored logits: rows with a finite logit that casts to inf.

    A cast rounds monotonically, so a row of finite (n, C) logits has one exactly where its
    largest or its smallest logit casts to inf: two passes over the chunk for every dtype,
    not a cast of each. The rows holding a NaN or inf (a -inf mask) are cast whole.
    """
    out: dict[str, Array] = {}
    narrower = [p for p in precisions if float(np.finfo(logits.dtype).max) > p.max]
    if not narrower:
        return out
    if logits.ndim == 2 and logits.shape[1] > 0:
        ends = logits.max(axis=1), logits.min(axis=1)
        whole = np.flatnonzero(~(np.isfinite(ends[0]) & np.isfinite(ends[1])))
    else:
        ends, whole = None, np.arange(len(logits))
    for p in narrower:
        with np.errstate(invalid="ignore"):
            hit = np.zeros(len(logits), dtype=bool)
            if ends is not None:
                hit = np.isinf(p.cast(ends[0])) | np.isinf(p.cast(ends[1]))
            if whole.size:
                z = logits[whole]
                each = np.isinf(p.cast(z)) & np.isfinite(z)
                hit[whole] = np.any(each, axis=1) if each.ndim == 2 else each
        out[p.name] = hit
    return out
