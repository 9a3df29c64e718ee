"""A Report in Jupyter and at the Python prompt: ``_repr_html_`` is the HTML report's body
(figures when matplotlib is installed, a note saying how to get them when not), ``str`` the
text report as the CLI prints it to a file, ``repr`` one short line."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import cecheck
from cecheck.cli import cecheck as cli


def _report() -> cecheck.Report:
    logits = np.array([[0.0, 1.0, 2.0], [0.0, 30.0, -30.0], [1.0, 2.0, 3.0]], dtype=np.float32)
    return cecheck.compare(logits, np.array([0, 2, 1]), dtypes="float16,float32")


def test_str_is_the_text_report_the_cli_prints(tmp_path: Path) -> None:
    logits = np.array([[0.0, 1.0, 2.0], [0.0, 30.0, -30.0], [1.0, 2.0, 3.0]], dtype=np.float32)
    labels = np.array([0, 2, 1])
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", labels)
    report = cecheck.compare(logits, labels, dtypes="float16,float32")
    text = str(report)
    assert "\x1b[" not in text  # no ANSI codes
    lines = text.splitlines()
    assert lines[0].startswith("cecheck: ")  # the verdict first, as the table prints it
    assert max(len(line) for line in lines) <= 100
    out = tmp_path / "report.txt"
    CliRunner().invoke(
        cli,
        ["compare", str(tmp_path / "logits.npy"), str(tmp_path / "labels.npy"),
         "--dtypes", "float16,float32", "-o", str(out)],
    )  # fmt: skip
    printed = out.read_text()
    # the same tables as the CLI's, from the summary on (the header names the files)
    assert text[text.index("Loss per path") :] == printed[printed.index("Loss per path") :]


def test_repr_is_one_short_line() -> None:
    text = repr(_report())
    assert "\n" not in text
    assert len(text) <= 160
    assert text.startswith("<cecheck.Report ")
    assert "3 rows" in text


def test_repr_html_is_the_html_page_body() -> None:
    pytest.importorskip("matplotlib", reason="the figures need the cecheck[html] extra")
    from cecheck.output import html, notebook

    report = _report()
    shown = report._repr_html_()
    assert not re.search(r"<(html|body|script)", shown)
    assert 'id="verdict"' in shown
    assert "<svg" in shown  # the figures
    # the same sections as the page's body
    page = html.body(report, notebook.distributions_of(report))
    assert re.findall(r"<section id='(\w+)'", shown) == re.findall(r"<section id='(\w+)'", page)


def test_repr_html_without_matplotlib_says_how_to_get_the_figures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises
    shown = _report()._repr_html_()
    assert 'id="verdict"' in shown
    assert "<svg" not in shown
    assert "No figures: --format html draws its figures with matplotlib: pip install " in shown
