"""Flags (what is wrong with a row) and causes (the floating-point mechanism), for one chunk.

Flags, by severity (most serious first):

0. input problems: ``nonfinite_input``, ``label_out_of_range``, ``invalid_label``
1. ``stable_nan:<dtype>``, ``stable_inf:<dtype>``
2. ``naive_nan:<dtype>``, ``naive_inf:<dtype>``
3. ``diverged:<path>_<dtype>``: both finite and ``|L - L64| > atol + rtol * |L64|``, L64 being
   the same path in float64 (checked only when float64 is among the dtypes)
4. ``inaccurate:<path>_<dtype>``: a finite value keeps fewer than half of its dtype's
   significant bits against the reference (an accuracy note). Not raised where the
   reference is below the dtype's smallest normal number: no value of that dtype could
   hold it to that accuracy.

With probability input (:mod:`cecheck.framework_view`) the paths are ``naive``, ``torch``,
``keras`` and ``sklearn``: a framework convention's ``<path>_nan``/``<path>_inf`` ranks with
``stable`` (severity 1: it is the loss that framework itself reports), ``naive`` stays at 2;
``invalid_probability`` (not a probability row) is an input problem, and
``target_prob_zero`` (the target's probability is exactly 0, so every convention reports its
own constant instead of inf) ranks with ``naive``.

``ignored`` (an ``ignore_index`` label) is counted but is not a problem. A row with an input
problem or an ignored label is not scored: it gets no path flag, since no path can be judged
on it, and it is left out of the per-path totals.

Causes are read off the intermediate values each path really computed (the evidence in
:class:`~cecheck.losses.PathResult`), and only from a path and dtype that is flagged on that
row: ``exp_overflow``, ``prob_underflow``, ``sigmoid_saturated``, ``zero_times_inf``,
``nonfinite_input``; ``cast_overflow`` when a finite input is beyond the dtype's largest
number, so that casting it gives inf; ``clipped`` when a framework convention clipped a
probability (or clamped its log), given by the caller; ``cancellation`` when a finite value
is ``inaccurate`` while no other event happened on the way. A row that is only ``diverged``
gets no cause: it differs from float64 by more than the tolerance but keeps at least half of
its dtype's bits, which is ordinary rounding in that dtype (float16 rounding is larger than
the default rtol).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from cecheck.losses import PathResult
from cecheck.precision import Precision

Array = npt.NDArray

INPUT_FLAGS = ("nonfinite_input", "label_out_of_range", "invalid_label")
CAUSES = (
    "nonfinite_input",
    "cast_overflow",
    "exp_overflow",
    "prob_underflow",
    "sigmoid_saturated",
    "zero_times_inf",
    "cancellation",
    "clipped",
)
EVIDENCE = ("exp_overflow", "prob_underflow", "sigmoid_saturated", "zero_times_inf")
NOT_FLAGGED = 9  # the severity of a row with no problem
SEVERITY_NAMES = ("input", "stable", "naive", "diverged", "inaccurate")
SOFT_SUM_TOLERANCE = 1e-3
LOGIT_PATHS = ("stable", "naive")
# The severity of a path's NaN/inf: the loss a framework computes (stable, or a framework's
# probability-input convention) before the textbook formula.
NONFINITE_SEVERITY = {"stable": 1, "torch": 1, "keras": 1, "sklearn": 1, "naive": 2}
# Flags and causes of probability input only, raised by cecheck.framework_view.
PROBABILITY_FLAGS = ("invalid_probability", "target_prob_zero")
PROBABILITY_CAUSES = ("clipped",)
_FIXED_SEVERITY = {
    **dict.fromkeys(INPUT_FLAGS, 0),
    "invalid_probability": 0,
    "target_prob_zero": 2,
    "ignored": NOT_FLAGGED,
}


def flag_names(
    dtypes: tuple[str, ...], paths: tuple[str, ...] = LOGIT_PATHS, extra: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """Every flag a run over ``dtypes`` and ``paths`` can raise, in severity order.

    ``extra``: further named flags (such as :data:`PROBABILITY_FLAGS`), placed by severity.
    """
    others = [d for d in dtypes if d != "float64"] if "float64" in dtypes else []
    names = (
        *INPUT_FLAGS,
        *extra,
        *(f"{path}_{kind}:{d}" for path in paths for d in dtypes for kind in ("nan", "inf")),
        *(f"diverged:{path}_{d}" for path in paths for d in others),
        *(f"inaccurate:{path}_{d}" for path in paths for d in dtypes),
        "ignored",
    )
    return tuple(sorted(names, key=severity_of))  # stable: ties keep the order above


def severity_of(flag: str) -> int:
    """0 (input) .. 4 (inaccurate); NOT_FLAGGED for ``ignored`` and unknown flags."""
    if flag in _FIXED_SEVERITY:
        return _FIXED_SEVERITY[flag]
    head = flag.split(":")[0]
    if head in ("diverged", "inaccurate"):
        return 3 if head == "diverged" else 4
    path, _, kind = head.rpartition("_")
    if kind in ("nan", "inf") and path in NONFINITE_SEVERITY:
        return NONFINITE_SEVERITY[path]
    return NOT_FLAGGED


def bits_correct(value: Array, reference: Array, bits: int) -> Array:
    """Significant bits of ``value`` that agree with ``reference``: ``-log2(relative error)``.

    Clipped to [0, bits]; NaN where either is not finite. A reference of exactly 0 gives
    full bits for an exact 0 and none otherwise.
    """
    rel = relative_error(value, reference)
    with np.errstate(divide="ignore"):
        return np.clip(-np.log2(rel), 0, bits)


def relative_error(value: Array, reference: Array) -> Array:
    """``|value - reference| / |reference|``: NaN where either is not finite.

    A reference of exactly 0 gives 0 for an exact 0 and inf otherwise.
    """
    return _relative_error(value, reference, reference == 0, np.isfinite(reference))


def _relative_error(value: Array, reference: Array, zero: Array, finite: Array) -> Array:
    """:func:`relative_error` given the masks of the reference that are zero and finite."""
    value = np.asarray(value, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # the special cases are set below
        rel = np.abs(value - reference)
        rel /= np.abs(reference)
    if zero.any():
        rel[zero] = np.where(value[zero] == 0, 0.0, np.inf)
    rel[~(np.isfinite(value) & finite)] = np.nan
    return rel


@dataclass
class Diagnosis:
    """Per-row flags and causes for a chunk, as boolean matrices over named columns."""

    flag_names: tuple[str, ...]
    flags: Array  # (n, len(flag_names)) bool
    causes: Array  # (n, len(CAUSES)) bool
    severity: Array  # (n,) int: the most serious flag, NOT_FLAGGED if none
    error: Array  # (n,) float: the largest relative error of a flagged value (inf: non-finite)
    scored: Array  # (n,) bool: rows the paths are judged on (no input problem, not ignored)
    # "<path>_<dtype>" -> the largest relative error against the reference over the scored
    # rows whose reference that dtype can represent (0, or at least its smallest normal);
    # None when there is no such finite value
    worst_error: dict[str, float | None] = field(default_factory=dict)

    def flag_lists(self, rows: Array | None = None) -> list[list[str]]:
        return _names(self.flags if rows is None else self.flags[rows], self.flag_names)

    def cause_lists(self, rows: Array | None = None) -> list[list[str]]:
        return _names(self.causes if rows is None else self.causes[rows], CAUSES)


def _names(matrix: Array, names: tuple[str, ...]) -> list[list[str]]:
    out: list[list[str]] = [[] for _ in range(matrix.shape[0])]
    for i, j in zip(*np.nonzero(matrix), strict=True):
        out[i].append(names[j])
    return out


def unscored(label_masks: dict[str, Array]) -> Array:
    """Rows whose label rules out judging any path: ignored, out of range or invalid."""
    return label_masks["ignored"] | label_masks["label_out_of_range"] | label_masks["invalid_label"]


def label_problems(
    label_form: str, labels: Array, n_classes: int, ignore_index: int
) -> dict[str, Array]:
    """Row masks ``ignored``, ``label_out_of_range`` and ``invalid_label`` from the labels alone."""
    n = labels.shape[0]
    none = np.zeros(n, dtype=bool)
    if label_form == "index":
        ignored = labels == ignore_index
        out = ~ignored & ((labels < 0) | (labels >= n_classes))
        return {"ignored": ignored, "label_out_of_range": out, "invalid_label": none}
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(labels) | (labels < 0)
        if label_form in ("onehot", "soft"):
            bad = bad.any(axis=1) | ~(np.abs(labels.sum(axis=1) - 1) <= SOFT_SUM_TOLERANCE)
        else:
            bad = bad | (labels > 1)
            bad = bad.any(axis=1) if bad.ndim == 2 else bad
    return {"ignored": none, "label_out_of_range": none, "invalid_label": bad}


def cast_overflow_rows(logits: Array, precisions: Iterable[Precision]) -> dict[str, Array]:
    """Per dtype narrower than the stored logits: rows with a finite logit that casts to inf."""
    out = {}
    for p in precisions:
        if float(np.finfo(logits.dtype).max) > p.max:
            with np.errstate(invalid="ignore"):
                hit = np.isinf(p.cast(logits)) & np.isfinite(logits)
            out[p.name] = hit.any(axis=1) if hit.ndim == 2 else hit
    return out


def diagnose(
    nonfinite_input: Array,
    label_masks: dict[str, Array],
    results: dict[tuple[str, str], PathResult],
    reference: Array,
    precisions: dict[str, Precision],
    rtol: float,
    atol: float,
    cast_overflow: dict[str, Array] | None = None,
    *,
    extra_flags: dict[str, Array] | None = None,
    evidence: dict[tuple[str, str], dict[str, Array]] | None = None,
) -> Diagnosis:
    """Flags and causes of a chunk from the inputs' masks and every path's results.

    ``results`` maps (path, dtype) to that path's :class:`PathResult`; ``precisions`` maps
    each dtype name to its :class:`Precision`; ``cast_overflow`` maps a dtype to the rows
    with a finite logit that becomes inf when cast to it. ``extra_flags`` maps further flag
    names (:data:`PROBABILITY_FLAGS`) to their rows: one of input severity makes its rows
    unscored, any other is raised on scored rows only. ``evidence`` adds, per (path, dtype),
    causes beyond the :class:`PathResult` fields (``clipped``), read like them.
    """
    extra = extra_flags or {}
    dtypes = tuple(dict.fromkeys(d for _, d in results))
    paths = tuple(sorted(dict.fromkeys(p for p, _ in results), key=NONFINITE_SEVERITY.__getitem__))
    names = flag_names(dtypes, paths, tuple(extra))
    n = reference.shape[0]
    col = {name: i for i, name in enumerate(names)}
    # (n, k) views of column-major storage: each flag's column is contiguous
    flags = np.zeros((len(names), n), dtype=bool).T
    causes = np.zeros((len(CAUSES), n), dtype=bool).T
    error = np.zeros(n)
    worst: dict[str, float | None] = {}
    with np.errstate(invalid="ignore"):  # NaN compares False: a NaN reference is never normal
        normal = {d: np.abs(reference) >= p.tiny for d, p in precisions.items()}
    zero_reference = reference == 0
    finite_reference = np.isfinite(reference)
    flags[:, col["nonfinite_input"]] = nonfinite_input
    for key in ("label_out_of_range", "invalid_label", "ignored"):
        flags[:, col[key]] = label_masks[key]
    causes[:, CAUSES.index("nonfinite_input")] = nonfinite_input
    scored = ~(nonfinite_input | unscored(label_masks))
    for name, rows in extra.items():
        if severity_of(name) == 0:
            flags[:, col[name]] = rows
            scored &= ~rows
    for name, rows in extra.items():
        if severity_of(name) != 0:
            flags[:, col[name]] = rows & scored

    for (path, dtype), result in results.items():
        loss = np.asarray(result.loss, dtype=np.float64)
        finite = np.isfinite(loss)
        nan = np.isnan(loss) & scored
        inf = np.isinf(loss) & scored
        flagged = nan | inf
        flags[:, col[f"{path}_nan:{dtype}"]] = nan
        flags[:, col[f"{path}_inf:{dtype}"]] = inf
        rel = _relative_error(loss, reference, zero_reference, finite_reference)
        judged = scored & (normal[dtype] | zero_reference)
        worst[f"{path}_{dtype}"] = _max(rel, judged & np.isfinite(rel))
        with np.errstate(invalid="ignore"):
            # fewer than half the bits: -log2(rel) < bits / 2
            inaccurate = scored & normal[dtype] & (rel > 2.0 ** (-precisions[dtype].bits / 2))
        flags[:, col[f"inaccurate:{path}_{dtype}"]] = inaccurate
        flagged |= inaccurate
        if dtype != "float64" and (path, "float64") in results:
            l64 = np.asarray(results[(path, "float64")].loss, dtype=np.float64)
            both = scored & finite & np.isfinite(l64)
            with np.errstate(invalid="ignore"):
                diverged = both & (np.abs(loss - l64) > atol + rtol * np.abs(l64))
            flags[:, col[f"diverged:{path}_{dtype}"]] = diverged
            flagged |= diverged
        if not flagged.any():
            continue
        error = np.fmax(error, np.where(flagged, np.where(finite, rel, np.inf), 0))

        seen = np.zeros(n, dtype=bool)
        if cast_overflow is not None and dtype in cast_overflow:
            hit = cast_overflow[dtype] & flagged
            causes[:, CAUSES.index("cast_overflow")] |= hit
            seen |= hit
        found = {cause: getattr(result, cause) for cause in EVIDENCE}
        if evidence is not None:
            found |= evidence.get((path, dtype), {})
        for cause, rows in found.items():
            if rows is not None:
                hit = rows & flagged
                causes[:, CAUSES.index(cause)] |= hit
                seen |= hit
        causes[:, CAUSES.index("cancellation")] |= inaccurate & ~seen

    severity = np.full(n, NOT_FLAGGED)
    for j, name in enumerate(names):
        column = flags[:, j]
        if column.any():
            np.minimum(severity, np.where(column, severity_of(name), NOT_FLAGGED), out=severity)
    error = np.where(np.isnan(error), np.inf, error)  # nan_to_num would also clip inf
    return Diagnosis(names, flags, causes, severity, error, scored, worst)


def _max(values: Array, where: Array) -> float | None:
    """The largest of ``values[where]``, None when ``where`` selects nothing."""
    if not where.any():
        return None
    return float(np.max(values, where=where, initial=-np.inf))
