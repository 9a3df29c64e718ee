"""The fused C kernel agrees with the numpy specification in cecheck.losses.

The numpy functions are the executable specification (their values are checked against
mpmath in test_losses.py). Here the fast path must give, on the same inputs:

* the same non-finite pattern (NaN where numpy gives NaN, inf where numpy gives inf),
* the same evidence bits (exp overflow, target probability underflow),
* the same flags, causes and severities once diagnosed by the engine,
* finite losses within ``BOUND_ULPS * eps(dtype) * max(1, |L_numpy|)``.

Why that bound: the two differ in exp and log (each within ~1-2.5 ulp of the exact value in the
kernel; numpy's SIMD exp and log in float32 are within ~1-4 ulp) and in the order of the sums
(both with an error of a few ulp on non-negative terms). A loss is ``log`` of a sum of positive
terms plus a non-negative term, so a relative error of a few ulp in the terms is an absolute
error of a few eps in the log, which is relative to the loss once it is above 1.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

import mpmath
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from cecheck import engine, fast, inputs, losses
from cecheck import precision as prec
from cecheck.errors import InputError
from cecheck.frameworks import registry
from cecheck.losses import Array

if not fast.installed():
    if os.environ.get("CECHECK_REQUIRE_KERNEL"):
        raise RuntimeError("the C kernel cecheck._kernel was not built (no C compiler?)")
    pytest.skip("the C kernel cecheck._kernel was not built", allow_module_level=True)

BOUND_ULPS = 8
DTYPES = ("float32", "float64")


def _exp(x: Array, tame: bool = False) -> Array:
    """The kernel's float64 exp of each value (its tame variant for |x| <= 300)."""
    from cecheck import _kernel

    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty_like(x)
    _kernel.apply("exp_tame" if tame else "exp", x, out)
    return out


def _assert_close(
    fast_loss: np.ndarray,
    spec_loss: np.ndarray,
    dtype: str,
    what: str,
    condition: np.ndarray | None = None,
) -> None:
    """Same non-finite pattern; finite losses within BOUND_ULPS * eps * (max(1, |L|) + cond).

    ``condition``: per row, how much the formula amplifies a relative error of its terms
    (0 where not given).
    """
    fast_loss = np.asarray(fast_loss, dtype=np.float64)
    spec_loss = np.asarray(spec_loss, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(fast_loss), np.isnan(spec_loss), err_msg=what)
    np.testing.assert_array_equal(
        np.where(np.isinf(fast_loss), fast_loss, 0),
        np.where(np.isinf(spec_loss), spec_loss, 0),
        err_msg=what,
    )
    ok = np.isfinite(spec_loss)
    eps = float(np.finfo(dtype).eps)
    scale = np.maximum(1.0, np.abs(spec_loss[ok]))
    if condition is not None:
        scale = scale + condition[ok]
    err = np.abs(fast_loss[ok] - spec_loss[ok]) / scale
    worst = float(err.max(initial=0.0)) / eps
    assert worst <= BOUND_ULPS, f"{what}: {worst:.2f} ulps"


TORCH = registry.get("torch")


def _torch(kind: str) -> dict[str, Callable]:
    """PyTorch's naive and stable functions of a family's ``kind``, which the kernel computes."""
    paths = {path: TORCH.path(path, kind) for path in ("naive", "stable")}
    assert all(fast.emulates(path, kind, f) for path, f in paths.items())
    return paths


def _assert_same_evidence(got: losses.PathResult, spec: losses.PathResult, what: str) -> None:
    """Every evidence array the specification gives, the same; none it does not give."""
    for name in losses.EVIDENCE:
        want = getattr(spec, name)
        if want is None:
            assert getattr(got, name) is None, f"{what}: {name}"
        else:
            np.testing.assert_array_equal(getattr(got, name), want, err_msg=f"{what}: {name}")


def _assert_same_exact_values(got: Array, spec: Array, what: str) -> None:
    """Where the framework's loss is exactly 0 (a probability of 1, torch's cancellation) or
    exactly 100 (binary_cross_entropy's clamp), the kernel's is too, and only there."""
    for value in (0.0, 100.0):
        np.testing.assert_array_equal(got == value, spec == value, err_msg=f"{what}: {value}")


def _check_paths(z: np.ndarray, y: np.ndarray) -> None:
    """Every path and dtype of the kernel against the numpy functions on (z, y): the
    textbook path, and the naive and stable paths as PyTorch's (the kernel computes them as
    torch does)."""
    torch = _torch("index")
    results, ref, nonfinite, _ = fast.multiclass_index(z, y, DTYPES, torch)
    # a -inf is a masked class, not an input problem: NaN and +inf only
    np.testing.assert_array_equal(nonfinite, (np.isnan(z) | (z == np.inf)).any(axis=1))
    for d in DTYPES:
        p = prec.get(d)
        for path, spec_fn in (("textbook", losses.textbook_multiclass), *torch.items()):
            spec = spec_fn(z, y, p)
            got = results[(path, d)]
            _assert_close(got.loss, spec.loss, d, f"{path}_{d}")
            _assert_same_evidence(got, spec, f"{path}_{d}")
            if path != "textbook":
                _assert_same_exact_values(got.loss, spec.loss, f"{path}_{d}")
    _assert_close(ref, losses.reference_multiclass(z, y), "float64", "reference")


# ------------------------------------------------------------------ building blocks


def test_exp64_matches_numpy_within_two_ulp_and_at_every_special_value() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.uniform(-745.2, 709.78, 20000),
            rng.uniform(-1, 1, 5000),
            np.linspace(-745.2, -700, 2000),  # gradual underflow
            [0.0, -0.0, 1.0, -1.0, 709.782712893384, -745.13321910194122, -745.2, 88.7228],
        ]
    )
    got = _exp(x)
    want = np.exp(x)
    assert _exp(np.array([0.0]))[0] == 1.0
    normal = want >= np.finfo(np.float64).tiny
    ulps = np.abs(got[normal] - want[normal]) / np.spacing(want[normal])
    assert ulps.max() <= 2
    # subnormal results: within one unit of the smallest subnormal
    assert np.all(np.abs(got[~normal] - want[~normal]) <= np.spacing(0.0))
    specials = [np.inf, -np.inf, np.nan, 709.7827128933841, 710.0, 1e300, -746.0, -1e300]
    with np.errstate(over="ignore"):  # the overflow is the value we compare
        want = np.exp(np.array(specials))
    np.testing.assert_array_equal(_exp(np.array(specials)), want)


def test_exp64_against_mpmath_at_a_few_points() -> None:
    mpmath.mp.dps = 40  # exp computed with mpmath at 40 digits, then rounded to float64
    for v in (-700.5, -50.25, -1e-10, 0.3466, 1.5, 88.5, 700.0):
        want = float(mpmath.exp(mpmath.mpf(v)))
        assert abs(_exp(np.array([v]))[0] - want) <= 2 * np.spacing(want)


def test_exp64_tame_is_exp64_bit_for_bit_on_its_range() -> None:
    """The kernel's shortcut for rows within [-300, 300] must not change a single bit."""
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-300, 300, 20000), [-300.0, 300.0, 0.0, -0.0, 1e-300]])
    np.testing.assert_array_equal(_exp(x, tame=True).view(np.int64), _exp(x).view(np.int64))


# ------------------------------------------------------------------ the kernel vs the spec


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [1, 2, 7, 10, 129, 1000, 32000, 140000])
def test_random_logits_agree(dtype: type, n_classes: int) -> None:
    """Up to 140,000 classes: 547 blocks, merged pairwise over ten levels."""
    rng = np.random.default_rng(n_classes)
    n = 8 if n_classes >= 32000 else 200
    z = (rng.standard_normal((n, n_classes)) * rng.uniform(0.1, 20, (n, 1))).astype(dtype)
    y = rng.integers(0, n_classes, n)
    _check_paths(z, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [15, 16, 17, 31, 255, 256, 257, 511, 512, 513, 800])
@pytest.mark.parametrize("shift", [0.0, 75.0, 500.0])
def test_block_edges_agree(dtype: type, n_classes: int, shift: float) -> None:
    """Rows at the kernel's block widths, argmax and target on either side of a block edge.

    The kernel sums rows of at most 16 classes in one block of 16 and longer rows in blocks
    of 256 (16 lanes each), and finds the max in blocks of 256; the argmax's block is the
    one that leaves it out of the reference's sum. ``shift`` 75 puts the max above 80,
    500 far above: both take the direct exps instead of the shared ones.
    """
    rng = np.random.default_rng(n_classes)
    edges = sorted(
        {0, n_classes - 1} | {e for e in (15, 16, 31, 255, 256, 511, 512) if e < n_classes}
    )
    rows, targets = [], []
    for k in edges:
        for t in edges:
            row = rng.standard_normal(n_classes) * 4 + shift
            row[k] = row.max() + 1.0
            rows.append(row)
            targets.append(t)
    _check_paths(np.array(rows).astype(dtype), np.array(targets))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [1, 2, 10, 16])
def test_batches_of_short_rows_agree(dtype: type, n_classes: int) -> None:
    """Rows of at most 16 classes go 8 at a time, one per lane, when all 8 are tame.

    A batch holding a NaN row, an infinite row or a row beyond the shared exps' range is
    taken row by row instead; 203 rows leave a tail of 3 that is never batched.
    """
    rng = np.random.default_rng(n_classes)
    z = (rng.standard_normal((203, n_classes)) * 6).astype(dtype)
    z[10, 0] = np.nan
    z[33, -1] = np.inf
    z[50, 0] = 85.0  # max above 80: direct exps
    z[70, -1] = -301.0  # min below -300: direct exps
    z[200] = 30.0  # a tail row
    y = rng.integers(0, n_classes, 203)
    _check_paths(z, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [3, 15, 16, 100, 128, 200])
def test_short_rows_far_below_zero_agree(dtype: type, n_classes: int) -> None:
    """Rows far below zero take the shared exps: exp(-max) is huge and must set no flag."""
    rng = np.random.default_rng(n_classes)
    z = (rng.uniform(-299, -150, (20, n_classes))).astype(dtype)
    _check_paths(z, rng.integers(0, n_classes, 20))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_classes=st.integers(1, 300),
    scale=st.sampled_from([1e-3, 1.0, 30.0, 100.0, 400.0, 1e4]),
    shift=st.sampled_from([0.0, -200.0, 250.0, 800.0, -800.0]),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_property_any_scale_and_shift_agree(
    seed: int, n_classes: int, scale: float, shift: float, dtype: type
) -> None:
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal((16, n_classes)) * scale + shift).astype(dtype)
    y = rng.integers(0, n_classes, 16)
    _check_paths(z, y)


def test_adversarial_rows_agree() -> None:
    """Overflowing, underflowing, confident, tied, non-finite and beyond-float32 rows."""
    rows = [
        ([1000.0, 2000.0, 2500.0], 1),  # naive overflows in both dtypes
        ([80.0, 90.0, 0.0], 0),  # naive overflows in float32 only
        ([30.0, 0.0, 0.0], 0),  # confident: stable gives 0 in float32
        ([80.0, 0.0, -300.0], 1),  # the edges of the shared exps
        ([80.00001, 0.0, -300.0], 1),
        ([1.0, 0.0, -300.00003], 2),
        ([88.72283, 0.0, 1.0], 0),  # float32 exp(88.72283) is finite, exp(88.72284) is not
        ([88.72284, 0.0, 1.0], 1),
        ([0.0, -120.0, 0.0], 1),  # target probability underflows in float32
        ([0.0, -800.0, 0.0], 1),  # ... and in float64
        ([5.0, 5.0, 5.0], 2),  # ties: argmax is the first
        ([-300.5, -310.0, -299.0], 0),  # large negative, exp underflows in naive
        ([np.nan, 1.0, 2.0], 1),
        ([np.inf, 1.0, 2.0], 0),
        ([-np.inf, 1.0, 2.0], 2),
        ([-np.inf, -np.inf, -np.inf], 0),
        ([1e39, 0.0, 1.0], 2),  # beyond float32: float32 paths see inf
        ([-1e39, 0.0, 1.0], 1),
        ([1e-45, 0.0, -1e-45], 0),
        ([0.0, 0.0, 0.0], 1),
    ]
    z = np.array([r for r, _ in rows], dtype=np.float64)
    y = np.array([t for _, t in rows])
    _check_paths(z, y)
    finite = np.isfinite(z).all(axis=1) & (np.abs(z) < 3e38).all(axis=1)
    _check_paths(z[finite].astype(np.float32), y[finite])


def test_float64_logits_far_from_float32_take_the_direct_exp() -> None:
    """float64 logits whose float32 rounding error is large are recomputed exactly."""
    rng = np.random.default_rng(5)
    z = rng.uniform(1e6, 1e6 + 50, (20, 40))
    y = rng.integers(0, 40, 20)
    _check_paths(z, y)


def test_reference_of_a_confident_row_against_mpmath() -> None:
    z = np.array([[30.0, 0.0, -1.0, 2.5]], dtype=np.float32)
    _, ref, _, _ = fast.multiclass_index(z, np.array([0]), DTYPES)
    mpmath.mp.dps = 50  # lse(z) - z[0] at 50 digits, then rounded to float64
    exact = mpmath.log(sum(mpmath.exp(mpmath.mpf(float(v))) for v in z[0])) - 30
    assert abs(ref[0] - float(exact)) <= 2 * np.spacing(float(exact))


# ------------------------------------------------------------------ through the engine


def _evaluate_both(
    z: np.ndarray,
    labels: np.ndarray,
    dtypes: tuple[str, ...],
    task: str = "multiclass",
    label_form: str = "index",
) -> tuple:
    s = engine.Settings(dtypes)
    c = z.shape[1] if z.ndim == 2 else 1
    slow = engine.evaluate(z, labels, task, label_form, c, s)
    quick = engine.evaluate(z, labels, task, label_form, c, s, use_fast=True)
    return slow, quick


def _straddles(slow: engine.ChunkResult, quick: engine.ChunkResult, s: engine.Settings) -> Array:
    """Rows where the two paths' losses (within the bound) fall on either side of a threshold.

    A flag compares an error with a threshold (``inaccurate``: half the bits against the
    reference; ``diverged``: atol + rtol * |L64|), and diagnose() is the same code on both
    paths: so flags can differ only on a row whose losses from the two paths lie on either
    side of one of these thresholds. On every other row they must be identical.
    """
    near = np.zeros(slow.values["reference"].shape[0], dtype=bool)

    def sides(v: dict[str, Array], path: str, d: str) -> list[Array]:
        loss, ref = v[f"{path}_{d}"], v["reference"]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = [np.abs(loss - ref) > 2.0 ** (-prec.get(d).bits / 2) * np.abs(ref)]
            if d != "float64" and "float64" in s.dtypes:
                l64 = v[f"{path}_float64"]
                rtol, atol = s.tolerance(d)
                out.append(np.abs(loss - l64) > atol + rtol * np.abs(l64))
        return out

    for path in ("textbook", "naive", "stable"):
        for d in s.dtypes:
            for a, b in zip(sides(slow.values, path, d), sides(quick.values, path, d), strict=True):
                near |= a != b
    return near


def _assert_same_diagnosis(
    slow: engine.ChunkResult, quick: engine.ChunkResult, s: engine.Settings
) -> int:
    """Flags, causes and severities equal off the straddling rows; the count of those."""
    keep = ~_straddles(slow, quick, s)
    assert slow.diagnosis.flag_names == quick.diagnosis.flag_names
    np.testing.assert_array_equal(slow.diagnosis.flags[keep], quick.diagnosis.flags[keep])
    np.testing.assert_array_equal(slow.diagnosis.causes[keep], quick.diagnosis.causes[keep])
    np.testing.assert_array_equal(slow.diagnosis.severity[keep], quick.diagnosis.severity[keep])
    return int((~keep).sum())


@pytest.mark.parametrize("dtypes", [("float32", "float64"), ("float32",), ("float64",)])
def test_engine_flags_and_causes_agree(dtypes: tuple[str, ...]) -> None:
    rng = np.random.default_rng(11)
    n, c = 3000, 50
    scale = rng.choice([1.0, 20.0, 60.0, 400.0], (n, 1))
    z = (rng.standard_normal((n, c)) * scale).astype(np.float32)
    z[3, 4] = np.nan
    z[7, 0] = np.inf
    z[9, :] = -np.inf
    labels = rng.integers(0, c, n)
    labels[::17] = -100  # ignored
    labels[5] = c + 3  # out of range
    labels[6] = -7
    slow, quick = _evaluate_both(z, labels, dtypes)
    near = _assert_same_diagnosis(slow, quick, engine.Settings(dtypes))
    assert near <= n // 100  # a row sits on a threshold only by chance
    assert slow.values.keys() == quick.values.keys()
    for col in slow.values:
        d = "float32" if col.endswith("float32") else "float64"
        _assert_close(quick.values[col], slow.values[col], d, col)
    assert slow.diagnosis.flags.any(axis=0).sum() >= 7  # the input exercises many flags


def test_usable_for_every_covered_input_whatever_its_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CECHECK_NO_KERNEL", raising=False)
    assert fast.usable("multiclass", "index", ("float32", "float64"))
    assert fast.usable("multiclass", "index", ("float16", "bfloat16", "float32", "float64"))
    assert not fast.usable("multiclass", "soft", ("float16", "float32"))
    assert fast.usable("multiclass", "soft", ("float32",))
    assert fast.usable("multiclass", "onehot", ("float32",))
    assert fast.usable("binary", "binary", ("float32",))
    assert fast.usable("multilabel", "multihot", ("float64",))
    assert not fast.usable("multilabel", "multihot", ("bfloat16",))
    monkeypatch.setenv("CECHECK_NO_KERNEL", "1")
    assert not fast.usable("multiclass", "index", ("float32", "float64"))


@pytest.mark.parametrize(
    ("task", "form"),
    [
        ("binary", "index"),
        ("multiclass", "multihot"),
        ("multilabel", "soft"),
        ("regression", "index"),
    ],
)
def test_covers_only_the_tasks_and_label_forms_the_kernels_compute(task: str, form: str) -> None:
    assert not fast.covers(task, form, ("float32",))


def test_reports_with_and_without_the_kernel_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole run (chunking, totals, top rows) is the same on either path."""
    rng = np.random.default_rng(3)
    z = (rng.standard_normal((3000, 64)) * rng.choice([1.0, 3.0, 12.0], (3000, 1))).astype(
        np.float32
    )
    y = rng.integers(0, 64, 3000)
    y[::50] = -100
    s = engine.Settings()
    slow_chunk, quick_chunk = _evaluate_both(z, y, s.dtypes)
    assert not _straddles(slow_chunk, quick_chunk, s).any()  # else a flag may flip
    monkeypatch.setattr(fast, "CHUNK_BYTES", 256 * 64 * 4)  # 12 chunks: the pipeline runs
    monkeypatch.delenv("CECHECK_NO_KERNEL", raising=False)
    quick = engine.compare(z, y, top=50)
    monkeypatch.setenv("CECHECK_NO_KERNEL", "1")
    slow = engine.compare(z, y, top=50)
    assert quick.flagged_rows > 0
    assert (quick.rows, quick.scored_rows, quick.flagged_rows) == (
        slow.rows,
        slow.scored_rows,
        slow.flagged_rows,
    )
    assert quick.counts == slow.counts
    assert quick.cause_counts == slow.cause_counts
    assert [(r.row, r.flags, r.causes) for r in quick.top] == [
        (r.row, r.flags, r.causes) for r in slow.top
    ]
    for a, b in zip(quick.summary, slow.summary, strict=True):
        assert (a.path, a.dtype, a.finite, a.nan, a.inf) == (
            b.path,
            b.dtype,
            b.finite,
            b.nan,
            b.inf,
        )


# ------------------------------------------------------------------ binary and multilabel


def _sigmoid_condition(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per row, the amplification of the textbook path's ``log(1 - p)``: (1 - t) p / (1 - p).

    ``1 - p`` cancels as p nears 1, so a one-ulp difference in the exp behind p (numpy's
    float32 exp and log are not correctly rounded; the kernel's are, nearly) moves the
    textbook loss by this many ulps; p / (1 - p) = exp(z).
    """
    with np.errstate(over="ignore"):
        k = (1 - t) * np.exp(np.minimum(np.asarray(z, dtype=np.float64), 700.0))
    return k.reshape(len(k), -1).mean(axis=1)


def _check_sigmoid(z: np.ndarray, t: np.ndarray) -> None:
    """Every path and dtype of the sigmoid kernel against the numpy functions on (z, t)."""
    family = "binary" if z.ndim == 1 else "multilabel"
    _check_per_class(fast.sigmoid, family, z, t, _sigmoid_condition(z, t))


def _check_per_class(
    kernel: Callable, family: str, z: np.ndarray, t: np.ndarray, condition: Array | None = None
) -> None:
    """A kernel with a target per logit against the numpy functions of ``family`` on (z, t):
    the textbook path, PyTorch's naive and stable paths (the kernel computes them as torch
    does) and the reference.

    ``condition``: the amplification of a relative error by ``log(1 - p)`` of a rounded
    sigmoid p, in the textbook and naive binary paths (see _assert_close).
    """
    textbook_fn, reference_fn = losses.PATHS[family]
    torch = _torch(family)
    results, ref, nonfinite, _ = kernel(z, t, DTYPES, torch)
    bad = ~np.isfinite(z)
    np.testing.assert_array_equal(nonfinite, bad if z.ndim == 1 else bad.any(axis=1))
    for d in DTYPES:
        p = prec.get(d)
        for path, spec_fn in (("textbook", textbook_fn), *torch.items()):
            spec = spec_fn(z, t, p)
            got = results[(path, d)]
            cond = condition if path != "stable" else None
            _assert_close(got.loss, spec.loss, d, f"{path}_{d}", cond)
            if path == "textbook":  # its evidence is losses.py's, with fewer fields
                for name in losses.EVIDENCE:
                    want = getattr(spec, name)
                    if want is not None:
                        np.testing.assert_array_equal(getattr(got, name), want, err_msg=name)
            else:
                _assert_same_evidence(got, spec, f"{path}_{d}")
                _assert_same_exact_values(got.loss, spec.loss, f"{path}_{d}")
    _assert_close(ref, reference_fn(z, t), "float64", "reference")


def test_a_bad_later_chunk_comes_after_the_chunks_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On the fast path the kernel runs a chunk ahead; an input error in a later chunk still
    comes after every chunk before it, with their rows, as on the numpy path."""
    rng = np.random.default_rng(8)
    z = rng.standard_normal((1000, 16)).astype(np.float32)
    y = rng.integers(0, 16, 1000)
    source = inputs.from_arrays(z, y)
    good = source._read

    def failing(rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i, chunk in enumerate(good(rows)):
            if i == 3:
                raise InputError("logits.npy held fewer rows: was it changed?")
            yield chunk

    monkeypatch.setattr(fast, "CHUNK_BYTES", 100 * 16 * 4)
    monkeypatch.delenv("CECHECK_NO_KERNEL", raising=False)
    bad = dataclasses.replace(source, _read=failing)
    seen: list[tuple[int, int]] = []

    def read_all() -> None:
        for chunk in engine.iter_chunks(bad, engine.Settings()):
            seen.append((chunk.start, len(chunk.labels)))

    with pytest.raises(InputError, match="fewer rows"):
        read_all()
    assert seen == [(0, 100), (100, 100), (200, 100)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [0, 1, 2, 10, 16, 17, 255, 256, 257, 600])
def test_sigmoid_random_logits_agree(dtype: type, n_classes: int) -> None:
    """Binary (n_classes 0: one logit per row) and multilabel rows, 0/1 and soft targets.

    Rows of 256 classes and more are summed in blocks of 256 merged pairwise.
    """
    rng = np.random.default_rng(n_classes)
    shape = (301,) if n_classes == 0 else (40, n_classes)
    z = (rng.standard_normal(shape) * rng.choice([0.5, 5.0, 30.0, 120.0], shape)).astype(dtype)
    t = rng.integers(0, 2, shape).astype(np.float64)
    t[::3] = rng.uniform(0, 1, t[::3].shape)
    _check_sigmoid(z, t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("low", "high"),
    [(14, 20), (-20, -14), (33, 40), (85, 92), (-92, -85), (-110, -100), (700, 712), (-712, -700)],
)
def test_sigmoid_saturating_and_overflowing_logits_agree(
    dtype: type, low: float, high: float
) -> None:
    """Where float32 or float64 sigmoids round to 0 or 1 and exp(-z) overflows."""
    rng = np.random.default_rng(abs(int(low)))
    z = rng.uniform(low, high, (300, 8)).astype(dtype)
    t = rng.integers(0, 2, z.shape).astype(np.float64)
    _check_sigmoid(z, t)
    _check_sigmoid(z[:, 0], t[:, 0])


def test_sigmoid_adversarial_rows_agree() -> None:
    """0 * log(0), exact zeros, NaN and infinite logits and targets, beyond float32."""
    z = np.array(
        [
            [0.0, -0.0, 1e-45, 30.0],
            [120.0, -120.0, 800.0, -800.0],  # log(0) times a zero target
            [np.nan, 1.0, 2.0, 3.0],
            [np.inf, 1.0, 2.0, 3.0],
            [-np.inf, 1.0, 2.0, 3.0],
            [1e39, 0.0, 1.0, -1.0],  # beyond float32
            [5.0, 5.0, 5.0, 5.0],
        ]
    )
    t = np.array(
        [
            [0.0, 1.0, 0.5, 1.0],
            [0.0, 1.0, 0.0, 1.0],
            [1.0, 0.0, 1.0, 0.0],
            [1.0, 0.0, 1.0, 0.0],
            [1.0, 0.0, 1.0, 0.0],
            [1.0, 0.0, 1.0, 0.0],
            [np.nan, 0.0, 1.0, 0.0],  # an invalid target: the numpy specification's values
        ]
    )
    _check_sigmoid(z, t)
    _check_sigmoid(z.ravel(), t.ravel())
    finite = np.isfinite(z).all(axis=1) & (np.abs(z) < 3e38).all(axis=1)
    _check_sigmoid(z[finite].astype(np.float32), t[finite])


def test_kernel_log_within_one_ulp_and_exact_at_one() -> None:
    """The kernel's log and log1p (fdlibm's algorithm) against numpy, and mpmath."""
    from cecheck import _kernel

    rng = np.random.default_rng(4)
    x = np.concatenate([rng.uniform(0, 2, 50000), 10.0 ** rng.uniform(-320, 0, 50000)])
    for one_plus, numpy_fn in ((False, np.log), (True, np.log1p)):
        got = np.empty_like(x)
        _kernel.apply("log1p" if one_plus else "log", x, got)
        want = numpy_fn(x)
        nonzero = want != 0
        ulps = np.abs(got[nonzero] - want[nonzero]) / np.spacing(np.abs(want[nonzero]))
        assert ulps.max() <= 1
    special = np.array([0.0, 1.0, 5e-324])
    got = np.empty_like(special)
    _kernel.apply("log", special, got)
    assert got[0] == -np.inf
    assert got[1] == 0.0
    mpmath.mp.dps = 40  # log(5e-324) at 40 digits, rounded to float64
    assert abs(got[2] - float(mpmath.log(mpmath.mpf(5e-324)))) <= np.spacing(744.0)


@pytest.mark.parametrize(
    ("task", "label_form", "shape"),
    [("binary", "binary", (3000,)), ("multilabel", "multihot", (600, 20))],
)
def test_sigmoid_engine_flags_and_causes_agree(
    task: str, label_form: str, shape: tuple[int, ...]
) -> None:
    rng = np.random.default_rng(12)
    scale = rng.choice([1.0, 20.0, 60.0, 120.0], shape[:1] + (1,) * (len(shape) - 1))
    z = (rng.standard_normal(shape) * scale).astype(np.float32)
    z[3] = np.nan
    z[7] = np.inf
    t = rng.integers(0, 2, shape).astype(np.float64)
    t[5] = 2.0  # an invalid target
    s = engine.Settings(DTYPES)
    slow, quick = _evaluate_both(z, t, DTYPES, task, label_form)
    near = _assert_same_diagnosis(slow, quick, s)
    assert near <= shape[0] // 100
    assert slow.diagnosis.flags.any(axis=0).sum() >= 6


# ------------------------------------------------------------------ soft labels


def _check_soft(z: np.ndarray, t: np.ndarray) -> None:
    """Every path and dtype of the soft-label kernel against the numpy functions on (z, t)."""
    _check_per_class(fast.soft, "soft", z, t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [1, 2, 10, 16, 17, 255, 256, 257, 3000])
def test_soft_random_logits_agree(dtype: type, n_classes: int) -> None:
    """Soft and one-hot targets; rows with a max above 80 take the direct exps."""
    rng = np.random.default_rng(n_classes)
    n = 40
    z = (rng.standard_normal((n, n_classes)) * rng.choice([0.5, 5.0, 30.0], (n, 1))).astype(dtype)
    z[::7] += 100
    t = rng.dirichlet(np.full(n_classes, 0.3), n)
    t[::3] = np.eye(n_classes)[rng.integers(0, n_classes, n)][::3]
    _check_soft(z, t)


def test_soft_adversarial_rows_agree() -> None:
    """Probabilities that underflow under a positive target, 0 * log(0), overflowing exps,
    NaN and infinite logits, a NaN target, and logits beyond float32."""
    z = np.array(
        [
            [0.0, -120.0, 0.0, 1.0],  # float32 probability underflows, target > 0
            [0.0, -800.0, 0.0, 1.0],  # ... in float64 too
            [0.0, -800.0, 0.0, 1.0],  # log(0) under a zero target: NaN
            [90.0, 80.0, 0.0, 1.0],  # float32 exp overflows
            [1000.0, 2000.0, 0.0, 1.0],  # ... and float64
            [np.nan, 1.0, 2.0, 3.0],
            [np.inf, 1.0, 2.0, 3.0],
            [1e39, 0.0, 1.0, 2.0],
            [1.0, 2.0, 3.0, 4.0],
        ]
    )
    t = np.array(
        [
            [0.25, 0.25, 0.25, 0.25],
            [0.25, 0.25, 0.25, 0.25],
            [0.5, 0.0, 0.25, 0.25],
            [0.1, 0.2, 0.3, 0.4],
            [0.1, 0.2, 0.3, 0.4],
            [0.1, 0.2, 0.3, 0.4],
            [0.1, 0.2, 0.3, 0.4],
            [0.1, 0.2, 0.3, 0.4],
            [np.nan, 0.2, 0.3, 0.5],
        ]
    )
    _check_soft(z, t)
    finite = np.isfinite(z).all(axis=1) & (np.abs(z) < 3e38).all(axis=1)
    _check_soft(z[finite].astype(np.float32), t[finite])


def test_soft_engine_flags_and_causes_agree() -> None:
    rng = np.random.default_rng(13)
    n, c = 800, 30
    z = (rng.standard_normal((n, c)) * rng.choice([1.0, 20.0, 60.0, 400.0], (n, 1))).astype(
        np.float32
    )
    z[3, 4] = np.nan
    t = rng.dirichlet(np.full(c, 0.2), n)
    t[5, 0] = -1.0  # not a probability row
    s = engine.Settings(DTYPES)
    slow, quick = _evaluate_both(z, t, DTYPES, "multiclass", "soft")
    near = _assert_same_diagnosis(slow, quick, s)
    assert near <= n // 100
    assert slow.diagnosis.flags.any(axis=0).sum() >= 6


# ------------------------------------------------------------ the same answer at any size


def _losses(frame: pd.DataFrame) -> pd.DataFrame:
    """The loss columns of a to_frame() result, as one float64 array."""
    return frame[[c for c in frame.columns if c.endswith(("float32", "float64", "reference"))]]


def test_a_row_gets_the_same_losses_and_flags_alone_as_in_a_big_input() -> None:
    """The kernel serves every size: rows of a run over 2**20 logits, run again alone and
    ten at a time, give the same bits and flags (numpy for small inputs and the kernel for
    big ones differed by a few ulp, and a borderline row's flags with them)."""
    rng = np.random.default_rng(21)
    n, c = 140_000, 8  # 1.12M logits
    z = rng.standard_normal((n, c)) * rng.choice([1.0, 4.0, 30.0], (n, 1))
    y = rng.integers(0, c, n)
    y[::97] = -100
    big = engine.compare(z, y).to_frame()
    flagged = np.flatnonzero(big["flags"].str.contains("inaccurate").to_numpy())
    assert flagged.size > 100
    picks = np.concatenate([flagged[:: flagged.size // 20], rng.integers(0, n, 10), [0, 97]])
    for i in picks:
        alone = engine.compare(z[i : i + 1], y[i : i + 1]).to_frame()
        assert_array_equal(_losses(alone).to_numpy()[0], _losses(big).to_numpy()[i])
        assert alone["flags"][0] == big["flags"][i]
    for i in picks[:8]:
        lo = max(0, i - 4)
        ten = engine.compare(z[lo : lo + 10], y[lo : lo + 10]).to_frame()
        assert_array_equal(_losses(ten).to_numpy(), _losses(big).to_numpy()[lo : lo + 10])
        assert list(ten["flags"]) == list(big["flags"][lo : lo + 10])


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "numpy"])
@pytest.mark.parametrize("c", [2, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_loss_is_negative_when_the_target_wins_by_far(
    kernel: bool, c: int, dtype: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loss is -log(p) with p <= 1, or a sum of such terms: never below 0. The x86-64-v4
    kernel once gave 33,341 negative naive float32 losses on 600,000 rows like these."""
    if kernel:
        monkeypatch.delenv("CECHECK_NO_KERNEL", raising=False)
    else:
        monkeypatch.setenv("CECHECK_NO_KERNEL", "1")
    rng = np.random.default_rng(c)
    n = 20_000
    z = rng.uniform(-20, 50, (n, c))
    y = rng.integers(0, c, n)
    z[np.arange(n), y] += rng.uniform(15, 80, n)  # the target wins by 15 to 80
    z = z.astype(dtype)
    onehot = np.eye(c)[y]
    for task, labels in (("multiclass", y), ("multiclass", onehot), ("multilabel", onehot)):
        losses_ = _losses(engine.compare(z, labels, task=task).to_frame()).to_numpy()
        assert not (losses_ < 0).any(), f"{task}: {(losses_ < 0).sum()} negative losses"
    binary = _losses(engine.compare(z[:, 0] - z[:, 1], (y == 0) * 1.0, task="binary").to_frame())
    assert not (binary.to_numpy() < 0).any()


def test_regression_textbook_float32_of_a_dominant_target_is_zero() -> None:
    """z = [10.85, 41.21], y = 1: exp(10.85) is below half a float32 ulp of exp(41.21), so
    p = 1 and the textbook float32 loss is 0, as numpy says; the x86-64-v4 kernel gave 1.5e-6
    (the row 8 times: short rows go 8 at a time, one per vector lane)."""
    z = np.tile([10.85, 41.21], (8, 1))
    y = np.ones(8, dtype=np.int64)
    assert losses.textbook_multiclass(z, y, prec.get("float32")).loss[0] == 0.0
    results, _, _, _ = fast.multiclass_index(z, y, DTYPES)
    assert_array_equal(results[("textbook", "float32")].loss, np.zeros(8))
    results, _, _, _ = fast.multiclass_index(z[:1], y[:1], DTYPES)
    assert results[("textbook", "float32")].loss[0] == 0.0


@pytest.mark.parametrize("c", [1, 2, 3, 7, 8, 9, 16])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_short_row_gets_the_same_bits_in_a_batch_as_alone(c: int, dtype: type) -> None:
    """Short rows go 8 at a time when all 8 are tame, else one by one: the same bits."""
    rng = np.random.default_rng(c)
    z = (rng.standard_normal((16, c)) * 5).astype(dtype)
    y = rng.integers(0, c, 16)
    z[9, 0] = 500.0  # the second batch has a row beyond the tame range: computed row by row
    together, _, _, _ = fast.multiclass_index(z, y, DTYPES)
    for i in range(16):
        alone, _, _, _ = fast.multiclass_index(z[i : i + 1], y[i : i + 1], DTYPES)
        for key, r in together.items():
            assert_array_equal(alone[key].loss, r.loss[i : i + 1], err_msg=f"{key} row {i}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_cancellation_zeros_and_clamps_agree(dtype: type) -> None:
    """binary_cross_entropy_with_logits' exact zeros (t = 0, z < 0: (1 - t) z and
    log_sigmoid(z) cancel from z = -15 in float32, about -37 in float64), its near-zeros on
    either side, and binary_cross_entropy's clamp of log(0) at -100 (a saturated sigmoid):
    the same exact 0 and 100, the same cancellation and saturation bits."""
    z = np.concatenate([np.linspace(-60.0, 0.0, 4001), np.linspace(-760.0, 760.0, 3001)])
    z = np.concatenate([z, -z, [0.0, -0.0, 15.0, -15.0, 36.7, -36.7, 37.0, -37.0]])
    t = np.resize([0.0, 1.0, 0.0, 0.5, 0.0, 1.0, 0.25], z.size)
    _check_sigmoid(z.astype(dtype), t)
    # multilabel rows of those, the cancelled classes averaged with the others
    n = z.size // 8
    _check_sigmoid(z[: 8 * n].reshape(n, 8).astype(dtype), t[: 8 * n].reshape(n, 8))


def test_torch_naive_softmax_underflow_and_zero_times_inf_agree() -> None:
    """torch.log(torch.softmax(z)): the target's probability underflowing (inf, and only
    there), a probability of 1 (exactly 0), 0 * log 0 = NaN under a zero soft target, margins
    across the float32 and float64 underflow thresholds, ties at the max."""
    rng = np.random.default_rng(21)
    n, c = 600, 9
    z = rng.standard_normal((n, c))
    margin = rng.uniform(0.0, 800.0, n)  # the target (class 0) below the max by this much
    z[:, 0] = z[:, 1:].max(axis=1) - margin
    z[::5, 0] = z[::5, 1:].max(axis=1)  # ties at the max
    z[1::7, 1] += 200.0  # a far max: probability 1 for it, and exactly 0 losses
    y = np.zeros(n, dtype=np.int64)
    y[1::7] = 1
    _check_paths(z, y)
    _check_paths(z.astype(np.float32), y)
    t = rng.dirichlet(np.ones(c), n)
    t[::2, 0] = 0.0  # a zero target on the underflowing class: 0 * log 0
    t[::3] = np.eye(c)[y[::3]]  # one-hot
    _check_soft(z, t)
    _check_soft(z.astype(np.float32), t)


@pytest.mark.parametrize(
    ("task", "form"),
    [
        ("multiclass", "index"),
        ("multiclass", "soft"),
        ("binary", "binary"),
        ("multilabel", "multihot"),
    ],
)
def test_kernel_paths_take_torch_paths_from_numpy_only_on_special_rows(
    task: str, form: str
) -> None:
    """KernelPaths computes PyTorch's naive and stable paths on the kernel: the numpy functions
    see only the rows the kernel leaves to them (here the one with a NaN logit)."""
    from cecheck import families, pathsets

    family = families.get(task, form)
    rng = np.random.default_rng(3)
    shape = (50,) if task == "binary" else (50, 6)
    z = rng.standard_normal(shape) * 10
    z[7] = np.nan
    if form == "index":
        target = rng.integers(0, 6, 50)
    elif form == "soft":
        target = rng.dirichlet(np.ones(6), 50)
    else:
        target = rng.integers(0, 2, shape).astype(np.float64)
    seen: list[int] = []

    def counted(f: Callable) -> Callable:
        @functools.wraps(f)
        def g(zz: Array, tt: Array, p: prec.Precision, *args: object, **kw: object) -> Any:
            seen.append(len(zz))
            return f(zz, tt, p, *args, **kw)

        return g

    fw = dataclasses.replace(TORCH, paths={k: counted(f) for k, f in TORCH.paths.items()})
    paths = pathsets.KernelPaths(family, DTYPES, fw)
    computed = paths.compute(z, target, target)
    assert seen == [1] * 4  # naive and stable, in two dtypes, on the NaN row only
    for d in DTYPES:
        for path in ("naive", "stable"):
            want = TORCH.path(path, family.kind)(z, target, prec.get(d)).loss
            _assert_close(computed.results[(path, d)].loss, want, d, f"{path}_{d}")
