"""float16 and bfloat16 in the C kernel: the numpy specification's bits, not a bound.

The multiclass index kernel computes the textbook path (cecheck.losses.textbook_multiclass)
and PyTorch's naive and stable paths (cecheck.frameworks.torch_naive.naive_index,
torch_fused.stable_index) in float16 and bfloat16 as cecheck/precision.py emulates them. Its
losses and evidence must equal the specification's exactly (NaN where it gives NaN), on
random and adversarial rows: exp overflow at 11.09 in float16, probabilities rounding to
subnormals and to 0, logits near float16's largest value 65504 and beyond, ties of the
rounding, -inf masks, NaN and inf, ignored rows, one class and many. Every CPU copy of the
kernel gives the same bits: tests/kernel_clone_run.py runs these paths too.
"""

from __future__ import annotations

import os

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from cecheck import casts, engine, fast, losses
from cecheck import precision as prec
from cecheck.frameworks import torch_fused, torch_naive
from cecheck.losses import Array, PathResult

if not fast.installed():
    if os.environ.get("CECHECK_REQUIRE_KERNEL"):
        raise RuntimeError("the C kernel cecheck._kernel was not built (no C compiler?)")
    pytest.skip("the C kernel cecheck._kernel was not built", allow_module_level=True)

from cecheck import _kernel  # after the skip: it may not be built

NARROW = ("float16", "bfloat16")
STORAGE = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16)}
TORCH = {"naive": torch_naive.naive_index, "stable": torch_fused.stable_index}


def _spec(z: Array, y: Array, d: str) -> dict[str, PathResult]:
    """The numpy specification of the three paths in ``d``."""
    p = prec.get(d)
    return {
        "textbook": losses.textbook_multiclass(z, y, p),
        "naive": torch_naive.naive_index(z, y, p),
        "stable": torch_fused.stable_index(z, y, p),
    }


def _assert_spec_bits(z: Array, y: Array, dtypes: tuple[str, ...] = NARROW) -> None:
    """The kernel's results of every path in ``dtypes`` are the specification's, bit for bit
    (NaN for NaN), and so is their evidence."""
    results, _, _, _ = fast.multiclass_index(z, y, dtypes, TORCH)
    for d in dtypes:
        for path, theirs in _spec(z, y, d).items():
            mine = results[(path, d)]
            want = np.asarray(theirs.loss, dtype=np.float64)
            assert_array_equal(mine.loss, want, err_msg=f"{path} {d}", strict=True)
            same_zero_sign = np.signbit(mine.loss) == np.signbit(want)
            assert (same_zero_sign | np.isnan(want)).all(), f"{path} {d}: sign of zero"
            for name in losses.EVIDENCE:
                value = getattr(theirs, name)
                if value is not None:
                    assert_array_equal(getattr(mine, name), value, err_msg=f"{path} {d} {name}")


def _labels(rng: np.random.Generator, n: int, c: int) -> Array:
    return rng.integers(0, c, n)


# ------------------------------------------------------------------ rounding


def _float32_patterns() -> Array:
    """float32 values whose rounding to float16 or bfloat16 is hard: every bit pattern near
    the formats' ties, binade edges, subnormals, largest values and overflow, and random
    patterns."""
    rng = np.random.default_rng(7)
    edges = np.array(
        [
            0x00000000, 0x00000001, 0x00008000, 0x00018000, 0x007FFFFF, 0x00800000,
            0x33000000, 0x33000001, 0x337FFFFF, 0x33800000, 0x387FC000, 0x387FE000,
            0x387FFFFF, 0x38800000, 0x38801000, 0x38803000, 0x3F801000, 0x3F803000,
            0x3F808000, 0x3F818000, 0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001,
            0x47800000, 0x7F7F7FFF, 0x7F7F8000, 0x7F7FFFFF, 0x7F800000,
        ],
        dtype=np.uint32,
    )  # fmt: skip
    near = (edges[:, None].astype(np.int64) + np.arange(-3, 4)).clip(0, 0x7F800000)
    random = rng.integers(0, 0x7F800001, 200_000)
    magnitudes = np.concatenate([near.ravel(), random]).astype(np.uint32)
    signed = np.concatenate([magnitudes, magnitudes | np.uint32(0x80000000)])
    return signed.view(np.float32)


@pytest.mark.parametrize("d", NARROW)
def test_rounding_to_the_format_is_numpys(d: str) -> None:
    """round_narrow: to nearest, ties to even, overflow to inf, gradual underflow, as
    numpy's astype(float16) and ml_dtypes' astype(bfloat16)."""
    x = _float32_patterns()
    out = np.empty(x.size)
    _kernel.apply(f"round_{d}", x.astype(np.float64), out)
    with np.errstate(over="ignore"):
        want = x.astype(STORAGE[d]).astype(np.float32).astype(np.float64)
    assert_array_equal(out.view(np.uint64), want.view(np.uint64))


def test_a_rounded_value_indexes_its_float16_bits() -> None:
    x = _float32_patterns()
    with np.errstate(over="ignore"):
        half = x.astype(np.float16)
    out = np.empty(x.size)
    _kernel.apply("float16_bits", x.astype(np.float64), out)
    assert_array_equal(out, half.view(np.uint16).astype(np.float64))


def test_a_nan_rounds_to_float16_as_round_narrow_rounds_it() -> None:
    """NaN (its row goes to numpy): quieted, the payload cut to float16's 10 bits, the sign
    kept, in the F16C copies (x86-64-v4, v3) as in round_narrow (every length: vectors and
    the tail after them)."""
    rng = np.random.default_rng(3)
    payload = np.concatenate([[1, 0x1FFF, 0x2000, 0x3FFFFF, 0x400000, 0x7FFFFF],
                              rng.integers(1, 0x800000, 997)]).astype(np.uint32)  # fmt: skip
    u = np.concatenate([payload, payload | np.uint32(0x80000000)]) | np.uint32(0x7F800000)
    rounded, bits = np.empty(u.size), np.empty(u.size)
    with np.errstate(invalid="ignore"):  # float32 NaN to float64 and back: the payload kept
        x = u.view(np.float32).astype(np.float64)
    _kernel.apply("round_float16", x, rounded)
    _kernel.apply("float16_bits", x, bits)
    want = ((u & np.uint32(0x7FFFFFFF)) | np.uint32(0x400000)) & np.uint32(0xFFFFE000)
    want |= u & np.uint32(0x80000000)
    with np.errstate(invalid="ignore"):
        assert_array_equal(rounded.astype(np.float32).view(np.uint32), want)
    want_bits = (want >> np.uint32(16)) & np.uint32(0x8000) | (want >> np.uint32(13)) & 0x7FFF
    assert_array_equal(bits, (want_bits & np.uint32(0x83FF) | np.uint32(0x7C00)).astype(float))


@pytest.mark.parametrize("c", [1, 7, 8, 9, 15, 16, 17, 31, 1000, 1 << 16])
def test_table_look_ups_give_each_entry(c: int) -> None:
    """The table look-ups of the active copy (four a loop, then the test for inf, which
    vectorises): every entry of a table, NaN payloads and signed zeros bit for bit, in any
    order and at any length (the tail after the last four, and the test's after its last
    vector), and whether one is inf."""
    rng = np.random.default_rng(c)
    tab = rng.integers(0, 1 << 32, 1 << 16, dtype=np.uint64).astype(np.uint32).view(np.float32)
    tab[rng.integers(0, 1 << 16, 64)] = np.inf
    tab[rng.integers(0, 1 << 16, 64)] = -np.inf
    every = rng.permutation(1 << 16).astype(np.uint32)  # all 65,536 entries, shuffled
    for index in every.reshape(-1, c) if (1 << 16) % c == 0 else [every[:c], every[-c:]]:
        out = np.empty(index.size, dtype=np.float32)
        over = _kernel.look_up(tab, index, out)
        assert_array_equal(out.view(np.uint32), tab[index].view(np.uint32))
        assert over == bool(np.any(tab[index] == np.inf))
    # no inf, but one at the last entry only (a tail lane), or at the first only
    index = np.resize(np.flatnonzero(np.isfinite(tab)), c).astype(np.uint32)
    for at in (None, 0, c - 1):
        i = index.copy()
        if at is not None:
            i[at] = np.flatnonzero(tab == np.inf)[0]
        out = np.empty(c, dtype=np.float32)
        assert _kernel.look_up(tab, i, out) == (at is not None)
        assert_array_equal(out.view(np.uint32), tab[i].view(np.uint32))


def test_a_look_up_index_beyond_the_table_is_refused() -> None:
    tab, out = np.zeros(1 << 16, dtype=np.float32), np.empty(2, dtype=np.float32)
    with pytest.raises(ValueError, match="below 65536"):
        _kernel.look_up(tab, np.array([0, 1 << 16], dtype=np.uint32), out)


EXP32_ERROR = 2.0**-21  # the bound _kernel.c's narrow_eta assumes of exp_approx32


def test_the_approximate_exp_is_within_its_bound() -> None:
    """exp_approx32 (the first pass of PyTorch's sum in the narrow kernel) is within
    EXP32_ERROR of the float32 exp the paths take, relatively, on [-86, 0] (random float32
    patterns and values, the binade edges near 0), and within 2**-123 of it below."""
    rng = np.random.default_rng(21)
    patterns = rng.integers(0, np.float32(86.0).view(np.uint32), 2_000_000, dtype=np.uint32)
    edges = np.float32(2.0) ** -np.arange(0, 150, dtype=np.float32)
    near = np.concatenate([edges, np.nextafter(edges, np.float32(0)), np.float32([86.0, 0.0])])
    d = -np.concatenate([patterns.view(np.float32), rng.uniform(0, 86, 10**6), near])
    d = d.astype(np.float32).astype(np.float64)
    approx, exact = np.empty_like(d), np.empty_like(d)
    _kernel.apply("exp_approx32", d, approx)
    exact = np.exp(d).astype(np.float32).astype(np.float64)
    assert (np.abs(approx - exact) <= EXP32_ERROR * exact).all()
    below = -86.0 - rng.uniform(0, 1e6, 1000)
    approx = np.empty_like(below)
    _kernel.apply("exp_approx32", below, approx)
    assert (np.abs(approx - np.exp(below)) <= 2.0**-123).all()


def _near_a_tie(z: Array, y: Array, d: str) -> Array:
    """The rows whose PyTorch sum Σ exp(z - max) (float32, numpy's pairwise order), rounded
    to the format, or whose exp(z_t - max) / Σ, rounded, changes if exp_approx32 replaces
    the exact exp: those the narrow kernel must take the exact exps of."""
    p = prec.get(d)
    zr = p.round(z.astype(np.float32))
    shifted = (zr - zr.max(axis=1, keepdims=True)).astype(np.float64)
    exact = np.exp(shifted).astype(np.float32)
    approx = np.empty_like(shifted)
    _kernel.apply("exp_approx32", shifted.ravel(), approx.reshape(-1))
    approx = approx.astype(np.float32)
    rows = np.arange(len(y))
    q = {}
    for name, es in (("exact", exact), ("approx", approx)):
        s = es.sum(axis=1)
        q[name] = (p.round(s), p.round(exact[rows, y] * (np.float32(1) / s)))
    return (q["exact"][0] != q["approx"][0]) | (q["exact"][1] != q["approx"][1])


# (format, v, a, b): a row of a logits 0 and b logits v, whose exact exps' sum is a rounding
# tie of the format (2 a.u. apart at 2048 in float16, 256 in bfloat16) that exp_approx32's
# sum is across (found by a search over v, a and b; checked below)
TIES = [
    ("float16", -0.87744140625, 3, 4973),
    ("float16", -0.86474609375, 7, 4972),
    ("float16", -0.849609375, 10, 4764),
    ("bfloat16", -1.7578125, 7, 4402),
    ("bfloat16", -1.2265625, 2, 4671),
    ("bfloat16", -1.203125, 1, 1179),
]


@pytest.mark.parametrize(("d", "v", "a", "b"), TIES)
def test_rows_whose_approximate_sum_would_round_otherwise_give_the_specification_bits(
    d: str, v: float, a: int, b: int
) -> None:
    """The narrow kernel sums exp_approx32's exps first, and takes the exact exps of a row
    whose sum is too near a rounding tie of the format to decide the stable and naive paths:
    on a row where the approximate sum decides otherwise, the kernel gives the exact bits."""
    z = np.concatenate([np.zeros(a, np.float32), np.full(b, v, np.float32)])
    z = np.stack([z, z])
    y = np.array([0, a])  # the target a 0, or a v
    assert _near_a_tie(z, y, d).any()  # the rows reach what they aim at
    _assert_spec_bits(z, y, (d,))


# ------------------------------------------------------------------ the paths


@pytest.mark.parametrize("c", [1, 2, 3, 7, 8, 9, 16, 17, 127, 128, 129, 1000, 4099])
@pytest.mark.parametrize("scale", [0.5, 4.0, 30.0])
def test_random_rows_give_the_specification_bits(c: int, scale: float) -> None:
    rng = np.random.default_rng(c)
    z = (rng.standard_normal((40, c)) * scale).astype(np.float32)
    _assert_spec_bits(z, _labels(rng, 40, c))


def test_a_language_model_row_gives_the_specification_bits() -> None:
    rng = np.random.default_rng(3)
    z = (rng.standard_normal((6, 32000)) * 3).astype(np.float32)
    z[:, 17] += 12.0
    _assert_spec_bits(z, _labels(rng, 6, 32000))


def test_one_format_alone_gives_the_bits_of_both_together() -> None:
    rng = np.random.default_rng(4)
    z = (rng.standard_normal((30, 500)) * 6).astype(np.float32)
    y = _labels(rng, 30, 500)
    both, _, _, _ = fast.multiclass_index(z, y, NARROW, TORCH)
    for d in NARROW:
        alone, _, _, _ = fast.multiclass_index(z, y, (d,), TORCH)
        assert {key for key in alone if key[1] in NARROW} == {(p, d) for p in TORCH} | {
            ("textbook", d)
        }
        for path in ("textbook", "naive", "stable"):
            assert_array_equal(alone[(path, d)].loss, both[(path, d)].loss, strict=True)
    _assert_spec_bits(z, y, ("bfloat16",))


def _adversarial(rng: np.random.Generator, n: int, c: int) -> dict[str, Array]:
    """float64 logits of each kind that breaks a narrow path, or nearly."""
    kinds = {
        # exp overflows at 11.09 in float16 (65504), 88.7 in bfloat16: sums of inf
        "overflow": rng.uniform(8.0, 14.0, (n, c)),
        "overflow32": rng.uniform(80.0, 95.0, (n, c)),
        # the target wins or loses by far: probabilities 1, subnormal, 0
        "margin": rng.standard_normal((n, c)) + np.where(rng.random((n, c)) < 0.2, 18.0, 0.0),
        "far": rng.standard_normal((n, c)) * 40,
        "deep": -rng.uniform(0.0, 30.0, (n, c)),
        # near float16's largest value, and past it: inf in float16, finite in bfloat16
        "huge": rng.choice([65504.0, 65519.0, 65520.0, -65504.0, 6e4, -7e4, 1e5], (n, c)),
        # ties: equal logits, equal maxima, values on the format's rounding ties
        "ties": rng.integers(-3, 4, (n, c)).astype(np.float64),
        "halfway": 1.0 + (2 * rng.integers(0, 64, (n, c)) + 1) * 2.0**-11,
        "tiny": rng.standard_normal((n, c)) * 1e-6,  # float16 subnormals, zeros
    }
    odd = rng.standard_normal((n, c)) * 5
    picks = rng.integers(0, n * c, 2 * n)
    odd.flat[picks] = rng.choice([np.nan, np.inf, -np.inf, 1e39, -1e39, -0.0, 70000.0], picks.size)
    kinds["odd"] = odd
    masked = rng.standard_normal((n, c)) * 3
    masked[rng.random((n, c)) < 0.3] = -np.inf
    kinds["mask"] = masked
    return kinds


@pytest.mark.parametrize("c", [1, 2, 5, 16, 33, 300])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adversarial_rows_give_the_specification_bits(c: int, dtype: type) -> None:
    rng = np.random.default_rng(100 + c)
    for kind, z64 in _adversarial(rng, 24, c).items():
        with np.errstate(over="ignore"):
            z = np.ascontiguousarray(z64.astype(dtype))
        y = _labels(rng, 24, c)
        try:
            _assert_spec_bits(z, y)
        except AssertionError as e:
            raise AssertionError(f"{kind} logits: {e}") from None


def test_the_adversarial_rows_reach_what_they_aim_at() -> None:
    """The cases above see exp overflow, probabilities of 0, rows left to numpy and others."""
    rng = np.random.default_rng(105)
    kinds = _adversarial(rng, 24, 5)
    with np.errstate(over="ignore"):  # 1e39: inf in float32
        z = np.ascontiguousarray(np.concatenate(list(kinds.values())).astype(np.float32))
    y = _labels(rng, len(z), 5)
    results, _, _, _ = fast.multiclass_index(z, y, NARROW, TORCH)
    textbook, naive = results[("textbook", "float16")], results[("naive", "float16")]
    assert textbook.exp_overflow is not None
    assert textbook.exp_overflow.any()
    assert textbook.prob_underflow is not None
    assert textbook.prob_underflow.any()
    assert naive.prob_underflow is not None
    assert naive.prob_underflow.any()
    assert np.isnan(textbook.loss).any()
    assert np.isinf(naive.loss).any()
    assert np.isfinite(results[("stable", "float16")].loss).mean() > 0.5


narrow_logits = st.one_of(
    st.floats(-20, 20, width=32),
    st.sampled_from([0.0, -0.0, 11.09, 11.1, -17.3, 65504.0, 65520.0, -np.inf, np.inf, np.nan]),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 40).flatmap(
        lambda c: st.tuples(
            st.lists(st.lists(narrow_logits, min_size=c, max_size=c), min_size=1, max_size=4),
            st.lists(st.integers(0, c - 1), min_size=4, max_size=4),
        )
    )
)
def test_any_rows_give_the_specification_bits(case: tuple[list[list[float]], list[int]]) -> None:
    rows, targets = case
    z = np.array(rows, dtype=np.float32)
    _assert_spec_bits(z, np.array(targets[: len(rows)], dtype=np.int64))


def test_the_engine_gives_the_numpy_narrow_columns_with_ignored_rows() -> None:
    """The engine's float16 and bfloat16 columns on the kernel and on numpy: equal, ignored
    rows and -inf masks included; and the same flags on those paths."""
    rng = np.random.default_rng(21)
    z = rng.standard_normal((60, 50)) * 6
    z[::7, 3] += 25.0
    z[1::9, 4] = -np.inf
    y = rng.integers(0, 50, 60)
    y[::5] = -100
    s = engine.Settings(("float16", "bfloat16", "float32", "float64"))
    slow = engine.evaluate(z, y, "multiclass", "index", 50, s)
    quick = engine.evaluate(z, y, "multiclass", "index", 50, s, use_fast=True)
    narrow = [k for k in slow.values if k.endswith(NARROW)]
    assert len(narrow) >= 6
    for column in narrow:
        assert_array_equal(quick.values[column], slow.values[column], err_msg=column)


def test_a_path_the_kernel_does_not_compute_stays_on_numpy() -> None:
    """Without the framework's functions the kernel returns the textbook path only."""
    rng = np.random.default_rng(22)
    z = (rng.standard_normal((5, 9)) * 3).astype(np.float32)
    results, _, _, _ = fast.multiclass_index(z, _labels(rng, 5, 9), NARROW)
    assert {p for p, d in results if d in NARROW} == {"textbook", "naive", "stable"}
    computed, _, _, _ = fast.compute("multiclass", "index", z, _labels(rng, 5, 9), NARROW)
    assert set(computed) == {("textbook", "float16"), ("textbook", "bfloat16")}


def _cast_overflow_each(logits: Array, p: prec.Precision) -> Array:
    """The definition: rows with a finite logit that casts to inf, each logit cast."""
    with np.errstate(invalid="ignore", over="ignore"):
        hit = np.isinf(p.cast(logits)) & np.isfinite(logits)
    return np.any(hit, axis=1) if hit.ndim == 2 else hit


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(
            st.one_of(
                st.floats(allow_nan=True, allow_infinity=True),
                st.sampled_from([65504.0, 65519.99, 65520.0, -65520.0, 3.4e38, -3.39e38]),
            ),
            min_size=3,
            max_size=3,
        ),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from([np.float32, np.float64]),
)
def test_cast_overflow_rows_read_from_each_rows_ends_are_the_definition(
    rows: list[list[float]], dtype: type
) -> None:
    with np.errstate(over="ignore"):
        z = np.array(rows).astype(dtype)
    precisions = [prec.get(d) for d in prec.DTYPES]
    found = casts.cast_overflow_rows(z, precisions)
    for p in precisions:
        if p.max < float(np.finfo(dtype).max):
            assert_array_equal(found[p.name], _cast_overflow_each(z, p), err_msg=p.name)
        for column in (z[:, 0], z[:0]):  # binary logits, and no rows
            if p.name in found:
                got = casts.cast_overflow_rows(column, [p])[p.name]
                assert_array_equal(got, _cast_overflow_each(column, p))
