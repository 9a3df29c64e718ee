"""A :class:`~cecheck.trace.Trace` for people (rich tables) and for machines (strict JSON).

The table of a path has one line per step: its number, a ``✗`` on the first bad step, the
formula, and the value in the path's dtype with the fewest digits that read back to it (so
float16 shows about 5 significant digits and float64 up to 17: the rounding is visible).
A per-class step shows ``[class] value`` for the shown classes, the target marked ``*``, and
one line ``+N others: low … high`` for the rest. Below the table, the first bad step's
sentence; at the end, per dtype, where the paths part ways.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from cecheck import families
from cecheck._version import __version__
from cecheck.frameworks import probs as fw_probs
from cecheck.output.numbers import format_value
from cecheck.output.words import framework_lines, paths_line
from cecheck.report import _strict
from cecheck.settings import Settings
from cecheck.trace_data import PathTrace, Rest, Step, Trace

SCHEMA_VERSION = 1
BAD = "✗"
_PATH_TITLES = {
    "textbook": "textbook",
    "naive": "naive",
    "stable": "stable",
    "reference": "reference (float64, log1p)",
}
_PROB_TITLES = {"reference": "reference (float64, exact -log p of the stored p)"}


# ---------------------------------------------------------------------- rich


def render_trace(trace: Trace, width: int = 100) -> RenderableType:
    """The whole trace as one renderable, laid out for a console ``width`` columns wide."""
    parts: list[RenderableType] = [_header(trace, width)]
    for p in trace.paths:
        parts.append(Text())
        parts.extend(_path(trace, p, width))
    if trace.partings:
        parts.append(Text())
        parts.append(Text("Where the paths part ways", style="bold"))
        parts.extend(Padding(Text(line), (0, 0, 0, 2)) for line in trace.partings)
    return Group(*parts)


def print_trace(trace: Trace, console: Console) -> None:
    """Print :func:`render_trace` on ``console``, at its width."""
    console.print(render_trace(trace, console.width))


def _header(trace: Trace, width: int) -> RenderableType:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_row("cecheck", "trace: one row's loss, step by step, along each path and dtype")
    if trace.row is not None:
        where = str(trace.row)
        if trace.index is not None and len(trace.index) > 1:
            where += f" (index {','.join(str(i) for i in trace.index)})"
        if trace.origin:
            where += f": {trace.origin}"
        grid.add_row("row", where)
    grid.add_row("task", _task_text(trace))
    if trace.inputs == "probs":  # the conventions, as compare's legend names them
        grid.add_row("inputs", "probabilities (--inputs probs): -log p, no stable path")
        for path, convention in fw_probs.CONVENTIONS.items():
            grid.add_row(path, Text(convention))  # its [lo, hi] is not markup
    else:
        grid.add_row("paths", paths_line(trace.framework, families.of(trace).softmax))
    weighting = Settings(label_smoothing=trace.label_smoothing, class_weights=trace.class_weights)
    for key, text in framework_lines(weighting):  # the header compare prints for them
        grid.add_row(key, text)
    value_width = max(20, width - 12)
    probs = trace.inputs == "probs"
    if families.of(trace).one_logit:
        given = format_value(trace.logits[0][1], trace.logits_dtype)
        grid.add_row("probability" if probs else "logit", given)
    else:
        logits = _vector_text(trace, trace.logits, trace.rest, trace.logits_dtype, value_width)
        grid.add_row("probabilities" if probs else "logits", logits)
    if trace.targets:
        grid.add_row("targets", _vector_text(trace, trace.targets, None, "float64", value_width))
    grid.add_row("reference", f"loss {format_value(trace.reference, 'float64')}")
    return grid


def _task_text(trace: Trace) -> str:
    family = families.of(trace)
    if family.class_labels:
        return f"{trace.task}, {trace.n_classes} classes, label: class {trace.label} (marked *)"
    if family.one_logit:
        t = format_value(float(trace.label or 0), "float64")
        return f"binary, one sigmoid logit, target t = {t}"
    return f"{trace.task}, {trace.n_classes} classes, {trace.label_form} targets t per class"


def _path(trace: Trace, p: PathTrace, width: int) -> list[RenderableType]:
    probs = trace.inputs == "probs"
    title = Text(_PROB_TITLES.get(p.path, p.path) if probs else _PATH_TITLES[p.path], style="bold")
    if p.path != "reference":
        title.append(f" · {p.dtype}", style="bold")
    title.append(f" → loss {format_value(p.loss, p.dtype)}")
    formula_width = max(len(s.formula) for s in p.steps)
    number_width = len(str(len(p.steps)))
    value_width = max(20, width - formula_width - number_width - 1 - 6)
    table = Table(box=None, padding=(0, 1), pad_edge=False, show_header=False)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column()
    for i, step in enumerate(p.steps, start=1):
        table.add_row(
            str(i),
            BAD if step.first_bad else "",
            step.formula,
            _value_text(trace, step, p.dtype, value_width),
            style="bold" if step.first_bad else None,
        )
    out: list[RenderableType] = [title, table]
    at = p.first_bad
    if at is not None:
        note = Table.grid(padding=(0, 1))
        note.add_column(no_wrap=True)
        note.add_column()
        note.add_row(f"{BAD} step {at + 1}:", p.steps[at].note, style="bold")
        out.append(note)
    return out


def _value_text(trace: Trace, step: Step, dtype: str, width: int) -> str:
    if step.value is not None:
        return format_value(step.value, dtype)
    return _vector_text(trace, step.values, step.rest, dtype, width)


def _vector_text(
    trace: Trace,
    values: tuple[tuple[int, float], ...],
    rest: Rest | None,
    dtype: str,
    width: int,
) -> str:
    """``[c] v`` entries wrapped at ``width`` (never inside an entry), then the others."""
    target = trace.label if families.of(trace).class_labels else None
    entries = [f"[{c}{'*' if c == target else ''}] {format_value(v, dtype)}" for c, v in values]
    lines: list[str] = []
    for entry in entries:
        if lines and len(lines[-1]) + 2 + len(entry) <= width:
            lines[-1] += "  " + entry
        else:
            lines.append(entry)
    if rest is not None:
        lines.append(_rest_text(rest, dtype))
    return "\n".join(lines)


def _rest_text(rest: Rest, dtype: str) -> str:
    text = f"+{rest.count} others"
    if rest.nan < rest.count:
        low, high = format_value(rest.low, dtype), format_value(rest.high, dtype)
        text += f": {low}" if low == high else f": {low} … {high}"
    if rest.nan:
        text += f", {rest.nan} nan" if rest.nan < rest.count else ": all nan"
    return text


# ---------------------------------------------------------------------- JSON


def trace_to_dict(trace: Trace) -> dict[str, Any]:
    """The trace as strict-JSON-ready data: non-finite numbers as "nan", "inf", "-inf".

    Every value appears twice: ``value`` (the number, exactly) and ``text`` (the fewest
    digits that read back to it in the path's dtype).
    """
    data = {
        "schema_version": SCHEMA_VERSION,
        "cecheck_version": __version__,
        "row": trace.row,
        "index": list(trace.index) if trace.index is not None else None,
        "origin": trace.origin,
        "task": trace.task,
        "label_form": trace.label_form,
        **({"inputs": "probs"} if trace.inputs == "probs" else {}),  # logits: the p given
        "classes": trace.n_classes,
        "label": trace.label,
        "shown_classes": list(trace.classes),
        "logits_dtype": trace.logits_dtype,
        "logits": _entries(trace.logits, trace.logits_dtype),
        "targets": _entries(trace.targets, "float64"),
        "other_logits": _rest_dict(trace.rest),
        "reference": trace.reference,
        "dtypes": list(trace.dtypes),
        "framework": trace.framework,
        "label_smoothing": trace.label_smoothing,
        "class_weights": list(trace.class_weights) if trace.class_weights is not None else None,
        "paths": [_path_dict(p) for p in trace.paths],
        "partings": list(trace.partings),
    }
    strict: dict[str, Any] = _strict(data)
    return strict


def write_trace_json(trace: Trace, out: TextIO) -> None:
    """Strict JSON (no NaN or Infinity tokens) of :func:`trace_to_dict`."""
    json.dump(trace_to_dict(trace), out, indent=2, allow_nan=False, ensure_ascii=False)
    out.write("\n")


def _path_dict(p: PathTrace) -> dict[str, Any]:
    first = p.first_bad
    return {
        "path": p.path,
        "dtype": p.dtype,
        "loss": p.loss,
        "loss_text": format_value(p.loss, p.dtype),
        "first_bad_step": None if first is None else first + 1,
        "steps": [_step_dict(i, s, p.dtype) for i, s in enumerate(p.steps, start=1)],
    }


def _step_dict(number: int, s: Step, dtype: str) -> dict[str, Any]:
    out: dict[str, Any] = {"step": number, "name": s.name, "formula": s.formula}
    if s.value is not None:
        out["value"] = s.value
        out["text"] = format_value(s.value, dtype)
    else:
        out["values"] = _entries(s.values, dtype)
        out["others"] = _rest_dict(s.rest)
    out["first_bad"] = s.first_bad
    out["note"] = s.note
    return out


def _entries(values: tuple[tuple[int, float], ...], dtype: str) -> list[dict[str, Any]]:
    return [{"class": c, "value": v, "text": format_value(v, dtype)} for c, v in values]


def _rest_dict(rest: Rest | None) -> dict[str, Any] | None:
    if rest is None:
        return None
    return {"count": rest.count, "min": rest.low, "max": rest.high, "nan": rest.nan}
