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
  92.98, 103.97, 745.13). The margin is convex in λ and is ``log C`` at 0, so past its crossing
  it stays past; it lies between ``λ g`` and ``λ g + log C`` (``g = max z - z_y``), which
  brackets the crossing, found by bisection (vectorised over the rows that can be first).
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
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cecheck import precision as prec
from cecheck.arraytypes import Array

PATHS = ("textbook", "naive", "stable")
BREAKS = ("textbook", "naive")  # the paths whose cliff is a NaN or inf loss
Z_LOSS_WEIGHT = 1e-4  # PaLM's z-loss coefficient
BISECTIONS = 64  # halvings of a bracket at most: far below float64's resolution of λ
BLOCK_ELEMENTS = 1 << 18  # logits per block of float64 work (2 MB a temporary)
SEEDS = 1  # rows bisected first, whose crossings bound the rest


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
    log_partition: LogPartition

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
    float64 on demand (:meth:`get`, :meth:`others`), for the few rows a bisection needs."""

    logits: Array  # the chunk's logits, as given
    at: Array  # the rows kept, as positions in the chunk
    y: Array
    rows: Array  # flat row numbers
    lse: Array
    m: Array
    zy: Array
    lead: Array  # z_y - max_{j≠y} z_j where the target is the maximum, else 0
    lead_log: Array  # -log Σ_{j≠y} exp(z_j - z_y) where lead > 0, else -inf

    @classmethod
    def of(cls, logits: Array, labels: Array, scored: Array, start: int) -> _Rows | None:
        n, c = logits.shape
        step = max(1, BLOCK_ELEMENTS // max(1, c))
        parts = []
        for i in range(0, n, step):
            z = np.asarray(logits[i : i + step], dtype=np.float64)
            keep = np.asarray(scored[i : i + step], dtype=bool) & np.isfinite(z).all(axis=1)
            at = np.flatnonzero(keep)
            if at.size < z.shape[0]:
                z = z[at]
            y = np.asarray(labels[i : i + step])[at].astype(np.int64)
            m, zy = z.max(axis=1), z[np.arange(at.size), y]
            lead, lead_log = np.zeros_like(zy), np.full_like(zy, -np.inf)
            top = np.flatnonzero(zy == m)
            if c > 1 and top.size:
                others = _without_target(z[top], y[top])
                lead[top] = zy[top] - others.max(axis=1)
                leads = top[lead[top] > 0]
                lead_log[leads] = _lead_log(_without_target(z[leads], y[leads]), zy[leads], 1.0)
            parts.append((at + i, y, _lse(z), m, zy, lead, lead_log))
        at = np.concatenate([p[0] for p in parts])
        if at.size == 0:
            return None
        cols = [np.concatenate([p[k] for p in parts]) for k in range(1, 7)]
        return cls(logits, at, cols[0], at + start, *cols[1:])

    def get(self, i: Array) -> Array:
        """The float64 logits of the kept rows ``i``."""
        z: Array = np.asarray(self.logits[self.at[i]], dtype=np.float64)
        return z

    def others(self, i: Array) -> Array:
        """:meth:`get` with -inf at the target's place."""
        return _without_target(self.get(i), self.y[i])


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
    lse_sum: float = 0.0
    lse_sq_sum: float = 0.0
    lse_max: float = -math.inf
    lse_max_row: int | None = None

    def __post_init__(self) -> None:
        for p in PATHS:
            for d in self.dtypes:
                self.best.setdefault((p, d), _Best())

    def add(self, logits: Array, labels: Array, scored: Array, start: int) -> None:
        """One chunk: ``(n, C)`` logits, index labels, the rows scored, its first row number.

        Each row's statistics are taken in blocks of :data:`BLOCK_ELEMENTS` logits, so the
        float64 temporaries stay small whatever the chunk; then each cliff is bisected once
        per chunk, on the rows that can be first only.
        """
        # logits near float64's limit: a gap or a square beyond it is inf (a factor then 0),
        # a scaled row inf - inf (NaN, never past: the bracket's ends decide)
        with np.errstate(over="ignore", invalid="ignore"):
            stats = _Rows.of(logits, labels, scored, start)
            if stats is not None:
                self._add_lse(stats.lse, stats.rows)
                if logits.shape[1] > 1:  # one class: every loss is 0, nothing to break
                    self._cliffs(stats, logits.shape[1])

    def _cliffs(self, r: _Rows, n_classes: int) -> None:
        step = max(1, BLOCK_ELEMENTS // n_classes)  # rows of a block
        margin = r.lse - r.zy
        with np.errstate(divide="ignore"):  # x / 0 = inf: no cliff on that row
            gap = 1 / _pos(r.m - r.zy)  # the margin grows as λ (max z - z_y) for large λ
            over, under = 1 / _pos(r.m), 1 / _pos(-r.zy)
            lead = 1 / _pos(r.lead)  # the target the strict maximum, by this much
        log_c, log_rest = math.log(n_classes), math.log(n_classes - 1)
        zero = np.zeros_like(r.zy)  # lse(λz) - λ·0: the log-partition itself
        for d in self.dtypes:
            t_over, t_under = overflow_threshold(d), underflow_threshold(d)
            naive = self.best["naive", d]
            naive.past += int(np.count_nonzero(margin > t_under))
            lo = _times(max(0.0, t_under - log_c), gap)
            _bisect(naive, r.get, step, r.zy, lo, t_under * gap, r.rows, t_under, _margin,
                    "prob_underflow", past_at_zero=log_c >= t_under)  # fmt: skip
            text = self.best["textbook", d]
            past = (r.lse > t_over) | (margin > t_under) | (r.zy < -t_under)
            text.past += int(np.count_nonzero(past))
            if naive.row is not None:  # textbook's probability underflows as naive's does
                text.offer(naive.factor, naive.row, naive.cause)
            lo = _times(max(0.0, t_over - log_c), over)
            _bisect(text, r.get, step, zero, lo, t_over * over, r.rows, t_over, _margin,
                    "sum_overflow", past_at_zero=log_c >= t_over)  # fmt: skip
            _offer_min(text, t_under * under, r.rows, "exp_underflow")
            t_round = roundoff_threshold(d)
            stable = self.best["stable", d]
            stable.past += int(np.count_nonzero(r.lead_log >= t_round))
            lo, hi = t_round * lead, (t_round + log_rest) * lead
            _bisect(stable, r.others, step, r.zy, lo, hi, r.rows, t_round, _lead_log, "loss_zero")

    def _add_lse(self, lse: Array, rows: Array) -> None:
        self.rows += lse.size
        self.lse_sum += float(lse.sum())
        self.lse_sq_sum += float(np.square(lse).sum())
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
        self.lse_sum += other.lse_sum
        self.lse_sq_sum += other.lse_sq_sum
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
        n = self.rows
        lp = LogPartition(
            rows=n,
            mean=self.lse_sum / n if n else math.nan,
            max=self.lse_max if n else math.nan,
            max_row=self.lse_max_row,
            z_loss=Z_LOSS_WEIGHT * self.lse_sq_sum / n if n else math.nan,
        )
        return Headroom(tuple(cliffs), lp)


def _bisect(
    best: _Best,
    get: Callable[[Array], Array],
    step: int,
    zy: Array,
    lo: Array,
    hi: Array,
    rows: Array,
    target: float,
    fn: Callable[[Array, Array, Array | float], Array],
    cause: str,
    *,
    past_at_zero: bool = False,
) -> None:
    """Offer ``best`` the first row (smallest λ) where ``fn(get(i), zy, λ)`` passes ``target``.

    ``fn`` is convex in λ, at least ``target`` at ``hi`` (inf: never) and, unless
    ``past_at_zero``, at most ``target`` at ``lo``. When every row is past it at λ = 0 (the
    sum of ``C`` ones beyond float16's range, say), a row not past it at λ = 1 is bracketed
    from there, and a row past it at λ = 1 has the factor 0 (already past, at any scale
    below 1). Only the rows that can beat the best so far are bisected: those whose ``lo``
    is below it and that are past ``target`` there (one pass: by convexity, a row not past
    it at the bound crosses after it), a block of rows at a time.
    """
    if past_at_zero:
        every = np.arange(len(zy))
        past = _blocks(get, step, fn, zy, every, np.ones(len(zy))) >= target
        _offer_min(best, np.where(past, 0.0, np.inf), rows, cause)
        lo = np.where(past, np.inf, 1.0)
    pick = np.flatnonzero((lo <= min(best.factor, float(hi.min(initial=math.inf)))) & (lo <= hi))
    if pick.size > SEEDS:  # the crossings of the rows that look first bound the others'
        seeds = pick[np.argpartition(lo[pick], SEEDS)[:SEEDS]]
        _offer_min(best, _crossing(get(seeds), zy[seeds], lo[seeds], hi[seeds], best.factor,
                                   target, fn), rows[seeds], cause)  # fmt: skip
    bound = min(best.factor, float(hi.min(initial=math.inf)))
    if not math.isfinite(bound):
        return
    pick = pick[lo[pick] <= bound]
    if pick.size > 1:
        past = _blocks(get, step, fn, zy, pick, np.full(pick.size, bound)) >= target
        pick = pick[past | (hi[pick] <= bound)]
    for i in range(0, pick.size, step):
        part = pick[i : i + step]
        part = part[lo[part] <= best.factor]
        if part.size:
            b = min(best.factor, bound)
            _offer_min(best, _crossing(get(part), zy[part], lo[part], hi[part], b, target, fn),
                       rows[part], cause)  # fmt: skip


def _crossing(
    z: Array,
    zy: Array,
    lo: Array,
    hi: Array,
    bound: float,
    target: float,
    fn: Callable[[Array, Array, Array | float], Array],
) -> Array:
    """Each row's crossing by bisection of ``[lo, min(hi, bound)]``; inf for a row not past
    ``target`` even at the bound, and for the rows dropped on the way (their crossing surely
    after another row's)."""
    out = np.full(len(zy), np.inf)
    keep = np.arange(len(zy))
    sure = hi <= bound  # past at hi by the bracket; else only once seen past
    hi = np.minimum(hi, bound)
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        past = fn(z, zy, mid) >= target
        sure |= past
        hi = np.where(past, mid, hi)
        lo = np.where(past, lo, mid)
        alive = lo <= hi.min(initial=math.inf)
        if not alive.all():
            z, zy, keep, lo, hi = z[alive], zy[alive], keep[alive], lo[alive], hi[alive]
            sure = sure[alive]
    out[keep] = np.where(sure, hi, np.inf)
    return out


def _blocks(
    get: Callable[[Array], Array],
    step: int,
    fn: Callable[[Array, Array, Array | float], Array],
    zy: Array,
    pick: Array,
    lam: Array,
) -> Array:
    """``fn`` at ``lam`` on the rows ``pick``, a block of logits at a time."""
    out = np.empty(pick.size)
    for i in range(0, pick.size, step):
        part = pick[i : i + step]
        out[i : i + step] = fn(get(part), zy[part], lam[i : i + step])
    return out


def _lse(z: Array) -> Array:
    """``log Σ exp(z)`` of each row, shifted by the row's maximum."""
    m = z.max(axis=1)
    with np.errstate(under="ignore"):
        out: Array = m + np.log(np.exp(z - m[:, None]).sum(axis=1))
    return out


def _margin(z: Array, zy: Array, lam: Array | float) -> Array:
    """``lse(λz) - λ z_y`` per row."""
    lam_col = np.asarray(lam, dtype=np.float64).reshape(-1, 1)
    return _lse(lam_col * z) - lam_col[:, 0] * zy


def _lead_log(others: Array, zy: Array, lam: Array | float) -> Array:
    """``-log δ``, ``δ = Σ_{j≠y} exp(λ(z_j - z_y))`` per row, from the logits with -inf at
    the target's place (at least one other class): large when the target leads by far."""
    lam_col = np.asarray(lam, dtype=np.float64).reshape(-1, 1)
    return -_lse(lam_col * (others - zy[:, None]))


def _times(t: float, x: Array) -> Array:
    """``t · x`` with ``0 · inf`` as 0 (a bracket's lower end)."""
    return t * x if t > 0 else np.zeros_like(x)


def _pos(x: Array) -> Array:
    """``x`` with the values <= 0 as 0, so that ``t / _pos(x)`` is inf there (no cliff)."""
    return np.where(x > 0, x, 0.0)


def _offer_min(best: _Best, factor: Array, rows: Array, cause: str) -> None:
    """Offer ``best`` the smallest ``factor`` (the first row among ties)."""
    if factor.size == 0:
        return
    i = int(np.argmin(factor))
    if math.isfinite(factor[i]):
        best.offer(float(factor[i]), int(rows[i]), cause)
