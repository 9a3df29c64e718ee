"""``--batch-size`` over N-d logits (issue 17): a batch counts sequences along the first axis,
as a training batch of ``(B, T, V)`` logits does (B sequences are B·T rows), and is named by
its sequences in every format; 2-d logits keep batches of rows."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from cecheck import engine, inputs
from cecheck import frameworks as fw
from cecheck.cli import cecheck
from cecheck.distributions import Distributions
from cecheck.settings import Settings
from tests import mp_reference

B, T, V = 4, 8, 11


def _lm(b: int = B, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal((b, T, V)) * 3).astype(np.float32)
    y = rng.integers(0, V, (b, T))
    return z, y


def _exact_means(z: np.ndarray, y: np.ndarray, rows: int) -> list[float]:
    """The mean of each ``rows`` consecutive rows' exact losses (mpmath, rounded to float64
    once per row, summed exactly)."""
    flat_z, flat_y = z.reshape(-1, z.shape[-1]), y.reshape(-1)
    losses = [mp_reference.multiclass(r, t) for r, t in zip(flat_z, flat_y, strict=True)]
    return [
        math.fsum(losses[a : a + rows]) / len(losses[a : a + rows])
        for a in range(0, len(losses), rows)
    ]


def _run(tmp_path: Path, z: np.ndarray, y: np.ndarray, *options: str) -> str:
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    result = CliRunner().invoke(
        cecheck, ["compare", str(tmp_path / "z.npy"), str(tmp_path / "y.npy"), *options]
    )
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_a_batch_of_lm_logits_is_that_many_sequences() -> None:
    z, y = _lm()
    want = _exact_means(z, y, 2 * T)  # 2 batches of 16 rows
    assert len(want) == 2
    report = engine.compare(z, y, dtypes="float32,float64", batch_size=2)
    b = report.batches
    assert b is not None
    assert (b.batch_size, b.batches, b.rows, b.rows_per_batch, b.unit) == (
        2,
        2,
        32,
        16,
        "sequences",
    )
    worst = int(np.argmax(want))
    for column in ("reference", "stable_float64", "stable_float32"):
        c = b.columns[column]
        assert c.worst_batch == worst
        tolerance = 1e-6 if column.endswith("float32") else 1e-14
        assert c.worst_mean == pytest.approx(want[worst], rel=tolerance)
    data = b.to_dict()
    assert (data["batch_size"], data["unit"], data["rows_per_batch"]) == (2, "sequences", 16)
    assert (data["count"], data["last_batch_rows"]) == (2, 16)


def test_the_html_figure_has_one_mean_per_batch_of_sequences() -> None:
    z, y = _lm()
    want = _exact_means(z, y, 2 * T)
    s = Settings(("float32", "float64"), batch_size=2)
    source = inputs.from_arrays(z, y)
    data = Distributions(source, s)
    engine.run(source, s, on_chunk=data.add)
    data.finish()
    trace = data.batch_trace
    assert trace is not None
    assert (trace.batches, trace.stride, trace.size) == (2, 1, "2 sequences (16 rows)")
    for column, tolerance in (("reference", 1e-14), ("stable_float32", 1e-6)):
        bins = trace.columns[column]
        assert bins.low == bins.high
        assert bins.low == pytest.approx(want, rel=tolerance)


def test_a_nan_batch_is_named_by_its_sequences_in_every_format(tmp_path: Path) -> None:
    z, y = _lm()
    z[3, 5, 2] = np.nan  # row (3, 5): sequence 3, in batch 1
    report = engine.compare(z, y, batch_size=2)
    assert report.batches is not None
    (issue,) = report.batches.issues
    assert (issue.batch, issue.first_row, issue.rows) == (1, 16, 16)
    assert issue.span == "batch 1 (sequences 2-3)"
    reason = "row (3, 5) in batch 1 (sequences 2-3) has a NaN loss: the mean is NaN"
    assert issue.reason == reason

    data = json.loads(_run(tmp_path, z, y, "--batch-size", "2", "--format", "json"))
    batches = data["batches"]
    assert (batches["batch_size"], batches["unit"], batches["rows_per_batch"]) == (
        2,
        "sequences",
        16,
    )
    first = batches["nonfinite"][0]
    assert (first["batch"], first["first_row"], first["rows"]) == (1, 16, 16)
    assert (first["first_sequence"], first["sequences"]) == (2, 2)
    assert first["reasons"]["reference"] == reason

    table = _run(tmp_path, z, y, "--batch-size", "2")
    assert "batches  PyTorch's reduction='mean' over batches of 2 sequences (16 rows)" in table
    assert "over 2 batches of 2 sequences (16 rows)" in " ".join(table.split())
    assert "batch 1 (sequences 2-3): NaN in every column — " + reason in " ".join(table.split())
    markdown = _run(tmp_path, z, y, "--batch-size", "2", "--format", "markdown")
    assert (
        "PyTorch's reduction='mean' is NaN or inf in 1 of 2 batches of 2 sequences (16 rows) "
        f"(the first is batch 1: {reason})"
    ) in markdown
    pytest.importorskip("matplotlib", reason="--format html needs the html extra")
    html = _run(tmp_path, z, y, "--batch-size", "2", "--format", "html")
    assert "<b>batch 1 (sequences 2-3):</b> " in html
    assert "over 2 batches of 2 sequences (16 rows)</h2>" in html


def test_the_last_batch_may_hold_fewer_sequences(tmp_path: Path) -> None:
    z, y = _lm(5)
    data = json.loads(_run(tmp_path, z, y, "--batch-size", "2", "--format", "json"))
    assert (data["batches"]["count"], data["batches"]["last_batch_rows"]) == (3, 8)
    table = " ".join(_run(tmp_path, z, y, "--batch-size", "2").split())
    assert "over 3 batches of 2 sequences (16 rows), the last of 1 sequence (8 rows)" in table
    text = _run(tmp_path, z, y, "--batch-size", "2", "--format", "csv", "--all")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["batch"]) for r in rows] == [int(r["row"]) // (2 * T) for r in rows]
    assert sorted(int(r["row"]) for r in rows) == list(range(5 * T))


def test_2d_logits_keep_batches_of_rows(tmp_path: Path) -> None:
    z, y = _lm()
    flat_z, flat_y = z.reshape(-1, V), y.reshape(-1)
    report = engine.compare(flat_z, flat_y, batch_size=2)
    b = report.batches
    assert b is not None
    assert (b.batches, b.rows_per_batch, b.unit) == (16, 2, "rows")
    worst = b.columns["reference"]
    want = _exact_means(z, y, 2)
    assert worst.worst_mean == pytest.approx(max(want), rel=1e-14)
    flat_z[5, 0] = np.nan
    data = json.loads(_run(tmp_path, flat_z, flat_y, "--batch-size", "2", "--format", "json"))
    first = data["batches"]["nonfinite"][0]
    assert "first_sequence" not in first
    assert (
        first["reasons"]["reference"]
        == "row 5 in batch 2 (rows 4-5) has a NaN loss: the mean is NaN"
    )


def _shards(tmp_path: Path, sizes: list[int]) -> tuple[list[str], list[str]]:
    """(B_i, T, V) shards of sequences; the pattern of their files, and the whole as one."""
    z, y = _lm(sum(sizes))
    start = 0
    for i, n in enumerate(sizes):
        np.save(tmp_path / f"logits-{i}.npy", z[start : start + n])
        np.save(tmp_path / f"labels-{i}.npy", y[start : start + n])
        start += n
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    pattern = [str(tmp_path / "logits-*.npy"), str(tmp_path / "labels-*.npy")]
    return pattern, [str(tmp_path / "z.npy"), str(tmp_path / "y.npy")]


def test_shards_of_sequences_merge_their_batches(tmp_path: Path) -> None:
    pattern, whole = _shards(tmp_path, [2, 3])
    args = ["--batch-size", "2", "--format", "json"]
    runner = CliRunner()
    apart = runner.invoke(cecheck, ["compare", *pattern, *args, "--workers", "2"])
    assert apart.exit_code == 0, apart.stderr
    one = runner.invoke(cecheck, ["compare", *whole, *args])
    merged, expected = json.loads(apart.stdout)["batches"], json.loads(one.stdout)["batches"]
    assert (merged["count"], merged["rows_per_batch"], merged["last_batch_rows"]) == (3, 16, 8)
    assert merged == expected


def test_a_batch_of_sequences_straddling_shards_is_refused(tmp_path: Path) -> None:
    pattern, _ = _shards(tmp_path, [3, 2])
    result = CliRunner().invoke(
        cecheck, ["compare", *pattern, "--batch-size", "2", "--workers", "2"]
    )
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: --batch-size 2: a batch would straddle {tmp_path / 'logits-0.npy'} (3 sequences, "
        "not a multiple of it) and the next shard; run the shards in order with --workers 1, "
        "which forms the batches across shards\n"
    )


@settings(max_examples=60, deadline=None)
@given(
    sequences=st.integers(1, 7),
    shape=st.sampled_from([(1,), (3,), (2, 3)]),
    batch=st.integers(1, 4),
    data=st.data(),
)
def test_a_batch_of_sequences_is_its_rows(
    sequences: int, shape: tuple[int, ...], batch: int, data: st.DataObject
) -> None:
    """Batches of B sequences shaped ``shape`` have the means of batches of B·prod(shape)
    rows, however the rows are chunked; only their names differ."""
    n = sequences * math.prod(shape)
    values = np.array(
        data.draw(
            st.lists(st.sampled_from([0.5, 2.0, 7.0, np.inf, np.nan]), min_size=n, max_size=n)
        )
    )
    ignored = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    weights = np.where(ignored, 0.0, 1.0)
    cuts = sorted(data.draw(st.sets(st.integers(1, n), max_size=4)))
    by_sequence = fw.BatchMeans(batch, ["x"], sequence=shape)
    by_row = fw.BatchMeans(batch * math.prod(shape), ["x"])
    got, want = [], []
    for a, b in itertools.pairwise([0, *cuts, n]):
        part = slice(a, b)
        got.append(by_sequence.add({"x": values[part]}, weights[part], ignored[part])["x"])
        want.append(by_row.add({"x": values[part]}, weights[part], ignored[part])["x"])
    got.append(by_sequence.flush()["x"])
    want.append(by_row.flush()["x"])
    np.testing.assert_array_equal(np.concatenate(got), np.concatenate(want))
    mine, theirs = by_sequence.result(), by_row.result()
    assert (mine.batches, mine.rows_per_batch, mine.unit) == (
        theirs.batches,
        theirs.rows_per_batch,
        "sequences",
    )
    assert [(i.batch, i.first_row, i.rows) for i in mine.issues] == [
        (i.batch, i.first_row, i.rows) for i in theirs.issues
    ]
    for issue in mine.issues:
        first = issue.first_row // math.prod(shape)
        count = issue.rows // math.prod(shape)
        assert issue.rows == count * math.prod(shape)
        names = f"sequence {first}" if count == 1 else f"sequences {first}-{first + count - 1}"
        assert issue.span == f"batch {issue.batch} ({names})"
