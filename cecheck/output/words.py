"""The report's plain words: what each flag and cause means, why a row failed, and the
closing sentence. No rich here: every function returns text, for the table, the Markdown
summary and the CLI's stderr alike.

The words are derived from the data: the dtype's largest finite exp argument, the row's
largest logit, the values each path computed. A fact about the arithmetic (does exp(x)
overflow in float16? does the naive sigmoid round to 1?) is asked of :mod:`cecheck.losses`
and :mod:`cecheck.precision`, which compute the paths, never worked out again here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cecheck import families
from cecheck import precision as prec
from cecheck._version import __version__
from cecheck.diagnose import NONFINITE_SEVERITY
from cecheck.frameworks import registry, size_words
from cecheck.output.inputwords import label_out_of_range, not_a_probability_row
from cecheck.output.numbers import spell
from cecheck.settings import INPUT_PATHS, TOLERANCE_EPS

if TYPE_CHECKING:
    from cecheck.inputs import Source
    from cecheck.report import Report, RowRecord
    from cecheck.settings import Settings

LABEL_FORMS = {
    "index": "class index",
    "onehot": "one-hot",
    "soft": "soft (probability rows)",
    "multihot": "multi-hot",
    "binary": "0/1 or soft target",
}

CAUSE_WORDS = {
    "nan_input": "a NaN input value: NaN weights or activations upstream of the loss",
    "inf_input": "an inf input value: a logit overflowed in the output layer",
    "masked_target": "the target falls on a masked (-inf) logit: the loss is inf",
    "cast_overflow": "a logit beyond the dtype's largest number became inf",
    "exp_overflow": "exp() of a large logit overflowed to inf",
    "prob_underflow": "a probability rounded to 0, so log(0) = -inf",
    "sigmoid_saturated": "a sigmoid rounded to exactly 0 or 1",
    "zero_times_inf": "a zero target met log(0): 0 * -inf = NaN",
    "sum_overflow": "a sum over the classes of finite terms overflowed to inf",
    "cancellation": "rounding lost the accuracy (nearly equal terms cancelled, 1 + tiny = 1, "
    "logits too large for the dtype)",
    "clipped": "the framework clipped a probability (or clamped its log), so its loss is capped",
}

CAUSE_NAMES = {  # the mechanisms of a path's failure, as the closing sentence names them
    "cast_overflow": "logits beyond the dtype's range",
    "exp_overflow": "exp overflow",
    "prob_underflow": "probability underflow",
    "sigmoid_saturated": "saturation",
    "zero_times_inf": "0·log 0",
    "sum_overflow": "sum overflow",
    "cancellation": "cancellation",
}

# The paths of logit input as the closing sentence names them.
PATH_NAMES = {
    "textbook": "the textbook formula {code}",
    "naive": "the naive path {code}",
    "stable": "the fused loss {code}",
}


# ---------------------------------------------------------------- small words


def and_list(items: Sequence[str]) -> str:
    """["a"] -> "a"; ["a", "b"] -> "a and b"; ["a", "b", "c"] -> "a, b and c"."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def plural(n: int, word: str) -> str:
    """``1 row``, ``2 rows``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def header_lines(source: Source, settings: Settings) -> list[tuple[str, str]]:
    """What was read and what is computed, as (name, words) lines: files, shapes, task,
    label form, dtypes, and the framework-view settings that are on."""
    out = [("cecheck", f"version {__version__}")]
    if source.logits_name == source.labels_name:
        out.append(("input", source.logits_name))
    else:
        out += [("logits", source.logits_name), ("labels", source.labels_name)]
    shape, labels = str(tuple(source.logits_shape)), str(tuple(source.labels_shape))
    out.append(("shapes", f"logits {shape} {source.logits_dtype}, labels {labels}"))
    rows = plural(source.n_rows, "row")
    if len(source.lead_shape) > 1:
        rows += f" over {tuple(source.lead_shape)}"
    n = source.n_classes
    classes = "" if families.of(source).one_logit else f", {n} class{'es' if n != 1 else ''}"
    form = LABEL_FORMS[source.label_form]
    out.append(("task", f"{source.task}{classes}, {rows}, labels {form}"))
    out.append(
        (
            "dtypes",
            f"{', '.join(settings.dtypes)}; {tolerance_text(settings)}, "
            f"ignore_index {settings.ignore_index}",
        )
    )
    if settings.inputs == "logits":
        out.append(("paths", paths_line(settings.framework, families.of(source).softmax)))
    return out + framework_lines(settings, source)


# The textbook formula of a softmax family and of a sigmoid family, in a few words.
TEXTBOOK = {True: "unshifted exp(z) / Σ exp(z)", False: "1 / (1 + exp(-z))"}


def paths_line(framework: str, softmax: bool) -> str:
    """What the paths emulate, in one line: the naive and stable paths name the framework."""
    title = registry.get(framework).title
    then = "softmax" if softmax else "sigmoid"
    return (
        f"textbook ({TEXTBOOK[softmax]}, then log); naive ({then}, then log) and stable (fused "
        f"loss) as {title} computes them on CPU"
    )


def tolerance_text(settings: Settings) -> str:
    """``rtol 0.0001, atol 1e-06`` as set, or ``rtol, atol 64 eps`` by default (each dtype
    judged by its own epsilon)."""
    eps = f"{TOLERANCE_EPS} eps"
    if settings.rtol is None and settings.atol is None:
        return f"rtol, atol {eps}"
    rtol = eps if settings.rtol is None else f"{settings.rtol:g}"
    return f"rtol {rtol}, atol {eps if settings.atol is None else f'{settings.atol:g}'}"


def framework_lines(settings: Settings, source: Source | None = None) -> list[tuple[str, str]]:
    """Header lines for the framework-view settings that are on (none by default); a batch
    size needs the ``source`` (its sequences)."""
    out = []
    if settings.inputs == "probs":
        out.append(("inputs", "probabilities (not logits): paths " + and_list(settings.paths)))
    torch = []
    if settings.label_smoothing > 0:
        torch.append(f"label smoothing {settings.label_smoothing:g}")
    if settings.class_weights is not None:
        torch.append("class weights " + ", ".join(f"{w:g}" for w in settings.class_weights))
    if torch:
        out.append(("pytorch", "cross_entropy with " + and_list(torch)))
    if (size := settings.batch_size) is not None and source is not None:
        batch = size_words(size * math.prod(source.lead_shape[1:]), source.lead_shape[1:])
        out.append(("batches", f"PyTorch's reduction='mean' over batches of {batch}"))
    return out


def flag_words(flag: str, source: Source, settings: Settings) -> str:
    """What a flag means, in a few words."""
    if flag == "nonfinite_input":
        return f"{_nonfinite_kinds(source, settings)} in the {_input_noun(settings)}: not scored"
    if flag == "masked_target":
        return "the target class is masked (-inf logit), so the loss is inf: not scored"
    if flag == "ragged_logits":
        return "its list of logits has another length than the other rows': not scored"
    if flag == "invalid_probability":
        return "not a probability: outside [0, 1], or a row that does not sum to 1: not scored"
    if flag == "target_prob_zero":
        return "the target's probability is exactly 0: -log(0) = inf, each framework a constant"
    if flag == "label_out_of_range":
        return f"class label outside 0..{source.n_classes - 1}: not scored"
    if flag == "invalid_label" and families.of(source).class_labels:
        return f"{_NOT_A_CLASS}: not scored"
    if flag == "invalid_label":
        return f"label is not a valid {LABEL_FORMS[source.label_form]} target"
    if flag == "ignored":
        return f"label is ignore_index ({settings.ignore_index}): skipped"
    head, _, rest = flag.partition(":")
    path, _, kind = head.rpartition("_")
    if kind in ("nan", "inf") and path in NONFINITE_SEVERITY:
        return f"{path} path gives {'NaN' if kind == 'nan' else 'inf'} in {rest}"
    path, _, dtype = rest.partition("_")
    if head == "diverged":
        return f"{path} {dtype} differs from {path} float64 beyond rtol/atol"
    bits = prec.get(dtype).bits
    return f"{path} {dtype} keeps fewer than {bits // 2} of {bits} bits (an accuracy note)"


# ---------------------------------------------------------------- plain words


def row_name(record: RowRecord, source: Source) -> str:
    """The row as people name it: ``7``, or its index ``(2, 3)`` over N-d logits."""
    if len(source.lead_shape) > 1:
        return "(" + ", ".join(str(i) for i in record.index) + ")"
    return str(record.row)


def loss_text(record: RowRecord, column: str) -> str:
    """The row's loss in ``column``; a ``*`` marks a value diverged from float64."""
    value = record.values[column]
    diverged = math.isfinite(value) and f"diverged:{column}" in record.flags
    return spell(value) + ("*" if diverged else "")


def fail_on_words(failed: Sequence[str]) -> str:
    """The ``--fail-on`` verdict: ``--fail-on naive met: exit code 1``."""
    return f"--fail-on {','.join(failed)} met: exit code 1"


def describe_flags(record: RowRecord, source: Source, settings: Settings | None = None) -> str:
    """The row's flags in short words: "naive NaN in float32 and float64"."""
    parts: list[str] = []
    if "nonfinite_input" in record.flags:
        inf = _nonfinite_kinds(source, settings).split()[-1]  # +inf (softmax logits) or inf
        kinds = [k for c, k in (("nan_input", "NaN"), ("inf_input", inf)) if c in record.causes]
        parts.append(f"{' and '.join(kinds) or 'NaN or inf'} in the {_input_noun(settings)}")
    if "invalid_probability" in record.flags:
        parts.append(not_a_probability_row(record))
    parts += [words for flag, words in (  # one at most: each rules out the others
        ("masked_target", "the target class is masked (-inf), not scored"),
        ("ragged_logits", "a list of logits of another length than the other rows', not scored"),
        ("target_prob_zero", "the target's probability is exactly 0"),
    ) if flag in record.flags]  # fmt: skip
    if "label_out_of_range" in record.flags:
        parts.append(label_out_of_range(record, source))
    if "invalid_label" in record.flags:
        parts.append(_invalid_label_words(source))
    paths = _by_severity(settings)
    for path in paths:
        for kind, word in (("nan", "NaN"), ("inf", "inf")):
            ds = [f.split(":")[1] for f in record.flags if f.startswith(f"{path}_{kind}:")]
            if ds:
                parts.append(f"{path} {word} in {and_list(ds)}")
    for head, word in (("diverged", "diverged from float64"), ("inaccurate", "inaccurate")):
        for path in paths:
            ds = [f.split("_", 1)[1] for f in record.flags if f.startswith(f"{head}:{path}_")]
            if ds:
                parts.append(f"{path} {word} in {and_list(ds)}")
    return "; ".join(parts)


def _by_severity(settings: Settings | None) -> list[str]:
    """The paths in play, most serious first: stable (or the conventions), then naive."""
    paths = INPUT_PATHS[settings.inputs if settings is not None else "logits"]
    return sorted(paths, key=NONFINITE_SEVERITY.__getitem__)


def _nonfinite_kinds(source: Source, settings: Settings | None) -> str:
    """What an input problem's values are: a softmax row's -inf is a mask, not a problem."""
    logits = settings is None or settings.inputs == "logits"
    return "NaN or +inf" if logits and families.of(source).softmax else "NaN or inf"


def _input_noun(settings: Settings | None) -> str:
    return "probabilities" if settings is not None and settings.inputs == "probs" else "logits"


# What an invalid class-index label is (inputs.INVALID_LABEL), in a few words.
_NOT_A_CLASS = "the class label is not a whole number (a fraction, NaN or an empty cell)"


def _invalid_label_words(source: Source) -> str:
    family = families.of(source)
    if family.class_labels:
        return f"{_NOT_A_CLASS}, not scored"
    if family.softmax:  # one-hot or soft rows
        return "the label row is not a probability row (entries >= 0 summing to 1)"
    return "a target is outside [0, 1] or NaN"


# ---------------------------------------------------------------- closing sentence


def _per_dtype(report: Report, heads: Sequence[str]) -> dict[str, int]:
    """Rows per dtype carrying any of the flags ``<head>:<dtype>`` (heads are disjoint)."""
    out = {}
    for d in report.settings.dtypes:
        n = sum(report.counts.get(f"{h}:{d}", 0) for h in heads)
        if n:
            out[d] = n
    return out


def _rows_in(counts: dict[str, int]) -> str:
    """{"float32": 3, "float64": 1} -> "3 rows in float32 and 1 in float64"."""
    parts = [f"{n} in {d}" for d, n in counts.items()]
    first = next(iter(counts.values()))
    parts[0] = f"{plural(first, 'row')} in {next(iter(counts))}"
    return and_list(parts)


def input_problems(report: Report) -> list[str]:
    """The rows that have no loss for a problem of their input, in words ("4 rows with +inf
    logits (an overflowing output layer)"), by kind."""
    src, s, counts, causes = report.source, report.settings, report.counts, report.cause_counts
    plus = "+" if _nonfinite_kinds(src, s) == "NaN or +inf" else ""
    noun = _input_noun(s)
    head = " (an overflowing output layer)" if s.inputs == "logits" else ""
    found = (
        (causes.get("nan_input"), f"with NaN {noun} (NaN weights or activations upstream)"),
        (causes.get("inf_input"), f"with {plus}inf {noun}{head}"),
        (counts.get("masked_target"), "whose target falls on a masked (-inf) class"),
        (counts.get("ragged_logits"), "whose list of logits has another length"),
        (counts.get("invalid_probability"), "holding values that are not probabilities"),
        (counts.get("label_out_of_range"), f"with a label outside 0..{src.n_classes - 1}"),
        (counts.get("invalid_label"), "with an invalid label"),
    )
    return [f"{plural(n, 'row')} {words}" for n, words in found if n]


def closing_sentence(report: Report) -> str:
    """What was found and what to do, in plain words, in one sentence or a few clauses."""
    s = report.settings
    if report.flagged_rows == 0 and report.scored_rows > 0:
        nothing = (
            f"Nothing flagged: every path is finite and agrees with the reference on all "
            f"{plural(report.scored_rows, 'scored row')} in {and_list(list(s.dtypes))}"
        )
        return _sentence([nothing, *batch_clauses(report)])
    clauses = []
    problems = input_problems(report)
    if problems:
        clauses.append(f"the data has {and_list(problems)}: fix those rows first")
    if report.scored_rows == 0:
        clauses.append(
            "no row was left to compare: every row has an input problem or the label "
            f"ignore_index ({s.ignore_index}); check the data and --ignore-index"
        )
    if s.inputs == "probs":
        return _sentence(clauses + probs_clauses(report) + batch_clauses(report))
    broke = path_clauses(report)
    clauses += broke
    diverged = _per_dtype_path(report, "diverged")
    if diverged:
        where = (
            f"in {and_list(diverged)} by more than {TOLERANCE_EPS} eps of the dtype (more than "
            "its rounding explains)"
            if s.rtol is None and s.atol is None
            else f"beyond rtol {tolerance_text(s).removeprefix('rtol ')} in {and_list(diverged)}"
        )
        clauses.append(
            f"the loss diverges from float64 {where}: "
            "compute the loss in a wider dtype (or center the logits), or loosen "
            "--rtol/--atol if that error is acceptable"
        )
        rtol = s.rtol if s.rtol is not None else math.inf
        coarse = [f"{d} ({prec.get(d).eps:.2g})" for d in s.dtypes if prec.get(d).eps > rtol]
        if coarse:
            clauses.append(
                f"note that the machine epsilon of {and_list(coarse)} is above rtol "
                f"{rtol:g}, so ordinary rounding in that dtype diverges by itself: leave "
                "--rtol out to judge each dtype by its own epsilon"
            )
    clauses += cancelled_clauses(report)
    inaccurate = _per_dtype_path(report, "inaccurate")
    if inaccurate and not (problems or broke or diverged):
        clauses.append(
            f"only accuracy notes: fewer than half the bits are correct in "
            f"{and_list(inaccurate)}, "
            "where the loss is tiny; harmless for training, use float64 if you need those "
            "values"
        )
    return _sentence(clauses + batch_clauses(report))


def _mechanisms(report: Report, path: str) -> str:
    """`` (probability underflow and 0·log 0)``: the causes seen on ``path``'s flagged values,
    or nothing."""
    why = [CAUSE_NAMES[c] for c in report.path_causes.get(path, {}) if c in CAUSE_NAMES]
    return f" ({and_list(why)})" if why else ""


def path_clauses(report: Report) -> list[str]:
    """What broke, path by path (the framework's fused loss, its softmax-then-log, the
    textbook formula), each with its mechanism, and the advice that fits: a fused loss only
    to those whose fused loss did not fail."""
    s = report.settings
    fw_ = registry.get(s.framework)
    softmax = families.of(report.source).softmax
    broke = {
        path: _per_dtype(report, (f"{path}_nan", f"{path}_inf"))
        for path in ("stable", "naive", "textbook")
    }
    out = []
    for path, counts in broke.items():
        if counts:
            code = f"({TEXTBOOK[softmax]})" if path == "textbook" else fw_.code_of(path, softmax)
            name = PATH_NAMES[path].format(code=code)
            out.append(f"{name} gives NaN or inf on {_rows_in(counts)}{_mechanisms(report, path)}")
    stable = fw_.code_of("stable", softmax)
    if broke["stable"]:
        out.append(
            f"{stable} itself fails, so a fused loss is no remedy here: compute it in a wider "
            "dtype (float32 instead of float16 or bfloat16), or keep the logits in range"
        )
    elif broke["naive"]:
        out.append(
            f"{stable} is finite everywhere ({fw_.title}): use it on the logits, never "
            f"{fw_.code_of('naive', softmax)}"
        )
    elif broke["textbook"]:
        out.append(
            f"{fw_.code_of('naive', softmax)} and {stable} are finite everywhere "
            f"({fw_.title}): only the unshifted textbook formula fails"
        )
    return out


def cancelled_clauses(report: Report) -> list[str]:
    """The fused loss losing half its bits by cancellation: its values are too small (often
    exactly 0), and a fused loss is what failed."""
    n = report.path_causes.get("stable", {}).get("cancellation", 0)
    inaccurate = [
        f"{d} ({plural(report.counts[f], 'row')})"
        for d in report.settings.dtypes
        if report.counts.get(f := f"inaccurate:stable_{d}")
    ]
    if not (n and inaccurate):
        return []
    fw_ = registry.get(report.settings.framework)
    code = fw_.code_of("stable", families.of(report.source).softmax)
    return [
        f"the fused loss {code} keeps fewer than half the bits in {and_list(inaccurate)} "
        f"(cancellation: two nearly equal terms subtracted, so the loss comes out too small, "
        "often exactly 0): compute it in float64 where those losses matter"
    ]


def _sentence(clauses: list[str]) -> str:
    sentence = "; ".join(clauses)
    return sentence[0].upper() + sentence[1:] + "."


def probs_clauses(report: Report) -> list[str]:
    """The closing clauses of probability input: what each convention does, and the advice."""
    out = []
    zero = report.counts.get("target_prob_zero", 0)
    if zero:
        torch = (
            "PyTorch's nll_loss(log(p)) keeps as inf"
            if families.of(report.source).softmax
            else "PyTorch's BCELoss reports as 100"
        )
        out.append(
            f"{plural(zero, 'row')} {'has' if zero == 1 else 'have'} a target probability of "
            f"exactly 0, an infinite loss that {torch}, and Keras and scikit-learn as their "
            "clip constants"
        )
    naive = _per_dtype(report, ("naive_nan", "naive_inf"))
    if naive:
        out.append(f"-log(p) gives NaN or inf on {_rows_in(naive)}")
    for path in ("torch", "keras", "sklearn"):
        bad = _per_dtype(report, (f"{path}_nan", f"{path}_inf"))
        if bad:
            out.append(f"the {path} convention gives NaN or inf on {_rows_in(bad)}")
    clipped = report.cause_counts.get("clipped", 0)
    if clipped:
        out.append(f"the frameworks' clips change the loss of {plural(clipped, 'row')}")
    if out:
        out.append(
            "no stable path exists once the logits are gone: export the logits and use a "
            "loss that takes them"
        )
    elif report.flagged_rows:
        out.append("only rounding differences between the dtypes")
    return out


def batch_clauses(report: Report) -> list[str]:
    """The closing clause on PyTorch's batch means, when a batch mean is NaN or inf."""
    b = report.batches
    if b is None or not b.nonfinite_batches:
        return []
    first = b.issues[0] if b.issues else None
    where = ""
    if first is not None:
        reasons = set(first.reasons.values())
        why = f": {reasons.pop()}" if len(reasons) == 1 else ""
        where = f" (the first is batch {first.batch}{why})"
    batches = "1 batch" if b.batches == 1 else f"{b.batches} batches"
    return [
        f"PyTorch's reduction='mean' is NaN or inf in {b.nonfinite_batches} of {batches} of "
        f"{b.size()}{where}"
    ]


def _per_dtype_path(report: Report, head: str) -> list[str]:
    """["stable float32 (9 rows)", ...] for the flags ``<head>:<path>_<dtype>``."""
    out = []
    for flag, n in report.counts.items():
        if flag.startswith(head + ":"):
            path, _, dtype = flag.split(":")[1].partition("_")
            out.append(f"{path} {dtype} ({plural(n, 'row')})")
    return out
