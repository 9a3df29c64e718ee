"""Parity with PyTorch (skipped when torch is not installed).

The engine's stable columns (PyTorch's fused losses, cecheck.frameworks.torch_fused, with the
label smoothing and class weights of the run's settings) equal
``torch.nn.functional.cross_entropy`` and ``binary_cross_entropy_with_logits`` with
``reduction="none"`` (label smoothing, class weights and ``ignore_index`` included); the torch
path on probabilities equals ``binary_cross_entropy`` (its clamp at -100 included); and
:class:`~cecheck.frameworks.BatchMeans` equals ``reduction="mean"`` batch by batch, NaN of an
all-ignored batch included. Checked with torch 2.13.0 (CPU).

Tolerances: relative 1e-6 in float32 (a few units in the last place: the sums over classes
are associated differently) and 1e-12 in float64, with an absolute floor of a few ulp of 1 for
index labels (a small loss is the log of a sum near 1). For ``binary_cross_entropy_with_logits``
with soft targets or very confident rows the two formulas cancel terms of size |z|, so the
bound there is relative to ``max(|loss|, |z| + 1)`` (see that test).
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from cecheck import engine
from cecheck import frameworks as fw
from cecheck.precision import get
from cecheck.settings import Settings

torch = pytest.importorskip("torch", exc_type=ImportError)  # also a broken install
F = torch.nn.functional

RTOL = {"float32": 1e-6, "float64": 1e-12}
IGNORE = -100


def as_torch(x: np.ndarray) -> object:
    return torch.from_numpy(np.ascontiguousarray(x))


def logits(rng: np.random.Generator, n: int, c: int, dtype: str) -> np.ndarray:
    """Logits from ordinary to extreme (scale up to 1e3), so some rows are confident."""
    scale = rng.choice([1.0, 10.0, 100.0, 1000.0], size=(n, 1))
    return (rng.standard_normal((n, c)) * scale).astype(dtype)


def index_labels(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    y = rng.integers(0, c, n)
    y[rng.random(n) < 0.1] = IGNORE
    return y


def ours(
    z: np.ndarray,
    y: np.ndarray,
    dtype: str,
    eps: float = 0.0,
    w: np.ndarray | None = None,
    *,
    task: str = "multiclass",
    form: str = "index",
) -> np.ndarray:
    """What the engine computes: its ``stable_<dtype>`` column (ignored rows 0, as PyTorch's
    ``reduction="none"``)."""
    weights = None if w is None else tuple(w)
    s = Settings((dtype,), label_smoothing=eps, class_weights=weights)
    c = z.shape[1] if z.ndim == 2 else 1
    return engine.evaluate(z, y, task, form, c, s).values[f"stable_{dtype}"]


def ours_index(
    z: np.ndarray, y: np.ndarray, dtype: str, eps: float, w: np.ndarray | None
) -> np.ndarray:
    return ours(z, y, dtype, eps, w)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_index_labels(dtype: str, eps: float, weighted: bool) -> None:
    rng = np.random.default_rng(1)
    z, y = logits(rng, 400, 7, dtype), index_labels(rng, 400, 7)
    w = rng.uniform(0.1, 3.0, 7) if weighted else None
    expected = F.cross_entropy(
        as_torch(z),
        as_torch(y),
        weight=None if w is None else as_torch(w.astype(dtype)),
        ignore_index=IGNORE,
        label_smoothing=eps,
        reduction="none",
    ).numpy()
    # A row whose target is its max has the loss log(S) for a sum S >= 1 near 1: both libraries
    # round S to an ulp of 1, so a small loss (1.9e-4) differs by an ulp of 1 times the class
    # weight, not by an ulp of the loss (numpy's and torch's exp differ by an ulp on some CPUs).
    floor = 4 * float(np.finfo(dtype).eps) * (1.0 if w is None else float(w.max()))
    assert_allclose(ours_index(z, y, dtype, eps, w), expected, rtol=RTOL[dtype], atol=floor)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("eps", [0.0, 0.25])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_soft_targets(dtype: str, eps: float, weighted: bool) -> None:
    rng = np.random.default_rng(2)
    z = logits(rng, 300, 5, dtype)
    t = rng.dirichlet(np.ones(5), 300)
    w = rng.uniform(0.1, 3.0, 5) if weighted else None
    expected = F.cross_entropy(
        as_torch(z),
        as_torch(t.astype(dtype)),
        weight=None if w is None else as_torch(w.astype(dtype)),
        label_smoothing=eps,
        reduction="none",
    ).numpy()
    got = ours(z, t, dtype, eps, w, form="soft")
    assert_allclose(got, expected, rtol=RTOL[dtype], atol=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_cross_entropy_with_logits(dtype: str) -> None:
    rng = np.random.default_rng(3)
    z = (rng.standard_normal(500) * rng.choice([1.0, 30.0, 1000.0], 500)).astype(dtype)
    t = np.where(rng.random(500) < 0.5, rng.integers(0, 2, 500), rng.random(500)).astype(dtype)
    expected = F.binary_cross_entropy_with_logits(as_torch(z), as_torch(t), reduction="none")
    got = ours(z, t.astype(np.float64), dtype, task="binary", form="binary")
    # The same formula, (1 - t) z - log_sigmoid(z), with numpy's and torch's exp and log1p an
    # ulp apart: where its terms as large as |z| nearly cancel (a soft target, or t = 0 with
    # z < 0) the two differ by a few units in the last place of |z|, not of the loss.
    scale = np.maximum(np.abs(expected.numpy()), np.abs(z.astype(np.float64)) + 1)
    assert (np.abs(got - expected.numpy()) <= RTOL[dtype] * scale).all()
    # Where the formula does not cancel (a hard target, and not t = 0 with z < 0), the plain
    # relative bound.
    plain = (t == np.round(t)) & ~((t == 0) & (z < 0))
    assert plain.sum() > 100
    # atol: a subnormal loss (9.49e-320) has no relative accuracy to speak of.
    tiny = float(np.finfo(dtype).tiny)
    assert_allclose(got[plain], expected.numpy()[plain], rtol=RTOL[dtype], atol=tiny)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_probability_path_is_bceloss_with_its_clamp(dtype: str) -> None:
    rng = np.random.default_rng(4)
    q = np.concatenate(
        [rng.random(400), 10.0 ** -rng.uniform(0, 60, 100), [0.0, 1.0, 0.0, 1.0, 1e-45, 1 - 2**-24]]
    ).astype(dtype)
    t = np.concatenate(
        [rng.random(250), rng.integers(0, 2, 250), [1.0, 0.0, 0.5, 0.5, 1.0, 0.0]]
    ).astype(dtype)
    expected = F.binary_cross_entropy(as_torch(q), as_torch(t), reduction="none").numpy()
    got = fw.probs_loss("torch", "binary", q, t, get(dtype)).loss
    assert_allclose(got, expected, rtol=RTOL[dtype], atol=0)
    assert got[500:504].tolist() == [100.0, 100.0, 50.0, 50.0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_multiclass_probability_path_is_nll_of_log(dtype: str) -> None:
    rng = np.random.default_rng(5)
    q = rng.dirichlet(np.ones(4), 200).astype(dtype)
    q[:5, 0] = 0.0
    y = rng.integers(0, 4, 200)
    y[:5] = 0
    expected = F.nll_loss(torch.log(as_torch(q)), as_torch(y), reduction="none").numpy()
    got = fw.probs_loss("torch", "multiclass", q, y, get(dtype)).loss
    assert_allclose(got, expected, rtol=RTOL[dtype], atol=0)
    assert np.isinf(got[:5]).all()


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_batch_means_equal_pytorch_mean(eps: float, weighted: bool) -> None:
    rng = np.random.default_rng(6)
    n, c, batch = 50, 4, 8
    z, y = logits(rng, n, c, "float64"), index_labels(rng, n, c)
    y[8:16] = IGNORE  # the second batch is all ignore_index
    w = rng.uniform(0.1, 3.0, c) if weighted else None
    rows = ours_index(z, y, "float64", eps, w)
    bm = fw.BatchMeans(batch, ["stable_float64"], ignore_index=IGNORE)
    weights = fw.row_weights(y, "index", c, w, IGNORE)
    means = []
    for start in range(0, n, 7):  # chunks of 7 rows straddle the batches of 8
        sl = slice(start, start + 7)
        means.append(bm.add({"stable_float64": rows[sl]}, weights[sl], y[sl] == IGNORE))
    means.append(bm.flush())
    got = np.concatenate([m["stable_float64"] for m in means])
    tw = None if w is None else as_torch(w)
    expected = [
        F.cross_entropy(
            as_torch(z[s : s + batch]),
            as_torch(y[s : s + batch]),
            weight=tw,
            ignore_index=IGNORE,
            label_smoothing=eps,
        ).item()
        for s in range(0, n, batch)
    ]
    assert np.isnan(expected[1])
    assert_allclose(got, expected, rtol=1e-12)
    issue = bm.result().issues[0]
    assert issue.batch == 1
    assert "is -100 (ignore_index): PyTorch's mean is 0/0 = NaN" in issue.reason
