"""The CSV report written from a chunk's columns (cecheck/output/csvtext.py, cecheck/_csvtext.c)
has the bytes of the pandas writer it replaced (``write_csv_frame``): checked against an oracle
written here (Python's ``"%.17g" % value`` per float, ``str`` per integer, the ``csv`` module's
quoting) and against pandas' ``to_csv`` itself."""

from __future__ import annotations

import csv
import io
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cecheck import cli
from cecheck import report as report_module
from cecheck.output import csvtext

try:
    from cecheck import _csvtext
except ImportError:  # pragma: no cover - a build without a C compiler
    if os.environ.get("CECHECK_REQUIRE_KERNEL"):
        raise RuntimeError("the C formatter cecheck._csvtext was not built") from None
    _csvtext = None  # type: ignore[assignment]

needs_c = pytest.mark.skipif(_csvtext is None, reason="cecheck._csvtext was not built")
DATA = Path(__file__).resolve().parent.parent / "sample_data"
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values where a 17-digit formatter goes wrong if it goes wrong anywhere: signed zero and
# non-finite values, subnormals, the extremes, powers of ten and their neighbours (the
# exponent's guess), ties, values that round up to the next power of ten, float32 values.
SPECIAL = [
    0.0, -0.0, float("nan"), -float("nan"), float("inf"), -float("inf"), 5e-324, -5e-324,
    2.2250738585072014e-308, 2.225073858507201e-308, 1e-300, 1.7976931348623157e308, 1e-16,
    9.999999999999999e-17, 1e-5, 1e-4, 9.99999999999999e-5, 0.1, 0.5, 1.0, 1 / 3, 2 / 3,
    9.999999999999999, 99999999999999999.0, 1e16, 1e17, 1e17 - 16, 123456789012345678.0,
    2.0**53, 2.0**53 + 2, 2.0**-1074 * 3, 0.30000000000000004, 1e22, 1e23, 4.35, 1e-320,
    float(np.float32(0.1)), float(np.float32(3.4028235e38)), float(np.float32(1e-45)), 1e-7,
    *[float(np.nextafter(10.0**k, t)) for k in range(-323, 309) for t in (0, 10.0**k, np.inf)],
]  # fmt: skip


def spelled(value: float) -> str:
    """The oracle: how the old writer spelled a float (pandas, float_format="%.17g")."""
    return "%.17g" % value  # noqa: UP031 - the old writer's own format string


def oracle_csv(columns: dict[str, object]) -> str:
    """The CSV the old writer made of these columns, cell by cell, through the csv module."""
    cells: list[list[str]] = []
    for values in columns.values():
        if isinstance(values, tuple):  # an index, one array per axis: "b,t"
            cells.append([",".join(str(int(i)) for i in ix) for ix in zip(*values, strict=True)])
        elif isinstance(values, np.ndarray) and values.dtype.kind == "f":
            cells.append([spelled(float(v)) for v in values])
        elif isinstance(values, np.ndarray):
            cells.append([str(int(v)) for v in values])
        else:
            cells.append(["nan" if v is None else spelled(v) if isinstance(v, float) else str(v)
                          for v in values])  # fmt: skip
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(columns))
    writer.writerows(zip(*cells, strict=True))
    return out.getvalue()


def pandas_csv(columns: dict[str, object]) -> str:
    """The old writer itself: the frame cecheck.rows.chunk_frame made, written by pandas."""
    data = dict(columns)
    if isinstance(data.get("index"), tuple):
        data["index"] = [
            ",".join(str(int(i)) for i in ix) for ix in zip(*data["index"], strict=True)
        ]
    labels = data["label"]
    if isinstance(labels, list) and None in labels:
        data["label"] = pd.Series(labels, dtype="Int64")
    out = io.StringIO()
    report_module.write_csv_frame(pd.DataFrame(data), out, header=True)
    return out.getvalue()


def bits(draw: st.DrawFn) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", draw(st.integers(0, 2**64 - 1))))[0])


@st.composite
def floats(draw: st.DrawFn) -> float:
    """Any float64: every bit pattern, hypothesis' floats, the special ones, float32 values."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return bits(draw)
    if kind == 1:
        return draw(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True))
    if kind == 2:
        return draw(st.sampled_from(SPECIAL))
    return float(draw(st.floats(width=32, allow_nan=True)))


@needs_c
@PROPERTY
@given(st.lists(floats(), max_size=40))
def test_each_float_is_spelled_as_percent_17g(values: list[float]) -> None:
    x = np.array(values, dtype=np.float64)
    assert _csvtext.lines([x]) == "".join(spelled(v) + "\n" for v in values)


@needs_c
def test_the_c_formatter_agrees_on_a_million_values_of_every_magnitude() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([
        rng.integers(0, 2**64, 300_000, dtype=np.uint64).view(np.float64),  # every exponent
        np.exp(rng.uniform(-745, 709, 300_000)),
        rng.standard_normal(300_000) * 10,
        rng.standard_normal(100_000).astype(np.float32).astype(np.float64),
        np.array(SPECIAL),
    ])  # fmt: skip
    got = _csvtext.lines([x]).splitlines()
    assert got == [spelled(v) for v in x.tolist()]


LABELS = st.one_of(
    st.lists(st.one_of(st.none(), st.integers(-(2**40), 2**40)), min_size=1, max_size=20),
    st.lists(floats(), min_size=1, max_size=20),  # binary targets
    st.lists(st.text(alphabet=',"{} 0123456789abc\n;', max_size=12), min_size=1, max_size=20),
)


@st.composite
def chunks(draw: st.DrawFn) -> dict[str, object]:
    """A chunk's columns as cecheck.rows.chunk_columns makes them, every kind of column."""
    labels = draw(LABELS)
    n = len(labels)
    start = draw(st.integers(0, 2**40))
    rows = np.arange(start, start + n)
    columns: dict[str, object] = {"row": rows}
    axes = draw(st.integers(1, 3))
    if axes > 1:
        columns["index"] = tuple(np.unravel_index(rows % 1000, (10,) * (axes - 1) + (100,)))
    if draw(st.booleans()):
        columns["batch"] = rows // draw(st.integers(1, 7))
    columns["label"] = labels
    for name in draw(st.lists(st.sampled_from(["naive_float32", "stable_float64", "reference"]),
                              min_size=1, max_size=3, unique=True)):  # fmt: skip
        columns[name] = np.array(draw(st.lists(floats(), min_size=n, max_size=n)))
    flag = st.sampled_from(["", "naive_float32_inf", "inaccurate:naive_float32;ignored"])
    columns["flags"] = draw(st.lists(flag, min_size=n, max_size=n))
    columns["causes"] = draw(st.lists(st.sampled_from(["", "overflow", "cancellation"]),
                                      min_size=n, max_size=n))  # fmt: skip
    return columns


@PROPERTY
@given(chunks(), st.booleans())
def test_a_chunk_has_the_old_writers_bytes(columns: dict[str, object], with_c: bool) -> None:
    if with_c and _csvtext is None:
        pytest.skip("cecheck._csvtext was not built")
    expected = oracle_csv(columns)
    assert pandas_csv(columns) == expected  # the oracle is the old writer
    if with_c:
        got = csvtext.chunk_text(columns, header=True)  # type: ignore[arg-type]
    else:
        cells = [csvtext._cells(v) for v in columns.values()]  # type: ignore[arg-type]
        got = csvtext.chunk_text({k: [] for k in columns}, header=True) + csvtext.python_lines(
            cells
        )
    assert got == expected
    body = csvtext.chunk_text(columns, header=False)  # type: ignore[arg-type]
    assert body == expected.split("\n", 1)[1]


def test_an_empty_chunk_is_its_header_or_nothing() -> None:
    columns = {"row": np.arange(0), "label": [], "reference": np.zeros(0), "flags": []}
    assert csvtext.chunk_text(columns, header=True) == "row,label,reference,flags\n"  # type: ignore[arg-type]
    assert csvtext.chunk_text(columns, header=False) == ""  # type: ignore[arg-type]


def test_without_the_c_formatter_the_text_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """A build without a C compiler writes the same CSV in Python."""
    args = [str(DATA / "sequence.npz"), "--format", "csv", "--all", "--batch-size", "4"]
    with_c = CliRunner().invoke(cli.cecheck, ["compare", *args]).stdout
    monkeypatch.setitem(sys.modules, "cecheck._csvtext", None)  # import fails
    without = CliRunner().invoke(cli.cecheck, ["compare", *args]).stdout
    assert without == with_c
    assert without.splitlines()[1].startswith('0,"0,0",')


@pytest.mark.parametrize(
    ("files", "options", "kwargs"),
    [
        (["sequence.npz"], ["--batch-size", "4", "--dtypes", "float16,bfloat16,float32,float64"],
         {"batch_size": 4, "dtypes": "float16,bfloat16,float32,float64"}),
        (["binary_sweep.csv"], [], {}),  # binary targets: float labels
        (["benign_logits.npy", "benign_labels.npy"], [], {}),
        (["tf_example_logits.npy", "tf_example_labels.npy"], ["--label-smoothing", "0.1"],
         {"label_smoothing": 0.1}),
    ],
)  # fmt: skip
def test_the_csv_report_is_the_frames_written_by_pandas(
    files: list[str], options: list[str], kwargs: dict[str, object]
) -> None:
    """`--format csv` has the bytes of Report.iter_frames() written by the old writer."""
    import cecheck
    from cecheck import inputs

    paths = [str(DATA / f) for f in files]
    got = CliRunner().invoke(cli.cecheck, ["compare", *paths, *options, "--format", "csv"])
    report = cecheck.compare(inputs.open_inputs(*paths), **kwargs)  # type: ignore[arg-type]
    out = io.StringIO()
    report_module.write_csv(report.iter_frames(), out)
    assert got.stdout == out.getvalue()
