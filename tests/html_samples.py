"""The inputs the HTML report is tested on, and how to read its marked numbers back.

Each sample is ``cecheck compare`` arguments; :func:`render` writes its HTML page and its JSON
report (the same run's numbers) with the CLI. :class:`Marks` parses a page with the standard
library's HTML parser: the elements carrying ``data-json``, their values and visible texts.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner

from cecheck.cli import cecheck

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "sample_data"
FOUR = ["--dtypes", "float16,bfloat16,float32,float64"]
SAMPLES: dict[str, list[str]] = {
    "tf_example": [str(DATA / "tf_example_logits.npy"), str(DATA / "tf_example_labels.npy")],
    "benign": [str(DATA / "benign_logits.npy"), str(DATA / "benign_labels.npy")],
    "float32_diverges": [
        str(DATA / "float32_diverges_logits.npy"),
        str(DATA / "float32_diverges_labels.npy"),
        *FOUR,
    ],
    "binary_sweep": [str(DATA / "binary_sweep.csv"), "--dtypes", "float16,float32,float64"],
    "sequence": [str(DATA / "sequence.npz"), "--batch-size", "4"],
    "fp16_lm": [
        str(DATA / "fp16_lm_logits.npy"),
        str(DATA / "fp16_lm_labels.npy"),
        *FOUR,
        "--batch-size",
        "16",
    ],
}
# fp16_lm's 256 rows as 8 sequences of 32 positions: an LM-style (B, T, V) input
LM_SHAPE = (8, 32)


def lm_sample(directory: Path) -> list[str]:
    """Arguments of the (B, T, V) sample, its files written to ``directory``."""
    z = np.load(DATA / "fp16_lm_logits.npy")
    y = np.load(DATA / "fp16_lm_labels.npy")
    np.save(directory / "lm_logits.npy", z.reshape(*LM_SHAPE, z.shape[-1]))
    np.save(directory / "lm_labels.npy", y.reshape(LM_SHAPE))
    return [str(directory / "lm_logits.npy"), str(directory / "lm_labels.npy"), *FOUR,
            "--batch-size", "2"]  # fmt: skip


def render(args: list[str], directory: Path, name: str) -> tuple[Path, dict[str, Any]]:
    """The sample's page (written to ``directory/name.html``) and its JSON report."""
    page = directory / f"{name}.html"
    runner = CliRunner()
    result = runner.invoke(cecheck, ["compare", *args, "--format", "html", "-o", str(page), "-q"])
    assert result.exit_code in (0, 1), result.output
    result = runner.invoke(cecheck, ["compare", *args, "--format", "json", "-q"])
    assert result.exit_code in (0, 1), result.output
    return page, json.loads(result.stdout)


def pointer(data: Any, key: str) -> Any:
    """The value at ``key`` (``summary/0/nan``) in the JSON report."""
    for part in key.split("/"):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


class Marks(HTMLParser):
    """Every ``data-json`` element of a page: (key, data-value, visible text)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str]] = []
        self._open: list[list[str]] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "data-json" in a:
            self._open = [a["data-json"] or "", a["data-value"] or "", ""]

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open[2] += data

    def handle_endtag(self, tag: str) -> None:
        if self._open is not None:
            self.found.append((self._open[0], self._open[1], self._open[2]))
            self._open = None


def shown_matches(text: str, value: Any) -> bool:
    """Whether the number as shown (``1.93159``, ``×5.32``, ``NaN``, ``-``, ``23.7``) is the
    JSON's ``value`` to the digits shown: within half a unit of its last digit."""
    text = text.strip().lstrip("×")
    if value is None:
        return text == "-"
    if isinstance(value, str):  # the JSON's non-finite floats
        return text in {"nan": ("NaN",), "inf": ("inf", "never"), "-inf": ("-inf",)}[value]
    if text in ("NaN", "inf", "-inf", "never", "-"):
        return False
    shown = Decimal(text)
    exponent = shown.as_tuple().exponent
    assert isinstance(exponent, int)
    ulp = 10.0**exponent
    return math.isclose(float(shown), float(value), abs_tol=ulp / 2 * 1.000001)
