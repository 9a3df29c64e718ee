"""Headroom: how far the logits are from each path's first break, per dtype.

The factor λ of a path and dtype is the smallest scale of the logits, ``λ · z``, at which some
row breaks; that row is named. λ < 1 means rows are already past the cliff (they are
counted). The cliffs, in exact arithmetic on the scaled logits (multiclass, index labels):

- ``textbook`` (``exp(z) / Σ exp(z)``): ``Σ exp(λz)`` rounds to inf when the log-partition
  ``lse(λz)`` passes ``log(max + ulp/2)`` of the dtype (11.09, 88.72, 709.78; bfloat16 like
  float32): no sooner than one ``exp`` overflows (``λ max z`` past it) and at most ``log C``
  before; ``exp(λ z_y)`` underflows to 0 below half the smallest subnormal; and the
  target's probability underflows as in ``naive``. The log-partition, like the margin below,
  is convex in λ and brackets its crossing between ``λ max z`` and ``λ max z + log C``.
- ``naive`` (softmax, then log): the target's probability ``exp(-(lse(λz) - λ z_y))`` rounds
  to 0 when the margin ``lse(λz) - λ z_y`` exceeds ``-log(smallest subnormal / 2)`` (17.33,
  92.88, 103.97, 745.13). The margin is convex in λ and is ``log C`` at 0, so past its crossing
  it stays past; it lies between ``λ g`` and ``λ g + log C`` (``g = max z - z_y``), and its
  slope is at most ``g``, which with its value at 1 brackets the crossing; the crossing is
  found by Newton's method (the slope is the softmax-weighted mean of ``z`` minus ``z_y``), on
  the rows whose bracket starts before every other row's ends only; on the kernel's chunks,
  not on a row that the kernel's estimate of ``lse(λz)`` (``scaled_lse`` in ``_kernel.c``)
  puts surely short of the threshold at the best scale found: its crossing comes later.
- ``stable`` (log-softmax): the loss ``log(1 + δ)``, ``δ = Σ_{j≠y} exp(λ(z_j - z_y))``, rounds
  to 0 when ``δ`` is at most the dtype's unit roundoff ``2^-bits`` (a sum rounded once, as
  PyTorch's float16/bfloat16 kernels round it; a sum accumulated in the format may reach 1
  sooner). Only rows whose target is the strict maximum get there. A loss of 0 is finite, so
  this cliff is shown but is not a break for ``--fail-on headroom``.

Also the log-partition ``lse = log Σ exp(z)`` per row: its mean, its maximum and PaLM's z-loss
``1e-4 · mean(lse²)``. :class:`Running` keeps running minima and sums, chunk by chunk, and
two of them merge (:meth:`Running.merge`), so memory does not grow with the rows.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from cecheck import narrow
from cecheck import precision as prec
from cecheck.arraytypes import Array
from cecheck.exactsum import ExactSum
from cecheck.newton import Estimate, Pair, offer_min, solve
from cecheck.rowends import RowEnds

PATHS = ("textbook", "naive", "stable")
BREAKS = ("textbook", "naive")  # the paths whose cliff is a NaN or inf loss
Z_LOSS_WEIGHT = 1e-4  # PaLM's z-loss coefficient
BLOCK_ELEMENTS = 1 << 18  # logits per block of float64 work (2 MB a temporary)
# numpy's lse(λz) - λ z_y is within a few float64 ulp per term of the sum and of λ·max z,
# λ·z_y of its exact value on the same float64 λz_j - λ max z (each rounded as numpy rounds
# it): that error is at most this, relative to those terms. The kernel's estimate
# (_Rows.scaled_lse) adds its own, from those arguments: log(1 ± η), η its bound
# (scaled_eta in _kernel.c). A row whose estimate is farther than both from a
# threshold is on the side numpy finds it on.
ESTIMATE_SLACK = 2.0**-30


@functools.cache
def overflow_threshold(dtype: str) -> float:
    """The x above which ``exp(x)`` rounds to inf in ``dtype``: ``log(max + ulp/2)``."""
    f = prec.get(dtype).finfo
    emax = int(f.maxexp) - 1
    return emax * math.log(2) + math.log(2 - 2.0 ** -prec.get(dtype).bits)


@functools.cache
def underflow_threshold(dtype: str) -> float:
    """The margin past which a probability ``exp(-margin)`` rounds to 0 in ``dtype``:
    ``-log(smallest subnormal / 2)``."""
    return math.log(2) - math.log(prec.get(dtype).smallest)


@functools.cache
def roundoff_threshold(dtype: str) -> float:
    """``-log u``, ``u = 2^-bits``: ``1 + δ`` rounds to 1 when ``δ <= u``."""
    return prec.get(dtype).bits * math.log(2)


@dataclass(frozen=True)
class Cliff:
    """One path in one dtype: the factor to its first break, the row and why."""

    path: str
    dtype: str
    factor: float  # inf: no scaling breaks a row
    row: int | None  # the flat row that breaks first (None with an infinite factor)
    cause: str  # sum_overflow, exp_underflow, prob_underflow or loss_zero ("" without a row)
    # the dtype's cliff, in logs: sum_overflow the log-partition above which Σ exp is inf;
    # exp_underflow the one below which it is 0; prob_underflow the margin lse - z_y above
    # which the target's probability is 0; loss_zero -log u, u = 2^-bits (NaN without a row)
    threshold: float
    rows_past: int  # rows already past a cliff of this path at λ = 1

    @property
    def breaks(self) -> bool:
        """Whether reaching this cliff makes the loss NaN or inf (not so for ``stable``)."""
        return self.path in BREAKS


@dataclass(frozen=True)
class LogPartition:
    """``lse = log Σ exp(z)`` over the rows: mean, maximum and its row, PaLM's z-loss."""

    rows: int
    mean: float
    max: float
    max_row: int | None
    z_loss: float


@dataclass(frozen=True)
class Headroom:
    """Every path and dtype's cliff, and the log-partition."""

    cliffs: tuple[Cliff, ...]
    log_partition: LogPartition | None  # None for the sigmoid tasks (cecheck.sigmoid_headroom)

    def below(self, minimum: float) -> list[Cliff]:
        """The cliffs that break the loss at a factor below ``minimum``."""
        return [c for c in self.cliffs if c.breaks and c.factor < minimum]


@dataclass
class _Best:
    factor: float = math.inf
    row: int | None = None
    cause: str = ""
    past: int = 0

    def offer(self, factor: float, row: int, cause: str) -> None:
        if (factor, row) < (self.factor, math.inf if self.row is None else self.row):
            self.factor, self.row, self.cause = factor, row, cause


@dataclass
class _Rows:
    """A chunk's scored rows with finite logits: their statistics, and their logits again as
    float64 on demand (:meth:`get`, :meth:`others`), for the few rows Newton's method needs."""

    logits: Array  # the chunk's logits, as given
    at: Array  # the rows kept, as positions in the chunk
    y: Array
    rows: Array  # flat row numbers
    lse: Array
    m: Array
    zy: Array
    lead: Array  # z_y - max_{j≠y} z_j where the target is the maximum, else 0
    lead_log: Array  # -log Σ_{j≠y} exp(z_j - z_y) where lead > 0, else -inf
    kernel: bool = False  # whether the kernel estimates lse(λz) of these rows (:meth:`estimate`)

    @classmethod
    def of(
        cls,
        logits: Array,
        labels: Array,
        scored: Array,
        start: int,
        reference: Array | None,
        ends: RowEnds | None = None,
    ) -> _Rows | None:
        """The statistics of the scored rows whose logits are all finite: from the engine's
        float64 ``reference`` (``lse - z_y``) where it is finite, without ``exp``, and the
        rows' ``ends`` when the kernel read them (:func:`_from_reference`), else from the
        logits in blocks (:func:`_block`); ``δ`` computed again from the row where it is below
        1/16, for its last digits."""
        c = logits.shape[1]
        keep = np.array(scored, dtype=bool)
        y = np.where(keep, np.asarray(labels), 0).astype(np.int64)
        known, parts = np.zeros_like(keep), []
        if reference is not None:
            known = keep & np.isfinite(reference)
            parts.append(_from_reference(logits, y, np.flatnonzero(known), reference, c, ends))
        todo, step = np.flatnonzero(keep & ~known), max(1, BLOCK_ELEMENTS // max(1, c))
        parts += [_block(logits, y, todo[i : i + step]) for i in range(0, todo.size, step)]
        if not parts or not sum(p[0].size for p in parts):
            return None
        if len(parts) == 1:  # the common chunk: its rows in order already
            at, lse, m, zy, rest, delta = parts[0]
        else:
            at, lse, m, zy, rest, delta = (np.concatenate([p[k] for p in parts]) for k in range(6))
            order = np.argsort(at, kind="stable")
            at, lse, m, zy, rest, delta = (x[order] for x in (at, lse, m, zy, rest, delta))
        with np.errstate(divide="ignore", invalid="ignore"):
            lead = np.where((zy == m) & (c > 1), zy - rest, 0.0)
            lead_log = np.where(lead > 0, -np.log(delta), -np.inf)
        close = np.flatnonzero((lead > 0) & (delta < 1 / 16))
        if close.size:
            others = _without_target(np.asarray(logits[at[close]], np.float64), y[at[close]])
            lead_log[close] = _lead_log(others, zy[close], 1.0)[0]
        on_kernel = ends is not None and logits.dtype in (np.float32, np.float64)
        kernel = on_kernel and bool(narrow.raw(logits).flags.c_contiguous)
        return cls(logits, at, y[at], at + start, lse, m, zy, lead, lead_log, kernel)

    def get(self, i: Array) -> Array:
        """The float64 logits of the kept rows ``i``."""
        z: Array = np.asarray(self.logits[self.at[i]], dtype=np.float64)
        return z

    def others(self, i: Array) -> Array:
        """:meth:`get` with -inf at the target's place."""
        return _without_target(self.get(i), self.y[i])

    def estimate(self, zy: Array) -> Estimate | None:
        """On the kernel's chunks, :func:`_margin`'s value ``lse(λz) - λ zy`` of the kept rows
        ``i`` at ``λ`` estimated by the kernel, and how far from numpy's it may be."""
        if not self.kernel:
            return None
        log_c = math.log(self.logits.shape[1])

        def margin(i: Array, lam: float) -> Pair:
            lse, log_error = self.scaled_lse(i, lam)
            value: Array = lse - lam * zy[i]
            terms = lam * (np.abs(self.m[i]) + np.abs(zy[i])) + log_c + np.abs(value)
            return value, ESTIMATE_SLACK * (1 + terms) + log_error

        return margin

    def scaled_lse(self, i: Array, lam: float) -> tuple[Array, float]:
        """``lse(λz)`` of the kept rows ``i`` by the kernel (``scaled_lse`` in ``_kernel.c``:
        float32 exps of numpy's float64 ``λz_j - λ max z``, summed in its own order), and how
        far it may be from that of the exact exps of those: ``-log(1 - η)``, ``η`` the
        relative error of its sum."""
        from cecheck import fast  # on the kernel's chunks only: the renderers import this module

        z, at, top = narrow.raw(self.logits), self.at[i], np.ascontiguousarray(self.m[i])
        out = np.empty(at.size)
        eta = fast.kernel().scaled_lse(
            z, z.itemsize, *z.shape, at, np.full(at.size, lam), top, out, 0, at.size
        )
        return out, -math.log1p(-eta)


Stats = tuple[Array, Array, Array, Array, Array, Array]  # at, lse, max, z_y, rest, δ


def _block(logits: Array, labels: Array, at: Array) -> Stats:
    """The rows ``at``'s statistics in one pass over a float64 copy: the maximum of the other
    classes (``rest``), then ``Σ exp(z - max)``, which for a row whose target is the maximum
    is ``1 + δ``, ``δ = Σ_{j≠y} exp(z_j - z_y)``; the rows with a non-finite logit left out."""
    z, y = np.array(logits[at], dtype=np.float64), labels[at]
    zy = z[np.arange(y.size), y]
    rest = _without_target(z, y).max(axis=1)  # the other classes' maximum (-inf with one)
    m = np.maximum(rest, zy)
    keep = np.isfinite(z.sum(axis=1))
    unsure = np.flatnonzero(~keep)  # else all finite
    keep[unsure] = np.isfinite(z[unsure]).all(axis=1)
    with np.errstate(under="ignore", divide="ignore"):
        z -= m[:, None]
        total = np.exp(z, out=z).sum(axis=1)
    k = np.flatnonzero(keep)
    return at[k], (m + np.log(total))[k], m[k], zy[k], rest[k], (total - 1)[k]


def _from_reference(
    logits: Array, labels: Array, at: Array, ref: Array, c: int, ends: RowEnds | None
) -> Stats:
    """:func:`_block` from the rows' finite float64 reference ``lse - z_y``: ``lse`` is
    ``reference + z_y`` and, where the target is the maximum, ``δ = expm1(reference)``. The
    rows' maximum, minimum, target's logit and, where the target is the maximum, the other
    classes' maximum are the kernel's ``ends``, or else read from the logits, a few rows at a
    time (while they are in the cache)."""
    y, r = labels[at], np.asarray(ref[at], dtype=np.float64)
    if ends is not None:
        m, low, rest, zy = ends.max[at], ends.min[at], ends.rest[at], ends.target[at]
    else:
        z = logits if at.size == logits.shape[0] else logits[at]
        zy = np.asarray(z[np.arange(y.size), y], dtype=np.float64)
        m, low, rest = _ends(z, y, zy, c)
    k = np.flatnonzero(np.isfinite(m) & np.isfinite(low))  # no NaN, ±inf (a masked class)
    with np.errstate(under="ignore"):
        return at[k], r[k] + zy[k], m[k], zy[k], rest[k], np.expm1(r[k])


def _ends(z: Array, y: Array, zy: Array, c: int) -> tuple[Array, Array, Array]:
    """The rows ``z``'s maximum, minimum and, where the target is the maximum, the other
    classes' maximum (elsewhere not set), from the logits in blocks."""
    m, low, rest = np.empty_like(zy), np.empty_like(zy), np.empty_like(zy)
    for i in range(0, y.size, step := max(1, BLOCK_ELEMENTS // max(1, c))):
        block, part = z[i : i + step], slice(i, i + step)
        m[part], low[part] = block.max(axis=1), block.min(axis=1)
        top = np.flatnonzero(zy[part] == m[part])  # the target is the maximum
        rest[i + top] = _without_target(block[top], y[i + top]).max(axis=1)
    return m, low, rest


def _without_target(z: Array, y: Array) -> Array:
    """A copy of the rows ``z`` with -inf at each target's place."""
    out: Array = z.copy()
    out[np.arange(len(y)), y] = -np.inf
    return out


@dataclass
class Running:
    """Running minima and sums over chunks of multiclass logits with index labels."""

    dtypes: tuple[str, ...]
    best: dict[tuple[str, str], _Best] = field(default_factory=dict)
    rows: int = 0
    lse_sum: ExactSum = field(default_factory=ExactSum)  # exact: parts merge to the bit
    lse_sq_sum: ExactSum = field(default_factory=ExactSum)
    lse_max: float = -math.inf
    lse_max_row: int | None = None

    def __post_init__(self) -> None:
        for p in PATHS:
            for d in self.dtypes:
                self.best.setdefault((p, d), _Best())

    def add(
        self,
        logits: Array,
        labels: Array,
        scored: Array,
        start: int,
        reference: Array | None = None,
        ends: RowEnds | None = None,
    ) -> None:
        """One chunk: ``(n, C)`` logits, index labels, the rows scored, its first row number,
        each row's float64 reference loss ``lse - z_y`` when known (any value on a row not
        scored; a non-finite one is computed again here) and each row's ends when the kernel
        read them (:mod:`cecheck.rowends`, for the labels as targets on the scored rows).

        Each row's statistics are taken in blocks of :data:`BLOCK_ELEMENTS` logits, so the
        float64 temporaries stay small whatever the chunk; then each cliff is solved once
        per chunk, on the rows that can be first only.
        """
        # logits near float64's limit: a gap or a square beyond it is inf (a factor then 0),
        # a scaled row inf - inf (NaN, never past: the bracket's ends decide)
        with np.errstate(over="ignore", invalid="ignore"):
            stats = _Rows.of(logits, labels, scored, start, reference, ends)
            if stats is not None:
                self._add_lse(stats.lse, stats.rows)
                if logits.shape[1] > 1:  # one class: every loss is 0, nothing to break
                    self._cliffs(stats, logits.shape[1])

    def _cliffs(self, r: _Rows, n_classes: int) -> None:
        step = max(1, BLOCK_ELEMENTS // n_classes)  # rows of a block
        margin = r.lse - r.zy
        log_c, log_rest = math.log(n_classes), math.log(n_classes - 1)
        zero = np.zeros_like(r.zy)  # lse(λz) - λ·0: the log-partition itself
        for d in self.dtypes:
            t_over, t_under = overflow_threshold(d), underflow_threshold(d)
            naive = self.best["naive", d]
            naive.past += int(np.count_nonzero(margin > t_under))
            lo, hi = _convex_bracket(margin, r.m - r.zy, log_c, t_under)
            cause, chord = "prob_underflow", (margin, log_c)  # convex: below its chord
            guess = r.estimate(r.zy)
            solve(naive, r.get, step, r.zy, lo, hi, r.rows, t_under, _margin, cause, chord, guess)
            text = self.best["textbook", d]
            past = (r.lse > t_over) | (margin > t_under) | (r.zy < -t_under)
            text.past += int(np.count_nonzero(past))
            if naive.row is not None:  # textbook's probability underflows as naive's does
                text.offer(naive.factor, naive.row, naive.cause)
            lo, hi = _convex_bracket(r.lse, r.m, log_c, t_over)
            chord, guess = (r.lse, log_c), r.estimate(zero)
            cause = "sum_overflow"
            solve(text, r.get, step, zero, lo, hi, r.rows, t_over, _margin, cause, chord, guess)
            with np.errstate(divide="ignore"):  # x / 0 = inf: no cliff on that row
                offer_min(text, t_under / _pos(-r.zy), r.rows, "exp_underflow")
            t_round = roundoff_threshold(d)
            stable = self.best["stable", d]
            stable.past += int(np.count_nonzero(r.lead_log >= t_round))
            lo, hi = _concave_bracket(r.lead_log, r.lead, -log_rest, log_rest, t_round)
            solve(stable, r.others, step, r.zy, lo, hi, r.rows, t_round, _lead_log, "loss_zero")

    def _add_lse(self, lse: Array, rows: Array) -> None:
        self.rows += lse.size
        self.lse_sum.add(lse)
        self.lse_sq_sum.add(np.square(lse))
        i = int(np.argmax(lse))
        if lse[i] > self.lse_max:
            self.lse_max, self.lse_max_row = float(lse[i]), int(rows[i])

    def merge(self, other: Running) -> None:
        """Take ``other``'s rows (a later or earlier part of the same input) in."""
        for key, b in other.best.items():
            mine = self.best[key]
            mine.past += b.past
            if b.row is not None:
                mine.offer(b.factor, b.row, b.cause)
        self.rows += other.rows
        self.lse_sum.merge(other.lse_sum)
        self.lse_sq_sum.merge(other.lse_sq_sum)
        if other.lse_max_row is not None and (
            other.lse_max > self.lse_max
            or (other.lse_max == self.lse_max and other.lse_max_row < (self.lse_max_row or 0))
        ):
            self.lse_max, self.lse_max_row = other.lse_max, other.lse_max_row

    def result(self) -> Headroom:
        cliffs = []
        for p in PATHS:
            for d in self.dtypes:
                b = self.best[p, d]
                threshold = {
                    "sum_overflow": overflow_threshold(d),
                    "exp_underflow": -underflow_threshold(d),
                    "prob_underflow": underflow_threshold(d),
                    "loss_zero": roundoff_threshold(d),
                }.get(b.cause, math.nan)
                cliffs.append(Cliff(p, d, b.factor, b.row, b.cause, threshold, b.past))
        n, sums = self.rows, (self.lse_sum, self.lse_sq_sum)
        mean, z_loss = sums[0].mean(n), Z_LOSS_WEIGHT * sums[1].mean(n)
        lp = LogPartition(n, mean, self.lse_max if n else math.nan, self.lse_max_row, z_loss)
        return Headroom(tuple(cliffs), lp)


def _convex_bracket(
    at_one: Array, slope: Array, at_zero: float, target: float
) -> tuple[Array, Array]:
    """Each row's bracket ``[lo, hi]`` of the crossing of ``target`` by a convex ``f(λ)``
    (``lse(λz) - λ z_y``, or ``lse(λz)``) from its values at 0 (``log C``, the same for every
    row) and at 1, and its asymptotic slope (``max z - z_y``, or ``max z``; no crossing where
    it is <= 0): ``f(λ) >= λ · slope``, ``f' <= slope``, and past 1 ``f`` lies above its chord
    from 0 to 1. A row past ``target`` at 1 crosses in ``[(target - f(0)) / slope, 1]``, and
    at 0 when ``f(0)`` is past it (the sum of ``C`` ones beyond float16's range): ``[0, 0]``.
    inf where no scale crosses."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        g = _pos(slope)
        past = at_one > target
        hi = target / g
        chord = (target - at_zero) / (at_one - at_zero)
        hi = np.where(~past & (at_one > at_zero) & (chord < hi), chord, hi)
        lo = np.where(past, max(0.0, target - at_zero) / g, 1 + (target - at_one) / g)
        hi = np.where(past, np.minimum(hi, 1.0), hi)
    lo, hi = np.where(g > 0, lo, np.inf), np.where(g > 0, hi, np.inf)
    if at_zero >= target:  # every row past at 0: a row past at 1 is past at any scale
        lo, hi = np.where(past, 0.0, lo), np.where(past, 0.0, hi)
    return lo, hi


def _concave_bracket(
    at_one: Array, slope: Array, at_zero: float, spread: float, target: float
) -> tuple[Array, Array]:
    """As :func:`_convex_bracket` for the concave ``f(λ) = -log Σ_{j≠y} exp(λ(z_j - z_y))``
    (``-log(C - 1)`` at 0), given its slope's lower bound ``z_y - max_{j≠y} z_j`` (no
    crossing where it is <= 0): ``λ · slope - log(C - 1) <= f(λ) <= λ · slope``, past 1
    ``f(λ) >= f(1) + (λ - 1) slope`` and ``f`` lies below its chord from 0 to 1."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        g = _pos(slope)
        past = at_one >= target
        lo, hi = target / g, (target + spread) / g
        chord = (target - at_zero) / (at_one - at_zero)
        lo = np.where(~past & (at_one > at_zero) & (chord > lo), chord, lo)
        hi = np.where(past, np.minimum(hi, 1.0), np.minimum(hi, 1 + (target - at_one) / g))
    return np.where(g > 0, lo, np.inf), np.where(g > 0, hi, np.inf)


def _lse_slope(x: Array, lam: Array | float, slope: bool = True) -> tuple[Array, Array]:
    """``lse(λx)`` per row and its derivative in λ, the softmax(λx)-weighted mean of ``x``
    (a class at -inf has weight 0), from one pass; without ``slope``, an empty one."""
    lam_col = np.asarray(lam, dtype=np.float64).reshape(-1, 1)
    s = lam_col * x
    m = s.max(axis=1)
    with np.errstate(under="ignore", invalid="ignore"):
        w = np.exp(s - m[:, None])
        total = w.sum(axis=1)
        mean: Array = np.where(w > 0, w * x, 0.0).sum(axis=1) / total if slope else total[:0]
    out: Array = m + np.log(total)
    return out, mean


def _margin(z: Array, zy: Array, lam: Array | float, slope: bool = True) -> tuple[Array, Array]:
    """``lse(λz) - λ z_y`` per row, and its derivative in λ (as :func:`_lse_slope`)."""
    lse, mean = _lse_slope(z, lam, slope)
    value: Array = lse - np.asarray(lam) * zy
    return value, mean - zy if slope else mean


def _lead_log(others: Array, zy: Array, lam: Array | float, slope: bool = True) -> Pair:
    """``-log δ``, ``δ = Σ_{j≠y} exp(λ(z_j - z_y))`` per row, from the logits with -inf at
    the target's place (at least one other class): large when the target leads by far; and
    its derivative in λ."""
    lse, mean = _lse_slope(others - zy[:, None], lam, slope)
    return -lse, -mean


def _pos(x: Array) -> Array:
    """``x`` with the values <= 0 as 0, so that ``t / _pos(x)`` is inf there (no cliff)."""
    return np.where(x > 0, x, 0.0)
