"""Headroom (:mod:`cecheck.headroom`) in words: a line per path and dtype, the log-partition
line, the table section and the Markdown line. Plain strings but for :func:`headroom_table`
(rich, imported by the table reporter only)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cecheck.output.numbers import spell
from cecheck.output.words import plural

if TYPE_CHECKING:
    from rich.table import Table

    from cecheck.headroom import Cliff, Headroom, LogPartition
    from cecheck.inputs import Source
    from cecheck.report import Report

TITLE = "Headroom: how far the logits can be scaled before a row's loss breaks"


def factor_text(factor: float) -> str:
    """``×1.31``; ``never`` for no cliff at any scale."""
    return "never" if math.isinf(factor) else f"×{factor:.3g}"


def row_text(row: int | None, source: Source) -> str:
    """A flat row as people name it: ``12``, or its index ``(8, 106)`` over N-d logits."""
    if row is None:
        return "-"
    if len(source.lead_shape) > 1:
        import numpy as np

        index = np.unravel_index(row, source.lead_shape)
        return "(" + ", ".join(str(int(i)) for i in index) + ")"
    return str(row)


def cliff_row(c: Cliff, source: Source) -> str:
    """The cliff's row, and for a multilabel row its class: ``12 class 3``."""
    klass = getattr(c, "klass", None)  # a sigmoid cliff's (cecheck.sigmoid_headroom)
    return row_text(c.row, source) + ("" if klass is None else f" class {klass}")


def cliff_words(c: Cliff) -> str:
    """What happens at the cliff, with the dtype's threshold."""
    if c.cause == "sigmoid_zero":
        return f"exp(-z) = inf, sigmoid = 0: z <= {c.threshold:.4g}"
    if c.cause == "sigmoid_one":
        return f"sigmoid rounds to 1: z >= {c.threshold:.4g}"
    if c.cause == "sum_overflow" and getattr(c, "klass", 0) is None:
        return f"class sum = inf: Σ > {c.threshold:.4g}"
    if c.cause == "logit_overflow":
        return f"logit cast to inf: |z| >= {abs(c.threshold):.4g}"
    if c.cause == "sum_overflow":
        return f"Σ exp(z) = inf: log Σ > {c.threshold:.2f}"
    if c.cause == "exp_underflow":
        return f"exp(z_y) = 0: z_y < {c.threshold:.2f}"
    if c.cause == "prob_underflow":
        return f"p(target) = 0: < {_exp_neg(c.threshold)}"
    if c.cause == "loss_zero":
        return "loss rounds to 0 (finite)"
    return "no row breaks at any scale"


def _exp_neg(t: float) -> str:
    """``exp(-t)`` to 3 digits, also below float64's range (``2.47e-324``)."""
    e10 = -t / math.log(10)
    exponent = math.floor(e10)
    mantissa = 10 ** (e10 - exponent)
    if round(mantissa, 2) >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{mantissa:.3g}e{exponent:+03d}"


def lse_line(lp: LogPartition | None, source: Source) -> str:
    """The log-partition over the rows, and PaLM's z-loss ("" for the sigmoid tasks)."""
    if lp is None:
        return ""
    if not lp.rows:
        return "log Σ exp(z): no scored row with finite logits"
    return (
        f"log Σ exp(z) over {plural(lp.rows, 'row')}: mean {spell(lp.mean)}, max {spell(lp.max)} "
        f"(row {row_text(lp.max_row, source)}); z-loss 1e-4·mean(lse²) = {spell(lp.z_loss)}"
    )


def markdown_line(report: Report) -> str | None:
    """One line: each breaking path and dtype's factor and row, then the log-partition."""
    h: Headroom | None = report.headroom
    if h is None:
        return None
    src = report.source
    parts = [
        f"{c.path} {c.dtype} {factor_text(c.factor)}"
        + ("" if c.row is None else f" (row {cliff_row(c, src)})")
        for c in h.cliffs
        if c.breaks
    ]
    below = h.below(report.settings.min_headroom)
    verdict = f"; {len(below)} below ×{report.settings.min_headroom:g}" if below else ""
    lse = lse_line(h.log_partition, src)
    return f"Headroom to NaN/inf: {', '.join(parts)}{verdict}." + (f" {lse}." if lse else "")


def headroom_table(report: Report) -> Table | None:
    """The table section: a line per path and dtype, then the log-partition as a caption."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    h = report.headroom
    if h is None:
        return None
    src, minimum = report.source, report.settings.min_headroom
    table = Table(title=TITLE, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption=lse_line(h.log_partition, src) or None,
                  caption_justify="left")  # fmt: skip
    table.add_column("path")
    table.add_column("dtype")
    table.add_column("factor", justify="right", no_wrap=True)
    table.add_column("row", no_wrap=True)
    table.add_column("then", overflow="fold")
    table.add_column("rows\npast", justify="right")
    for c in h.cliffs:
        low = c.breaks and c.factor < minimum
        table.add_row(
            c.path,
            c.dtype,
            Text(
                factor_text(c.factor),
                style=("bold red" if c.factor < 1 else "yellow") if low else "",
            ),
            cliff_row(c, src),
            cliff_words(c),
            str(c.rows_past),
        )
    return table
