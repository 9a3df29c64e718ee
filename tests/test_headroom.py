"""Headroom (cecheck.headroom): the closed forms against mpmath and against the paths
themselves scaled just below and just above the reported factor; the log-partition and
z-loss against a direct computation; chunks merged as one; ``--fail-on headroom``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import mpmath
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cecheck import compare, engine, headroom, newton
from cecheck import precision as prec
from cecheck.cli import cecheck
from cecheck.headroom import (
    Running,
    overflow_threshold,
    roundoff_threshold,
    underflow_threshold,
)
from cecheck.settings import Settings

DTYPES = ("float16", "bfloat16", "float32", "float64")
ROOT = Path(__file__).resolve().parents[1]
TF = [
    str(ROOT / "sample_data/tf_example_logits.npy"),
    str(ROOT / "sample_data/tf_example_labels.npy"),
]
BENIGN = [str(ROOT / "sample_data/benign_logits.npy"), str(ROOT / "sample_data/benign_labels.npy")]


def cliffs(z: np.ndarray, y: np.ndarray, chunk: int | None = None) -> dict[tuple[str, str], object]:
    r = Running(DTYPES)
    step = chunk or len(y)
    for start in range(0, len(y), step):
        r.add(
            z[start : start + step],
            y[start : start + step],
            np.ones(len(y[start : start + step]), bool),
            start,
        )
    return {(c.path, c.dtype): c for c in r.result().cliffs}


def mp_margin(z: np.ndarray, y: int, lam: float) -> mpmath.mpf:
    """``lse(λz) - λ z_y`` in 60 digits (λ exact as a float64)."""
    with mpmath.workdps(60):
        zz = [mpmath.mpf(float(v)) * mpmath.mpf(lam) for v in z]
        return mpmath.log(mpmath.fsum(mpmath.exp(v) for v in zz)) - zz[y]


def mp_delta_log(z: np.ndarray, y: int, lam: float) -> mpmath.mpf:
    """``-log Σ_{j≠y} exp(λ(z_j - z_y))`` in 60 digits."""
    with mpmath.workdps(60):
        lam_mp, zy = mpmath.mpf(lam), mpmath.mpf(float(z[y]))
        terms = [
            mpmath.exp(lam_mp * (mpmath.mpf(float(v)) - zy)) for j, v in enumerate(z) if j != y
        ]
        return -mpmath.log(mpmath.fsum(terms))


# ---------------------------------------------------------------- thresholds


@pytest.mark.parametrize("dtype", DTYPES)
def test_thresholds_are_where_the_format_rounds(dtype: str) -> None:
    """exp(x) rounds to inf just above the overflow threshold and not just below; exp(-t)
    rounds to 0 just above the underflow margin; 1 + u rounds to 1, 1 + 2u does not."""
    p = prec.get(dtype)
    t = overflow_threshold(dtype)
    with mpmath.workdps(60):
        boundary = mpmath.log(mpmath.mpf(p.max) + mpmath.mpf(2) ** (p.finfo.maxexp - p.bits) / 2)
    assert abs(t - float(boundary)) < 1e-12 * t
    with np.errstate(over="ignore"):  # float64 rounded once to the format
        assert np.isfinite(np.exp(t * (1 - 1e-9)).astype(p.storage))
        assert np.isinf(np.exp(t * (1 + 1e-9)).astype(p.storage))
    assert {"float16": 11.09, "bfloat16": 88.72, "float32": 88.72, "float64": 709.78}[
        dtype
    ] == round(t, 2)
    u = underflow_threshold(dtype)
    with mpmath.workdps(60):  # exp(-u) is exactly half the smallest subnormal
        assert float(mpmath.exp(-mpmath.mpf(u)) / (mpmath.mpf(p.smallest) / 2)) == pytest.approx(
            1, rel=1e-12
        )
    below, above = mpmath.exp(-mpmath.mpf(u) * (1 - 1e-9)), mpmath.exp(-mpmath.mpf(u) * (1 + 1e-9))
    if dtype != "float64":  # a float64 rounded once to the format
        assert np.float64(below).astype(p.storage) > 0
        assert np.float64(above).astype(p.storage) == 0
    r = roundoff_threshold(dtype)
    assert math.exp(-r) == pytest.approx(2.0**-p.bits, rel=1e-14)
    assert np.float64(1 + 2.0**-p.bits).astype(p.storage) == 1  # a tie, to even
    assert np.float64(1 + 2.0 ** (1 - p.bits)).astype(p.storage) > 1


# ---------------------------------------------------------------- closed forms against mpmath


def random_logits(
    seed: int, n: int = 300, c: int = 40, scale: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, scale, (n, c))
    z[: n // 3] += rng.normal(0.0, 4.0, (n // 3, 1))  # rows shifted as a whole
    y = rng.integers(0, c, n)
    y[n // 2 :] = z[n // 2 :].argmax(axis=1)  # half the rows predicted right
    return z, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_naive_factor_is_the_first_crossing(seed: int) -> None:
    """At λ (1 - 1e-6) no row's margin exceeds the dtype's underflow margin; at λ (1 + 1e-6)
    the named row's does (mpmath)."""
    z, y = random_logits(seed)
    got = cliffs(z, y)
    for d in DTYPES:
        c = got["naive", d]
        t = underflow_threshold(d)
        assert c.cause == "prob_underflow"
        assert c.row is not None
        assert mp_margin(z[c.row], int(y[c.row]), c.factor * (1 + 1e-6)) > t
        assert mp_margin(z[c.row], int(y[c.row]), c.factor * (1 - 1e-6)) < t
        lam = c.factor * (1 - 1e-6)
        margins = [
            mp_margin(z[i], int(y[i]), lam)
            for i in np.argsort(z.max(1) - z[np.arange(len(y)), y])[-30:]
        ]
        assert max(margins) < t
        assert c.rows_past == sum(mp_margin(z[i], int(y[i]), 1.0) > t for i in range(len(y)))


@pytest.mark.parametrize("seed", [0, 1])
def test_stable_factor_is_where_the_lead_reaches_the_roundoff(seed: int) -> None:
    z, y = random_logits(seed)
    got = cliffs(z, y)
    for d in DTYPES:
        c = got["stable", d]
        t = roundoff_threshold(d)
        assert c.cause == "loss_zero"
        assert mp_delta_log(z[c.row], int(y[c.row]), c.factor * (1 + 1e-6)) > t
        assert mp_delta_log(z[c.row], int(y[c.row]), c.factor * (1 - 1e-6)) < t


def mp_lse(z: np.ndarray, lam: float) -> mpmath.mpf:
    with mpmath.workdps(60):
        return mpmath.log(
            mpmath.fsum(mpmath.exp(mpmath.mpf(float(v)) * mpmath.mpf(lam)) for v in z)
        )


def test_textbook_sum_overflow() -> None:
    """The textbook sum overflows when the log-partition passes log(max): between one exp's
    overflow (``T / max z``) and ``log C`` before it."""
    z, y = random_logits(3)
    z[17, :] = 25.0  # the largest log-partition: about 30
    z[17, 5] = 30.0
    got = cliffs(z, y)
    for d in DTYPES:
        c = got["textbook", d]
        t = overflow_threshold(d)
        if c.cause == "sum_overflow":
            assert c.row == 17
            assert (t - math.log(40)) / 30 <= c.factor <= t / 30
            assert mp_lse(z[17], c.factor * (1 + 1e-6)) > t > mp_lse(z[17], c.factor * (1 - 1e-6))
        else:  # a probability underflows first
            assert c.cause == "prob_underflow"
            assert c.factor == got["naive", d].factor
    assert got["textbook", "float16"].cause == "sum_overflow"
    assert got["textbook", "float16"].factor < 1  # lse 30 > 11.09: already past
    assert got["textbook", "float16"].rows_past >= 1


def test_sum_of_ones_past_float16() -> None:
    """70,000 classes: Σ exp(0) is past float16's range at λ = 0. A row not past at λ = 1
    is bracketed from there; a row past at λ = 1 has the factor 0."""
    z = np.full((2, 70_000), -20.0)
    z[:, 0] = 2.0
    got = cliffs(z, np.array([0, 0]))
    c = got["textbook", "float16"]
    assert c.row == 0
    assert c.factor > 1
    assert mp_lse(z[0], c.factor * (1 + 1e-6)) > overflow_threshold("float16")
    z[1] = 0.0
    got = cliffs(z, np.array([0, 0]))
    assert got["textbook", "float16"].row == 1
    assert got["textbook", "float16"].factor == 0.0


def test_one_class_and_no_cliff() -> None:
    """A row whose target is the maximum never underflows; nothing overflows at max z <= 0."""
    z = np.array([[-1.0, -3.0, -2.0], [-2.0, -1.0, -5.0]])
    y = np.array([0, 1])
    got = cliffs(z, y)
    assert got["naive", "float16"].factor == math.inf
    assert got["naive", "float16"].row is None
    assert got["textbook", "float32"].cause == "exp_underflow"  # exp(λ z_y) reaches 0
    assert got["textbook", "float32"].factor == pytest.approx(underflow_threshold("float32") / 1.0)
    one = cliffs(np.array([[5.0], [7.0]]), np.array([0, 0]))
    assert one["naive", "float16"].factor == math.inf


# ---------------------------------------------------------------- the paths themselves


def model_like(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An overconfident classifier: a large logit on the predicted class, some wrong."""
    rng = np.random.default_rng(seed)
    n, c = 400, 100
    z = rng.normal(0.0, 1.0, (n, c))
    pred = rng.integers(0, c, n)
    z[np.arange(n), pred] += rng.uniform(3, 9, n)
    y = np.where(rng.random(n) < 0.8, pred, rng.integers(0, c, n))
    return z, y


def breaks(z: np.ndarray, y: np.ndarray, path: str, dtype: str, framework: str) -> np.ndarray:
    """The rows whose ``path`` loss is NaN or inf in ``dtype``."""
    r = compare(z, y, dtypes=[dtype, "float64"], top=len(y), framework=framework)
    column = f"{path}_{dtype}"
    return np.array(
        sorted(rec.row for rec in r.top if not math.isfinite(rec.values[column])), dtype=int
    )


@pytest.mark.parametrize("data", [random_logits, model_like])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("path", ["textbook", "naive"])
def test_scaled_logits_break_at_the_reported_row(data, dtype: str, path: str) -> None:
    """The issue's brute-force check through the emulated paths: the logits scaled by the
    factor × 1.01 break the named row; × 0.99 break no row. (1%, not 1e-6: the paths round
    the scaled logits to the dtype first, which moves a float16 margin by ~1e-3.)"""
    z, y = data(5)
    hr = compare(z, y, dtypes=[dtype, "float64"]).headroom
    assert hr is not None
    c = next(c for c in hr.cliffs if (c.path, c.dtype) == (path, dtype))
    assert c.row is not None
    assert math.isfinite(c.factor)
    assert c.row in breaks(z * (c.factor * 1.01), y, path, dtype, "torch")
    assert breaks(z * (c.factor * 0.99), y, path, dtype, "torch").size == 0


# ---------------------------------------------------------------- log-partition, chunks


def test_log_partition_and_z_loss() -> None:
    z, y = random_logits(4, n=50, c=7)
    hr = compare(z, y).headroom
    assert hr is not None
    lse = [float(mp_margin(row, 0, 1.0) + mpmath.mpf(float(row[0]))) for row in z]
    lp = hr.log_partition
    assert lp.rows == 50
    assert lp.mean == pytest.approx(math.fsum(lse) / 50, rel=1e-14)
    assert lp.max == pytest.approx(max(lse), rel=1e-15)
    assert lp.max_row == int(np.argmax(lse))
    assert lp.z_loss == pytest.approx(1e-4 * math.fsum(v * v for v in lse) / 50, rel=1e-14)


def test_ignored_rows_are_left_out() -> None:
    z = np.array([[0.0, 30.0], [0.0, 1.0]])
    hr = compare(z, np.array([0, -100])).headroom
    assert hr is not None
    assert hr.log_partition.rows == 1
    naive = next(c for c in hr.cliffs if c.path == "naive")
    assert naive.row == 0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), step=st.integers(1, 60))
@example(seed=52, step=1)  # a bracket cut at the best so far once made a false tie
def test_chunks_merge_as_one(seed: int, step: int) -> None:
    """Chunk by chunk, or two halves merged, gives the one-chunk answer."""
    z, y = random_logits(seed, n=120, c=9)
    whole = Running(DTYPES)
    whole.add(z, y, np.ones(120, bool), 0)
    parts = cliffs(z, y, chunk=step)
    first, second = Running(DTYPES), Running(DTYPES)
    first.add(z[:step], y[:step], np.ones(step, bool), 0)
    second.add(z[step:], y[step:], np.ones(120 - step, bool), step)
    second.merge(first)
    expect = whole.result()
    for got in (list(parts.values()), list(second.result().cliffs)):
        assert {(c.path, c.dtype, c.factor, c.row, c.cause, c.rows_past) for c in got} == {
            (c.path, c.dtype, c.factor, c.row, c.cause, c.rows_past) for c in expect.cliffs
        }
    lp = second.result().log_partition
    assert lp.max_row == expect.log_partition.max_row
    assert lp.mean == pytest.approx(expect.log_partition.mean, rel=1e-13)


def test_few_rows_are_searched(monkeypatch: pytest.MonkeyPatch) -> None:
    """On language-model-like logits (one confident class a row, many classes) the search
    evaluates a few rows a few times, not every row that might be first 64 times."""
    rng = np.random.default_rng(7)
    n, c = 256, 2000
    z = rng.normal(0.0, 2.0, (n, c))
    pred = rng.integers(0, c, n)
    z[np.arange(n), pred] += rng.uniform(2, 12, n)
    y = np.where(rng.random(n) < 0.6, pred, rng.integers(0, c, n))
    evaluated = [0]

    def counting(fn):
        def wrapper(z, zy, lam, *slope):
            if np.ndim(lam):  # at λ = 1 (a scalar): the row statistics, not the search
                evaluated[0] += len(zy)
            return fn(z, zy, lam, *slope)

        return wrapper

    monkeypatch.setattr(headroom, "_margin", counting(headroom._margin))
    monkeypatch.setattr(headroom, "_lead_log", counting(headroom._lead_log))
    got = cliffs(z, y)
    assert all(got[p, d].row is not None for p in ("naive", "stable") for d in DTYPES)
    assert evaluated[0] <= 3 * len(DTYPES) * 8 * 5  # 3 cliffs a dtype, a block of 8 rows, 5 steps


def test_engine_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    z, y = model_like(1)
    one = compare(z, y, dtypes=DTYPES).headroom
    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 700)  # 7 rows a chunk
    many = engine.run(engine.from_arrays(z, y), Settings(DTYPES), plan=None).headroom
    assert one is not None
    assert many is not None
    assert one.cliffs == many.cliffs


def test_not_covered() -> None:
    """Soft labels and probabilities have no headroom (None, JSON null); binary logits have
    (cecheck.sigmoid_headroom)."""
    assert compare(np.array([1.0, -2.0]), np.array([1, 0])).headroom is not None
    assert compare(np.array([[0.2, 0.8]]), np.array([1]), inputs="probs").headroom is None


# ---------------------------------------------------------------- the command line


def run(*args: str):
    return CliRunner().invoke(cecheck, ["compare", *args], catch_exceptions=False)


@pytest.mark.parametrize(
    ("args", "extra", "code"),
    [
        (BENIGN, [], 0),
        (TF, [], 1),  # already past: factors below 1
        (TF, ["--min-headroom", "1e-9"], 0),
        (TF, ["--fail-on", "any"], 1),
    ],
)
def test_fail_on_headroom(args: list[str], extra: list[str], code: int) -> None:
    fail = [] if "--fail-on" in extra else ["--fail-on", "headroom"]
    result = run(*args, *fail, *extra, "--format", "json")
    assert result.exit_code == code, result.stderr
    data = json.loads(result.stdout)
    assert ("headroom" in data["failed"]) == (code == 1 and not extra)


def test_fail_on_any_leaves_headroom_out(tmp_path: Path) -> None:
    z, y = model_like(2)
    naive = next(c for c in compare(z, y).headroom.cliffs if c.path == "naive")
    z = z * (naive.factor / 1.5)  # the naive float32 loss breaks at ×1.5
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    files = [str(tmp_path / "z.npy"), str(tmp_path / "y.npy")]
    hr = compare(z, y).headroom
    assert hr is not None
    assert hr.below(2.0)
    assert not hr.below(1.0)
    any_json = json.loads(run(*files, "--fail-on", "any", "--format", "json").stdout)
    assert "headroom" not in any_json["failed"]
    assert run(*files, "--fail-on", "headroom").exit_code == 1
    assert run(*files, "--fail-on", "headroom", "--min-headroom", "1").exit_code == 0


@pytest.mark.parametrize("bad", ["0", "-1", "nan"])
def test_min_headroom_must_be_positive(bad: str) -> None:
    result = run(*TF, "--fail-on", "headroom", "--min-headroom", bad)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"Error: min headroom must be a factor > 0, got {float(bad)}"
    ]


@pytest.mark.parametrize("bad", [0.0, -2.0, math.nan])
def test_settings_check_min_headroom(bad: float) -> None:
    with pytest.raises(ValueError, match="min headroom must be a factor > 0"):
        Settings(min_headroom=bad)
    assert Settings(min_headroom=1e-3).min_headroom == 1e-3


def test_reference_gives_the_same_headroom() -> None:
    """The engine's reference ``lse - z_y`` stands for headroom's own log-sum-exp: the same
    cliffs and log-partition, a non-finite reference computed again, a masked row still out."""
    rng = np.random.default_rng(7)
    z = rng.normal(0, 3, (64, 50)).astype(np.float32)
    y = rng.integers(0, 50, 64)
    z[:8, :] = -4.0
    z[np.arange(8), y[:8]] = np.linspace(5, 30, 8)  # target the maximum, δ down to ~1e-13
    z[9, (y[9] + 1) % 50] = -np.inf  # a masked class: left out, as without the reference
    z[10, 0] = np.nan
    z64 = z.astype(np.float64)
    m = z64.max(axis=1, keepdims=True)
    ref = (m[:, 0] + np.log(np.exp(z64 - m).sum(axis=1))) - z64[np.arange(64), y]
    ref[3] = np.nan  # not known: computed from the logits
    scored = np.ones(64, dtype=bool)
    scored[11] = False
    runs = [headroom.Running(("float16", "float32")) for _ in range(2)]
    runs[0].add(z, y, scored, 0)
    runs[1].add(z, y, scored, 0, ref)
    own, given = (r.result() for r in runs)
    assert given.log_partition.rows == own.log_partition.rows == 61
    assert given.log_partition.mean == pytest.approx(own.log_partition.mean, rel=1e-14)
    for a, b in zip(own.cliffs, given.cliffs, strict=True):
        assert (a.row, a.cause, a.rows_past) == (b.row, b.cause, b.rows_past)
        assert b.factor == pytest.approx(a.factor, rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([(60, 300), (200, 40), (30, 2000)]))
def test_rows_told_apart_by_one_value_leave_every_cliff_as_newton_finds_it(
    seed: int, shape: tuple[int, int]
) -> None:
    """_solve drops a candidate row that is not past its threshold at the best scale found so
    far (one value instead of Newton's iteration): the cliffs are those of Newton's method
    on every candidate."""
    rng = np.random.default_rng(seed)
    n, c = shape
    z = rng.standard_normal((n, c)) * rng.uniform(0.5, 8)
    y = rng.integers(0, c, n)
    z[::4, 0] += rng.uniform(0, 30)
    y[::4] = 0
    dtypes = ("float16", "bfloat16", "float32", "float64")

    def cliffs() -> object:
        run = headroom.Running(dtypes)
        for lo in range(0, n, 25):
            run.add(z[lo : lo + 25], y[lo : lo + 25], np.ones(len(z[lo : lo + 25]), bool), lo)
        return run.result()

    pruned = cliffs()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(newton, "past", lambda rows, *_: rows)
        assert cliffs() == pruned
