"""Newton's method for the headroom's cliffs (:mod:`cecheck.headroom`): each row's crossing of
a threshold by an increasing function of the scale λ, within a bracket; and the search for a
chunk's first crossing (:func:`solve`), on the rows that can be first only."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import numpy as np

from cecheck.arraytypes import Array

NEWTON_ROWS = 8  # rows iterated together, in the order of their brackets' lower ends
NEWTON_STEPS = 64  # at most (a few suffice; a step outside its bracket halves the bracket)
TOLERANCE = 2.0**-48  # of λ: a Newton step this small ends a row's iteration
Pair = tuple[Array, Array]  # a function of λ's value and derivative per row
# rows i, λ -> an estimate of a function's value at λ per row, and a bound of its error
Estimate = Callable[[Array, float], Pair]


class Best(Protocol):
    """The first crossing found so far (cecheck.headroom's per path and dtype)."""

    factor: float

    def offer(self, factor: float, row: int, cause: str) -> None: ...


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


def solve(
    best: Best,
    get: Callable[[Array], Array],
    step: int,
    zy: Array,
    lo: Array,
    hi: Array,
    rows: Array,
    target: float,
    fn: Callable[..., Pair],
    cause: str,
    chord: tuple[Array, float] | None = None,
    estimate: Estimate | None = None,
) -> None:
    """Offer ``best`` the first row (smallest λ) where ``fn(get(i), zy, λ)`` reaches
    ``target``, each row's crossing bracketed in ``[lo, hi]`` (inf: none).

    Only the rows that can beat the best so far are iterated: those whose ``lo`` is at most
    the smallest ``hi`` (and the best) and, with a best from the rows before, not told by
    :func:`past` to cross after it, in the order of ``lo``, a few at a time, until the next
    ``lo`` is past the best found. A row's crossing depends on that row only (never on
    the best so far), so chunks give the same answer however the rows are split. ``chord``:
    a convex ``fn``'s values at 1 and 0, for :func:`past`. ``estimate``: a convex ``fn``'s
    value by the kernel, for :func:`past`, and to leave out of Newton's method the rows
    certainly not past ``target`` at the best λ found, or before one is found at the least
    ``hi`` (whose row crosses by then) (:func:`below`): their crossing, and so Newton's from
    above it, is after that λ.
    """
    lo = np.minimum(lo, hi)  # ends that rounding crossed: the crossing is at hi
    bound = min(best.factor, float(hi.min(initial=math.inf)))
    if not math.isfinite(bound):
        return
    pick = np.flatnonzero(lo <= bound)
    if math.isfinite(best.factor) and pick.size > NEWTON_ROWS:  # a best from the rows before
        pick = past(pick, get, step, zy, best, target, fn, chord, estimate)
    pick = pick[np.argsort(lo[pick], kind="stable")]
    block = min(step, NEWTON_ROWS)
    i = 0
    while i < pick.size:
        part = pick[i : i + block]
        part = part[lo[part] <= best.factor]
        if not part.size:
            break  # sorted by lo: no later row can be first
        cap = min(best.factor, bound)  # the row of the least hi crosses by then
        if estimate is not None and 0 < cap < math.inf:
            part = part[~below(part, estimate, cap, target)[0]]
        found = newton(get(part), zy[part], lo[part], hi[part], target, fn)
        offer_min(best, found, rows[part], cause)
        i += block
        if pick.size - i > block:
            rest = past(pick[i:], get, step, zy, best, target, fn, chord, estimate)
            pick = np.concatenate([pick[:i], rest])


def past(
    rows: Array,
    get: Callable[[Array], Array],
    step: int,
    zy: Array,
    best: Best,
    target: float,
    fn: Callable[..., Pair],
    chord: tuple[Array, float] | None,
    estimate: Estimate | None = None,
) -> Array:
    """The ``rows`` that may cross before ``best``'s factor λ, by one value each, ``fn`` at
    λ: a row not past ``target`` there crosses after it (each ``fn`` increases across its only
    crossing), one pass instead of Newton's several. With ``chord`` (a convex ``fn`` at 1 and
    0) and λ <= 1, a row whose chord is below ``target`` at λ needs no pass. With ``estimate``
    (``fn``'s value by the kernel), only the rows whose estimate lies within its error of
    ``target`` take numpy's pass: the others are on the side numpy would find them."""
    lam = best.factor
    if not math.isfinite(lam) or lam <= 0:
        return rows
    if chord is not None and lam <= 1:
        at_one, at_zero = chord
        rows = rows[~(at_zero + lam * (at_one[rows] - at_zero) < target)]  # NaN: kept
    keep = np.ones(rows.size, dtype=bool)
    unsure = np.arange(rows.size)
    if estimate is not None and rows.size:
        surely, unsure = below(rows, estimate, lam, target)
        keep = ~surely
    for k in range(0, unsure.size, step):
        part = unsure[k : k + step]
        value, _ = fn(get(rows[part]), zy[rows[part]], lam, False)  # the value alone
        keep[part] = ~(value < target)  # NaN: kept, Newton's method decides
    return rows[keep]


def below(rows: Array, estimate: Estimate, lam: float, target: float) -> tuple[Array, Array]:
    """Whether each of ``rows`` is certainly below ``target`` at ``λ`` by its ``estimate``,
    and the positions of those too near ``target`` to tell (NaN among them)."""
    guess, error = estimate(rows, lam)
    surely = guess < target - error
    return surely, np.flatnonzero(~(np.abs(guess - target) > error))


def offer_min(best: Best, factor: Array, rows: Array, cause: str) -> None:
    """Offer ``best`` the smallest ``factor`` (the first row among ties)."""
    if factor.size == 0:
        return
    least = factor.min()  # NaN-free: the bracketed crossings, or inf
    if math.isfinite(least):  # ties go to the first row, whatever the order of ``rows``
        best.offer(float(least), int(rows[factor == least].min()), cause)
