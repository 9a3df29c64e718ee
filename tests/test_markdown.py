"""``--format markdown``: the job-summary report, exactly, and its tables well formed.

The losses of the TensorFlow example are checked with mpmath (``mp_reference``): stable and
reference 500, naive NaN.
"""

from __future__ import annotations

import re
from pathlib import Path

import mp_reference as mp
import pytest
from click.testing import CliRunner, Result

from cecheck import __version__
from cecheck.cli import cecheck
from cecheck.output import markdown

ROOT = Path(__file__).resolve().parent.parent
TF = ["sample_data/tf_example_logits.npy", "sample_data/tf_example_labels.npy"]
DIVERGES = [
    "sample_data/float32_diverges_logits.npy",
    "sample_data/float32_diverges_labels.npy",
]

TF_MARKDOWN = f"""\
### cecheck compare (version {__version__})

logits `sample_data/tf_example_logits.npy` · labels `sample_data/tf_example_labels.npy` · \
shapes logits (1, 3) float32, labels (1,) · task multiclass, 3 classes, 1 row, labels class \
index · dtypes float32, float64; rtol, atol 64 eps, ignore_index -100 · paths textbook \
(unshifted exp(z) / Σ exp(z), then log); naive (softmax, then log) and stable (fused loss) as \
PyTorch 2.13 computes them on CPU

Loss per path and dtype over 1 scored of 1 rows:

| path | dtype | NaN | inf | mean loss | worst rel. error | bits correct |
| --- | --- | --: | --: | --: | --: | --: |
| textbook | float32 | 1 | 0 | NaN | - | - |
| textbook | float64 | 1 | 0 | NaN | - | - |
| naive | float32 | 0 | 1 | NaN | - | - |
| naive | float64 | 0 | 0 | 500 | 0 | 53.0/53 |
| stable | float32 | 0 | 0 | 500 | 0 | 24.0/24 |
| stable | float64 | 0 | 0 | 500 | 0 | 53.0/53 |
| reference | float64 | 0 | 0 | 500 | - | - |

Headroom to NaN/inf: textbook float32 ×0.0355 (row 0), textbook float64 ×0.284 (row 0), \
naive float32 ×0.208 (row 0), naive float64 ×1.49 (row 0); 4 below ×2. log Σ exp(z) over 1 \
row: mean 2500, max 2500 (row 0); z-loss 1e-4·mean(lse²) = 625.

| rows | flag or cause | what it means |
| --: | --- | --- |
| 1 | `naive_inf:float32` | naive path gives inf in float32 |
| 1 | `textbook_nan:float32` | textbook path gives NaN in float32 |
| 1 | `textbook_nan:float64` | textbook path gives NaN in float64 |
| 1 | `exp_overflow` | exp() of a large logit overflowed to inf |
| 1 | `prob_underflow` | a probability rounded to 0, so log(0) = -inf |

Worst flagged rows (1 of 1):

| row | label | textbook float32 | textbook float64 | naive float32 | naive float64 | stable \
float32 | stable float64 | reference | flagged |
| --- | --- | --: | --: | --: | --: | --: | --: | --: | --- |
| 0 | 1 | NaN | NaN | inf | 500 | 500 | 500 | 500 | naive inf in float32; textbook NaN in \
float32 and float64 |

**The naive path torch.log(torch.softmax(z, -1)) gives NaN or inf on 1 row in float32 \
(probability underflow); the textbook formula (unshifted exp(z) / Σ exp(z)) gives NaN or inf \
on 1 row in float32 and 1 in float64 (exp overflow); F.cross_entropy is finite everywhere \
(PyTorch 2.13): use it on the logits, never torch.log(torch.softmax(z, -1)).**

--fail-on naive met: exit code 1
"""


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the header names the files as given


def run(*args: str) -> Result:
    return CliRunner().invoke(cecheck, ["compare", *args], catch_exceptions=False)


def tables(text: str) -> list[list[str]]:
    """The Markdown tables of ``text``: each a list of its lines."""
    out: list[list[str]] = []
    previous = ""
    for line in text.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                out.append([])
            out[-1].append(line)
        previous = line
    return out


def test_tf_example_exactly() -> None:
    assert mp.multiclass([1000.0, 2000.0, 2500.0], 1) == 500.0  # mpmath
    # headroom by hand: lse(λz) ≈ 2500 λ passes 88.72 (float32) at 0.0355, 709.78 at 0.284;
    # the margin 500 λ passes 103.97 at 0.208, 745.13 at 1.49; z-loss 1e-4 · 2500² = 625
    result = run(*TF, "--format", "markdown", "--fail-on", "naive")
    assert result.exit_code == 1
    assert result.stdout == TF_MARKDOWN


def test_every_table_is_well_formed() -> None:
    """Every line of a table has as many cells as its header, and a rule under the header."""
    text = run(*DIVERGES, "--format", "markdown", "--dtypes", "float16,float32,float64").stdout
    found = tables(text)
    assert len(found) == 3  # summary, counts, rows
    for table in found:
        cells = [len(re.findall(r"(?<!\\)\|", line)) for line in table]
        assert len(set(cells)) == 1, table
        assert re.fullmatch(r"\|( (---|--:) \|)+", table[1])


def test_rows_are_bounded_whatever_top_says() -> None:
    text = run(*DIVERGES, "--format", "markdown", "--top", "16").stdout
    assert f"Worst flagged rows ({markdown.MAX_ROWS} of 16" in text
    assert len(tables(text)[-1]) == 2 + markdown.MAX_ROWS


def test_nothing_flagged_has_no_rows_table() -> None:
    benign = ["sample_data/benign_logits.npy", "sample_data/benign_labels.npy"]
    text = run(*benign, "--format", "markdown").stdout
    assert len(tables(text)) == 1
    assert text.endswith("**Nothing flagged: every path is finite and agrees with the reference "
                         "on all 64 scored rows in float32 and float64.**\n")  # fmt: skip


def test_a_pipe_stays_in_its_cell() -> None:
    assert markdown._escape("a|b\nc") == "a\\|b c"
    table = markdown._table(["x", "y"], [["1|2", "3"]], right=[1])
    assert table == "| x | y |\n| --- | --: |\n| 1\\|2 | 3 |"


def test_all_is_a_usage_error() -> None:
    result = run(*TF, "--format", "markdown", "--all")
    assert result.exit_code == 2
    assert "Markdown keeps the --top worst flagged rows" in result.stderr
