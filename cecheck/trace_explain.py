"""Why a step of a :mod:`cecheck.trace` is bad, in one sentence, and numbers as text.

What counts as bad, so that the mark points at a cause rather than at harmless rounding:

- any step whose value holds inf or NaN (the first one only: the rest follow from it);
- a probability rounding to exactly 0 (``log`` then gives -inf), a sigmoid rounding to
  exactly 0 or 1 (one of the two logs gives -inf);
- a probability, or the stable path's ``sum exp(z - max)``, rounding to exactly 1 when that
  makes the loss exactly 0 although the reference loss is a normal number of the dtype (the
  case ``compare`` flags as ``inaccurate``).

``exp(z - max)`` underflowing to 0, or the target's shifted logit being 0, is not bad.

The steps are those a loss function of :mod:`cecheck.losses` records (see
:class:`cecheck.losses.Recorder`); a check reads the values of the steps it needs by their
names, as that function recorded them for the row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cecheck.arraytypes import Array
from cecheck.output.numbers import format_value
from cecheck.precision import Precision


@dataclass(frozen=True)
class Bad:
    """Why a step is bad: one sentence, and the classes where it happened, to be shown."""

    note: str
    classes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Row:
    """What a check knows besides the steps' values."""

    z: Array  # the logits as given, (1, C) or (1,)
    y: Array  # the label(s), as the loss function took them
    p: Precision  # the path's precision (float64 for the reference)
    ref: float  # the reference loss
    masks: Array | None = None  # (C,) the classes masked with -inf (softmax rows only)


# A check: the row's recorded values by step name, and the row -> why the step is bad, or None.
Check = Callable[[Mapping[str, Array], Row], "Bad | None"]


def check(path: str, kind: str, name: str) -> Check | None:
    """The check of step ``name`` of ``path`` for a family of losses, None if it has none.

    A step without a check is still bad when its value holds inf or NaN (see
    :func:`nonfinite`).
    """
    if name == "z":
        return _cast
    return _CHECKS.get((path, kind), {}).get(name)


def _cast(v: Mapping[str, Array], row: Row) -> Bad | None:
    return _cast_bad(row.z, v["z"], row.p, row.masks)


def _exp(v: Mapping[str, Array], row: Row) -> Bad | None:
    return _exp_bad(v["z"], v["exp"], row.p)


def _exp_sum(v: Mapping[str, Array], row: Row) -> Bad | None:
    return _sum_bad("Σ exp(z)", v["exp"], v["sum"], row.p)


def _target_prob(v: Mapping[str, Array], row: Row) -> Bad | None:
    return _prob_bad(v["z"], v["exp"], v["p"], row.p, row.ref, v["loss"], row.y)


def _probs(v: Mapping[str, Array], row: Row) -> Bad | None:
    return _probs_bad(v["z"], v["exp"], v["p"], v["t"], row.p, row.ref, v["loss"])


def _shift(v: Mapping[str, Array], row: Row) -> Bad | None:
    return _shift_bad(v["z"], v["max"], v["shifted"], row.p)


def _sum_one(v: Mapping[str, Array], row: Row) -> Bad | None:
    return _sum_one_bad(v["z"], v["sum"], row.p, row.ref, v["loss"])


def _sigmoid(v: Mapping[str, Array], row: Row) -> Bad | None:
    return _sigmoid_bad(v["z"], v["exp_neg"], v["sigmoid"], row.p)


def _class_sum(v: Mapping[str, Array], row: Row) -> Bad | None:
    return _sum_bad("Σ", v["class_loss"], v["sum_classes"], row.p)


_SOFTMAX: dict[str, Check] = {"exp": _exp, "sum": _exp_sum}
_SHIFTED: dict[str, Check] = {"shifted": _shift, "sum": _sum_one}
_CHECKS: dict[tuple[str, str], dict[str, Check]] = {
    ("naive", "index"): {**_SOFTMAX, "p": _target_prob},
    ("naive", "soft"): {**_SOFTMAX, "p": _probs},
    ("stable", "index"): _SHIFTED,
    ("stable", "soft"): _SHIFTED,
    ("naive", "binary"): {"sigmoid": _sigmoid},
    ("naive", "multilabel"): {"sigmoid": _sigmoid, "sum_classes": _class_sum},
    ("stable", "multilabel"): {"sum_classes": _class_sum},
}


def nonfinite(formula: str, v: Array, masks: Array | None = None) -> Bad | None:
    """The catch-all: a step whose value holds inf or NaN, when no check explained it.

    ``masks``: the classes masked with -inf, left out of a per-class step's values.
    """
    bad = ~np.isfinite(v)
    if masks is not None and v.ndim == 2:
        bad &= ~masks
    if not bad.any():
        return None
    if v.ndim == 2:
        j = int(np.argmax(bad[0]))
        return Bad(f"{formula} gives {_fmt(v[0, j])} for class {j}", (j,))
    return Bad(f"{formula} gives {_fmt(v[0])}")


# ---------------------------------------------------------------------- why a step is bad


def _fmt(x: Any, dtype: str = "float64") -> str:
    return format_value(float(x), dtype)


def _zname(j: int | None) -> str:
    return "z" if j is None else f"z[{j}]"


def _at(v: Array, mask: Array) -> tuple[int | None, float]:
    """The first position where ``mask`` holds (class or None for a one-value step), value."""
    j = int(np.argmax(mask.reshape(-1)))
    return (j if v.ndim == 2 else None), float(v.reshape(-1)[j])


def _cls(j: int | None) -> tuple[int, ...]:
    return () if j is None else (j,)


def _cast_bad(z: Array, zc: Array, p: Precision, masks: Array | None = None) -> Bad | None:
    """A logit that is not finite as given, or beyond the dtype's range once stored in it;
    a masked class (``masks``: a softmax row's -inf) is neither."""
    bad = ~np.isfinite(zc)
    if masks is not None:
        bad &= ~masks
    if not bad.any():
        return None
    j, stored = _at(zc, bad)
    given = float(np.asarray(z, dtype=np.float64).reshape(-1)[0 if j is None else j])
    if not math.isfinite(given):
        return Bad(f"the input logit {_zname(j)} is {_fmt(given)}: no loss can come of it", _cls(j))
    return Bad(
        f"{_zname(j)} = {_fmt(given)} is beyond {_big(p.max)}, the largest {p.name}: "
        f"stored as {p.name} it becomes {_fmt(stored)}",
        _cls(j),
    )


def _exp_bad(zc: Array, e: Array, p: Precision) -> Bad | None:
    """exp of a finite logit overflowing; the smallest such logit is named."""
    over = np.isinf(e) & np.isfinite(zc)
    if not over.any():
        return None
    j = int(np.argmin(np.where(over[0], zc[0], np.inf)))
    return Bad(
        f"exp({_fmt(zc[0, j], p.name)}) is above {_big(p.max)}, the largest {p.name}: "
        "it overflows to inf",
        (j,),
    )


def _sum_bad(what: str, terms: Array, s: Array, p: Precision) -> Bad | None:
    """A sum of finite terms overflowing."""
    if not (np.isinf(s).any() and np.isfinite(terms).all()):
        return None
    with np.errstate(over="ignore"):
        total = float(np.sum(np.asarray(terms, dtype=np.float64)))
    size = f", {_big(total)}," if math.isfinite(total) else ""
    return Bad(
        f"the sum {what}{size} is above {_big(p.max)}, the largest {p.name}: it overflows to inf"
    )


def _shift_bad(zc: Array, m: Array, d: Array, p: Precision) -> Bad | None:
    """``z - max`` of finite logits beyond the dtype's range (float16 logits far apart).

    ``m`` is the row's max, shape (1,).
    """
    over = np.isinf(d) & np.isfinite(zc)
    if not over.any():
        return None
    j = int(np.argmax(over[0]))
    true = float(zc[0, j]) - float(m[0])
    return Bad(
        f"z[{j}] - max = {_fmt(zc[0, j], p.name)} - {_fmt(m[0], p.name)} = {_big(true)} "
        f"is beyond -{_big(p.max)}, the most negative {p.name}: it overflows to -inf",
        (j,),
    )


def _log_softmax64(zc: Array) -> Array:
    """``z - lse(z)`` in float64 of the logits as the dtype stores them (finite row)."""
    z = np.asarray(zc, dtype=np.float64)
    k = int(np.argmax(z[0]))
    e = np.exp(z - z[0, k])
    e[0, k] = 0.0
    shifted: Array = z - (z[0, k] + np.log1p(e.sum()))
    return shifted


def _matters(loss: Array, ref: float, p: Precision) -> bool:
    """A loss of exactly 0 where the reference is a normal number of the dtype."""
    return bool(np.asarray(loss).reshape(-1)[0] == 0) and ref >= p.tiny


def _prob_bad(
    zc: Array, e: Array, prob: Array, p: Precision, ref: float, loss: Array, y: Array
) -> Bad | None:
    """The naive target probability rounding to 0, or to 1 when that zeroes the loss."""
    v = float(prob[0])
    c = int(y[0])
    if v == 0 and np.isfinite(zc).all():
        if e[0, c] == 0:
            return Bad(
                f"exp({_fmt(zc[0, c], p.name)}) is below {_small(p)}, the smallest {p.name}: "
                "it underflows to 0, so p = 0 and log(0) = -inf follows",
                (c,),
            )
        true = _from_log(float(_log_softmax64(zc)[0, c]))
        return Bad(
            f"p, truly {true}, is below {_small(p)}, the smallest {p.name}: it rounds to 0, "
            "and log(0) = -inf follows",
            (c,),
        )
    if v == 1 and zc.shape[1] > 1 and _matters(loss, ref, p):
        return Bad(_one_note("p", p, ref), (c,))
    return None


def _probs_bad(
    zc: Array, e: Array, prob: Array, tc: Array, p: Precision, ref: float, loss: Array
) -> Bad | None:
    """A naive softmax probability rounding to 0, or to 1 when that zeroes the loss."""
    if not np.isfinite(prob).all():
        return None
    zero = prob[0] == 0
    if zero.any():
        j = int(np.argmin(np.where(zero, zc[0], np.inf)))
        then = (
            "and t = 0 there makes 0 · (-inf) = NaN"
            if tc[0, j] == 0
            else f"and t = {_fmt(tc[0, j], p.name)} there makes the loss inf"
        )
        if e[0, j] == 0:
            how = (
                f"exp({_fmt(zc[0, j], p.name)}) is below {_small(p)}, the smallest {p.name}: "
                f"it underflows to 0, so p[{j}] = 0"
            )
        else:
            true = _from_log(float(_log_softmax64(zc)[0, j]))
            how = (
                f"p[{j}], truly {true}, is below {_small(p)}, the smallest {p.name}: it rounds to 0"
            )
        return Bad(f"{how}; log p[{j}] = -inf, {then}", (j,))
    one = prob[0] == 1
    if one.any() and zc.shape[1] > 1 and _matters(loss, ref, p):
        j = int(np.argmax(one))
        return Bad(_one_note(f"p[{j}]", p, ref), (j,))
    return None


def _one_note(what: str, p: Precision, ref: float) -> str:
    below = _sci(float(p.finfo.epsneg))
    return (
        f"{what}, truly 1 - {_sci(-math.expm1(-ref))}, rounds to exactly 1 in {p.name} "
        f"(the nearest {p.name} below 1 is 1 - {below}): log(1) = 0, so the loss, "
        f"truly {_sci(ref)}, comes out as 0"
    )


def _sum_one_bad(zc: Array, s: Array, p: Precision, ref: float, loss: Array) -> Bad | None:
    """The stable sum rounding to exactly 1 while the other classes add something: loss 0."""
    if not (float(s[0]) == 1 and zc.shape[1] > 1 and _matters(loss, ref, p)):
        return None
    z = np.asarray(zc, dtype=np.float64)
    k = int(np.argmax(z[0]))
    e = np.exp(z - z[0, k])
    e[0, k] = 0.0
    eps = _sci(float(p.finfo.eps))
    return Bad(
        f"Σ exp(z - max) rounds to exactly 1: the other classes add {_sci(float(e.sum()))}, "
        f"too little to move 1 in {p.name} (the next {p.name} above 1 is 1 + {eps}); "
        f"log(1) = 0, so the loss, truly {_sci(ref)}, comes out as 0",
        (k,),
    )


def _softplus64(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _sigmoid_bad(zc: Array, en: Array, prob: Array, p: Precision) -> Bad | None:
    """A naive sigmoid rounding to exactly 0 or 1: one of the two logs becomes log(0)."""
    hit = ((prob == 0) | (prob == 1)) & np.isfinite(zc)
    if not hit.any():
        return None
    j, v = _at(prob, hit)
    zj = float(zc.reshape(-1)[0 if j is None else j])
    ej = float(en.reshape(-1)[0 if j is None else j])
    z_txt, mz_txt = _fmt(zj, p.name), _fmt(-zj, p.name)
    where = "" if j is None else f" (class {j})"
    if v == 0:
        true = _from_log(-_softplus64(-zj))
        if math.isinf(ej):
            how = (
                f"exp({mz_txt}) is above {_big(p.max)}, the largest {p.name}, so it overflows "
                f"to inf and sigmoid({z_txt}) = 1 / (1 + inf)"
            )
        else:
            how = f"sigmoid({z_txt}) is below {_small(p)}, the smallest {p.name}, so it"
        return Bad(
            f"{how}, truly {true}, comes out as exactly 0{where}; log s = log(0) = -inf follows",
            _cls(j),
        )
    true = _from_log(-_softplus64(zj))
    if ej == 0:
        how = (
            f"exp({mz_txt}) is below {_small(p)}, the smallest {p.name}: it underflows to 0, "
            f"so sigmoid({z_txt}) = 1 / (1 + 0)"
        )
    else:
        eps = _sci(float(p.finfo.eps))
        how = (
            f"1 + exp({mz_txt}) = 1 + {_fmt(ej, p.name)} rounds to 1 in {p.name} (the next "
            f"{p.name} above 1 is 1 + {eps}), so sigmoid({z_txt})"
        )
    return Bad(
        f"{how}, truly 1 - {true}, comes out as exactly 1{where}; "
        "log(1 - s) = log(0) = -inf follows",
        _cls(j),
    )


# ---------------------------------------------------------------------- numbers as text


def _sci(x: float) -> str:
    """Two significant digits: ``3.4e38``, ``6.0e-8``; plain between 0.01 and 1e5."""
    if not math.isfinite(x) or x == 0:
        return _fmt(x)
    if 1e-2 <= abs(x) < 1e5:
        return f"{x:.2g}"
    mant, exp = f"{x:.1e}".split("e")
    return f"{mant}e{int(exp)}"


def _big(x: float) -> str:
    """A format's largest number as people quote it: 65504, 3.4e38, 1.8e308."""
    return _fmt(x) if abs(x) < 1e5 else _sci(x)


def _small(p: Precision) -> str:
    """The smallest positive (subnormal) number of the format."""
    return _sci(float(p.finfo.smallest_subnormal))


def _from_log(log_value: float) -> str:
    """``exp(log_value)`` as two significant digits, even far below float64's range."""
    if log_value > -700:
        return _sci(math.exp(log_value))
    exp10 = log_value / math.log(10)
    e = math.floor(exp10)
    mant = round(10 ** (exp10 - e), 1)
    if mant >= 10:
        mant, e = mant / 10, e + 1
    return f"{mant:.1f}e{e}"
