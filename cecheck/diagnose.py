"""Flags (what is wrong with a row) and causes (the floating-point mechanism), for one chunk.

Flags, by severity (most serious first):

0. input problems: ``nonfinite_input`` (a NaN or inf logit; a softmax row's -inf is a masked
   class, not a problem), ``masked_target`` (the target's logit is -inf, or a soft target
   weighs a -inf class: the loss is inf in every framework), ``label_out_of_range``,
   ``invalid_label``, ``ragged_logits`` (a list column's row of another length, read as NaN)
1. ``stable_nan:<dtype>``, ``stable_inf:<dtype>`` (the framework's fused loss)
2. ``naive_nan:<dtype>``, ``naive_inf:<dtype>`` (the framework's softmax-then-log)
3. ``textbook_nan:<dtype>``, ``textbook_inf:<dtype>`` (the unshifted textbook formula)
4. ``diverged:<path>_<dtype>``: both finite and ``|L - L64| > atol + rtol * |L64|``, L64 being
   the same path in float64 (checked only when float64 is among the dtypes); rtol and atol
   may differ per dtype (by default a multiple of its epsilon, see
   :meth:`cecheck.settings.Settings.tolerance`)
5. ``inaccurate:<path>_<dtype>``: a finite value keeps fewer than half of its dtype's
   significant bits against the reference (an accuracy note). Not raised where the
   reference is below the dtype's smallest normal number: no value of that dtype could
   hold it to that accuracy.

With probability input (:class:`cecheck.pathsets.ProbPaths`) the paths are ``naive``, ``torch``,
``keras`` and ``sklearn``: a framework convention's ``<path>_nan``/``<path>_inf`` ranks with
``stable`` (severity 1: it is the loss that framework itself reports), ``naive`` stays at 2;
``invalid_probability`` (not a probability row) is an input problem, and
``target_prob_zero`` (the target's probability is exactly 0, so every convention reports its
own constant instead of inf) ranks with ``naive``.

``ignored`` (an ``ignore_index`` label) is counted but is not a problem. A row with an input
problem or an ignored label is not scored: it gets no path flag, since no path can be judged
on it, and it is left out of the per-path totals.

Rows are ranked (:attr:`Diagnosis.rank`) by severity, then, within a severity, rows where
the framework's naive or stable path holds a flag of that severity before textbook-only
ones, a wider dtype failing before a narrower one, then (the engine) the larger error.

Causes are read off the intermediate values each path really computed (the evidence in
:class:`~cecheck.losses.PathResult`), and only from a path and dtype that is flagged on that
row: ``exp_overflow``, ``prob_underflow``, ``sigmoid_saturated``, ``zero_times_inf``,
``sum_overflow`` (a fused loss's sum over classes), ``cancellation`` (a fused loss's final
subtraction; also a finite ``inaccurate`` value with no other event on the way),
``nan_input``/``inf_input`` (NaN points upstream, to NaN weights or activations; +inf to an
overflowing output layer), ``masked_target``; ``cast_overflow`` (a finite input beyond the
dtype's largest number); ``clipped`` (a framework convention clipped a probability or its
log, given by the caller). A row only ``diverged`` gets no cause: it keeps at least half of
its dtype's bits, which is ordinary rounding in that dtype.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from cecheck.arraytypes import Array
from cecheck.losses import EVIDENCE, PathResult
from cecheck.precision import Precision

INPUT_FLAGS = ("nonfinite_input", "masked_target", "label_out_of_range", "invalid_label")
CAUSES = (
    "nan_input",
    "inf_input",
    "masked_target",
    "cast_overflow",
    "exp_overflow",
    "prob_underflow",
    "sigmoid_saturated",
    "zero_times_inf",
    "sum_overflow",
    "cancellation",
    "clipped",
)
NOT_FLAGGED = 9  # the severity of a row with no problem
SEVERITY_NAMES = ("input", "stable", "naive", "textbook", "diverged", "inaccurate")
LOGIT_PATHS = ("stable", "naive", "textbook")
# The severity of a path's NaN/inf: the loss a framework computes (stable, or a framework's
# probability-input convention), then its users' softmax-then-log, then the textbook formula.
NONFINITE_SEVERITY = {
    "stable": 1,
    "torch": 1,
    "keras": 1,
    "sklearn": 1,
    "naive": 2,
    "textbook": 3,
}
# Paths that are not the framework's own: a row flagged only there ranks after the others
# of its severity.
TEXTBOOK_PATHS = ("textbook",)
# Flags and causes of probability input only, raised by cecheck.pathsets.ProbPaths.
PROBABILITY_FLAGS = ("invalid_probability", "target_prob_zero")
PROBABILITY_CAUSES = ("clipped",)
_FIXED_SEVERITY = {
    **dict.fromkeys((*INPUT_FLAGS, "invalid_probability", "ragged_logits"), 0),
    "target_prob_zero": 2,
    "ignored": NOT_FLAGGED,
}


@functools.cache  # asked again for every chunk, with the same few arguments
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


@functools.cache  # asked for every flag name of every chunk
def severity_of(flag: str) -> int:
    """0 (input) .. 5 (inaccurate); NOT_FLAGGED for ``ignored`` and unknown flags."""
    if flag in _FIXED_SEVERITY:
        return _FIXED_SEVERITY[flag]
    head = flag.split(":")[0]
    if head in ("diverged", "inaccurate"):
        return 4 if head == "diverged" else 5
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
    value = np.asarray(value, dtype=np.float64)
    return _relative_error(value, np.isfinite(value), _Reference(reference))


class _Reference:
    """A chunk's reference losses with the masks every path's relative error needs.

    Computed once per chunk rather than once per path and dtype; ``any_zero`` and
    ``all_finite`` let the common chunk (no zero, no non-finite reference) skip the fixes.
    """

    def __init__(self, reference: Array) -> None:
        self.values = np.asarray(reference, dtype=np.float64)
        self.magnitude = np.abs(self.values)
        # max(1, |reference|)/|reference|'s reciprocal: the error of the accuracy columns is
        # |L - ref| / max(1, |ref|) = relative error * min(1, |ref|)
        self.shrink = np.minimum(self.magnitude, 1.0)
        self.zero = self.values == 0
        self.any_zero = bool(self.zero.any())
        self.finite = np.isfinite(self.values)
        self.all_finite = bool(self.finite.all())
        # NaN when a reference is NaN: then no dtype takes the shortcut in normal()
        self.smallest = self.magnitude.min() if self.magnitude.size else np.inf

    def normal(self, p: Precision) -> Array | bool:
        """Where the reference is representable in ``p`` to full accuracy (at least its
        smallest normal number): True for every row when the smallest one is."""
        if self.smallest >= p.tiny:
            return True  # the common chunk: no comparison pass needed
        with np.errstate(invalid="ignore"):  # NaN compares False: never normal
            return self.magnitude >= p.tiny


def _relative_error(
    value: Array, finite: Array, ref: _Reference, out: Array | None = None
) -> Array:
    """:func:`relative_error` of float64 ``value`` (``finite``: its finite entries), written
    into ``out`` when given (a buffer reused across paths: a fresh one pays page faults)."""
    if out is None:
        out = np.empty(np.broadcast_shapes(value.shape, ref.values.shape))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # special cases below
        rel = np.subtract(value, ref.values, out=out)
        np.abs(rel, out=rel)  # in place: no temporary
        rel /= ref.magnitude
    if ref.any_zero:
        rel[ref.zero] = np.where(value[ref.zero] == 0, 0.0, np.inf)
    if not (ref.all_finite and finite.all()):
        rel[~(finite & ref.finite)] = np.nan
    return rel


@dataclass
class Diagnosis:
    """Per-row flags and causes for a chunk, as boolean matrices over named columns."""

    flag_names: tuple[str, ...]
    flags: Array  # (n, len(flag_names)) bool
    causes: Array  # (n, len(CAUSES)) bool
    severity: Array  # (n,) int: the most serious flag, NOT_FLAGGED if none
    rank: Array  # (n,) int: the order of the rows within and across severities (see module)
    error: Array  # (n,) float: the largest relative error of a flagged value (inf: non-finite)
    scored: Array  # (n,) bool: rows the paths are judged on (no input problem, not ignored)
    flag_counts: Array  # (len(flag_names),) int: the rows holding each flag
    cause_counts: Array  # (len(CAUSES),) int: the rows holding each cause
    # path -> (len(CAUSES),) int: the rows where that path's flagged values had each cause
    path_cause_counts: dict[str, Array] = field(default_factory=dict)
    # "<path>_<dtype>" -> the largest error against the reference, |L - ref| / max(1, |ref|)
    # (relative above 1, absolute below: a loss far below the dtype's epsilon cannot
    # dominate it), over the scored rows with a finite value and reference; None if none
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


def diagnose(
    nonfinite_input: Array,
    label_masks: dict[str, Array],
    results: dict[tuple[str, str], PathResult],
    reference: Array,
    precisions: dict[str, Precision],
    rtol: float | Mapping[str, float],
    atol: float | Mapping[str, float],
    cast_overflow: dict[str, Array] | None = None,
    *,
    nan_input: Array,
    masked_target: Array,
    extra_flags: dict[str, Array] | None = None,
    evidence: dict[tuple[str, str], dict[str, Array]] | None = None,
) -> Diagnosis:
    """Flags and causes of a chunk from the inputs' masks and every path's results.

    ``results`` maps (path, dtype) to that path's :class:`PathResult`; ``precisions`` maps
    each dtype name to its :class:`Precision`; ``rtol`` and ``atol``: one number, or one per
    dtype name; ``cast_overflow`` maps a dtype to the rows
    with a finite logit that becomes inf when cast to it. ``nan_input``: the rows of
    ``nonfinite_input`` holding a NaN (the others hold an inf); ``masked_target``: the rows
    whose target falls on a -inf logit (raised where no other input problem is).
    ``extra_flags`` maps further flag names (:data:`PROBABILITY_FLAGS`) to their rows: one
    of input severity makes its rows unscored, any other is raised on scored rows only.
    ``evidence`` adds, per (path, dtype), causes beyond the :class:`PathResult` fields
    (``clipped``), read like them.
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
    # Counted as the columns are written (a column never written holds no row), once: the
    # severity below and the run's totals read these counts instead of the matrices.
    flag_counts = np.zeros(len(names), dtype=np.intp)
    caused: set[int] = set()  # the cause columns written
    # per path, the rows where its flagged values had each cause (for the words: which
    # mechanism broke which path); allocated when a path has a cause
    by_path: dict[str, Array] = {}

    def raise_flag(name: str, rows: Array) -> bool:
        """Set the flag's column; whether it holds a row."""
        j = col[name]
        flags[:, j] = rows
        flag_counts[j] = np.count_nonzero(flags[:, j])
        return bool(flag_counts[j])

    def add_cause(cause: str, rows: Array, hit: Array, path: str | None = None) -> None:
        if hit.any():  # most evidence is all False on the flagged rows: skip the scatter
            j = CAUSES.index(cause)
            causes[rows, j] |= hit
            caused.add(j)
            if path is not None:
                if path not in by_path:
                    by_path[path] = np.zeros((n, len(CAUSES)), dtype=bool)
                by_path[path][rows, j] |= hit

    error = np.zeros(n)
    worst: dict[str, float | None] = {}
    ref = _Reference(reference)
    raise_flag("nonfinite_input", nonfinite_input)
    for key in ("label_out_of_range", "invalid_label", "ignored"):
        raise_flag(key, label_masks[key])
    scored = ~(nonfinite_input | unscored(label_masks))
    masked = masked_target & scored
    raise_flag("masked_target", masked)
    scored &= ~masked
    for cause, hit in (
        ("nan_input", nonfinite_input & nan_input),
        ("inf_input", nonfinite_input & ~nan_input),
        ("masked_target", masked),
    ):
        causes[:, CAUSES.index(cause)] = hit
        caused.add(CAUSES.index(cause))
    for name, hit in extra.items():
        if severity_of(name) == 0:
            raise_flag(name, hit)
            scored &= ~hit
    for name, hit in extra.items():
        if severity_of(name) != 0:
            raise_flag(name, hit & scored)

    # Once per dtype, not per path: the scored rows whose reference the dtype can represent
    # (where ``inaccurate`` may be raised).
    normal = {d: scored & ref.normal(precisions[d]) for d in dtypes}
    # Each path's losses as float64 and their finite mask, once (the float64 ones serve
    # ``diverged`` of every narrower dtype too).
    losses = {key: np.asarray(r.loss, dtype=np.float64) for key, r in results.items()}
    finite = {key: np.isfinite(loss) for key, loss in losses.items()}
    # Buffers reused from path to path (a fresh array per path pays page faults): the
    # relative error, and |L - L64| and atol + rtol * |L64| for ``diverged``.
    rel, gap, tol, err = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    all_scored = bool(scored.all())

    for (path, dtype), result in results.items():
        loss, ok = losses[(path, dtype)], finite[(path, dtype)]
        all_finite = bool(ok.all())
        held = []  # this path and dtype's flags: (name, rows)
        if not all_finite:  # a NaN/inf flag needs a non-finite loss: skip the passes otherwise
            held.append((f"{path}_nan:{dtype}", np.isnan(loss) & scored))
            held.append((f"{path}_inf:{dtype}", np.isinf(loss) & scored))
        _relative_error(loss, ok, ref, out=rel)
        worst[f"{path}_{dtype}"] = _worst(_accuracy_error(loss, rel, ref, err), scored, all_scored)
        with np.errstate(invalid="ignore"):
            # fewer than half the bits: -log2(rel) < bits / 2
            inaccurate = normal[dtype] & (rel > 2.0 ** (-precisions[dtype].bits / 2))
            held.append((f"inaccurate:{path}_{dtype}", inaccurate))
            if dtype != "float64" and (path, "float64") in results:
                l64 = losses[(path, "float64")]
                both = scored & ok & finite[(path, "float64")]
                np.abs(np.subtract(loss, l64, out=gap), out=gap)
                np.multiply(np.abs(l64, out=tol), _of(rtol, dtype), out=tol)
                tol += _of(atol, dtype)
                held.append((f"diverged:{path}_{dtype}", both & (gap > tol)))
        raised = [rows for name, rows in held if raise_flag(name, rows)]
        if not raised:  # the common chunk: no flag, no row to read
            continue
        rows = np.flatnonzero(functools.reduce(np.logical_or, raised))
        # The error and the causes concern the flagged rows only (usually a few percent of
        # the chunk): read and write just those rows.
        flagged_error = rel[rows]
        if not all_finite:
            flagged_error[~ok[rows]] = np.inf  # a non-finite loss: an infinite error
        # fmax skips a NaN (a finite loss against a non-finite reference), so error never
        # holds one
        error[rows] = np.fmax(error[rows], flagged_error)

        seen = np.zeros(rows.size, dtype=bool)
        found = {cause: getattr(result, cause, None) for cause in EVIDENCE}
        if cast_overflow is not None and dtype in cast_overflow:
            found = {"cast_overflow": cast_overflow[dtype], **found}
        if evidence is not None:
            found |= evidence.get((path, dtype), {})
        for cause, hit_rows in found.items():
            if hit_rows is not None:
                hit = hit_rows[rows]
                add_cause(cause, rows, hit, path)
                seen |= hit
        add_cause("cancellation", rows, inaccurate[rows] & ~seen, path)

    severity = _severity(flags, names, flag_counts)
    rank = _rank(flags, names, flag_counts, severity)
    cause_counts = np.zeros(len(CAUSES), dtype=np.intp)
    for j in caused:
        cause_counts[j] = np.count_nonzero(causes[:, j])
    per_path = {path: rows.sum(axis=0) for path, rows in by_path.items()}
    return Diagnosis(
        names,
        flags,
        causes,
        severity,
        rank,
        error,
        scored,
        flag_counts,
        cause_counts,
        per_path,
        worst,
    )


def _of(value: float | Mapping[str, float], dtype: str) -> float:
    """A tolerance given as one number or per dtype, for ``dtype``."""
    return value if isinstance(value, (int, float)) else value[dtype]


def _severity(flags: Array, names: tuple[str, ...], counts: Array) -> Array:
    """Per row, the severity of its most serious flag (NOT_FLAGGED for none).

    Only the columns holding a flag (``counts``: rows per column) are read, grouped by
    severity: on a typical chunk that is a few ``inaccurate`` columns, so this costs a few
    boolean passes, not one integer pass per flag name.
    """
    levels: dict[int, Array] = {}  # severity -> rows holding a flag of that severity
    for j, name in enumerate(names):
        level = severity_of(name)
        if level < NOT_FLAGGED and counts[j]:
            if level in levels:
                levels[level] |= flags[:, j]
            else:
                levels[level] = flags[:, j].copy()
    severity = np.full(flags.shape[0], NOT_FLAGGED)
    for level in sorted(levels, reverse=True):  # least serious first: a more serious overwrites
        severity[levels[level]] = level
    return severity


# The order of the dtypes, narrowest first (as cecheck.precision.DTYPES).
_WIDTH = {"float16": 0, "bfloat16": 1, "float32": 2, "float64": 3}
_LAST = 99  # within a severity: after every flag's place


@functools.cache
def within_severity(flag: str) -> int:
    """A flag's place within its severity, smaller first: the framework's paths (and flags of
    no path) before :data:`TEXTBOOK_PATHS`, then a wider dtype before a narrower one."""
    head, _, tail = flag.partition(":")
    if head in ("diverged", "inaccurate"):
        path, _, dtype = tail.partition("_")
    else:
        path, dtype = head.rpartition("_")[0], tail
    tier = 1 if path in TEXTBOOK_PATHS else 0
    return tier * 10 + (len(_WIDTH) - 1 - _WIDTH[dtype] if dtype in _WIDTH else 0)


def _rank(flags: Array, names: tuple[str, ...], counts: Array, severity: Array) -> Array:
    """Per row ``severity · 100 + place``: the place (:func:`within_severity`) of the best
    flag the row holds at its own severity."""
    place = np.full(flags.shape[0], _LAST)
    for j, name in enumerate(names):
        level = severity_of(name)
        if level < NOT_FLAGGED and counts[j]:
            hit = flags[:, j] & (severity == level)
            np.minimum(place, np.where(hit, within_severity(name), _LAST), out=place)
    return severity * 100 + np.where(place == _LAST, 0, place)


def _accuracy_error(loss: Array, rel: Array, ref: _Reference, out: Array) -> Array:
    """``|L - ref| / max(1, |ref|)`` from the relative error ``rel``, written into ``out``:
    ``rel * min(1, |ref|)``, and ``|L|`` where the reference is 0; NaN where ``rel`` is."""
    with np.errstate(invalid="ignore"):  # inf * 0 at a zero reference: set below
        np.multiply(rel, ref.shrink, out=out)
    if ref.any_zero:
        out[ref.zero] = np.abs(loss[ref.zero])
    return out


def _worst(rel: Array, judged: Array, every_row: bool) -> float | None:
    """The largest finite ``rel`` on the ``judged`` rows (``every_row``: all of them), None
    when there is none."""
    if rel.size and every_row:
        largest = rel.max()  # NaN if any is NaN: then the masked maximum below
        if np.isfinite(largest):
            return float(largest)
    return _max(rel, judged & np.isfinite(rel))


def _max(values: Array, where: Array) -> float | None:
    """The largest of ``values[where]``, None when ``where`` selects nothing."""
    if not where.any():
        return None
    return float(np.max(values, where=where, initial=-np.inf))
