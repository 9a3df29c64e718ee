"""Why a trace's step is bad under label smoothing: the smoothed target reaches every class,
a masked one (``z = -inf``) too, so a sum over the classes that is finite without smoothing
becomes inf (NaN where that class's weight is 0: ``0 · (-inf)``).

The checks of :mod:`cecheck.trace_explain` for the sums of the soft-label form on smoothed
targets (the textbook and naive paths, ``Σ t · log p``; the reference, ``Σ t · (max - z)``)
and the helper its checks of the fused loss's sums call first.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cecheck.arraytypes import Array
from cecheck.output.numbers import format_value
from cecheck.trace_data import Bad, Row


def smoothed_mask_bad(
    what: str, hit: Array, terms: Array | None, total: Array, row: Row
) -> Bad | None:
    """Label smoothing reaching a masked class: the sum ``what`` over the classes is not
    finite although the loss without smoothing would be. ``hit``: (C,) the classes whose term
    is not finite, all of them masked (else something else broke: None); ``terms``: the
    terms, to tell a NaN (a masked class of weight 0) from -inf."""
    masks = row.masks
    if row.label_smoothing == 0 or masks is None or np.isfinite(total).all():
        return None
    if not hit.any() or (hit & ~masks).any():
        return None
    j = int(np.argmax(hit))
    eps, c = f"{row.label_smoothing:g}", masks.size
    reach = f"label smoothing puts {eps} / {c} of the target on every class, this one too"
    if terms is not None and np.isnan(terms[0, j]):
        return Bad(
            f"class {j} is masked (z = -inf) and weighted 0: {reach}, and 0 · (-inf) = NaN "
            f"makes the sum {what} NaN",
            (j,),
        )
    value = format_value(float(np.asarray(total).reshape(-1)[0]), "float64")
    return Bad(
        f"class {j} is masked (z = -inf), so its log probability is -inf; {reach}, so the "
        f"sum {what} is {value} and the loss inf",
        (j,),
    )


def smoothed_sum(v: Mapping[str, Array], row: Row) -> Bad | None:
    """``Σ t · log p`` of the soft form on smoothed targets (textbook and naive paths)."""
    terms = v["t_log_p"]
    return smoothed_mask_bad("Σ t · log p", ~np.isfinite(terms[0]), terms, v["sum_t_log_p"], row)


def smoothed_gaps(v: Mapping[str, Array], row: Row) -> Bad | None:
    """``Σ t · (max - z)`` of the reference on smoothed targets: inf on a masked class."""
    if "t_smoothed" not in v:
        return None
    hit = (np.asarray(v["t_smoothed"][0]) > 0) & ~np.isfinite(v["z"][0])
    return smoothed_mask_bad("Σ t · (max - z)", hit, None, v["gaps"], row)
