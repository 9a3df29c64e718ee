"""Why a step of a :mod:`cecheck.trace` is bad, in one sentence, and numbers as text.

What counts as bad, so that the mark points at a cause rather than at harmless rounding:

- any step whose value holds inf or NaN (the first one only: the rest follow from it);
- a probability rounding to exactly 0 (``log`` then gives -inf), a sigmoid rounding to
  exactly 0 or 1 (one of the two logs gives -inf);
- a probability, or the stable path's ``sum exp(z - max)``, rounding to exactly 1 when that
  makes the loss exactly 0 although the reference loss is a normal number of the dtype (the
  case ``compare`` flags as ``inaccurate``).

``exp(z - max)`` underflowing to 0, or the target's shifted logit being 0, is not bad.

With label smoothing (``Row.label_smoothing``), a masked class (``z = -inf``) that the
smoothed target reaches makes the sum over the classes inf: :mod:`cecheck.trace_smoothing`
says so at that sum.

The steps are those a loss function of :mod:`cecheck.losses` records (see
:class:`cecheck.losses.Recorder`); a check reads the values of the steps it needs by their
names, as that function recorded them for the row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from cecheck import trace_probs
from cecheck.arraytypes import Array
from cecheck.output.numbers import format_value
from cecheck.precision import Precision, widen
from cecheck.trace_data import Bad, Row
from cecheck.trace_numbers import big as _big
from cecheck.trace_numbers import from_log as _from_log
from cecheck.trace_numbers import sci as _sci
from cecheck.trace_numbers import small as _small
from cecheck.trace_smoothing import smoothed_gaps, smoothed_mask_bad, smoothed_sum

# A check: the row's recorded values by step name, and the row -> why the step is bad, or None.
Check = Callable[[Mapping[str, Array], Row], "Bad | None"]

# What a check returns for a step that holds inf or NaN where that does not matter (the log
# of a class's probability that the loss never reads): not bad, and not for the catch-all.
FINE = trace_probs.FINE


def check(path: str, kind: str, name: str) -> Check | None:
    """The check of step ``name`` of ``path`` for a family of losses, None if it has none.

    A step without a check is still bad when its value holds inf or NaN (see
    :func:`nonfinite`).
    """
    if kind == "probs":  # a row of probabilities: cecheck.trace_probs
        return trace_probs.CHECKS.get(path, {}).get(name)
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
    # with label smoothing a masked class's p = 0 is expected: the sum says what it costs
    masked = row.masks if row.label_smoothing > 0 else None
    return _probs_bad(v["z"], v["exp"], v["p"], v["t"], row.p, row.ref, v["loss"], masked)


def _shift(v: Mapping[str, Array], row: Row) -> Bad | None:
    return _shift_bad(v["z"], v["max"], v["shifted"], row.p)


def _sum_one(v: Mapping[str, Array], row: Row) -> Bad | None:
    return _sum_one_bad(v["z"], v["sum"], row.p, row.ref, v["loss"])


def _sigmoid(v: Mapping[str, Array], row: Row) -> Bad | None:
    return _sigmoid_bad(v["z"], v["exp_neg"], v["sigmoid"], row.p)


def _class_sum(v: Mapping[str, Array], row: Row) -> Bad | None:
    return _sum_bad("Σ", v["class_loss"], v["sum_classes"], row.p)


def _shifted_prob(v: Mapping[str, Array], row: Row) -> Bad | None:
    return _shifted_prob_bad(v["z"], v["exp"], v["p"], row, v.get("t"), v["loss"])


def _target_log(v: Mapping[str, Array], row: Row) -> Bad | None:
    """``log p`` of index labels: only the target's entry enters the loss (``nll_loss``
    gathers it); a -inf elsewhere is harmless."""
    return FINE if np.isfinite(v["log_p"][0, int(row.y[0])]) else None


def _clamped_sigmoid(v: Mapping[str, Array], row: Row) -> Bad | None:
    return _sigmoid_bad(v["z"], v["exp_neg"], v["sigmoid"], row.p, clamped=True)


def _smoothing_sum(v: Mapping[str, Array], row: Row) -> Bad | None:
    terms, total = v.get("w_log_softmax", v["log_softmax"]), v["sum_log_softmax"]
    return smoothed_mask_bad("Σ w · log_softmax", ~np.isfinite(terms[0]), terms, total, row) or (
        _sum_bad("Σ w · log_softmax", terms, total, row.p, mechanism=True)
    )


def _target_sum(v: Mapping[str, Array], row: Row) -> Bad | None:
    terms, total = v.get("w_t_log_softmax", v["t_log_softmax"]), v["sum_t_log_softmax"]
    return smoothed_mask_bad("Σ t · log_softmax", ~np.isfinite(terms[0]), terms, total, row) or (
        _sum_bad("Σ t · log_softmax", terms, total, row.p, mechanism=True)
    )


def _bce_cancel(v: Mapping[str, Array], row: Row) -> Bad | None:
    loss = v["loss"] if row.z.ndim == 1 else v["class_loss"]
    return _cancel_bad(row, v["linear"], v.get("weighted_log_sigmoid", v["log_sigmoid"]), loss)


_SOFTMAX: dict[str, Check] = {"exp": _exp, "sum": _exp_sum}
_SHIFTED: dict[str, Check] = {"shifted": _shift, "sum": _sum_one}
_BCE: dict[str, Check] = {"loss": _bce_cancel, "class_loss": _bce_cancel}
# Keyed by (path, kind): the textbook path's steps (cecheck.losses) and the naive and stable
# steps of a framework's paths, by the names PyTorch's emulations record.
_CHECKS: dict[tuple[str, str], dict[str, Check]] = {
    ("textbook", "index"): {**_SOFTMAX, "p": _target_prob},
    ("textbook", "soft"): {**_SOFTMAX, "p": _probs, "sum_t_log_p": smoothed_sum},
    ("textbook", "binary"): {"sigmoid": _sigmoid},
    ("textbook", "multilabel"): {"sigmoid": _sigmoid, "sum_classes": _class_sum},
    ("naive", "index"): {"shifted": _shift, "p": _shifted_prob, "log_p": _target_log},
    ("naive", "soft"): {"shifted": _shift, "p": _shifted_prob, "sum_t_log_p": smoothed_sum},
    ("naive", "binary"): {"sigmoid": _clamped_sigmoid},
    ("naive", "multilabel"): {"sigmoid": _clamped_sigmoid},
    ("stable", "index"): {**_SHIFTED, "sum_log_softmax": _smoothing_sum},
    ("stable", "soft"): {**_SHIFTED, "sum_t_log_softmax": _target_sum},
    ("reference", "soft"): {"gaps": smoothed_gaps},
    ("stable", "binary"): _BCE,
    ("stable", "multilabel"): _BCE,
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
    given = float(widen(z).reshape(-1)[0 if j is None else j])
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


def _sum_bad(
    what: str, terms: Array, s: Array, p: Precision, *, mechanism: bool = False
) -> Bad | None:
    """A sum of finite terms overflowing (``mechanism``: say "sum overflow" in the note)."""
    if not (np.isinf(s).any() and np.isfinite(terms).all()):
        return None
    with np.errstate(over="ignore"):
        total = float(np.sum(np.asarray(terms, dtype=np.float64)))
    size = f", {_big(total)}," if math.isfinite(total) else ""
    beyond = "above" if total >= 0 else "below -"
    name = " (sum overflow)" if mechanism else ""
    return Bad(
        f"the sum {what}{size} is {beyond}{_big(p.max)}, the "
        f"{'largest' if total >= 0 else 'most negative'} {p.name}: it overflows to "
        f"{'inf' if total >= 0 else '-inf'}{name}"
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
    zc: Array,
    e: Array,
    prob: Array,
    tc: Array,
    p: Precision,
    ref: float,
    loss: Array,
    masked: Array | None = None,
) -> Bad | None:
    """A naive softmax probability rounding to 0, or to 1 when that zeroes the loss
    (``masked``: classes whose probability of 0 is not the step's doing)."""
    if not np.isfinite(prob).all():
        return None
    zero = prob[0] == 0
    if masked is not None:
        zero &= ~masked
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


def _shifted_prob_bad(
    zc: Array, e: Array, prob: Array, row: Row, tc: Array | None, loss: Array
) -> Bad | None:
    """A framework's softmax ``exp(z - max) / Σ`` rounding a probability to 0 where the
    target needs it (probability underflow: the loss is inf), or where a zero target meets it
    (0 · log 0 = NaN); or the target's rounding to 1 when that zeroes the loss."""
    p = row.p
    if not np.isfinite(prob).all() or not np.isfinite(zc).all():
        return None
    target = np.zeros(prob.shape[1]) if tc is None else np.asarray(tc[0], dtype=np.float64)
    if tc is None:
        target[int(row.y[0])] = 1.0
    zero = prob[0] == 0
    if tc is None:  # index labels: only the target's probability enters the loss
        zero &= target > 0
    if zero.any():
        needed = zero & (target > 0)
        j = int(np.argmax(needed)) if needed.any() else int(np.argmax(zero))
        gap = _fmt(float(np.float64(zc[0, j]) - np.float64(zc[0].max())))
        true = _from_log(float(_log_softmax64(zc)[0, j]))
        if e[0, j] == 0:
            how = (
                f"exp(z[{j}] - max) = exp({gap}) is below {_small(p)}, the smallest {p.name}: "
                f"it underflows to 0, so p[{j}], truly {true}, is 0"
            )
        else:
            how = (
                f"p[{j}], truly {true}, is below {_small(p)}, the smallest {p.name}: it rounds to 0"
            )
        if needed.any():
            then = "log p = -inf and the loss is inf (probability underflow)"
        else:
            then = f"log p[{j}] = -inf, and t = 0 there makes 0 · log 0 = NaN (0·log 0)"
        return Bad(f"{how}; {then}", (j,))
    one = (prob[0] == 1) & (target > 0)
    if one.any() and zc.shape[1] > 1 and _matters(loss, row.ref, p):
        j = int(np.argmax(one))
        return Bad(_one_note(f"p[{j}]", p, row.ref), (j,))
    return None


def _cancel_bad(row: Row, linear: Array, log_sig: Array, loss: Array) -> Bad | None:
    """The fused BCE's ``(1 - t) · z - log_sigmoid(z)`` losing half the bits or more where
    its two terms agree in their leading bits (cancellation)."""
    p = row.p
    z = np.asarray(row.z, dtype=np.float64).reshape(-1)
    t = np.asarray(row.y, dtype=np.float64).reshape(-1)
    with np.errstate(all="ignore"):
        true = (1 - t) * np.vectorize(_softplus64)(z) + t * np.vectorize(_softplus64)(-z)
        got = np.asarray(loss, dtype=np.float64).reshape(-1)
        size = np.maximum(np.abs(linear), np.abs(log_sig)).reshape(-1)
        rel = np.abs(got - true) / true
        hit = (
            (true >= p.tiny)
            & (rel > 2.0 ** (-p.bits / 2))
            & (np.abs(got) * 2.0 ** (p.bits // 2) <= size)
        )
    if not hit.any():
        return None
    j = int(np.argmax(hit))
    where = "" if np.ndim(loss) == 1 and z.size == 1 else f" (class {j})"
    lin = _fmt(np.asarray(linear).reshape(-1)[j], p.name)
    ls = _fmt(np.asarray(log_sig).reshape(-1)[j], p.name)
    return Bad(
        f"(1 - t) · z = {lin} and log_sigmoid(z) = {ls} agree in their leading bits: their "
        f"difference, truly {_sci(float(true[j]))}, comes out as {_fmt(got[j], p.name)}{where} "
        f"(cancellation)",
        () if where == "" else (j,),
    )


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


def _sigmoid_bad(
    zc: Array, en: Array, prob: Array, p: Precision, *, clamped: bool = False
) -> Bad | None:
    """A sigmoid rounding to exactly 0 or 1: one of the two logs becomes log(0) (``clamped``:
    as ``binary_cross_entropy`` clamps it, -100)."""
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
        follows = _clamp("log s") if clamped else "log s = log(0) = -inf follows"
        return Bad(f"{how}, truly {true}, comes out as exactly 0{where}; {follows}", _cls(j))
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
    follows = _clamp("log(1 - s)") if clamped else "log(1 - s) = log(0) = -inf follows"
    return Bad(f"{how}, truly 1 - {true}, comes out as exactly 1{where}; {follows}", _cls(j))


def _clamp(what: str) -> str:
    return (
        f"{what} = log(0) = -inf is clamped at -100, so the loss is capped at 100 (sigmoid "
        "saturation)"
    )
