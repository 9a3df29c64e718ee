"""Why a row failed, in sentences derived from its values: "exp(2500) overflows float32 and
float64 (largest finite exp argument 88.72 and 709.78), so the softmax is inf / inf = NaN".

No rich here. A fact about the arithmetic (does exp(x) overflow in float16? does the
textbook sigmoid round to 1?) is asked of :mod:`cecheck.losses` and :mod:`cecheck.precision`, which
compute the paths, never worked out again here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from cecheck import families, losses
from cecheck import precision as prec
from cecheck.output.numbers import spell
from cecheck.output.words import and_list, describe_flags, row_name

if TYPE_CHECKING:
    from cecheck.inputs import Source
    from cecheck.report import RowRecord
    from cecheck.settings import Settings

ZERO_TIMES_INF = "a zero target multiplies log(0) = -inf: 0 * -inf = NaN"


# ---------------------------------------------------------------- facts of the arithmetic


def softmax_exp_overflows(x: float, dtype: str) -> bool:
    """Whether the textbook softmax's ``exp(x)`` is inf in ``dtype`` (asked of the path
    itself)."""
    result = losses.textbook_multiclass(np.array([[x]]), np.array([0]), prec.get(dtype))
    assert result.exp_overflow is not None
    return bool(result.exp_overflow[0])


def sigmoid_exp_overflows(z: float, dtype: str) -> bool:
    """Whether the textbook ``sigmoid(z) = 1 / (1 + exp(-z))`` overflows ``exp(-z)`` in
    ``dtype``."""
    result = losses.textbook_binary(np.array([z]), np.array([0.0]), prec.get(dtype))
    assert result.exp_overflow is not None
    return bool(result.exp_overflow[0])


def textbook_sigmoid_saturated(z: float, dtype: str) -> bool:
    """Whether the textbook ``sigmoid(z)`` rounds to exactly 0 or 1 in ``dtype``: to 1 for a
    positive ``z`` (the sigmoid is at least 1/2 there), to 0 for a negative one."""
    result = losses.textbook_binary(np.array([z]), np.array([0.0]), prec.get(dtype))
    assert result.sigmoid_saturated is not None
    return bool(result.sigmoid_saturated[0])


# ---------------------------------------------------------------- why a row failed


def _textbook_bad(record: RowRecord, dtypes: Iterable[str]) -> list[str]:
    return [d for d in dtypes if not math.isfinite(record.values[f"textbook_{d}"])]


def explain(record: RowRecord, source: Source, settings: Settings) -> list[str]:
    """The causes of a row's flags as sentences derived from its values.

    For example "exp(2500) overflows float32 and float64 (largest finite exp argument 88.72
    and 709.78), so the softmax is inf / inf = NaN".
    """
    out: list[str] = []
    causes = set(record.causes)
    if settings.inputs == "probs":
        return _explain_probs(record, source, settings, causes)
    if "cast_overflow" in causes:
        out += _explain_cast_overflow(record, settings)
    family = families.of(source)
    if family.one_logit:
        out += _explain_sigmoid(record, settings, causes)
    elif not family.softmax:  # a sigmoid per class
        out += _explain_multilabel(record, settings, causes)
    else:
        out += _explain_softmax(record, source, settings, causes)
    if "cancellation" in causes:
        out += _explain_cancellation(record, source, settings)
    return out


def grouped_explanations(
    records: Sequence[RowRecord], source: Source, settings: Settings
) -> list[tuple[list[str], str]]:
    """The rows' explanations (flags in words, then why), identical ones together:
    ``(["33", "35", "37"], "naive inf in float16; ...")``, in the order of each text's
    first row."""
    groups: dict[str, list[str]] = {}
    for r in records:
        words = "; ".join([describe_flags(r, source, settings), *explain(r, source, settings)])
        groups.setdefault(words, []).append(row_name(r, source))
    return [(names, words) for words, names in groups.items()]


def _explain_probs(
    record: RowRecord, source: Source, settings: Settings, causes: set[str]
) -> list[str]:
    """Probability input: a target probability of 0 and what each convention reports instead,
    a probability that rounds to 0 in a narrow dtype, and the clips."""
    out = []
    if "target_prob_zero" in record.flags:
        values = [
            f"{path} {spell(record.values[f'{path}_{d}'])}"
            for path in ("torch", "keras", "sklearn")
            for d in settings.dtypes[-1:]
        ]
        dtype = settings.dtypes[-1]
        out.append(
            "the target's probability is exactly 0 in the file, so -log(0) = inf: the true loss "
            f"is infinite, and the frameworks report ({dtype}) {', '.join(values)}; no "
            "framework can recover it, export the logits"
        )
    elif "prob_underflow" in causes:
        under = [d for d in settings.dtypes if not math.isfinite(record.values[f"naive_{d}"])]
        ref = record.values["reference"]
        if under and math.isfinite(ref) and source.label_form in ("index", "binary"):
            smallest = and_list([_smallest(d) for d in under])
            out.append(
                f"the target's probability (about {math.exp(-ref):.3g}) rounds to 0 in "
                f"{and_list(under)} (smallest positive number {smallest}), so -log(0) = inf"
            )
        elif under:
            out.append(f"a probability the loss needs rounds to 0 in {and_list(under)}")
    if "zero_times_inf" in causes:
        out.append("a zero target met log(0): 0 * log(0) = 0 * -inf = NaN")
    if "clipped" in causes and "target_prob_zero" not in record.flags:
        out.append(
            "a framework's clip (see the conventions) moves this row's loss away from -log(p)"
        )
    if "cancellation" in causes:
        out.append("rounding the probability to a narrow dtype lost the accuracy of -log(p)")
    return out


def _explain_cast_overflow(record: RowRecord, settings: Settings) -> list[str]:
    """A logit too large for a narrow dtype: stored in it, it is already inf."""
    z = record.max_logit
    over = [d for d in settings.dtypes if math.isfinite(z) and abs(z) > prec.get(d).max]
    if not over:
        return ["a logit is beyond the largest number of a dtype: cast to it, it becomes inf"]
    limits = and_list([f"{prec.get(d).max:.5g}" for d in over])
    return [
        f"the logit {z:.6g} is beyond the largest {and_list(over)} number ({limits}): "
        "cast to that dtype it is inf, and inf - inf = NaN"
    ]


def _smallest(dtype: str) -> str:
    """The smallest positive (subnormal) number of ``dtype``, in 3 digits."""
    return f"{prec.get(dtype).smallest:.3g}"


def _max_args(dtypes: Sequence[str]) -> str:
    return and_list([f"{prec.get(d).max_exp_arg:.2f}" for d in dtypes])


def _explain_softmax(
    record: RowRecord, source: Source, settings: Settings, causes: set[str]
) -> list[str]:
    out = []
    z = record.max_logit
    if "exp_overflow" in causes:
        over = [d for d in settings.dtypes if softmax_exp_overflows(z, d)]
        if over:
            words = f"the textbook formula's exp({z:.6g}) overflows {and_list(over)} (largest "
            words += "finite exp argument "
            words += f"{_max_args(over)})"
            nan = [d for d in over if math.isnan(record.values[f"textbook_{d}"])]
            inf = [d for d in over if math.isinf(record.values[f"textbook_{d}"])]
            if nan:
                words += ", so the softmax is inf / inf = NaN"
                words += f" in {and_list(nan)}" if len(nan) < len(over) else ""
            if inf:
                words += f"{'; and' if nan else ', so'} the target probability x / inf = 0"
                words += " and -log(0) = inf" + (f" in {and_list(inf)}" if nan else "")
            out.append(words)
        else:
            out.append("exp() of a logit overflowed to inf in the textbook softmax")
    if "prob_underflow" in causes:
        under = [
            d for d in settings.dtypes
            if math.isinf(record.values[f"naive_{d}"])
        ]  # fmt: skip
        ref = record.values["reference"]
        if under and families.of(source).class_labels and math.isfinite(ref):
            out.append(
                f"the target probability exp(-{ref:.4g}) is below the smallest positive "
                f"{and_list(under)} number ({and_list([_smallest(d) for d in under])}),"
                " so the naive path's softmax rounds it to 0 and -log(0) = inf (probability "
                "underflow)"
            )
        elif under:
            out.append(
                f"the softmax rounds the probability of a class with a positive target to 0 in "
                f"{and_list(under)}, so log(0) = -inf"
            )
    if "zero_times_inf" in causes:
        out.append("a class with target 0 has probability 0, and 0 * log(0) = 0 * -inf = NaN")
    return out


def _explain_sigmoid(record: RowRecord, settings: Settings, causes: set[str]) -> list[str]:
    """Binary: one logit z, one target t."""
    out = []
    z = record.max_logit
    t = float(record.label) if isinstance(record.label, int | float) else math.nan
    bad = _textbook_bad(record, settings.dtypes)
    if "exp_overflow" in causes:
        over = [d for d in settings.dtypes if sigmoid_exp_overflows(z, d)]
        if over:
            out.append(
                f"sigmoid({z:.6g}) = 1 / (1 + exp({-z:.6g})) and exp({-z:.6g}) overflows "
                f"{and_list(over)} (largest finite exp argument {_max_args(over)})"
            )
    if "sigmoid_saturated" in causes:
        for p_value in (1.0, 0.0):
            sat = [d for d in bad if textbook_sigmoid_saturated(z, d) and (z > 0) == (p_value == 1)]
            if not sat:
                continue
            words = f"sigmoid({z:.6g}) rounds to exactly {p_value:g} in {and_list(sat)}, so "
            words += "log(1 - p) = log(0) = -inf" if p_value == 1 else "log(p) = log(0) = -inf"
            weight = 1 - t if p_value == 1 else t
            if weight == 0:
                words += f" and {'(1 - t)' if p_value == 1 else 't'} * -inf = 0 * -inf = NaN"
            elif math.isfinite(weight):
                words += ", so the loss is inf"
            out.append(words)
    elif "zero_times_inf" in causes:
        out.append(ZERO_TIMES_INF)
    return out


def _explain_multilabel(record: RowRecord, settings: Settings, causes: set[str]) -> list[str]:
    """Multilabel: a row is C sigmoids; the row keeps only its largest logit, so stay general."""
    out = []
    bad = _textbook_bad(record, settings.dtypes) or list(settings.dtypes)
    if "exp_overflow" in causes:
        out.append(
            f"exp(-z) of a logit z below -{_max_args(bad)} overflows {and_list(bad)} in "
            "sigmoid(z) = 1 / (1 + exp(-z))"
        )
    if "sigmoid_saturated" in causes:
        words = f"a sigmoid rounds to exactly 0 or 1 in {and_list(bad)}, so a log(0) = -inf "
        words += "enters the loss"
        if "zero_times_inf" in causes:
            words += " and 0 * -inf = NaN"
        out.append(words)
    elif "zero_times_inf" in causes:
        out.append(ZERO_TIMES_INF)
    return out


def _explain_cancellation(record: RowRecord, source: Source, settings: Settings) -> list[str]:
    """Why a finite value lost its accuracy: the worst lossy dtype of each path."""
    out = []
    ref = record.values["reference"]
    for path in ("stable", "naive", "textbook"):
        lossy = [
            f.split(":")[1].partition("_")[2]
            for f in record.flags
            if f.startswith(("diverged:", "inaccurate:")) and f.split(":")[1].startswith(path)
        ]
        lossy = [d for d in dict.fromkeys(lossy) if math.isfinite(record.values[f"{path}_{d}"])]
        if not lossy:
            continue
        zero = [d for d in lossy if record.values[f"{path}_{d}"] == 0 and ref > 0]
        if zero:
            out.append(_zero_words(path, zero, ref, record.max_logit, source))
            continue
        d = max(lossy, key=lambda d: abs(record.values[f"{path}_{d}"] - ref))
        out.append(_rounding_words(record, path, d, settings))
    return out


def _zero_words(path: str, dtypes: list[str], ref: float, z: float, source: Source) -> str:
    """A path returned exactly 0 where the true loss is a tiny positive number."""
    head = f"the {path} path returns 0 in {and_list(dtypes)} where the true loss is {ref:.3g}"
    if all(ref < prec.get(d).smallest for d in dtypes):
        return f"{head}, below the smallest positive {and_list(dtypes)} number"
    if path == "stable" and not families.of(source).softmax:
        return (
            f"{head}: the fused loss computes (1 - t) · z - log_sigmoid(z), two nearly equal "
            "numbers, and their difference rounds to 0 (cancellation); the reference adds "
            "two non-negative terms"
        )
    if path == "stable":
        return (
            f"{head}: the sum 1 + {ref:.3g} rounds to 1 and log(1) = 0 (cancellation); "
            "the reference uses log1p"
        )
    if families.of(source).one_logit:
        p = f"sigmoid({z:.6g})"
        what = f"1 - {p}" if z < 0 else p
        return f"{head}: {what} rounds to 1 and log(1) = 0 (cancellation); use log1p"
    return (
        f"{head}: the target's probability rounds to 1 and log(1) = 0 (cancellation); "
        "use log_softmax"
    )


def _rounding_words(record: RowRecord, path: str, d: str, settings: Settings) -> str:
    """A finite value off by more than the tolerance or half its bits: rounding to ``d``."""
    value, ref = record.values[f"{path}_{d}"], record.values["reference"]
    bits = prec.get(d).bits
    if f"diverged:{path}_{d}" in record.flags:
        v64 = record.values[f"{path}_float64"]
        rel = abs(value - v64) / abs(v64) if v64 else math.inf
        words = (
            f"{path} {d} gives {value:.6g} where float64 gives {v64:.6g} (relative difference "
            f"{rel:.2g}, rtol {settings.tolerance(d)[0]:.2g}): rounding to {d}'s {bits}-bit "
            "significand"
        )
    else:
        rel = abs(value - ref) / abs(ref) if ref else math.inf
        good = min(bits, max(0.0, -math.log2(rel))) if rel else bits
        words = (
            f"{path} {d} gives {value:.6g} against the reference {ref:.6g}: "
            f"{good:.1f} of {bits} bits correct"
        )
    z = record.max_logit
    err = prec.get(d).half_spacing(z)
    rtol, atol = settings.tolerance(d)
    if math.isfinite(ref) and err > atol + rtol * abs(ref):
        words += f"; {d} holds logits near {z:.6g} only to within {err:.2g}"
    return words
