"""Partial results merge exactly (cecheck.partial, cecheck.exactsum): for any split of an
input into shards, the merged report is the report on the concatenated rows (JSON equal,
apart from the shard fields), and the merge is associative."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cecheck import engine, exactsum, pipeline
from cecheck.exactsum import ExactSum
from cecheck.frameworks import BatchMeans
from cecheck.inputs import Source, from_arrays
from cecheck.inputs.shards import Shard, shard_view
from cecheck.partial import Partial
from cecheck.settings import Settings

DTYPES = ("float16", "bfloat16", "float32", "float64")


def _input(kind: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits that break some paths (large, with ties), and labels, of the task ``kind``."""
    rng = np.random.default_rng(seed)
    if kind == "multiclass":
        z = np.round(rng.standard_normal((n, 7)) * rng.choice([1, 40, 400], (n, 1)))
        z[rng.random(n) < 0.1, 0] = np.nan  # input problems, flagged per row
        y = rng.integers(0, 7, n)
        y[rng.random(n) < 0.1] = -100  # ignored rows
        return z.astype(np.float32), y
    if kind == "binary":
        return np.round(rng.standard_normal(n) * 60).astype(np.float32), rng.integers(0, 2, n)
    z = np.round(rng.standard_normal((n, 3)) * 80).astype(np.float32)  # multilabel
    return z, rng.integers(0, 2, (n, 3)).astype(np.float64)


def _partials(z: np.ndarray, y: np.ndarray, cuts: list[int], s: Settings) -> list[Partial]:
    """Each piece between ``cuts`` computed on its own, numbered as part of the whole."""
    whole = from_arrays(z, y)
    out = []
    for a, b in itertools.pairwise(cuts):
        piece = from_arrays(z[a:b], y[a:b], task=whole.task)
        view = shard_view(piece, Shard(f"s{a}", None, a, b - a), whole.lead_shape)
        plan, view = pipeline.plan(view, s)
        p = engine.accumulate(view, s, plan)
        p.shards = 1
        out.append(p)
    return out


def _json(p: Partial, source: Source) -> dict[str, object]:
    data = p.report(source, lambda: iter(())).to_dict()
    data.pop("shards", None)
    for row in data["flagged"]:  # type: ignore[union-attr]
        row.pop("shard", None)
        row.pop("shard_row", None)
    return data


def _cuts(n: int, data: st.DataObject) -> list[int]:
    inner = data.draw(st.lists(st.integers(1, n - 1), max_size=6, unique=True))
    return [0, *sorted(inner), n]


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["multiclass", "binary", "multilabel"]),
    n=st.integers(2, 300),
    seed=st.integers(0, 2**16),
    top=st.integers(0, 6),
    data=st.data(),
)
def test_merged_shards_report_the_concatenated_input(
    kind: str, n: int, seed: int, top: int, data: st.DataObject
) -> None:
    z, y = _input(kind, n, seed)
    s = Settings(DTYPES, top=top)
    cuts = _cuts(n, data)
    parts = _partials(z, y, cuts, s)
    merged = parts[0]
    for p in parts[1:]:
        merged.merge(p)
    whole = from_arrays(z, y)
    expected = engine.run(whole, s).to_dict()
    assert _json(merged, whole) == expected
    assert merged.shards == len(cuts) - 1


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 200), seed=st.integers(0, 2**16), data=st.data())
def test_merge_is_associative(n: int, seed: int, data: st.DataObject) -> None:
    z, y = _input("multiclass", n, seed)
    s = Settings(DTYPES, top=3)
    a, b, c = _partials(
        z, y, [0, *sorted(data.draw(st.sets(st.integers(1, n - 1), min_size=2, max_size=2))), n], s
    )
    left = copy.deepcopy(a).merge(copy.deepcopy(b)).merge(copy.deepcopy(c))
    right = copy.deepcopy(a).merge(copy.deepcopy(b).merge(copy.deepcopy(c)))
    whole = from_arrays(z, y)
    assert _json(left, whole) == _json(right, whole)


@settings(max_examples=25, deadline=None)
@given(
    batches=st.lists(st.integers(1, 6), min_size=1, max_size=5),
    size=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_batch_means_merge_where_shards_end_on_a_batch(
    batches: list[int], size: int, seed: int
) -> None:
    """Shards of whole batches (the last may end short): the batch means of the whole."""
    cuts = [0]
    for k in batches:
        cuts.append(cuts[-1] + k * size)
    n = cuts[-1] - seed % size if cuts[-1] - seed % size > cuts[-2] else cuts[-1]
    cuts[-1] = n
    z, y = _input("multiclass", n, seed)
    s = Settings(DTYPES, top=2, batch_size=size)
    merged = _partials(z, y, cuts, s)
    total = merged[0]
    for p in merged[1:]:
        total.merge(p)
    whole = from_arrays(z, y)
    assert _json(total, whole) == engine.run(whole, s).to_dict()


def test_batch_means_refuse_a_batch_straddling_two_parts() -> None:
    first = BatchMeans(4, ["x"])
    first.add({"x": np.ones(6)}, np.ones(6), np.zeros(6, bool))  # batch 1 is open
    second = BatchMeans(4, ["x"], first_row=8)
    second.add({"x": np.ones(4)}, np.ones(4), np.zeros(4, bool))
    with pytest.raises(ValueError, match="straddles"):
        first.merge(second)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=0, max_size=60),
    st.integers(0, 60),
)
def test_exact_sum_is_the_exact_sum_in_any_split(values: list[float], cut: int) -> None:
    whole, a, b = ExactSum(), ExactSum(), ExactSum()
    whole.add(np.array(values))
    a.add(np.array(values[:cut]))
    b.add(np.array(values[cut:]))
    a.merge(b)
    exact = sum((Fraction(v) for v in values), Fraction(0))
    assert whole.total == a.total
    assert Fraction(whole.total, 2**1126) == exact
    if values:
        mean = exact / len(values)
        assert whole.mean(len(values)) == (float(mean) if abs(mean) < 2**1024 else math.inf)


def test_exact_sum_kept_values_are_summed_in_batches_exactly() -> None:
    rng = np.random.default_rng(5)
    parts = [rng.standard_normal(k) * 2.0 ** rng.integers(-1070, 1000) for k in range(1, 300)]
    parts.append(rng.standard_normal(exactsum._BATCH + 3))  # summed as it comes, not kept
    exact = sum((Fraction(v) for p in parts for v in p.tolist()), Fraction(0))
    total, halves = ExactSum(), (ExactSum(), ExactSum())
    for i, p in enumerate(parts):
        total.add(p)
        halves[i % 2].add(p)
        p[:] = np.nan  # the caller's array changes after the add: the sum does not
    halves[0].merge(halves[1])
    assert Fraction(total.total, 2**1126) == exact
    assert total == halves[0]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(width=64), min_size=1, max_size=40),
    st.integers(0, 40),
)
@example([8.988465674311579e307, 8.98846567431158e307], 0)  # rounds past the largest
def test_exact_sum_of_non_finite_values_is_ieees(values: list[float], cut: int) -> None:
    """NaN and ±inf sum as float64 sums them (in any order and split): NaN from a NaN or
    both infinities, else the infinity; the finite values exactly otherwise."""
    whole, a, b = ExactSum(), ExactSum(), ExactSum()
    whole.add(np.array(values))
    a.add(np.array(values[:cut]))
    b.add(np.array(values[cut:]))
    a.merge(b)
    assert whole == a
    odd = [v for v in values if not math.isfinite(v)]
    exact = sum((Fraction(v) for v in values if math.isfinite(v)), Fraction(0))
    if any(map(math.isnan, odd)) or {math.inf, -math.inf} <= set(odd):
        assert math.isnan(whole.value())
    elif odd:
        assert whole.value() == odd[0]
    else:
        try:  # rounded once; past float64's largest number (by rounding too), the infinity
            expected = float(exact)
        except OverflowError:
            expected = math.inf if exact > 0 else -math.inf
        assert whole.value() == expected


def test_z_loss_is_inf_where_a_squared_log_partition_overflows() -> None:
    """A row whose log-partition is 1e160: its square is past float64's range, so PaLM's
    z-loss is inf (it was a finite, even negative, number from the inf's bits)."""
    z = np.array([[1e160, 0.0, 3.0], [1.0, 2.0, 3.0]])
    r = engine.run(from_arrays(z, np.array([0, 1])), Settings(("float64",)))
    assert r.headroom is not None
    assert r.headroom.log_partition is not None
    assert r.headroom.log_partition.z_loss == math.inf
    assert r.headroom.log_partition.mean == 5e159


def test_shard_rows_are_global_with_their_shard_and_row_there() -> None:
    z, y = _input("multiclass", 40, 7)
    s = Settings(("float32", "float64"), top=40)
    parts = _partials(z, y, [0, 15, 40], s)
    rows = {r.row: (r.shard, r.shard_row) for p in parts for r in p.top}
    assert rows
    for row, (shard, at) in rows.items():
        assert (shard, at) == (("s0", row) if row < 15 else ("s15", row - 15))
    whole = dataclasses.replace(from_arrays(z, y))
    assert sorted(rows) == sorted(r.row for r in engine.run(whole, s).top)


def test_headroom_finds_a_cliff_whose_bracket_ends_cross_by_rounding() -> None:
    """A row whose bracket's ends round past each other (lo > hi by an ulp) is still solved:
    here the only finite naive float64 cliff, at 745.13 / 419 (the margin is linear in λ)."""
    z = np.array([[482.0, 63.0, -418.0, -328.0, -194.0, -51.0, -379.0]])
    r = engine.run(from_arrays(z, np.array([1])), Settings(("float64",)))
    assert r.headroom is not None
    naive = next(c for c in r.headroom.cliffs if (c.path, c.dtype) == ("naive", "float64"))
    assert naive.row == 0
    assert math.isclose(naive.factor, naive.threshold / 419, rel_tol=1e-12)


def test_headroom_ties_go_to_the_first_row() -> None:
    """Two rows with the same cliff: the first is named, however the rows are iterated."""
    z = np.array([[0.0, 1, 0, -1, 1, 0, -1], [1, 0, 0, 0, 1, -1, 0]])
    r = engine.run(from_arrays(z, np.array([2, 2])), Settings(("float32",)))
    assert r.headroom is not None
    textbook = next(c for c in r.headroom.cliffs if c.path == "textbook")
    assert textbook.row == 0
