"""``--format html`` without a browser: one well-formed page with no URL in it, its numbers
the JSON report's, user strings escaped, the figures' data gathered in bounded memory, and
one line on stderr (exit code 2) when matplotlib is missing.

The page in a real browser is tested in ``test_html_browser.py``.
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from html_samples import SAMPLES, Marks, lm_sample, pointer, render, shown_matches

from cecheck import engine, inputs
from cecheck.cli import cecheck
from cecheck.diagnose import NOT_FLAGGED, bits_correct
from cecheck.distributions import MAX_BATCH_BINS, Distributions
from cecheck.settings import Settings

pytest.importorskip("matplotlib", reason="--format html needs the cecheck[html] extra")

VOID = {"meta", "br", "hr", "img", "input", "link", "col", "wbr", "source", "area", "base"}


class Balance(HTMLParser):
    """Checks that every element is closed, in order (void and self-closed ones aside)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, dict[str, object]]]:
    """Every sample's page text and JSON report."""
    directory = tmp_path_factory.mktemp("html")
    samples = {**SAMPLES, "lm_btv": lm_sample(directory)}
    out = {}
    for name, args in samples.items():
        page, data = render(args, directory, name)
        out[name] = (page.read_text(encoding="utf-8"), data)
    return out


@pytest.mark.parametrize("name", [*SAMPLES, "lm_btv"])
def test_the_page_is_well_formed_and_self_contained(name: str, pages: dict) -> None:
    text, _ = pages[name]
    assert text.startswith("<!DOCTYPE html>\n")
    parser = Balance()
    parser.feed(text)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    # nothing fetched: no URL, no script, no external stylesheet or image
    assert re.search(r"https?:|//", text, flags=re.I) is None
    assert not parser.tags & {"script", "link", "img", "iframe", "object", "embed"}
    assert re.findall(r"url\((.)", text) == ["#"] * text.count("url(")  # url(#clip): local
    ids = re.findall(r' id="([^"]+)"', text)
    assert len(ids) == len(set(ids))  # two figures' clip paths and glyphs never clash
    assert 'role="img"' in text  # at least one figure, inline


@pytest.mark.parametrize("name", [*SAMPLES, "lm_btv"])
def test_every_number_marked_is_the_json_report_s(name: str, pages: dict) -> None:
    text, data = pages[name]
    marks = Marks(text).found
    keys = {key for key, _, _ in marks}
    assert {"rows/total", "rows/flagged", "summary/0/nan", "summary/0/mean"} <= keys
    for key, value, shown in marks:
        import json

        assert json.loads(value) == pointer(data, key), key
        assert shown_matches(shown, pointer(data, key)), (key, shown, pointer(data, key))


@pytest.mark.parametrize(
    ("name", "figures"),
    [
        ("tf_example", {"headroom", "errors"}),
        ("binary_sweep", {"errors"}),  # no headroom for a binary task (yet)
        ("fp16_lm", {"headroom", "errors", "batches"}),
        ("lm_btv", {"headroom", "errors", "batches", "sequence"}),
    ],
)
def test_the_figures_of_each_input(name: str, figures: set[str], pages: dict) -> None:
    text, _ = pages[name]
    assert set(re.findall(r'data-figure="(\w+)"', text)) == figures


def test_the_verdict_comes_first_and_names_the_broken_paths(pages: dict) -> None:
    text, data = pages["fp16_lm"]
    body = text[text.index("<body>") :]
    verdict = re.search(r'<p id="verdict"[^>]*>(.*?)</p>', body)
    assert verdict is not None
    assert body.index('id="verdict"') < body.index("<section")
    assert verdict.group(1) == (
        "cecheck: 11 of 256 rows flagged — NaN/inf in textbook float16 (3), naive float16 (1); "
        "stable finite"
    )
    assert data["rows"]["flagged"] == 11


def test_file_names_are_escaped(tmp_path: Path) -> None:
    name = "<u>x<i>&\"'<script>.npy"  # no "/" in a file name
    z = np.array([[1000.0, 2000.0, 2500.0]], dtype=np.float32)
    np.save(tmp_path / name, z)
    np.save(tmp_path / "y.npy", np.array([1]))
    page = tmp_path / "report.html"
    result = CliRunner().invoke(
        cecheck,
        ["compare", str(tmp_path / name), str(tmp_path / "y.npy"), "--format", "html",
         "-o", str(page)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = page.read_text(encoding="utf-8")
    assert "<u>" not in text
    assert "<i>" not in text
    assert "<script>" not in text
    assert "&lt;u&gt;x&lt;i&gt;&amp;&quot;&#x27;&lt;script&gt;.npy" in text
    parser = Balance()
    parser.feed(text)
    assert parser.errors == []
    assert "script" not in parser.tags


def test_without_matplotlib_html_exits_2_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises
    result = CliRunner().invoke(
        cecheck, ["compare", "missing.npy", "labels.npy", "--format", "html", "-o", "r.html"]
    )
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "Error: --format html draws its figures with matplotlib: pip install 'cecheck[html]'"
    ]
    assert result.stdout == ""


def test_without_o_the_page_goes_to_stdout() -> None:
    result = CliRunner().invoke(cecheck, ["compare", *SAMPLES["tf_example"], "--format", "html"])
    assert result.exit_code == 0
    assert result.stdout.startswith("<!DOCTYPE html>")
    assert result.stdout.endswith("</html>\n")
    assert "F.cross_entropy is finite" in result.stderr  # the closing sentence, for people


# ---------------------------------------------------------------- the figures' data


def gathered(logits: np.ndarray, labels: np.ndarray, s: Settings) -> Distributions:
    source = inputs.from_arrays(logits, labels)
    data = Distributions(source, s)
    engine.run(source, s, on_chunk=data.add)
    data.finish()
    return data


def test_the_histograms_count_every_row_once() -> None:
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((3000, 40)) * 6).astype(np.float32)
    z[7, 3] = 120.0  # exp overflows float32: textbook and naive break on this row
    y = rng.integers(0, 40, 3000)
    s = Settings(("float16", "float32", "float64"))
    data = gathered(z, y, s)
    report = engine.compare(z, y, dtypes=s.dtypes)
    frame = report.to_frame()
    for column, hist in data.bits.items():
        dtype = column.rpartition("_")[2]
        bits = {"float16": 11, "float32": 24, "float64": 53}[dtype]
        assert hist.total == 3000
        expected = bits_correct(frame[column], frame["reference"], bits)
        assert hist.nonfinite == int(np.isnan(expected).sum())
        finite = expected[np.isfinite(expected)]
        assert np.array_equal(hist.counts, np.histogram(finite, bins=hist.edges)[0])
    assert data.margin is not None
    assert data.max_logit is not None
    assert data.margin.total == data.max_logit.total == 3000
    assert data.max_logit.counts[np.searchsorted(data.max_logit.edges, 120.0) - 1] == 1


def test_memory_does_not_grow_with_the_rows() -> None:
    """Ten times the rows (and batches): the same histograms, and the batch bins pooled to at
    most MAX_BATCH_BINS, each NaN batch still counted."""
    sizes = {}
    for rows in (3000, 30000):
        rng = np.random.default_rng(1)
        z = rng.standard_normal((rows, 8)).astype(np.float32)
        z[rows - 5] = np.nan  # a NaN batch near the end
        y = rng.integers(0, 8, rows)
        s = Settings(("float32", "float64"), batch_size=1)  # a batch of 1 sequence of 3 rows
        data = gathered(z.reshape(rows // 3, 3, 8), y.reshape(rows // 3, 3), s)
        trace = data.batch_trace
        assert trace is not None
        assert trace.batches == rows // 3
        bins = trace.columns["naive_float32"]
        assert len(bins.low) <= MAX_BATCH_BINS
        assert sum(bins.bad) == 1
        assert data.positions is not None
        assert data.position_rows is not None
        assert data.position_rows.sum() == rows
        sizes[rows] = (
            {c: h.counts.size for c, h in data.bits.items()},
            data.positions.size,
            len(bins.low) <= MAX_BATCH_BINS,
        )
    assert sizes[3000] == sizes[30000]


def test_the_sequence_strip_counts_the_flagged_rows_per_position() -> None:
    z = np.zeros((5, 7, 4), dtype=np.float32)
    z[1, 2, 0] = z[3, 2, 0] = z[4, 6, 1] = 200.0  # exp overflows float32 at these positions
    y = np.full((5, 7), 3)
    data = gathered(z, y, Settings(("float32", "float64")))
    assert data.positions is not None
    assert data.positions.tolist() == [0, 0, 2, 0, 0, 0, 1]
    assert data.position_rows is not None
    assert data.position_rows.tolist() == [5] * 7
    report = engine.compare(z, y)
    assert report.flagged_rows == 3
    assert all(r.severity < NOT_FLAGGED for r in report.top)
