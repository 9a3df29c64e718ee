"""Newton's method for the headroom's cliffs (:mod:`cecheck.headroom`): each row's crossing of
a threshold by an increasing function of the scale λ, within a bracket."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cecheck.arraytypes import Array

NEWTON_STEPS = 64  # at most (a few suffice; a step outside its bracket halves the bracket)
TOLERANCE = 2.0**-48  # of λ: a Newton step this small ends a row's iteration


def newton(
    z: Array,
    zy: Array,
    lo: Array,
    hi: Array,
    target: float,
    fn: Callable[[Array, Array, Array | float], tuple[Array, Array]],
) -> Array:
    """Each row's crossing of ``target`` by ``fn`` (value and derivative in λ, increasing
    across the crossing) in its bracket ``[lo, hi]``: Newton's method from ``hi``, a step
    that leaves the bracket (or is not finite) replaced by its midpoint, the bracket
    narrowed by each value's side. On a convex ``fn`` Newton's steps from ``hi`` stay past the
    crossing and shrink to it; on a concave one the first step lands before it, the next
    ones stay there. Until a step below ``TOLERANCE`` of λ (or a bracket that narrow)."""
    out: Array = hi.copy()
    keep = np.flatnonzero(lo < hi)  # lo == hi: the crossing is known (0 past at 0)
    x, a, b = hi[keep], lo[keep], hi[keep]
    z, zy = z[keep], zy[keep]
    for _ in range(NEWTON_STEPS):
        value, slope = fn(z, zy, x)
        past = value >= target
        a, b = np.where(past, a, x), np.where(past, x, b)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            move = (value - target) / slope
            new = x - move
        inside = (new >= a) & (new <= b)  # False for NaN
        new = np.where(inside, new, 0.5 * (a + b))
        done = (inside & (np.abs(move) <= TOLERANCE * x)) | (b - a <= TOLERANCE * b)
        out[keep[done]] = np.where(inside, new, b)[done]
        if done.all():
            return out
        go = ~done
        keep, x, a, b, z, zy = keep[go], new[go], a[go], b[go], z[go], zy[go]
    out[keep] = b
    return out
