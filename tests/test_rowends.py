"""Each row's ends (cecheck.rowends): the multiclass index kernel reads them on its way, and the
headroom and the casts take them from it instead of reading the logits again, with the same
results as numpy's, bit for bit (tests/test_kernel_clones.py: on every copy of the kernel)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cecheck import casts, engine, fast, headroom, rowends
from cecheck import precision as prec
from cecheck.inputs import from_arrays

if not fast.installed():
    if os.environ.get("CECHECK_REQUIRE_KERNEL"):
        raise RuntimeError("the C kernel cecheck._kernel was not built (no C compiler?)")
    pytest.skip("the C kernel cecheck._kernel was not built", allow_module_level=True)

DTYPES = ("float16", "bfloat16", "float32", "float64")
CLASSES = (1, 2, 7, 16, 17, 300)


def adversarial(rng: np.random.Generator, n: int, c: int) -> Iterator[tuple[str, np.ndarray]]:
    """(name, float64 logits) of random and adversarial rows."""
    yield "normal", rng.standard_normal((n, c)) * 4
    lead = rng.standard_normal((n, c))
    lead[:, 0] += rng.uniform(5, 40, n)  # a class leads by far: the target on some rows
    yield "lead", lead
    yield "ties", rng.integers(-2, 3, (n, c)).astype(np.float64)  # ties at the max
    yield "wide", rng.uniform(-2000, 2000, (n, c))  # past the kernel's tame range
    near = rng.uniform(-1, 1, (n, c)) * 1.7e308  # float64 logits near its limit
    near[::3, 0] = 1.79e308
    yield "near", near
    odd = rng.standard_normal((n, c)) * 10
    picks = rng.integers(0, n * c, 2 * n)
    specials = np.array([np.nan, np.inf, -np.inf, 1e39, -1e39, 1e308, -0.0, 0.0, 88.8, -104])
    odd.flat[picks] = rng.choice(specials, picks.size)
    yield "odd", odd


def cases() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, logits, targets) in float32 and float64, targets on the max on some rows."""
    rng = np.random.default_rng(19)
    for c in CLASSES:
        for kind, z64 in adversarial(rng, 45, c):  # five batches of 8 short rows and a tail
            y = rng.integers(0, c, 45)
            y[::2] = np.argmax(np.nan_to_num(z64[::2], nan=-np.inf), axis=1)  # the first max
            y[1::4] = c - 1 - np.argmax(z64[1::4, ::-1], axis=1)  # the last max: ties
            for dtype in (np.float32, np.float64):
                with np.errstate(over="ignore"):  # past float32's range: inf
                    z = z64.astype(dtype)
                yield f"{kind}-{c}-{np.dtype(dtype).name}", z, y


CASES = list(cases())


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values, NaN where NaN (the sign of a zero aside: it moves no cliff or cast)."""
    return bool(np.array_equal(a, b, equal_nan=True))


@pytest.mark.parametrize(("name", "z", "y"), CASES, ids=[c[0] for c in CASES])
def test_the_kernels_ends_are_numpys(name: str, z: np.ndarray, y: np.ndarray) -> None:
    _, _, _, ends = fast.multiclass_index(z, y, ("float32",))
    assert ends is not None
    want = rowends.of(z, y)
    for field in ("max", "min", "rest"):
        assert _same(getattr(ends, field), getattr(want, field)), field


def test_the_rest_is_the_other_classes_max() -> None:
    z = np.array([[1.0, 3.0, 3.0], [1.0, 3.0, 2.0], [1.0, 3.0, 2.0], [5.0, -1.0, 0.0]])
    y = np.array([1, 1, 0, 0])
    for dtype in (np.float32, np.float64):
        _, _, _, ends = fast.multiclass_index(z.astype(dtype), y, ("float64",))
        assert ends is not None
        assert ends.rest.tolist() == [3.0, 2.0, 3.0, 0.0]
        assert ends.max.tolist() == [3.0, 3.0, 3.0, 5.0]
        assert ends.min.tolist() == [1.0, 1.0, 1.0, -1.0]
    _, _, _, one = fast.multiclass_index(np.array([[2.0], [-1.0]]), np.array([0, 0]), ("float64",))
    assert one is not None
    assert one.rest.tolist() == [-np.inf, -np.inf]


def _headroom(z: np.ndarray, y: np.ndarray, kernel_ends: bool) -> str:
    """The headroom of (z, y) in every dtype from the kernel's reference, with the kernel's
    ends or numpy's reading of the logits; as its repr, every float to the bit."""
    _, ref, nonfinite, ends = fast.multiclass_index(z, y, ("float32",))
    run = headroom.Running(DTYPES)
    scored = ~nonfinite
    run.add(z, y, scored, 0, ref, ends if kernel_ends else None)
    return repr(run.result())


@pytest.mark.parametrize(("name", "z", "y"), CASES, ids=[c[0] for c in CASES])
def test_the_kernels_ends_give_numpys_headroom(name: str, z: np.ndarray, y: np.ndarray) -> None:
    assert _headroom(z, y, True) == _headroom(z, y, False)


def test_the_cases_reach_the_cliffs() -> None:
    """The comparison above is not of empty tables: rows break, and each cause is seen."""
    causes = set()
    for _, z, y in CASES:
        run = headroom.Running(DTYPES)
        _, ref, nonfinite, ends = fast.multiclass_index(z, y, ("float32",))
        run.add(z, y, ~nonfinite, 0, ref, ends)
        causes |= {c.cause for c in run.result().cliffs}
    assert causes >= {"sum_overflow", "exp_underflow", "prob_underflow", "loss_zero"}


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([(50, 2), (40, 9), (33, 16), (20, 257)]),
    st.sampled_from([1.0, 30.0, 300.0, 1e300]),
    st.sampled_from([np.float32, np.float64]),
)
def test_the_kernels_ends_give_numpys_headroom_on_random_rows(
    seed: int, shape: tuple[int, int], scale: float, dtype: type
) -> None:
    rng = np.random.default_rng(seed)
    with np.errstate(over="ignore"):
        z = (rng.standard_normal(shape) * scale).astype(dtype)
    y = rng.integers(0, shape[1], shape[0])
    y[::3] = np.argmax(z[::3], axis=1)
    assert _headroom(z, y, True) == _headroom(z, y, False)


@pytest.mark.parametrize(("name", "z", "y"), CASES, ids=[c[0] for c in CASES])
def test_the_kernels_ends_give_numpys_cast_overflows(
    name: str, z: np.ndarray, y: np.ndarray
) -> None:
    _, _, _, ends = fast.multiclass_index(z, y, ("float32",))
    precisions = [prec.get(d) for d in DTYPES]
    theirs = casts.cast_overflow_rows(z, precisions)
    mine = casts.cast_overflow_rows(z, precisions, ends)
    assert mine.keys() == theirs.keys()
    for d in theirs:
        assert np.array_equal(mine[d], theirs[d]), d


def test_the_engine_takes_the_kernels_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the kernel, the headroom reads no row's max again; without the kernel's ends (as on
    numpy), the report's headroom is the same."""
    rng = np.random.default_rng(5)
    z = (rng.standard_normal((3000, 40)) * 6).astype(np.float32)
    y = rng.integers(0, 40, 3000)
    y[::2] = np.argmax(z[::2], axis=1)
    z[7, 3] = np.nan
    s = engine.Settings(DTYPES)

    def report() -> str:
        r = engine.run(from_arrays(z, y), s)
        assert r.headroom is not None
        return repr(r.headroom)

    read = headroom._ends
    monkeypatch.setattr(headroom, "_ends", None)  # called: a TypeError
    with_ends = report()
    monkeypatch.setattr(headroom, "_ends", read)
    compute = fast.compute

    def without_ends(*args: object, **kw: object) -> fast.KernelResult:
        results, ref, nonfinite, _ = compute(*args, **kw)  # type: ignore[arg-type]
        return results, ref, nonfinite, None

    monkeypatch.setattr(fast, "compute", without_ends)
    assert report() == with_ends
