"""The report for people: rich tables, and flags and causes said in plain words.

:func:`print_report` prints a header (inputs, shapes, task, dtypes), a summary table (one line
per path and dtype), the counts of each flag and cause, the worst flagged rows side by side
with a sentence or two on why each failed, and a closing sentence saying what was found and
what to do. Every piece is a plain renderable, so tests render it into a recording Console.

The words are derived from the data: the dtype's largest finite exp argument, the row's
largest logit, the values each path computed. Nothing here needs colour to be read: NaN and
inf are spelled out, and a value that diverged from float64 carries a ``*``.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterable, Sequence

import ml_dtypes
import numpy as np
from rich import box
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from cecheck import __version__, engine, inputs
from cecheck import framework_view as fv
from cecheck import frameworks as fw
from cecheck import precision as prec
from cecheck.diagnose import NONFINITE_SEVERITY, NOT_FLAGGED
from cecheck.report import Report, RowRecord

LABEL_FORMS = {
    "index": "class index",
    "onehot": "one-hot",
    "soft": "soft (probability rows)",
    "multihot": "multi-hot",
    "binary": "0/1 or soft target",
}

CAUSE_WORDS = {
    "nonfinite_input": "NaN or inf in the logits",
    "cast_overflow": "a logit beyond the dtype's largest number became inf",
    "exp_overflow": "exp() of a large logit overflowed to inf",
    "prob_underflow": "a probability rounded to 0, so log(0) = -inf",
    "sigmoid_saturated": "a sigmoid rounded to exactly 0 or 1",
    "zero_times_inf": "a zero target met log(0): 0 * -inf = NaN",
    "cancellation": "rounding lost the accuracy (1 + tiny = 1, logits too large for the dtype)",
    "clipped": "the framework clipped a probability (or clamped its log), so its loss is capped",
}

CAUSE_NAMES = {  # the causes of a non-finite naive value, as the closing sentence names them
    "cast_overflow": "logits beyond the dtype's range",
    "exp_overflow": "exp overflow",
    "prob_underflow": "probability underflow",
    "sigmoid_saturated": "sigmoid saturation",
    "zero_times_inf": "0 * inf",
}

ZERO_TIMES_INF = "a zero target multiplies log(0) = -inf: 0 * -inf = NaN"

FUSED = {
    "multiclass": "use a fused log-softmax/cross-entropy (F.cross_entropy, "
    "tf.nn.softmax_cross_entropy_with_logits), never log(softmax(z))",
    "binary": "use BCE with logits (F.binary_cross_entropy_with_logits, "
    "tf.nn.sigmoid_cross_entropy_with_logits), never log(sigmoid(z))",
}


# ---------------------------------------------------------------- numbers


def fmt_loss(value: float) -> str:
    """A loss with 6 significant digits; NaN and inf spelled out."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.6g}"


def fmt_label(label: object) -> str:
    if label is None:  # a class-index label that is not a whole number
        return "-"
    if isinstance(label, float):
        return f"{label:g}"
    return str(label)


def and_list(items: Sequence[str]) -> str:
    """["a"] -> "a"; ["a", "b"] -> "a and b"; ["a", "b", "c"] -> "a, b and c"."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _smallest(dtype: str) -> float:
    """The smallest positive (subnormal) number of ``dtype``."""
    return float(ml_dtypes.finfo(prec.get(dtype).storage).smallest_subnormal)


def _half_spacing(x: float, dtype: str) -> float:
    """Half the distance between neighbouring ``dtype`` numbers near ``x``: its rounding error."""
    if x == 0 or not math.isfinite(x):
        return 0.0
    return 2.0 ** (math.floor(math.log2(abs(x))) - prec.get(dtype).bits)


def _exp_overflows(x: float, dtype: str) -> bool:
    """True when ``exp(x)``, computed in ``dtype`` as the paths compute it, is inf."""
    p = prec.get(dtype)
    with np.errstate(over="ignore"):
        return bool(np.isinf(p.round(np.exp(p.cast(np.array([x]))))[0]))


def _sigmoid(z: float, dtype: str) -> float:
    """``1 / (1 + exp(-z))`` in ``dtype``, every step rounded, as the naive path does it."""
    p = prec.get(dtype)
    with np.errstate(over="ignore"):
        en = p.round(np.exp(-p.cast(np.array([z]))))
        return float(p.round(1 / p.round(1 + en))[0])


# ---------------------------------------------------------------- header and tables


def header(source: inputs.Source, settings: engine.Settings) -> RenderableType:
    """What was read and what is computed: files, shapes, task, label form, dtypes."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("cecheck", f"version {__version__}")
    shape = str(tuple(source.logits_shape))
    if source.logits_name == source.labels_name:
        grid.add_row("input", source.logits_name)
    else:
        grid.add_row("logits", source.logits_name)
        grid.add_row("labels", source.labels_name)
    labels = str(tuple(source.labels_shape))
    grid.add_row("shapes", f"logits {shape} {source.logits_dtype}, labels {labels}")
    rows = _plural(source.n_rows, "row")
    if len(source.lead_shape) > 1:
        rows += f" over {tuple(source.lead_shape)}"
    classes = "" if source.task == "binary" else f", {source.n_classes} classes"
    grid.add_row("task", f"{source.task}{classes}, {rows}, labels {LABEL_FORMS[source.label_form]}")
    grid.add_row(
        "dtypes",
        f"{', '.join(settings.dtypes)}; rtol {settings.rtol:g}, atol {settings.atol:g}, "
        f"ignore_index {settings.ignore_index}",
    )
    for name, words in framework_lines(settings):
        grid.add_row(name, words)
    return grid


def framework_lines(settings: engine.Settings) -> list[tuple[str, str]]:
    """Header lines for the framework-view settings that are on (none by default)."""
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
    if settings.batch_size is not None:
        out.append(
            ("batches", f"PyTorch's reduction='mean' over batches of {settings.batch_size} rows")
        )
    return out


def summary_table(report: Report) -> Table:
    """One line per path and dtype: finite/NaN/inf counts, mean loss, worst error, bits."""
    ignored = report.counts.get("ignored", 0)
    title = f"Loss per path and dtype over {_plural(report.scored_rows, 'scored row')}"
    if report.rows != report.scored_rows:
        title += f" (of {report.rows}"
        title += f"; {ignored} ignored)" if ignored else ")"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("path")
    table.add_column("dtype")
    for name in ("finite", "NaN", "inf", "mean loss", "worst\nrel. error", "bits\ncorrect"):
        table.add_column(name, justify="right")
    dtypes = report.settings.dtypes
    for p in report.summary:
        bits = prec.get(p.dtype).bits
        bad = "red" if p.nan or p.inf else ""
        table.add_row(
            p.path,
            p.dtype,
            str(p.finite),
            Text(str(p.nan), style="red" if p.nan else ""),
            Text(str(p.inf), style="red" if p.inf else ""),
            Text(fmt_loss(p.mean), style=bad if math.isnan(p.mean) else ""),
            "-" if p.worst_rel_error is None else f"{p.worst_rel_error:.2g}",
            "-" if p.bits_correct is None else f"{p.bits_correct:.1f}/{bits}",
            end_section=p.path == report.settings.paths[-1] and p.dtype == dtypes[-1],
        )
    return table


def flag_words(flag: str, source: inputs.Source, settings: engine.Settings) -> str:
    """What a flag means, in a few words."""
    if flag == "nonfinite_input":
        return f"NaN or inf in the {_input_noun(settings)}"
    if flag == "invalid_probability":
        return "not a probability: outside [0, 1], or a row that does not sum to 1: not scored"
    if flag == "target_prob_zero":
        return "the target's probability is exactly 0: -log(0) = inf, each framework a constant"
    if flag == "label_out_of_range":
        return f"class label outside 0..{source.n_classes - 1}: not scored"
    if flag == "invalid_label" and source.label_form == "index":
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


def counts_table(report: Report) -> Table | None:
    """How many rows carry each flag and each cause; None when nothing was flagged."""
    if not report.counts and not report.cause_counts:
        return None
    src, s = report.source, report.settings
    table = Table(title="Flags and causes", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)  # fmt: skip
    table.add_column("rows", justify="right")
    table.add_column("flag or cause", no_wrap=True)
    table.add_column("what it means", overflow="fold")
    flags = list(report.counts.items())
    for i, (flag, n) in enumerate(flags):
        table.add_row(str(n), flag, flag_words(flag, src, s), end_section=i == len(flags) - 1)
    for cause, n in report.cause_counts.items():
        table.add_row(str(n), cause, CAUSE_WORDS[cause])
    return table


def _row_name(record: RowRecord, source: inputs.Source) -> str:
    if len(source.lead_shape) > 1:
        return "(" + ", ".join(str(i) for i in record.index) + ")"
    return str(record.row)


def _value_cell(record: RowRecord, column: str) -> Text:
    value = record.values[column]
    text = fmt_loss(value)
    if not math.isfinite(value):
        return Text(text, style="bold red")
    if f"diverged:{column}" in record.flags:
        return Text(text + "*", style="yellow")
    return Text(text)


def _rows_table(
    records: Sequence[RowRecord],
    source: inputs.Source,
    dtypes: Sequence[str],
    title: str | None,
    paths: Sequence[str],
) -> Table:
    """Rows side by side: a line per path, a column per dtype, and the reference."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("row", no_wrap=True)
    table.add_column("label", overflow="fold")
    value = "p" if paths == fw.PROB_PATHS else "logit"
    table.add_column(value if source.task == "binary" else f"max {value}", justify="right")
    table.add_column("path")
    for d in dtypes:
        table.add_column(d, justify="right", no_wrap=True)
    table.add_column("reference", justify="right", no_wrap=True)
    for record in records:
        for i, path in enumerate(paths):
            first = i == 0
            table.add_row(
                _row_name(record, source) if first else "",
                fmt_label(record.label) if first else "",
                fmt_loss(record.max_logit) if first else "",
                path,
                *(_value_cell(record, f"{path}_{d}") for d in dtypes),
                _value_cell(record, "reference") if first else "",
            )
    return table


def _fits(table: Table, width: int) -> bool:
    console = Console(width=10_000, file=io.StringIO(), color_system=None)
    return Measurement.get(console, console.options, table).maximum <= width


def rows_tables(
    records: Sequence[RowRecord],
    source: inputs.Source,
    settings: engine.Settings,
    width: int,
    title: str | None,
) -> list[Table]:
    """The rows as tables no wider than ``width``: the dtypes split over several if needed."""
    dtypes = list(settings.dtypes)
    tables: list[Table] = []
    for n_groups in range(1, len(dtypes) + 1):  # as few tables as fit, dtypes spread evenly
        bounds = [round(i * len(dtypes) / n_groups) for i in range(n_groups + 1)]
        groups = [dtypes[a:b] for a, b in itertools.pairwise(bounds)]
        tables = [
            _rows_table(records, source, g, title if j == 0 else None, settings.paths)
            for j, g in enumerate(groups)
        ]
        if all(_fits(t, width) for t in tables):
            break
    return tables


def explanations(
    records: Sequence[RowRecord], source: inputs.Source, settings: engine.Settings
) -> Table:
    """A line or two per row: what is flagged, and why, in words."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(overflow="fold")
    for record in records:
        words = [describe_flags(record, source, settings), *explain(record, source, settings)]
        grid.add_row(f"row {_row_name(record, source)}:", Text("; ".join(words) + "."))
    return grid


# ---------------------------------------------------------------- plain words


def describe_flags(
    record: RowRecord, source: inputs.Source, settings: engine.Settings | None = None
) -> str:
    """The row's flags in short words: "naive NaN in float32 and float64"."""
    parts: list[str] = []
    if "nonfinite_input" in record.flags:
        parts.append(f"NaN or inf in the {_input_noun(settings)}")
    if "invalid_probability" in record.flags:
        parts.append("not a probability row (values in [0, 1] summing to 1), not scored")
    if "target_prob_zero" in record.flags:
        parts.append("the target's probability is exactly 0")
    if "label_out_of_range" in record.flags:
        parts.append(
            f"label {fmt_label(record.label)} is outside 0..{source.n_classes - 1}, not scored"
        )
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


def _by_severity(settings: engine.Settings | None) -> list[str]:
    """The paths in play, most serious first: stable (or the conventions), then naive."""
    paths = fv.paths(settings.inputs if settings is not None else "logits")
    return sorted(paths, key=NONFINITE_SEVERITY.__getitem__)


def _input_noun(settings: engine.Settings | None) -> str:
    return "probabilities" if settings is not None and settings.inputs == "probs" else "logits"


# What an invalid class-index label is (inputs.INVALID_LABEL), in a few words.
_NOT_A_CLASS = "the class label is not a whole number (a fraction, NaN or an empty cell)"


def _invalid_label_words(source: inputs.Source) -> str:
    if source.label_form == "index":
        return f"{_NOT_A_CLASS}, not scored"
    if source.label_form in ("onehot", "soft"):
        return "the label row is not a probability row (entries >= 0 summing to 1)"
    return "a target is outside [0, 1] or NaN"


def _naive_bad(record: RowRecord, dtypes: Iterable[str]) -> list[str]:
    return [d for d in dtypes if not math.isfinite(record.values[f"naive_{d}"])]


def explain(record: RowRecord, source: inputs.Source, settings: engine.Settings) -> list[str]:
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
    if source.task == "binary":
        out += _explain_sigmoid(record, settings, causes)
    elif source.task == "multilabel":
        out += _explain_multilabel(record, settings, causes)
    else:
        out += _explain_softmax(record, source, settings, causes)
    if "cancellation" in causes:
        out += _explain_cancellation(record, source, settings)
    return out


def _explain_probs(
    record: RowRecord, source: inputs.Source, settings: engine.Settings, causes: set[str]
) -> list[str]:
    """Probability input: a target probability of 0 and what each convention reports instead,
    a probability that rounds to 0 in a narrow dtype, and the clips."""
    out = []
    if "target_prob_zero" in record.flags:
        values = [
            f"{path} {fmt_loss(record.values[f'{path}_{d}'])}"
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
            smallest = and_list([f"{_smallest(d):.3g}" for d in under])
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


def _explain_cast_overflow(record: RowRecord, settings: engine.Settings) -> list[str]:
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


def _max_args(dtypes: Sequence[str]) -> str:
    return and_list([f"{prec.get(d).max_exp_arg:.2f}" for d in dtypes])


def _explain_softmax(
    record: RowRecord, source: inputs.Source, settings: engine.Settings, causes: set[str]
) -> list[str]:
    out = []
    z = record.max_logit
    explained: set[str] = set()
    if "exp_overflow" in causes:
        over = [d for d in settings.dtypes if _exp_overflows(z, d)]
        if over:
            words = f"exp({z:.6g}) overflows {and_list(over)} (largest finite exp argument "
            words += f"{_max_args(over)})"
            nan = [d for d in over if math.isnan(record.values[f"naive_{d}"])]
            inf = [d for d in over if math.isinf(record.values[f"naive_{d}"])]
            if nan:
                words += ", so the softmax is inf / inf = NaN"
                words += f" in {and_list(nan)}" if len(nan) < len(over) else ""
            if inf:
                words += f"{'; and' if nan else ', so'} the target probability x / inf = 0"
                words += " and -log(0) = inf" + (f" in {and_list(inf)}" if nan else "")
            out.append(words)
            explained.update(nan + inf)
        else:
            out.append("exp() of a logit overflowed to inf in the naive softmax")
    if "prob_underflow" in causes:
        under = [
            d for d in settings.dtypes
            if math.isinf(record.values[f"naive_{d}"]) and d not in explained
        ]  # fmt: skip
        ref = record.values["reference"]
        if under and source.label_form == "index" and math.isfinite(ref):
            out.append(
                f"the target probability exp(-{ref:.4g}) is below the smallest positive "
                f"{and_list(under)} number ({and_list([f'{_smallest(d):.3g}' for d in under])}),"
                " so the softmax rounds it to 0 and -log(0) = inf"
            )
        elif under:
            out.append(
                f"the softmax rounds the probability of a class with a positive target to 0 in "
                f"{and_list(under)}, so log(0) = -inf"
            )
    if "zero_times_inf" in causes:
        out.append("a class with target 0 has probability 0, and 0 * log(0) = 0 * -inf = NaN")
    return out


def _explain_sigmoid(record: RowRecord, settings: engine.Settings, causes: set[str]) -> list[str]:
    """Binary: one logit z, one target t."""
    out = []
    z = record.max_logit
    t = float(record.label) if isinstance(record.label, int | float) else math.nan
    bad = _naive_bad(record, settings.dtypes)
    if "exp_overflow" in causes:
        over = [d for d in settings.dtypes if _exp_overflows(-z, d)]
        if over:
            out.append(
                f"sigmoid({z:.6g}) = 1 / (1 + exp({-z:.6g})) and exp({-z:.6g}) overflows "
                f"{and_list(over)} (largest finite exp argument {_max_args(over)})"
            )
    if "sigmoid_saturated" in causes:
        for p_value in (1.0, 0.0):
            sat = [d for d in bad if _sigmoid(z, d) == p_value]
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


def _explain_multilabel(
    record: RowRecord, settings: engine.Settings, causes: set[str]
) -> list[str]:
    """Multilabel: a row is C sigmoids; the row keeps only its largest logit, so stay general."""
    out = []
    bad = _naive_bad(record, settings.dtypes) or list(settings.dtypes)
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


def _explain_cancellation(
    record: RowRecord, source: inputs.Source, settings: engine.Settings
) -> list[str]:
    """Why a finite value lost its accuracy: the worst lossy dtype of each path."""
    out = []
    ref = record.values["reference"]
    for path in ("stable", "naive"):
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


def _zero_words(path: str, dtypes: list[str], ref: float, z: float, source: inputs.Source) -> str:
    """A path returned exactly 0 where the true loss is a tiny positive number."""
    head = f"the {path} path returns 0 in {and_list(dtypes)} where the true loss is {ref:.3g}"
    if all(ref < _smallest(d) for d in dtypes):
        return f"{head}, below the smallest positive {and_list(dtypes)} number"
    if path == "stable":
        return (
            f"{head}: the sum 1 + {ref:.3g} rounds to 1 and log(1) = 0 (cancellation); "
            "the reference uses log1p"
        )
    if source.task == "binary":
        p = f"sigmoid({z:.6g})"
        what = f"1 - {p}" if z < 0 else p
        return f"{head}: {what} rounds to 1 and log(1) = 0 (cancellation); use log1p"
    return (
        f"{head}: the target's probability rounds to 1 and log(1) = 0 (cancellation); "
        "use log_softmax"
    )


def _rounding_words(record: RowRecord, path: str, d: str, settings: engine.Settings) -> str:
    """A finite value off by more than the tolerance or half its bits: rounding to ``d``."""
    value, ref = record.values[f"{path}_{d}"], record.values["reference"]
    bits = prec.get(d).bits
    if f"diverged:{path}_{d}" in record.flags:
        v64 = record.values[f"{path}_float64"]
        rel = abs(value - v64) / abs(v64) if v64 else math.inf
        words = (
            f"{path} {d} gives {value:.6g} where float64 gives {v64:.6g} (relative difference "
            f"{rel:.2g}, rtol {settings.rtol:g}): rounding to {d}'s {bits}-bit significand"
        )
    else:
        rel = abs(value - ref) / abs(ref) if ref else math.inf
        good = min(bits, max(0.0, -math.log2(rel))) if rel else bits
        words = (
            f"{path} {d} gives {value:.6g} against the reference {ref:.6g}: "
            f"{good:.1f} of {bits} bits correct"
        )
    z = record.max_logit
    err = _half_spacing(z, d)
    if math.isfinite(ref) and err > settings.rtol * abs(ref):
        words += f"; {d} holds logits near {z:.6g} only to within {err:.2g}"
    return words


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
    parts[0] = f"{_plural(first, 'row')} in {next(iter(counts))}"
    return and_list(parts)


def closing_sentence(report: Report) -> str:
    """What was found and what to do, in plain words, in one sentence or a few clauses."""
    src, s, counts = report.source, report.settings, report.counts
    if report.flagged_rows == 0 and report.scored_rows > 0:
        nothing = (
            f"Nothing flagged: every path is finite and agrees with the reference on all "
            f"{_plural(report.scored_rows, 'scored row')} in {and_list(list(s.dtypes))}"
        )
        return _sentence([nothing, *batch_clauses(report)])
    clauses = []
    problems = [
        f"{_plural(counts[f], 'row')} {words}"
        for f, words in (
            ("nonfinite_input", f"with NaN or inf {_input_noun(s)}"),
            ("invalid_probability", "holding values that are not probabilities"),
            ("label_out_of_range", f"with a label outside 0..{src.n_classes - 1}"),
            ("invalid_label", "with an invalid label"),
        )
        if counts.get(f)
    ]
    if problems:
        clauses.append(f"the data has {and_list(problems)}: fix those rows first")
    if report.scored_rows == 0:
        clauses.append(
            "no row was left to compare: every row has an input problem or the label "
            f"ignore_index ({s.ignore_index}); check the data and --ignore-index"
        )
    if s.inputs == "probs":
        return _sentence(clauses + probs_clauses(report) + batch_clauses(report))
    naive = _per_dtype(report, ("naive_nan", "naive_inf"))
    stable = _per_dtype(report, ("stable_nan", "stable_inf"))
    if naive:
        why = [CAUSE_NAMES[c] for c in report.cause_counts if c in CAUSE_NAMES]
        because = f" ({and_list(why)})" if why else ""
        clauses.append(f"the naive path gives NaN or inf on {_rows_in(naive)}{because}")
    if stable:
        clauses.append(f"the stable path gives NaN or inf on {_rows_in(stable)}")
    elif naive:
        advice = FUSED["multiclass" if src.task == "multiclass" else "binary"]
        clauses.append(f"the stable path is finite everywhere: {advice}")
    diverged = _per_dtype_path(report, "diverged")
    if diverged:
        clauses.append(
            f"the loss diverges from float64 beyond rtol {s.rtol:g} in {and_list(diverged)}: "
            "compute the loss in a wider dtype (or center the logits), or loosen "
            "--rtol/--atol if that error is acceptable"
        )
        coarse = [
            f"{d} ({2.0 ** (1 - prec.get(d).bits):.2g})"
            for d in s.dtypes
            if 2.0 ** (1 - prec.get(d).bits) > s.rtol
        ]
        if coarse:
            clauses.append(
                f"note that the machine epsilon of {and_list(coarse)} is above rtol "
                f"{s.rtol:g}, so ordinary rounding in that dtype diverges by itself"
            )
    inaccurate = _per_dtype_path(report, "inaccurate")
    if inaccurate and not (problems or naive or stable or diverged):
        clauses.append(
            f"only accuracy notes: fewer than half the bits are correct in "
            f"{and_list(inaccurate)}, "
            "where the loss is tiny; harmless for training, use float64 if you need those "
            "values"
        )
    return _sentence(clauses + batch_clauses(report))


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
            if report.source.task == "multiclass"
            else "PyTorch's BCELoss reports as 100"
        )
        out.append(
            f"{_plural(zero, 'row')} {'has' if zero == 1 else 'have'} a target probability of "
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
        out.append(f"the frameworks' clips change the loss of {_plural(clipped, 'row')}")
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
        f"{_plural(b.batch_size, 'row')}{where}"
    ]


def _per_dtype_path(report: Report, head: str) -> list[str]:
    """["stable float32 (9 rows)", ...] for the flags ``<head>:<path>_<dtype>``."""
    out = []
    for flag, n in report.counts.items():
        if flag.startswith(head + ":"):
            path, _, dtype = flag.split(":")[1].partition("_")
            out.append(f"{path} {dtype} ({_plural(n, 'row')})")
    return out


# ---------------------------------------------------------------- the whole report


def print_report(
    report: Report,
    console: Console,
    *,
    fail_on: Iterable[str] = (),
    show_header: bool = True,
    show_rows: bool = True,
) -> None:
    """Header, summary, counts, the worst flagged rows and the closing sentence."""
    src, s = report.source, report.settings
    if show_header:
        console.print(header(src, s))
        console.print()
    console.print(summary_table(report))
    for renderable in framework_notes(report):
        console.print(renderable)
    if report.batches is not None:
        console.print(batch_table(report))
        console.print(batch_issues(report))
    counts = counts_table(report)
    if counts is not None:
        console.print(counts)
    if show_rows and report.top:
        title = f"Worst flagged rows ({len(report.top)} of {report.flagged_rows})"
        for table in rows_tables(report.top, src, s, console.width, title):
            console.print(table)
        if any(f.startswith("diverged:") for r in report.top for f in r.flags):
            console.print("* diverged from float64 beyond rtol/atol")
        console.print(explanations(report.top, src, s))
        more = report.flagged_rows - len(report.top)
        if more > 0:
            console.print(
                f"… and {more} more flagged {'row' if more == 1 else 'rows'} "
                "(--top N or --all to show more, --format csv for every row)"
            )
        console.print()
    console.print(Text(closing_sentence(report), style="bold"))
    failed = report.failed(fail_on)
    if failed:
        console.print(f"--fail-on {','.join(failed)} met: exit code 1")


def framework_notes(report: Report) -> list[RenderableType]:
    """Probability input: the conventions legend and the plain word that no stable path
    exists; label smoothing of soft targets: PyTorch's rule. Nothing by default."""
    out: list[RenderableType] = []
    if report.settings.inputs == "probs":
        legend = Table(
            title="Conventions (paths on probabilities)",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        legend.add_column("path", no_wrap=True)
        legend.add_column("rule", overflow="fold")
        for path, rule in fw.CONVENTIONS.items():
            legend.add_row(path, Text(rule))
        out += [legend, Text(fw.NO_STABLE_PATH), Text("")]
    out += [Text(note) for note in fv.notes(report.source, report.settings)]
    return out


MAX_BATCH_LINES = 10  # batch issues the table lists; the JSON keeps up to 100


def batch_table(report: Report) -> Table:
    """PyTorch's batch means per column: NaN and inf batches, the largest finite mean."""
    b = report.batches
    assert b is not None
    last = b.rows - (b.batches - 1) * b.batch_size if b.batches else 0
    shorter = f", the last of {_plural(last, 'row')}" if last != b.batch_size else ""
    batches = "1 batch" if b.batches == 1 else f"{b.batches} batches"
    table = Table(
        title=f"PyTorch's reduction='mean' over {batches} of {_plural(b.batch_size, 'row')}"
        + shorter,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("column", no_wrap=True)
    for name in ("NaN\nbatches", "inf\nbatches", "largest\nmean", "in\nbatch"):
        table.add_column(name, justify="right")
    for column, c in b.columns.items():
        table.add_row(
            column,
            Text(str(c.nan), style="red" if c.nan else ""),
            Text(str(c.inf), style="red" if c.inf else ""),
            "-" if c.worst_mean is None else fmt_loss(c.worst_mean),
            "-" if c.worst_batch is None else str(c.worst_batch),
        )
    return table


def batch_issues(report: Report) -> RenderableType:
    """One line per batch whose mean is NaN or inf: where, in which columns, and why."""
    b = report.batches
    assert b is not None
    if not b.nonfinite_batches:
        return Text("Every batch mean is finite.\n")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(overflow="fold")
    for issue in b.issues[:MAX_BATCH_LINES]:
        by_reason: dict[str, list[str]] = {}
        for column, reason in issue.reasons.items():
            by_reason.setdefault(reason, []).append(column)
        last = issue.first_row + issue.rows - 1
        for i, (reason, columns) in enumerate(by_reason.items()):
            kinds = and_list(sorted({fmt_loss(issue.means[c]) for c in columns}))
            where = "every column" if len(columns) == len(issue.means) else and_list(columns)
            grid.add_row(
                f"batch {issue.batch} (rows {issue.first_row}-{last}):" if i == 0 else "",
                Text(f"{kinds} in {where} — {reason}."),
            )
    more = b.nonfinite_batches - min(len(b.issues), MAX_BATCH_LINES)
    lines: list[RenderableType] = [grid]
    if more > 0:
        lines.append(Text(f"… and {more} more NaN or inf {'batch' if more == 1 else 'batches'}"))
    lines.append(Text(""))
    return Group(*lines)


def chunk_records(
    chunk: engine.ChunkResult, source: inputs.Source, settings: engine.Settings
) -> list[RowRecord]:
    """Every row of a chunk as a RowRecord (for ``--all``), in row order."""
    diag = chunk.diagnosis
    labels = engine.chunk_frame(chunk, source, settings)["label"].tolist()
    flag_lists, cause_lists = diag.flag_lists(), diag.cause_lists()
    records = []
    for i in range(chunk.labels.shape[0]):
        row = chunk.start + i
        z = chunk.logits[i]
        records.append(
            RowRecord(
                row=row,
                index=tuple(int(v) for v in np.unravel_index(row, source.lead_shape)),
                label=labels[i],
                max_logit=float(np.max(z)) if np.ndim(z) else float(z),
                values={c: float(chunk.values[c][i]) for c in settings.columns},
                flags=flag_lists[i],
                causes=cause_lists[i],
                severity=int(diag.severity[i]),
                error=float(diag.error[i]),
            )
        )
    return records


def chunk_rows(
    chunk: engine.ChunkResult, source: inputs.Source, settings: engine.Settings, width: int
) -> list[RenderableType]:
    """One chunk of ``--all``: every row side by side, then the words for the flagged ones."""
    records = chunk_records(chunk, source, settings)
    last = chunk.start + len(records) - 1
    title = f"Rows {chunk.start}..{last} of {source.n_rows}"
    out: list[RenderableType] = list(rows_tables(records, source, settings, width, title))
    flagged = [r for r in records if r.severity < NOT_FLAGGED]
    if flagged:
        out.append(explanations(flagged, source, settings))
    out.append(Text(""))
    return [Group(*out)]


__all__ = [
    "CAUSE_WORDS",
    "chunk_records",
    "chunk_rows",
    "closing_sentence",
    "counts_table",
    "describe_flags",
    "explain",
    "explanations",
    "header",
    "print_report",
    "rows_tables",
    "summary_table",
]
