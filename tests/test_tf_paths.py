"""cecheck.frameworks.tf_paths against TensorFlow 2.21 / Keras 3 on CPU, against values from
TensorFlow's own test suite, and against mpmath.

The parity tests skip when tensorflow or keras is not installed; the others need neither.

Stated bound, in units of ``eps · max(1, |L|)`` (``L`` TensorFlow's loss), on rows finite in
both: 2 in float16 and bfloat16; 16 in float32 and float64 (Eigen's and oneDNN's own exp/log
and order of summation over up to 1,000 classes; the largest seen on seeds 0, 1, 3, 7 and 11
is 11). Eigen's float32 sigmoid is emulated operation by operation: were it
computed as ``1 / (1 + exp(-z))`` instead, the Keras path's ``log(1 - s)`` would magnify its
few ulp to hundreds of units near saturation.
"""

from __future__ import annotations

import os

import jaxtf_cases as cases
import mp_reference as mp
import numpy as np
import pytest

from cecheck.frameworks import eigen_half, tf_paths
from cecheck.precision import get


@pytest.fixture(scope="module")
def tk() -> tuple[object, object]:
    """(tensorflow, keras); the test is skipped without them."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = pytest.importorskip(
        "tensorflow", reason="tensorflow is not installed", exc_type=ImportError
    )
    keras = pytest.importorskip("keras", reason="keras is not installed", exc_type=ImportError)
    return tf, keras


def _bound(dtype: str) -> float:
    return 2.0 if get(dtype).emulated else 16.0


# The backend tf_paths models tf.nn.softmax by, per format (its module docstring).
MODELLED_SOFTMAX = {"float16": "eigen", "bfloat16": "onednn", "float32": "onednn"}
# The CPU features TensorFlow's choice reads (Linux's names for them).
ONEDNN_FLAGS = {"avx512f", "avx512bw", "avx512_fp16", "amx_fp16", "avx_ne_convert"}


def _cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux names them (empty where /proc/cpuinfo has none)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def tf_softmax_backend(dtype: str, flags: set[str], onednn_opts: str | None) -> str:
    """Where TensorFlow 2.21 on x86 sends ``tf.nn.softmax`` in ``dtype``: oneDNN unless
    ``TF_ENABLE_ONEDNN_OPTS`` is off, and for float16/bfloat16 only on the CPUs
    tensorflow/core/util/util.cc, ``IsDataTypeSupportedByOneDNNOnThisCPU``, accepts;
    Eigen otherwise."""
    if dtype == "float64" or (onednn_opts or "1").strip().lower() in ("0", "false"):
        return "eigen"
    if dtype == "float16":
        fp16 = "avx512bw" in flags and bool({"avx512_fp16", "amx_fp16"} & flags)
        return "onednn" if fp16 or "avx_ne_convert" in flags else "eigen"
    if dtype == "bfloat16":
        return "onednn" if {"avx512f", "avx_ne_convert"} & flags else "eigen"
    return "onednn"


def test_tf_softmax_backend_follows_tensorflows_cpu_rule() -> None:
    """This machine's kind (AVX-512 without FP16: Zen 4, Ice Lake), Sapphire Rapids, a CPU
    without AVX-512, and oneDNN turned off."""
    zen4 = {"avx512f", "avx512bw", "avx512_bf16"}
    spr = zen4 | {"avx512_fp16", "amx_bf16", "amx_fp16"}
    assert [tf_softmax_backend(d, zen4, None) for d in cases.DTYPES] == [
        "eigen",
        "onednn",
        "onednn",
        "eigen",
    ]
    assert tf_softmax_backend("float16", spr, None) == "onednn"
    assert tf_softmax_backend("float16", {"avx2", "avx_ne_convert"}, None) == "onednn"
    assert tf_softmax_backend("bfloat16", {"avx2", "f16c"}, "1") == "eigen"
    assert tf_softmax_backend("float32", spr, "0") == "eigen"
    assert tf_softmax_backend("float16", spr, "false") == "eigen"


@pytest.mark.parametrize("path", cases.PATHS)
@pytest.mark.parametrize("dtype", cases.DTYPES)
@pytest.mark.parametrize("family", cases.FAMILIES)
def test_same_finiteness_and_values_as_tensorflow(tk, family: str, dtype: str, path: str) -> None:
    tf, keras = tk
    p = get(dtype)
    backend = tf_softmax_backend(dtype, _cpu_flags(), os.environ.get("TF_ENABLE_ONEDNN_OPTS"))
    softmax = path == "naive" and family in ("index", "soft") and dtype in MODELLED_SOFTMAX
    if softmax and backend != MODELLED_SOFTMAX[dtype]:
        seen = sorted(_cpu_flags() & ONEDNN_FLAGS)
        pytest.skip(
            f"tf.nn.softmax in {dtype} runs {backend} here (CPU flags {seen} of "
            f"{sorted(ONEDNN_FLAGS)}, TF_ENABLE_ONEDNN_OPTS="
            f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS')}); cecheck models it as "
            f"{MODELLED_SOFTMAX[dtype]}"
        )
    for z, t in cases.blocks(family, 3000, seed=1):
        ours = tf_paths.PATHS[(path, family)](z, t, p).loss.astype(np.float64)
        theirs = cases.tf_loss(tf, keras, path, family, z, t, dtype)
        bad = np.nonzero(cases.category(ours) != cases.category(theirs))[0]
        assert len(bad) == 0, (z[bad[0]], t[bad[0]], ours[bad[0]], theirs[bad[0]])
        both = np.isfinite(theirs)
        scale = np.maximum(1.0, np.abs(theirs[both]))
        err = np.abs(ours[both] - theirs[both]) / (p.eps * scale)
        assert err.max(initial=0) <= _bound(dtype), (family, dtype, path, err.max())


SEED = np.array([[1000.0, 2000.0, 2500.0]])  # the TensorFlow seed example, target 1


def test_seed_example() -> None:
    """Naive: inf in float32 (the target's probability e^-500 underflows), 500 in float64;
    stable: 500 in both, the exact loss."""
    y = np.array([1])
    exact = mp.multiclass(SEED[0], 1)
    assert exact == 500.0
    r32 = tf_paths.naive_index(SEED, y, get("float32"))
    assert np.isposinf(r32.loss[0])
    assert r32.prob_underflow[0]
    assert not r32.exp_overflow[0]
    assert tf_paths.naive_index(SEED, y, get("float64")).loss[0] == exact
    for dtype in ("float32", "float64"):
        assert tf_paths.stable_index(SEED, y, get(dtype)).loss[0] == exact


def test_seed_example_in_tensorflow(tk) -> None:
    tf, keras = tk
    y = np.array([1])
    assert np.isposinf(cases.tf_loss(tf, keras, "naive", "index", SEED, y, "float32")[0])
    assert cases.tf_loss(tf, keras, "naive", "index", SEED, y, "float64")[0] == 500.0
    for dtype in ("float32", "float64"):
        assert cases.tf_loss(tf, keras, "stable", "index", SEED, y, dtype)[0] == 500.0


def test_values_of_tensorflows_own_tests() -> None:
    """python/kernel_tests/nn_ops/xent_op_test_base.py: ``testSingleClass`` (one class: loss
    0 in float16, float32 and bfloat16, whatever the label) and ``testNpXent``."""
    labels = np.array([[-1.0], [0.0], [1.0], [1.0]])
    logits = np.array([[1.0], [-1.0], [0.0], [1.0]])
    for dtype in ("float16", "float32", "bfloat16"):
        np.testing.assert_array_equal(tf_paths.stable_soft(logits, labels, get(dtype)).loss, 0)
    z = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    t = np.array([[0.0, 0.0, 0.0, 1.0], [0.0, 0.5, 0.5, 0.0]])
    loss = tf_paths.stable_soft(z, t, get("float32")).loss
    np.testing.assert_allclose(loss, [1.3862, 1.9401], rtol=1e-3, atol=1e-3)


def test_softmax_loss_masked_class_with_zero_weight_is_nan() -> None:
    """xent_op.h: ``t · (log Σ - (z - max))`` is 0 · inf on a class masked with -inf."""
    r = tf_paths.stable_soft(
        np.array([[0.0, -np.inf, 0.0]]), np.array([[0.5, 0.0, 0.5]]), get("float32")
    )
    assert np.isnan(r.loss[0])
    assert r.zero_times_inf[0]


def test_keras_clip_does_nothing_in_float16() -> None:
    """``1 - 1e-7`` rounds to 1 in float16, so a saturated sigmoid with t = 0 still takes
    log(0); in float32 the clip caps the loss at -log(1e-7 in float32)."""
    z, t = np.array([12.0]), np.array([0.0])
    r16 = tf_paths.naive_binary(z, t, get("float16"))
    assert np.isposinf(r16.loss[0])
    assert r16.sigmoid_saturated[0]
    r32 = tf_paths.naive_binary(np.array([20.0]), t, get("float32"))
    assert r32.sigmoid_saturated[0]
    assert r32.loss[0] == pytest.approx(-np.log(np.float64(1 - np.float32(1 - 1e-7))), rel=1e-6)


@pytest.mark.parametrize("dtype", cases.DTYPES)
def test_sigmoid_cross_entropy_with_logits_is_accurate_for_hard_labels(dtype: str) -> None:
    """``max(z, 0) - z·t + log1p(exp(-|z|))`` with t in {0, 1}: the linear part is exact, so
    within 4 eps of mpmath wherever the exact loss is well above the smallest normal."""
    p = get(dtype)
    rng = np.random.default_rng(3)
    z = p.cast(np.concatenate([rng.standard_normal(300) * 10, rng.uniform(-60, 60, 300)]))
    t = rng.choice([0.0, 1.0], z.size)
    z = z.astype(np.float64)
    exact = np.array([mp.binary(a, b) for a, b in zip(z, t, strict=True)])
    ours = tf_paths.stable_binary(z, t, p).loss.astype(np.float64)
    keep = exact > p.tiny / p.eps
    assert keep.sum() > 300
    err = np.abs(ours - exact)[keep] / (p.eps * exact[keep])
    assert err.max() <= 4, err.max()


def test_eigen_exp_float32() -> None:
    """Eigen's pexp_float: within 2 float32 ulp of exp, 1 at 0, 0 below -104 and at -inf,
    NaN kept."""
    x = np.linspace(-104, 88, 200_001, dtype=np.float32)
    with np.errstate(over="ignore"):
        ours = eigen_half.exp_float32(x).astype(np.float64)
    exact = np.exp(x.astype(np.float64))
    normal = exact >= np.finfo(np.float32).tiny
    assert np.all(np.abs(ours - exact)[normal] <= 2 * np.spacing(exact[normal].astype(np.float32)))
    special = eigen_half.exp_float32(np.float32([0, -104.5, -np.inf, np.nan]))
    np.testing.assert_array_equal(special, [1, 0, 0, np.nan])


def test_eigen_half_sum_order() -> None:
    """Lanes of 8 then one by one, every addition rounded to float16: 1024 then six halves
    one by one stays 1024 (each 1024.5 ties to even), where a float32 sum gives 1027. Past
    1,600 values the tree splits a row after the packet boundary past its middle (3,001
    values: at 1,504): 2048 and seven ones in the same lane stay 2048 within one leaf, and
    give 2056 (2055 ties to even) with the ones beyond the split."""
    e = np.zeros((1, 15), dtype=np.float32)
    e[0, 8] = 1024
    e[0, 9:] = 0.5
    assert eigen_half.row_sums(e)[0] == 1024
    assert e.sum() == 1027
    leaf = np.zeros((1, 1600), dtype=np.float32)
    leaf[0, 0] = 2048
    leaf[0, 32:256:32] = 1
    assert eigen_half.row_sums(leaf)[0] == 2048
    tree = np.zeros((1, 3001), dtype=np.float32)
    tree[0, 0] = 2048
    tree[0, 1504 : 1504 + 7 * 32 : 32] = 1
    assert eigen_half.row_sums(tree)[0] == 2056


def test_a_float16_row_sums_alike_wherever_it_sits() -> None:
    """A row of 2,001 classes (more than one leaf of Eigen's tree, not a multiple of 8) is
    summed alike alone and as the second row of a batch, where in TensorFlow it starts one
    value past a packet boundary and the tree splits it elsewhere (3,200 there, 3,202 at a
    boundary, for this row): a row's loss may not depend on how cecheck cuts the input into
    chunks or shards."""
    rng = np.random.default_rng(1)
    row = get("float16").round(rng.uniform(0, 1, (1, 2001)).astype(np.float32) ** 4 * 8)
    assert eigen_half.row_sums(row)[0] == 3202
    np.testing.assert_array_equal(eigen_half.row_sums(np.repeat(row, 3, axis=0)), [3202] * 3)
