"""A Report in Jupyter: :meth:`Report._repr_html_ <cecheck.report.Report._repr_html_>` shows
the body of the ``--format html`` page (:mod:`cecheck.output.html`) with its style scoped to
it. The figures' data are gathered again from the report's source; without matplotlib the
body comes without figures, under a note saying how to get them."""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING

from cecheck.output.html import STYLE, body, missing_matplotlib

if TYPE_CHECKING:
    from cecheck.distributions import Distributions
    from cecheck.report import Report

SCOPE = "cecheck-report"


def notebook_html(report: Report) -> str:
    """:meth:`Report._repr_html_ <cecheck.report.Report._repr_html_>`: the page's body in a
    ``<div>`` with the page's style scoped to it; the figures' data gathered again from the
    report's source, or, without matplotlib, a note saying how to get the figures."""
    missing = missing_matplotlib()
    data = None if missing is not None else distributions_of(report)
    note = ""
    if missing is not None:
        note = f'<p class="warning">No figures: {html.escape(missing)}.</p>\n'
    return (
        f"<div class='{SCOPE}'>\n<style>{scoped_style()}</style>\n"
        f"{note}{body(report, data)}</div>\n"
    )


def scoped_style() -> str:
    """:data:`STYLE` with each rule applying inside the ``<div class="cecheck-report">`` only
    (a notebook's own elements keep their style); ``body``'s rule is the div's."""
    rules = []
    for selectors, declarations in re.findall(r"([^{}]+)\{([^}]*)\}", STYLE):
        scoped = ", ".join(
            f".{SCOPE}" if sel.strip() == "body" else f".{SCOPE} {sel.strip()}"
            for sel in selectors.split(",")
        )
        rules.append(f"{scoped} {{{declarations}}}")
    return "\n".join(rules)


def distributions_of(report: Report) -> Distributions:
    """The figures' data of ``report``, gathered by computing its rows again."""
    from cecheck import engine
    from cecheck.distributions import Distributions

    data = Distributions(report.source, report.settings)
    for chunk in engine.iter_chunks(report.source, report.settings):
        data.add(chunk)
    data.finish()
    return data
