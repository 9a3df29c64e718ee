"""Headroom of the sigmoid tasks: binary ``(N,)`` and multilabel ``(N, C)`` logits, 0/1 targets.

As :mod:`cecheck.headroom` for the softmax: per path and dtype, the smallest factor λ by which
the logits can be scaled, ``λ · z``, before some row's loss is NaN or inf, that row (and for
multilabel, the class), and the rows already past at λ = 1.

Each logit's loss depends on that logit and its target only, and every path breaks where the
scaled logit, cast to the dtype, passes a threshold on one side: so each (path, dtype, target,
side) has one float64 threshold ``v``, and a logit ``z`` breaks from ``λ = v / |z|`` on. The
thresholds are not closed forms: each is found once, by bisection over the float64 numbers
(their bit patterns are ordered), on the very function cecheck computes the path with
(:func:`cecheck.losses.textbook_binary`, :func:`cecheck.frameworks.torch_naive.naive_binary`,
:func:`cecheck.frameworks.torch_fused.stable_binary`), so they are exact to the last bit:

- ``textbook`` (``1 / (1 + exp(-z))``, then log): below ``-v`` ``exp(-z)`` overflows and the
  sigmoid is 0 (about -88.72 in float32 and bfloat16, -11.09 in float16); above ``v`` it rounds
  to 1 (about 16.6 in float32, 8.3 in float16, 5.5 in bfloat16, 36.7 in float64). Then
  ``log s`` or ``log(1 - s)`` is -inf: the loss is inf, or NaN through ``0 · -inf`` where the
  target's weight of that log is 0, so every target breaks on both sides (``sigmoid_zero``,
  ``sigmoid_one``).
- ``naive`` (PyTorch's sigmoid, then ``binary_cross_entropy``, each log clamped at -100): the
  loss is at most 100 for any finite logit, and a logit cast to ±inf saturates the same way:
  no cliff.
- ``stable`` (``binary_cross_entropy_with_logits``): a logit whose cast to the dtype is
  ±inf (past the dtype's largest number) breaks it, through ``inf - inf`` or ``-inf · 0``
  (``logit_overflow``; in float64, a logit scaled past its range). A multilabel row's loss
  is the mean of its classes' losses, about ``λ w``, ``w = Σ (1 - t) max(z, 0) + t
  max(-z, 0)``, summed in the work format (float32 for float16, bfloat16 and float32): the
  sum overflows (``sum_overflow``)
  near ``λ = max / w``, before any logit does when a row has several large logits on the
  wrong side. The sum is at least about ``λ w``, so only the rows whose ``max / (2 w)`` is
  below the best factor so far are solved, in the order of ``max / w``, by bisection on λ
  over the row's own :func:`~cecheck.frameworks.torch_fused.stable_multilabel`.

A soft target in (0, 1) breaks where the target 1 does (both logs carry weight), so it takes
those thresholds. Rows not scored and logits that are not finite are left out.
"""

from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass, field

import numpy as np

from cecheck import headroom
from cecheck import precision as prec
from cecheck.arraytypes import Array
from cecheck.headroom import PATHS, Cliff, Headroom

LARGEST = float(np.finfo(np.float64).max)


@dataclass(frozen=True)
class SigmoidCliff(Cliff):
    """A :class:`~cecheck.headroom.Cliff` of a sigmoid path: also the class of a multilabel row
    that breaks first (None for binary logits or without a row)."""

    klass: int | None = None

    @property
    def breaks(self) -> bool:
        """Every sigmoid path's cliff is a NaN or inf loss."""
        return True


def _path(name: str):  # type: ignore[no-untyped-def]
    from cecheck import losses
    from cecheck.frameworks import torch_fused, torch_naive

    return {
        "textbook": losses.textbook_binary,
        "naive": torch_naive.naive_binary,
        "stable": torch_fused.stable_binary,
    }[name]


def _breaks(path: str, dtype: str, target: float, z: float) -> bool:
    """Whether the path's loss of the one logit ``z`` with ``target`` is NaN or inf."""
    with np.errstate(all="ignore"):
        loss = _path(path)(np.array([z]), np.array([target]), prec.get(dtype)).loss
    return not bool(np.isfinite(np.asarray(loss, dtype=np.float64)).all())


def _bits(x: float) -> int:
    return int(struct.unpack("<q", struct.pack("<d", x))[0])


def _float(b: int) -> float:
    return float(struct.unpack("<d", struct.pack("<q", b))[0])


@functools.cache
def threshold(path: str, dtype: str, target: float, side: int) -> float:
    """The least ``v >= 0`` such that the logit ``side · v`` breaks the path (``side`` ±1),
    by bisection over the float64 numbers; float64's largest when only ±inf (the scaled
    logit past float64's range) does, inf when not even that does."""
    if not _breaks(path, dtype, target, side * LARGEST):
        # a logit scaled past float64's range is ±inf: a cliff where that breaks the path
        return LARGEST if _breaks(path, dtype, target, side * math.inf) else math.inf
    lo, hi = _bits(0.0), _bits(LARGEST)  # lo does not break, hi does
    if _breaks(path, dtype, target, 0.0):
        return 0.0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _breaks(path, dtype, target, side * _float(mid)):
            hi = mid
        else:
            lo = mid
    return _float(hi)


def _row_breaks(z: Array, t: Array, dtype: str, lam: float) -> Array:
    """Which rows' stable multilabel loss of the logits ``λ · z`` is NaN or inf."""
    from cecheck.frameworks import torch_fused

    with np.errstate(all="ignore"):
        loss = torch_fused.stable_multilabel(z * lam, t, prec.get(dtype)).loss
    return ~np.isfinite(np.asarray(loss, dtype=np.float64))


def _row_factor(z: Array, t: Array, dtype: str, lo: float, hi: float) -> float:
    """The least λ (a float64) at which the one row ``z`` breaks, between ``lo`` (where it
    does not) and ``hi`` (where it does), by bisection over the float64 numbers."""
    a, b = _bits(lo), _bits(hi)
    while b - a > 1:
        mid = (a + b) // 2
        if _row_breaks(z, t, dtype, _float(mid))[0]:
            b = mid
        else:
            a = mid
    return _float(b)


def _cause(path: str, side: int) -> str:
    if path == "textbook":
        return "sigmoid_one" if side > 0 else "sigmoid_zero"
    return "logit_overflow"


@dataclass
class _Best:
    factor: float = math.inf
    row: int | None = None
    klass: int | None = None
    cause: str = ""
    threshold: float = math.nan
    past: int = 0

    def offer(self, other: _Best) -> None:
        mine = (self.factor, math.inf if self.row is None else self.row)
        if other.row is not None and (other.factor, other.row) < mine:
            self.factor, self.row, self.klass = other.factor, other.row, other.klass
            self.cause, self.threshold = other.cause, other.threshold


@dataclass
class Running:
    """Running minima over chunks of binary or multilabel logits and their targets."""

    dtypes: tuple[str, ...]
    best: dict[tuple[str, str], _Best] = field(default_factory=dict)
    multilabel: bool = False

    def __post_init__(self) -> None:
        for p in PATHS:
            for d in self.dtypes:
                self.best.setdefault((p, d), _Best())

    def add(
        self,
        logits: Array,
        targets: Array,
        scored: Array,
        start: int,
        reference: object = None,
        ends: object = None,
    ) -> None:
        """One chunk: ``(n,)`` or ``(n, C)`` logits, their targets, the rows scored and the
        chunk's first row number (``reference`` and ``ends`` are the softmax headroom's, unused
        here)."""
        z = np.asarray(logits, dtype=np.float64)
        self.multilabel = z.ndim == 2
        z2 = z.reshape(z.shape[0], -1)
        t2 = np.asarray(targets, dtype=np.float64).reshape(z2.shape)
        keep = np.asarray(scored, dtype=bool) & np.isfinite(z2).all(axis=1)
        at = np.flatnonzero(keep)
        z2, t2 = z2[at], t2[at]
        one = t2 != 0  # a soft target breaks where 1 does
        for p in PATHS:
            for d in self.dtypes:
                for side in (1, -1):
                    v = np.where(one, threshold(p, d, 1.0, side), threshold(p, d, 0.0, side))
                    mag = side * z2
                    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                        factor = np.where(mag > 0, v / np.where(mag > 0, mag, 1.0), np.inf)
                    factor = np.where(v == 0, 0.0, factor)
                    self._take(p, d, side, factor, z2, v, at + start)
                past = np.zeros(at.size, dtype=bool)
                for side in (1, -1):
                    v = np.where(one, threshold(p, d, 1.0, side), threshold(p, d, 0.0, side))
                    past |= (side * z2 >= v).any(axis=1)
                if p == "stable" and self.multilabel and z2.size:
                    past |= self._sum_overflow(d, z2, t2, at + start)
                self.best[p, d].past += int(np.count_nonzero(past))

    def _sum_overflow(self, dtype: str, z: Array, t: Array, rows: Array) -> Array:
        """Offer the stable path the first row whose class sum overflows; the rows past."""
        top = float(np.finfo(prec.get(dtype).work).max)
        w = ((1 - t) * np.maximum(z, 0) + t * np.maximum(-z, 0)).sum(axis=1)
        with np.errstate(divide="ignore", over="ignore"):
            est = np.where(w > 0, top / np.where(w > 0, w, 1.0), np.inf)
        past = np.zeros(z.shape[0], dtype=bool)
        near = np.flatnonzero(est <= 4)  # the rows that may be past: computed
        if near.size:
            past[near] = _row_breaks(z[near], t[near], dtype, 1.0)
        best = self.best["stable", dtype]
        for r in np.argsort(est, kind="stable"):
            if not est[r] / 2 < best.factor:  # the sum is at least about λ w: none sooner
                break
            zr, tr = z[r : r + 1], t[r : r + 1]
            lo, hi = float(est[r]) / 2, min(float(est[r]) * 2, LARGEST)
            if _row_breaks(zr, tr, dtype, lo)[0] or not _row_breaks(zr, tr, dtype, hi)[0]:
                continue  # an element's cliff comes first, or no sum overflows
            lam = _row_factor(zr, tr, dtype, lo, hi)
            best.offer(_Best(lam, int(rows[r]), None, "sum_overflow", top))
        return past

    def _take(
        self, path: str, dtype: str, side: int, factor: Array, z: Array, v: Array, rows: Array
    ) -> None:
        if not factor.size:
            return
        per_row = factor.min(axis=1)
        least = float(per_row.min())
        if not math.isfinite(least):
            return
        r = int(np.flatnonzero(per_row == least)[0])
        k = int(np.flatnonzero(factor[r] == least)[0])
        found = _Best(least, int(rows[r]), k if self.multilabel else None,
                      _cause(path, side), side * float(v[r, k]))  # fmt: skip
        self.best[path, dtype].offer(found)

    def merge(self, other: Running) -> None:
        """Take ``other``'s rows (another part of the same input) in."""
        for key, b in other.best.items():
            self.best[key].past += b.past
            self.best[key].offer(b)
        self.multilabel = self.multilabel or other.multilabel

    def result(self) -> Headroom:
        cliffs = tuple(
            SigmoidCliff(p, d, b.factor, b.row, b.cause, b.threshold, b.past, b.klass)
            for p in PATHS
            for d in self.dtypes
            for b in (self.best[p, d],)
        )
        return Headroom(cliffs, None)


AnyRunning = headroom.Running | Running  # the running headroom of either kind of task
