"""Each row's ends: what the headroom (:mod:`cecheck.headroom`) and the casts
(:mod:`cecheck.casts`) read of a row of multiclass logits.

The multiclass index kernel reads every logit of a row for its max anyway, so it returns them
(:func:`cecheck.fast.multiclass_index`), and those readers then leave the logits alone (the
rows' pages, released by then, are not read again); without the kernel they read the logits
with numpy (:func:`of`), the definition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cecheck.arraytypes import Array
from cecheck.precision import widen


@dataclass(frozen=True)
class RowEnds:
    """Per row of ``(n, C)`` logits with index targets, as float64 ``(n,)`` arrays: numpy's
    ``max`` and ``min`` of the row (NaN where a logit is NaN) and ``rest``, the largest logit
    of the classes other than the target (the max where the target's logit is below it;
    -inf with one class) and ``target``, the target's logit."""

    max: Array
    min: Array
    rest: Array
    target: Array


def of(logits: Array, target: Array) -> RowEnds:
    """The ends of ``(n, C)`` logits with index targets, by numpy (the definition)."""
    z = np.asarray(logits)
    others, at = widen(z, copy=True), (np.arange(len(target)), target)
    zt = others[at]
    others[at] = -np.inf
    top, low = (widen(e) for e in (z.max(axis=1), z.min(axis=1)))
    return RowEnds(top, low, others.max(axis=1), zt)


def filled(ends: Array, rows: Array, logits: Array, target: Array) -> RowEnds:
    """The kernel's ``(4, n)`` ends (max, min, rest, target), with those of the ``rows`` it
    left to numpy (NaN there) read by numpy (:func:`of`)."""
    if rows.size:
        theirs = of(logits[rows], target[rows])
        ends[:, rows] = theirs.max, theirs.min, theirs.rest, theirs.target
    return RowEnds(*ends)
