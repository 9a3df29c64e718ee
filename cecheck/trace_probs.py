"""Why a trace's step is bad when the row holds probabilities (``--inputs probs``).

The checks of :mod:`cecheck.trace_explain` for the steps of :mod:`cecheck.frameworks.probs`:
a row that is not a probability (a value outside [0, 1] or not finite, a multiclass row that
does not sum to 1), a probability the loss reads that rounds to 0 in the dtype, ``log 0 =
-inf`` where the loss reads it (``-log p`` is then inf), and a guard that moved a value the
loss reads (PyTorch's clamp of a log at -100, the clips of Keras and scikit-learn), which
caps the loss at the guard's constant. An entry the loss reads is one whose target weight is
not 0: ``t`` for ``p``, ``1 - t`` for ``1 - p`` (binary and multilabel), the label's class
for index labels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from cecheck.arraytypes import Array
from cecheck.frameworks import probs as fw
from cecheck.output.numbers import format_value
from cecheck.trace_data import Bad, Row

FINE = Bad("")  # checked, nothing wrong: trace_explain.FINE is this object
Check = Callable[[Mapping[str, Array], Row], "Bad | None"]


def _task(v: Mapping[str, Array], row: Row) -> str:
    if row.z.ndim == 1:
        return "binary"
    return "multilabel" if "class_loss" in v else "multiclass"


def _reads(row: Row, other: bool = False) -> Array:
    """Where the loss reads ``p`` (``other``: ``1 - p``) with a nonzero target weight."""
    q = np.asarray(row.z, dtype=np.float64)
    if q.ndim == 2 and row.y.ndim == 1:  # index labels: the label's class
        read = np.zeros(q.shape, dtype=bool)
        read[0, int(row.y[0])] = True
        return read
    t = np.asarray(row.y, dtype=np.float64).reshape(q.shape)
    return np.asarray(t < 1 if other else t > 0)


def _first(mask: Array) -> int | None:
    """The first class where ``mask`` holds ((1, C)), None for a one-value row."""
    return int(np.argmax(mask[0])) if mask.ndim == 2 else None


def _at(v: Array, j: int | None) -> float:
    return float(np.asarray(v, dtype=np.float64).reshape(-1)[0 if j is None else j])


def _where(j: int | None) -> str:
    return "" if j is None else f" for class {j}"


def _bad(note: str, j: int | None) -> Bad:
    return Bad(note, () if j is None else (j,))


def _cast(v: Mapping[str, Array], row: Row) -> Bad | None:
    """An invalid probability row, or a probability the loss reads that rounds to 0."""
    task = _task(v, row)
    q = np.asarray(row.z, dtype=np.float64).reshape(1, -1) if row.z.ndim == 1 else row.z
    if fw.invalid_probabilities(task, q)[0]:
        if task == "multiclass" and np.isfinite(q).all() and ((q >= 0) & (q <= 1)).all():
            total = format_value(float(q.sum()), "float64")
            return Bad(
                f"the row sums to {total}, not 1: it is not a probability row, so the "
                "conventions disagree (Keras renormalises it, the others do not)"
            )
        bad = ~np.isfinite(q) | (q < 0) | (q > 1)
        k = int(np.argmax(bad[0]))
        value = format_value(float(q[0, k]), "float64")
        where = "" if row.z.ndim == 1 else f" for class {k}"
        return Bad(f"p = {value}{where} is not a probability (outside [0, 1])", (k,))
    zero = (v["p"] == 0) & (np.asarray(row.z) != 0) & _reads(row)
    if zero.any():
        j = _first(zero)
        value = format_value(_at(row.z, j), "float64")
        return _bad(f"p = {value}{_where(j)} is below the smallest {row.p.name}: it rounds to 0", j)
    return FINE


def _log(name: str, what: str, source: str | None, other: bool = False) -> Check:
    """``log`` of ``what`` (the step ``source``; None: ``1 - p`` computed inside log1p)."""

    def check(v: Mapping[str, Array], row: Row) -> Bad | None:
        hit = ~np.isfinite(v[name]) & _reads(row, other).reshape(v[name].shape)
        if not hit.any():
            return FINE
        j = _first(hit)
        if source is None:  # torch's log1p(-p)
            arg, shown = 1 - _at(v["p"], j), f"p = {format_value(_at(v['p'], j), row.p.name)}"
        else:
            arg = _at(v[source], j)
            shown = f"{what} = {format_value(arg, row.p.name)}"
        if arg == 0:
            return _bad(f"{shown}{_where(j)}: log 0 = -inf, so -log {what} is inf", j)
        return _bad(f"log {what} gives {format_value(_at(v[name], j), 'float64')}{_where(j)}", j)

    return check


def _clamp(name: str, log: str, other: bool = False) -> Check:
    """PyTorch's ``max(log, -100)``: bad where it moved a log the loss reads."""

    def check(v: Mapping[str, Array], row: Row) -> Bad | None:
        moved = (v[name] != v[log]) & _reads(row, other)
        if not moved.any():
            return FINE
        j = _first(moved)
        before = format_value(_at(v[log], j), "float64")
        return _bad(
            f"{before}{_where(j)} is clamped to -100: PyTorch caps the term at 100 where "
            "-log gives more",
            j,
        )

    return check


def _clip(name: str, what: str, other: bool = False, both: bool = False) -> Check:
    """A clip of ``what`` to [lo, hi]: bad where it moved a value the loss reads."""

    def check(v: Mapping[str, Array], row: Row) -> Bad | None:
        one_minus = name == "clipped_1mp"
        before = row.p.round(1 - v["p"]) if one_minus else v.get("renormalised", v["p"])
        reads = _reads(row) | _reads(row, True) if both else _reads(row, other)
        moved = (v[name] != before) & ~np.isnan(before) & reads.reshape(before.shape)
        if not moved.any():
            return FINE
        j = _first(moved)
        old = format_value(_at(before, j), row.p.name)
        new = format_value(_at(v[name], j), row.p.name)
        return _bad(
            f"the clip moves {what} = {old}{_where(j)} to {new}: the loss reads {new}, "
            f"so it is capped at -log {new}",
            j,
        )

    return check


_LOG_P = _log("log_p", "p", "p")
_LOG_1MP = _log("log_1mp", "1 - p", "1mp", other=True)


def _torch_log(v: Mapping[str, Array], row: Row) -> Bad | None:
    """Binary: ``log p = -inf`` is clamped next (the clamp's check says so); multiclass:
    ``nll_loss(log p)`` reads it as it is."""
    return FINE if "clamped_log_p" in v else _LOG_P(v, row)


CHECKS: dict[str, dict[str, Check]] = {
    "naive": {"p": _cast, "log_p": _LOG_P, "log_1mp": _LOG_1MP},
    "torch": {
        "p": _cast,
        "log_p": _torch_log,  # multiclass: nll_loss(log p); binary: the clamp decides
        "clamped_log_p": _clamp("clamped_log_p", "log_p"),
        "clamped_log_1mp": _clamp("clamped_log_1mp", "log_1mp", other=True),
    },
    "keras": {
        "p": _cast,
        "clipped": _clip("clipped", "p", both=True),
        "log_o": _log("log_o", "o", "clipped"),
        "log_1mo": _log("log_1mo", "1 - o", "1mo", other=True),
        "log_p": _log("log_p", "o", "clipped"),
    },
    "sklearn": {
        "p": _cast,
        "clipped": _clip("clipped", "p"),
        "clipped_1mp": _clip("clipped_1mp", "1 - p", other=True),
        "log_p": _log("log_p", "o", "clipped"),
        "log_1mp": _log("log_1mp", "1 - p", "clipped_1mp", other=True),
    },
}
