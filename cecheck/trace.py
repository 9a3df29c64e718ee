"""One row's loss walked through step by step, in every precision, first bad step marked.

"Why is my loss NaN?" has a classic answer: logits [1000, 2000, 2500]; exp overflows to inf;
inf / inf is NaN; while shifting by the max gives [-1500, -500, 0] and a loss of 500.
:func:`trace` gives that walk for any row: every intermediate value of the textbook, naive,
stable and reference paths in each dtype, with the first step that produced inf, NaN, or an
exact 0 or 1 that matters marked, and one sentence on why (:mod:`cecheck.trace_explain` says
what counts as bad, and why).

The steps are not computed here: :func:`trace` calls the very functions that ``compare``
runs (the textbook and reference paths of :mod:`cecheck.losses`, the framework's naive and
stable paths of :mod:`cecheck.frameworks.registry`; with label smoothing or class weights the
paths of :meth:`cecheck.pathsets.WeightedPaths.functions`; for a row of probabilities the
conventions of :func:`cecheck.frameworks.probs.probs_loss`), on the row alone, with a recorder
that keeps each step they compute (see :class:`cecheck.losses.Recorder`). So the last step of
each path is exactly the loss ``compare`` reports for that row.

Steps hold every class's value while they are computed; a :class:`Trace` keeps only the
classes worth showing (all of them up to :data:`ALL_CLASSES`, else the target(s), the top
:data:`TOP` logits and any class where a path first went wrong) and one summary of the rest,
so a 32,000-class row stays small.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from cecheck import families, inputs, pathsets
from cecheck import precision as prec
from cecheck import trace_explain as explain
from cecheck.arraytypes import Array
from cecheck.choices import DEFAULT_FRAMEWORK, TRACE_PATHS
from cecheck.diagnose import bits_correct
from cecheck.families import Family
from cecheck.frameworks import probs as fw_probs
from cecheck.frameworks import registry
from cecheck.inputs import INVALID_LABEL
from cecheck.losses import Recorder, ignore
from cecheck.output.numbers import format_value
from cecheck.precision import Precision, widen
from cecheck.settings import INPUT_PATHS, Settings
from cecheck.trace_data import Bad, PathTrace, Rest, Row, Step, Trace

__all__ = ["ALL_CLASSES", "PATHS", "TOP", "PathTrace", "Rest", "Step", "Trace", "trace"]

PATHS = TRACE_PATHS
ALL_CLASSES = 8  # rows with at most this many classes show every class
TOP = 5  # otherwise: the target(s), the TOP largest logits, and the classes that went wrong


# ---------------------------------------------------------------------- the public entry


def trace(
    logits_row: Any,
    label: Any,
    *,
    task: str = "auto",
    label_form: str | None = None,
    dtypes: str | Sequence[str] = ("float32", "float64"),
    paths: Sequence[str] | None = None,
    framework: str = DEFAULT_FRAMEWORK,
    label_smoothing: float = 0.0,
    class_weights: Sequence[float] | None = None,
    inputs: str = "logits",
) -> Trace:
    """Walk one row's cross-entropy loss step by step along each path in each dtype.

    Parameters
    ----------
    logits_row
        The row's logits: ``(C,)`` for multiclass and multilabel, a scalar for binary; a
        numpy array, a list or a torch tensor (read as :func:`cecheck.inputs.as_array` reads
        it: bfloat16 and float16 at their exact values).
    label
        A class index, a binary target, or a ``(C,)`` vector of per-class targets
        (one-hot, soft or multi-hot).
    task, label_form
        As :class:`cecheck.inputs.Source` names them. ``task="auto"`` or no ``label_form``:
        inferred as :func:`cecheck.inputs.from_arrays` infers them for a one-row input.
    dtypes
        The precisions the textbook, naive and stable paths are walked in: a sequence of
        names, or a comma string such as ``"float16,float32"``.
    paths
        Any of ``textbook``, ``naive``, ``stable``, ``reference`` (probabilities: of
        :data:`PROB_PATHS`); default: all of them.
    framework
        Whose idioms the naive and stable paths emulate (:data:`cecheck.choices.FRAMEWORKS`).
    label_smoothing, class_weights
        PyTorch's ``label_smoothing`` and ``weight`` (multiclass logits, the torch
        framework), as :func:`cecheck.compare` takes them: each path is the one ``compare``
        computes with them (:class:`cecheck.pathsets.WeightedPaths`), its steps the smoothed
        targets, the smoothing term and the ``w[y]`` product included.
    inputs
        ``logits``, or ``probs``: ``logits_row`` holds probabilities (softmax or sigmoid
        outputs), walked along the paths ``compare --inputs probs`` computes
        (:data:`PROB_PATHS`: ``naive``, ``torch``, ``keras``, ``sklearn``, and the float64
        ``reference``) by the functions of :mod:`cecheck.frameworks.probs`.

    Returns
    -------
    Trace
        Per path and dtype the steps, the first bad one marked with a sentence on why, and
        per dtype a sentence on where the paths part ways.

    Raises
    ------
    ValueError
        An unknown dtype or path, a class-index label outside ``0..C-1`` or not a whole
        number (such a row has no loss), or label smoothing or class weights that
        ``compare`` would refuse for the row.
    InputError
        Logits and label whose shapes do not fit together (from
        :func:`cecheck.inputs.from_arrays`, when the task or label form is inferred).

    Examples
    --------
    >>> t = trace([1000.0, 2000.0, 2500.0], 1, dtypes=["float32"])
    >>> t.path("textbook", "float32").loss, t.path("naive", "float32").loss
    (nan, inf)
    >>> t.path("stable", "float32").loss
    500.0
    >>> [s.note for s in t.path("textbook", "float32").steps if s.first_bad]
    ['exp(1000) is above 3.4e38, the largest float32: it overflows to inf']
    """
    dts = _dtypes(dtypes)
    if inputs not in INPUT_PATHS:
        raise ValueError(f"inputs must be one of {', '.join(INPUT_PATHS)}, got {inputs!r}")
    walked = (*INPUT_PATHS[inputs], "reference")
    paths = walked if paths is None else [paths] if isinstance(paths, str) else paths
    wanted = tuple(p for p in walked if p in set(paths))
    unknown = set(paths) - set(walked)
    if unknown or not wanted:
        raise ValueError(f"paths must be among {', '.join(walked)}, got {list(paths)}")
    z, y, task, label_form = _row(logits_row, label, task, label_form)
    family = families.get(task, label_form)
    n_classes = 1 if family.one_logit else z.shape[1]
    if family.class_labels and int(y[0]) == INVALID_LABEL:
        raise ValueError(
            "the class label is not a whole number (a fraction, NaN or an empty cell), "
            "so the row has no loss to trace"
        )
    if family.class_labels and not 0 <= int(y[0]) < n_classes:
        raise ValueError(
            f"label {int(y[0])} is not a class of this row (0..{n_classes - 1}), "
            "so the row has no loss to trace"
        )
    weights = None if class_weights is None else tuple(float(w) for w in class_weights)
    if inputs == "probs":
        if label_smoothing or weights is not None:
            raise ValueError("label smoothing and class weights apply to logits, not probs")
        functions, kinds, positive_zero = _prob_functions(task, z, y)
    else:
        functions, kinds, positive_zero = _functions(
            family, z, y, n_classes, dts, framework, float(label_smoothing), weights
        )
    ref = float(functions["reference"](_F64, ignore)[0])  # the loss compare reports
    # a softmax row's -inf logits are masked classes, not bad values (a sigmoid has none)
    masks = (z[0] == -np.inf) if family.softmax and inputs == "logits" else None
    walks: list[tuple[str, str, list[_Raw]]] = []
    for d in dts:
        for path in INPUT_PATHS[inputs]:
            if path in wanted:
                row = Row(z, y, prec.get(d), ref, masks, float(label_smoothing))
                walk = _walk(path, kinds[path], functions[path], row)
                walks.append((path, d, walk))
    if "reference" in wanted:
        reference = functions["reference"]
        row = Row(z, y, _F64, ref, masks, float(label_smoothing))
        walk = _walk("reference", kinds["reference"], reference, row)
        walks.append(("reference", "float64", walk))

    marked = [(path, d, raw, *_mark(raw, masks)) for path, d, raw in walks]
    classes = _shown(family, z, y, [c for *_, bad in marked for c in bad])
    traces = tuple(
        PathTrace(
            path,
            d,
            tuple(_step(r, i == at, note, classes) for i, r in enumerate(raw)),
            _loss(raw[-1].value, positive_zero),
        )
        for path, d, raw, at, note, _ in marked
    )
    z64 = widen(z).reshape(1, -1)
    given = (0,) if family.one_logit else classes  # a binary row's one logit is "class 0"
    logit_vals = tuple((c, float(z64[0, c])) for c in given)
    targets: tuple[tuple[int, float], ...] = ()
    if not family.class_labels and not family.one_logit:  # a target per class
        t64 = np.asarray(y, dtype=np.float64)
        targets = tuple((c, float(t64[0, c])) for c in classes)
    scalar_label: int | float | None = None
    if family.class_labels:
        scalar_label = int(y[0])
    elif family.one_logit:
        scalar_label = float(y[0])
    return Trace(
        task=task,
        label_form=label_form,
        n_classes=n_classes,
        label=scalar_label,
        classes=classes,
        logits=logit_vals,
        logits_dtype=z.dtype.name if z.dtype.name in prec.DTYPES else "float64",
        targets=targets,
        rest=_rest(z64, given),
        reference=ref,
        dtypes=dts,
        paths=traces,
        partings=tuple(_partings(traces, ref, dts)),
        framework=framework,
        label_smoothing=float(label_smoothing),
        class_weights=weights,
        inputs=inputs,
    )


# A path of the row: its function called with the precision and the recorder.
_RowPath = Callable[[Precision, Recorder], Any]

PROB_PATHS = (*fw_probs.PROB_PATHS, "reference")


def _prob_functions(
    task: str, q: Array, y: Array
) -> tuple[dict[str, _RowPath], dict[str, str], bool]:
    """Each path of a row of probabilities as ``compare --inputs probs`` computes it
    (:class:`cecheck.pathsets.ProbPaths`), its kind (``probs``) and ``positive_zero``."""
    paths: dict[str, _RowPath] = {
        path: partial(_prob_path, path, task, q, y) for path in fw_probs.PROB_PATHS
    }
    paths["reference"] = partial(_prob_reference, task, q, y)
    return paths, dict.fromkeys(paths, "probs"), pathsets.ProbPaths.positive_zero


def _prob_path(path: str, task: str, q: Array, y: Array, p: Precision, rec: Recorder) -> Any:
    return fw_probs.probs_loss(path, task, q, y, p, rec)


def _prob_reference(task: str, q: Array, y: Array, p: Precision, rec: Recorder) -> Any:
    """The exact loss of the stored probabilities, in float64: one step."""
    rec("p", "p as float64", np.asarray(q, dtype=np.float64))
    return rec("loss", "loss = -Σ xlogy(t, p), exact", fw_probs.probs_reference(task, q, y))


def _functions(
    family: Family,
    z: Array,
    y: Array,
    n_classes: int,
    dtypes: tuple[str, ...],
    framework: str,
    label_smoothing: float,
    class_weights: tuple[float, ...] | None,
) -> tuple[dict[str, _RowPath], dict[str, str], bool]:
    """Each path of the row as ``compare`` computes it, the kind of loss it computes (the
    key of its steps' checks), and whether ``compare`` shows its -0 as 0 (the path set's
    ``positive_zero``): the family's own paths, or with label smoothing or class
    weights those of :class:`cecheck.pathsets.WeightedPaths`, checked as ``compare`` checks
    the options (ValueError with one sentence)."""
    s = Settings(
        dtypes,
        label_smoothing=label_smoothing,
        class_weights=class_weights,
        framework=framework,
    )
    ours = registry.get(framework)
    if s.weighted:
        s.check_source(family.task, n_classes, weighting_applies=family.weighting)
        pathsets.check_weighting_framework(s)
        f = pathsets.WeightedPaths(family, n_classes, s, ours).functions(y, y)
        paths: dict[str, _RowPath] = {path: partial(fn, z) for path, fn in f.paths.items()}
        paths["reference"] = partial(_float64, partial(f.reference, z))
        return paths, f.kinds, pathsets.WeightedPaths.positive_zero
    textbook, reference = family.paths
    functions = {
        "textbook": textbook,
        "naive": ours.path("naive", family.kind),
        "stable": ours.path("stable", family.kind),
    }
    paths = {path: partial(fn, z, y) for path, fn in functions.items()}
    paths["reference"] = partial(_float64, partial(reference, z, y))
    return paths, dict.fromkeys(PATHS, family.kind), pathsets.NumpyPaths.positive_zero


def _float64(reference: Callable[[Recorder], Any], p: Precision, rec: Recorder) -> Any:
    """The reference, which takes no precision: it is float64."""
    return reference(rec)


# ---------------------------------------------------------------------- inputs of one row


def _dtypes(dtypes: str | Sequence[str]) -> tuple[str, ...]:
    dtypes = prec.names(dtypes)
    for d in dtypes:
        prec.get(d)
    if not dtypes:
        raise ValueError("dtypes is empty: name at least one of " + ", ".join(prec.DTYPES))
    return tuple(d for d in prec.DTYPES if d in set(dtypes))


def _row(
    logits_row: Any, label: Any, task: str, label_form: str | None
) -> tuple[Array, Array, str, str]:
    """The row as losses.py takes a chunk of one row: logits (1, C) or (1,), labels (1, ...)."""
    z = inputs.as_array(logits_row, "logits_row")
    y = inputs.as_array(label, "label")
    if task == "auto" or label_form is None:
        src = inputs.from_arrays(z[None], y[None], task=task)
        task, label_form = src.task, src.label_form
        z, y = next(iter(src.chunks(1)))
        return z, y, task, label_form
    family = families.get(task, label_form)  # ValueError for a pair cecheck does not compute
    if family.one_logit:
        return z.reshape(1), y.astype(np.float64).reshape(1), task, label_form
    z = z.reshape(1, -1)
    if family.class_labels:
        y = y.reshape(1)  # a fraction or NaN becomes INVALID_LABEL; integers stay as they are
        y = y.astype(np.int64) if y.dtype.kind in "iu" else inputs.class_indices(y)
        return z, y, task, label_form
    y = y.astype(np.float64).reshape(1, -1)
    if y.shape != z.shape:
        raise ValueError(f"the label has {y.shape[1]} values but the row {z.shape[1]} logits")
    return z, y, task, label_form


# ---------------------------------------------------------------------- the walk


_F64 = prec.get("float64")


@dataclass
class _Raw:
    """A step as recorded: every class's value, and a lazy check of whether it is bad."""

    name: str
    formula: str
    value: Array  # (1, C) per class, or (1,) one value
    why: Callable[[], Bad | None] | None = None


@dataclass
class _Recording:
    """A :class:`cecheck.losses.Recorder` of one row: the steps in order, every value by name."""

    steps: list[_Raw] = field(default_factory=list)
    values: dict[str, Array] = field(default_factory=dict)

    def __call__(
        self, name: str, formula: str, value: Array, *, shown: bool = True, **fields: Any
    ) -> Array:
        self.values[name] = value
        if shown:
            if fields:  # one row: each field is one number, such as the argmax
                formula = formula.format(**{k: np.asarray(v).item() for k, v in fields.items()})
            self.steps.append(_Raw(name, formula, value))
        return value


def _walk(path: str, kind: str, loss_function: _RowPath, row: Row) -> list[_Raw]:
    """The steps of the row's loss along ``path``, as its function computes them, each with
    its check from :mod:`cecheck.trace_explain`."""
    rec = _Recording()
    with np.errstate(all="ignore"):  # overflow, log(0), inf - inf: the failures we trace
        loss_function(row.p, rec)
    for s in rec.steps:
        check = explain.check(path, kind, s.name)
        if check is not None:
            s.why = partial(check, rec.values, row)
    return rec.steps


def _mark(raw: list[_Raw], masks: Array | None) -> tuple[int | None, str | None, tuple[int, ...]]:
    """The first bad step of a path: its position, note and classes (None, None, () if none).

    ``masks``: the classes masked with -inf, whose non-finite per-class values are expected.
    """
    for i, r in enumerate(raw):
        checked = r.why() if r.why is not None else None
        if checked is explain.FINE:
            continue
        bad = checked or explain.nonfinite(r.formula, r.value, masks)
        if bad is not None:
            return i, bad.note, bad.classes
    return None, None, ()


def _loss(value: Array, positive_zero: bool) -> float:
    """The path's loss as ``compare`` reports it: with ``positive_zero``, -0 as 0 (see
    :func:`cecheck.pipeline.mask`)."""
    loss = float(np.asarray(value, dtype=np.float64).reshape(-1)[0])
    return loss + 0.0 if positive_zero else loss


def _step(r: _Raw, first_bad: bool, note: str | None, classes: tuple[int, ...]) -> Step:
    v = widen(r.value)
    common = {"name": r.name, "formula": r.formula, "first_bad": first_bad}
    if first_bad:
        common["note"] = note
    if v.ndim == 2:
        values = tuple((c, float(v[0, c])) for c in classes)
        return Step(values=values, rest=_rest(v, classes), **common)  # type: ignore[arg-type]
    return Step(value=float(v[0]), **common)  # type: ignore[arg-type]


def _rest(v: Array, classes: tuple[int, ...]) -> Rest | None:
    """The summary of the classes of ``v`` (1, C) not in ``classes``; None if all are shown."""
    if v.ndim != 2 or v.shape[1] == len(classes):
        return None
    mask = np.ones(v.shape[1], dtype=bool)
    mask[list(classes)] = False
    others = v[0, mask]
    finite = others[~np.isnan(others)]
    low = float(finite.min()) if finite.size else math.nan
    high = float(finite.max()) if finite.size else math.nan
    return Rest(int(others.size), low, high, int(others.size - finite.size))


def _shown(family: Family, z: Array, y: Array, bad: list[int]) -> tuple[int, ...]:
    """The classes to show: all for a small row, else targets, top logits, bad classes."""
    if family.one_logit:
        return ()
    c = z.shape[1]
    if c <= ALL_CLASSES:
        return tuple(range(c))
    z64 = np.asarray(z[0], dtype=np.float64)
    key = z64 if family.softmax else np.abs(z64)  # a sigmoid per class: by |z|
    key = np.where(np.isnan(key), np.inf, key)  # NaN logits count among the largest
    order = [int(i) for i in np.argsort(-key, kind="stable")]
    first: list[int] = []
    if family.class_labels:
        first = [int(y[0])]
    elif family.softmax:  # one-hot or soft targets
        t = np.asarray(y[0], dtype=np.float64)
        first = [int(i) for i in np.argsort(-t, kind="stable")[:3] if t[i] > 0]
    chosen = set(first) | set(order[:TOP]) | set(bad[:3])
    return tuple(first + [i for i in order if i in chosen and i not in first])


# ---------------------------------------------------------------------- where paths part


def _partings(traces: tuple[PathTrace, ...], ref: float, dtypes: tuple[str, ...]) -> list[str]:
    """Per dtype, one sentence: which paths go wrong and where, or that they agree."""
    out = []
    for d in dtypes:
        here = {t.path: t for t in traces if t.dtype == d and t.path != "reference"}
        if not here:
            continue
        bits = prec.get(d).bits
        refs = f"the reference {format_value(ref, 'float64')}"
        values = {k: format_value(t.loss, d) for k, t in here.items()}
        wrong = [k for k, t in here.items() if t.first_bad is not None]
        if wrong or len(here) == 1:
            clauses = [
                f"{k} goes wrong at {_where(here[k])} and ends at {values[k]}" for k in wrong
            ]
            fine = [f"{k} gives {values[k]}" for k in here if k not in wrong]
            if fine:
                clauses.append(", ".join(fine))
            out.append(f"{d}: " + "; ".join(clauses) + f"; {refs}.")
            continue
        kept = {k: _bits(t.loss, ref, bits) for k, t in here.items()}
        poor = [k for k, b in kept.items() if b < bits / 2]
        listed = ", ".join(f"{k} {values[k]}" for k in here)
        if poor:
            detail = ", ".join(f"{k} keeps {kept[k]:.0f} of {bits} bits" for k in poor)
            out.append(
                f"{d}: no step overflows or rounds to 0 or 1, but rounding errors part the "
                f"paths: {listed}; {refs} ({detail})."
            )
        else:
            out.append(f"{d}: the paths agree within rounding: {listed}; {refs}.")
    return out


def _where(t: PathTrace) -> str:
    i = t.first_bad
    assert i is not None
    return f"step {i + 1}, {t.steps[i].formula}"


def _bits(value: float, ref: float, bits: int) -> float:
    b = bits_correct(np.array([value]), np.array([ref]), bits)[0]
    return float(b) if np.isfinite(b) else 0.0
