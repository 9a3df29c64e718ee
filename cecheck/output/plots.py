"""The HTML report's figures, drawn with matplotlib (the ``cecheck[html]`` extra) as inline SVG.

Each function takes what :class:`cecheck.distributions.Distributions` gathered and returns
one ``<svg>`` element as text: no file, no font or script fetched (the glyphs are paths),
no URL in it. The figure objects are made with :class:`matplotlib.figure.Figure`, without
pyplot, so no GUI backend is chosen or started.
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING

import numpy as np

from cecheck import headroom
from cecheck import precision as prec

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from cecheck.distributions import BatchTrace, Distributions, Histogram

WIDTH = 9.0  # inches: ~860 px at the 96 px a CSS inch
PATH_COLOURS = {"textbook": "#d62728", "naive": "#ff7f0e", "stable": "#1f77b4"}
DTYPE_STYLES = {"float16": "-", "bfloat16": "--", "float32": "-.", "float64": ":"}
NAN_COLOUR = "#b00020"


def _figure(height: float, columns: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, height), layout="constrained")
    axes = fig.subplots(1, columns, squeeze=False)[0]
    return fig, list(axes)


def svg(fig: Figure, name: str) -> str:
    """``fig`` as an ``<svg>`` element to put inline in HTML: glyphs as paths, every id
    prefixed by ``name`` (so two figures' ids do not clash), no XML prolog, metadata or
    namespace URL."""
    import matplotlib

    out = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": f"cecheck-{name}"}):
        none = dict.fromkeys(("Creator", "Date", "Format", "Type"))
        fig.savefig(out, format="svg", metadata=none)
    text = out.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    # HTML's parser puts an inline <svg> in the SVG namespace (and reads xlink:href) itself
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    # ids unique in the page: every figure has its own glyphs, clip paths and groups
    text = re.sub(r'(\sid="|href="#|url\(#)', rf"\g<1>{name}-", text)
    return text.replace("<svg ", f'<svg role="img" data-figure="{name}" ', 1)


def _nonzero_span(h: Histogram, extra: list[float]) -> tuple[float, float]:
    """The x range of the bins that hold rows, widened to show the ``extra`` positions."""
    filled = np.flatnonzero(h.counts)
    lo = [h.edges[filled[0]]] if filled.size else []
    hi = [h.edges[filled[-1] + 1]] if filled.size else []
    low, high = min(lo + extra), max(hi + extra)
    # room past the ends on the symmetric-log axis: a factor beyond 1, a step within it
    return (low * 1.5 if low < -1 else low - 0.5), (high * 1.5 if high > 1 else high + 0.5)


def headroom_figure(data: Distributions) -> str | None:
    """Two histograms: the rows' margins ``lse - z_y`` against each dtype's probability
    underflow, and their largest logits against each dtype's exp overflow."""
    if data.margin is None or data.max_logit is None:
        return None
    fig, (left, right) = _figure(3.2, 2)
    panels = (
        (left, data.margin, headroom.underflow_threshold, "p(target) = 0", "margin lse - z_y"),
        (right, data.max_logit, headroom.overflow_threshold, "exp overflows", "largest logit"),
    )
    for ax, hist, threshold, what, xlabel in panels:
        cliffs = {d: threshold(d) for d in data.settings.dtypes}
        ax.stairs(hist.counts, hist.edges, fill=True, color="#9ecae1", edgecolor="#3182bd")
        ax.set_xscale("symlog", linthresh=1.0)
        low, high = _nonzero_span(hist, [0.0, *cliffs.values()])
        ax.set_xlim(0.0 if hist.counts[: hist.counts.size // 2].sum() == 0 else low, high)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_ylim(0, 10 * max(1, int(hist.counts.max())))  # room above the bars for labels
        for i, (d, x) in enumerate(cliffs.items()):
            ax.axvline(x, color="#444", linestyle=DTYPE_STYLES.get(d, "-"), linewidth=1.2)
            ax.annotate(
                f"{d} {x:.4g}",
                (x, 1.0 - 0.09 * i),
                xycoords=("data", "axes fraction"),
                xytext=(-3, -3),
                textcoords="offset points",
                ha="right",
                va="top",
                fontsize=8,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel("rows")
        ax.set_title(f"{xlabel} against where {what}", fontsize=10, loc="left")
    return svg(fig, "headroom")


def error_figure(data: Distributions) -> str | None:
    """Per dtype: how many rows keep how many bits of the float64 loss, one line per path."""
    dtypes = [d for d in data.settings.dtypes if any(c.endswith("_" + d) for c in data.bits)]
    if not dtypes:
        return None
    fig, axes = _figure(3.0, len(dtypes))
    for ax, d in zip(axes, dtypes, strict=True):
        notes = []
        for column, hist in data.bits.items():
            path, _, dtype = column.rpartition("_")
            if dtype != d:
                continue
            colour = PATH_COLOURS.get(path)
            ax.stairs(hist.counts, hist.edges, label=path, color=colour, linewidth=1.5)
            if hist.nonfinite:
                notes.append(f"{path}: {hist.nonfinite} NaN/inf")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_ylim(bottom=0)
        ax.set_xlim(0, prec.get(d).bits + 1)
        ax.set_xlabel(f"bits correct of {prec.get(d).bits}")
        ax.set_title(d, fontsize=10, loc="left")
        if notes:
            ax.text(0.03, 0.97, "\n".join(notes), transform=ax.transAxes, va="top", fontsize=8,
                    color=NAN_COLOUR)  # fmt: skip
    axes[0].set_ylabel("rows")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper right", ncols=3,
               fontsize=8, frameon=False)  # fmt: skip
    return svg(fig, "errors")


def batch_figure(trace: BatchTrace) -> str | None:
    """Each column's batch means over the run (the band of a bin's smallest to largest
    finite mean), the batches whose mean is NaN or inf marked in red."""
    if trace.batches == 0:
        return None
    fig, (ax,) = _figure(3.2)
    x = np.arange(len(next(iter(trace.columns.values())).low)) * trace.stride
    bad = np.zeros(x.size, dtype=np.int64)
    for column, bins in trace.columns.items():
        path, _, dtype = column.rpartition("_")
        colour = PATH_COLOURS.get(path, "#333")
        style = DTYPE_STYLES.get(dtype, "-")
        low, high = np.array(bins.low), np.array(bins.high)
        if trace.stride > 1:
            ax.fill_between(x, low, high, color=colour, alpha=0.15, linewidth=0, step="post")
        ax.step(x, high, where="post", color=colour, linestyle=style, label=column)
        bad += np.array(bins.bad)
    marked = np.flatnonzero(bad)
    for i in marked:
        ax.axvspan(x[i], x[i] + trace.stride, color=NAN_COLOUR, alpha=0.25, linewidth=0)
    if marked.size:
        top = np.full(marked.size, 1.0)
        where = ax.get_xaxis_transform()
        ax.plot(x[marked] + trace.stride / 2, top, "v", color=NAN_COLOUR, transform=where,
                clip_on=False, label="NaN/inf mean")  # fmt: skip
    per = "" if trace.stride == 1 else f" (each step: {trace.stride} batches, band: min to max)"
    ax.set_xlabel(f"batch ({trace.size} each){per}")
    ax.set_ylabel("mean loss")
    ax.set_xlim(0, max(trace.batches, 1))
    fig.legend(loc="outside right upper", fontsize=7, frameon=False)
    return svg(fig, "batches")


def sequence_figure(data: Distributions) -> str | None:
    """Where in the sequence the flagged rows fall: their share of the rows at each position
    (of the last leading axis), as bars and as a strip shaded by that share."""
    if data.positions is None or data.position_rows is None:
        return None
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    edges = data.position_edges()
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(data.position_rows > 0, data.positions / data.position_rows, 0.0)
    fig = Figure(figsize=(WIDTH, 2.6), layout="constrained")
    bars, strip = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    bars.stairs(data.positions, edges, fill=True, color=NAN_COLOUR, alpha=0.8)
    bars.set_ylabel("flagged rows")
    bars.yaxis.set_major_locator(MaxNLocator(integer=True))
    bars.set_ylim(bottom=0)
    strip.pcolormesh(edges, [0, 1], share[np.newaxis, :], cmap="Reds", vmin=0, vmax=1)
    strip.set_yticks([])
    strip.set_xlim(edges[0], edges[-1])
    strip.set_xlabel("position in the sequence (last leading axis); strip: share of rows flagged")
    return svg(fig, "sequence")
