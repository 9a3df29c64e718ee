"""Random and adversarial rows for the PyTorch emulations, and the torch calls they emulate.

Shared by tests/test_torch_paths.py and tools/parity.py (which prints the table). Nothing here
imports torch at module level: :func:`torch_loss` takes the ``torch`` module as an argument.

Each :class:`Case` is a block of rows of one family with the options of one torch call
(class weights, ``ignore_index``, label smoothing, ``pos_weight``). The blocks cover, per
family: ordinary logits at several scales, huge margins (target far below the max: its
probability underflows; far above: a tiny loss), ties, tiny losses, ``-inf`` masks on
non-target classes, ignored rows, smoothing and weights; binary and multilabel: logits
around the cancellation points of ``(1 - t) · z - log_sigmoid(z)``, saturated sigmoids, soft
targets and ``pos_weight``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cecheck.frameworks import torch_fused, torch_naive
from cecheck.frameworks.torch_common import TorchPathResult
from cecheck.precision import get

FAMILIES = ("index", "soft", "binary", "multilabel")
DTYPES = ("float16", "bfloat16", "float32", "float64")
PATHS = ("naive", "stable")
IGNORE = -100


@dataclass
class Case:
    family: str
    name: str
    z: np.ndarray  # float64 logits: (N, C), or (N,) for binary
    labels: np.ndarray  # (N,) index, (N, C) targets, or (N,) binary targets
    options: dict[str, Any] = field(default_factory=dict)


def _logits(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    scale = rng.choice([0.1, 1.0, 3.0, 10.0, 30.0, 100.0, 1e3, 1e4], size=(n, 1))
    return rng.standard_normal((n, c)) * scale


def _index_rows(rng: np.random.Generator, n: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Random and adversarial multiclass rows with their index targets."""
    z = _logits(rng, n, c)
    y = rng.integers(0, c, n)
    k = n // 6
    # huge margins: the target far below the max (underflow) or far above (tiny loss)
    gap = rng.uniform(5, 60, k)
    z[:k] = rng.standard_normal((k, c))
    z[np.arange(k), y[:k]] += np.where(rng.random(k) < 0.5, -gap, gap)
    # ties: every class equal, or the target tied with another class for the max
    z[k : 2 * k] = rng.choice([0.0, 1.0, 1000.0, -5.0], size=(k, 1))
    z[2 * k : 3 * k, 0] = z[2 * k : 3 * k].max(axis=1)
    y[2 * k : 3 * k] = 0
    # tiny losses: the target holds the max by 8 to 30
    z[3 * k : 4 * k] = rng.standard_normal((k, c))
    z[np.arange(3 * k, 4 * k), y[3 * k : 4 * k]] = rng.uniform(8, 30, k)
    # -inf masks on up to half the non-target classes
    rows = np.arange(4 * k, 5 * k)
    mask = rng.random((k, c)) < 0.5
    mask[np.arange(k), y[rows]] = False
    z[rows] = np.where(mask, -np.inf, z[rows])
    return z, y


def _soft_targets(rng: np.random.Generator, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One-hot rows, soft rows, and soft rows with zero mass on some classes."""
    n, c = z.shape
    t = np.zeros((n, c))
    t[np.arange(n), y] = 1.0
    soft = rng.dirichlet(np.ones(c), n)
    pick = rng.random(n)
    t = np.where((pick < 0.4)[:, None], soft, t)
    sparse = np.where(rng.random((n, c)) < 0.5, 0.0, soft)
    sparse[np.arange(n), y] += 0.1
    sparse /= sparse.sum(axis=1, keepdims=True)
    return np.where((pick > 0.7)[:, None], sparse, t)


def _binary_logits(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    z = rng.standard_normal(shape) * rng.choice([1.0, 5.0, 20.0, 100.0], size=shape)
    edge = rng.random(shape) < 0.3  # around the cancellation points and saturation
    return np.where(edge, rng.choice([-1.0, 1.0], shape) * rng.uniform(2, 40, shape), z)


def _binary_targets(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    hard = rng.integers(0, 2, shape).astype(float)
    return np.where(rng.random(shape) < 0.25, rng.random(shape), hard)


def cases(family: str, n: int = 600, seed: int = 0) -> Iterator[Case]:
    """The blocks of rows of ``family`` (see the module docstring)."""
    rng = np.random.default_rng([seed, FAMILIES.index(family)])
    if family in ("index", "soft"):
        for c in (2, 3, 10, 37):
            z, y = _index_rows(rng, n, c)
            w = rng.uniform(0.2, 3.0, c)
            if family == "index":
                y_ign = np.where(rng.random(n) < 0.1, IGNORE, y)
                yield Case(family, f"C={c}", z, y)
                yield Case(family, f"C={c} ignore_index", z, y_ign, {"ignore_index": IGNORE})
                yield Case(family, f"C={c} weights", z, y_ign, {"weight": w})
                yield Case(family, f"C={c} smoothing 0.1", z, y_ign, {"label_smoothing": 0.1})
                yield Case(
                    family, f"C={c} smoothing 0.3 + weights", z, y_ign,
                    {"label_smoothing": 0.3, "weight": w},
                )  # fmt: skip
            else:
                t = _soft_targets(rng, z, y)
                yield Case(family, f"C={c}", z, t)
                yield Case(family, f"C={c} weights", z, t, {"weight": w})
                yield Case(family, f"C={c} smoothing 0.2", z, t, {"label_smoothing": 0.2})
        # the issue's label-smoothing overflow, and logits near float16's range
        z = np.array([[0.0] + [-1e4] * 9, [6e4, -6e4, 0.0] + [0.0] * 7])
        if family == "index":
            yield Case(family, "smoothing overflow", z, np.array([0, 0]), {"label_smoothing": 0.1})
        else:
            t = np.eye(10)[[0, 0]]
            yield Case(family, "smoothing overflow", z, t, {"label_smoothing": 0.1})
    elif family == "binary":
        z = _binary_logits(rng, (4 * n,))
        t = _binary_targets(rng, z.shape)
        yield Case(family, "random", z, t)
        grid = np.concatenate([-np.geomspace(1e-3, 120, n), np.geomspace(1e-3, 120, n)])
        yield Case(family, "t=0 grid", grid, np.zeros_like(grid))
        yield Case(family, "t=1 grid", grid, np.ones_like(grid))
        yield Case(family, "pos_weight 3", z, t, {"pos_weight": 3.0})
    else:
        for c in (3, 20):
            z = _binary_logits(rng, (n, c))
            t = _binary_targets(rng, z.shape)
            yield Case(family, f"C={c}", z, t)
            yield Case(family, f"C={c} pos_weight", z, t, {"pos_weight": rng.uniform(0.5, 4, c)})


def ours(path: str, case: Case, dtype: str) -> TorchPathResult:
    """The emulation of ``path`` on ``case`` in ``dtype``."""
    module = torch_naive if path == "naive" else torch_fused
    fn = getattr(module, f"{path}_{case.family}")
    opts = dict(case.options)
    if path == "naive":  # the hand-written loss takes no smoothing or pos_weight
        opts.pop("label_smoothing", None)
        opts.pop("pos_weight", None)
        if case.family == "soft":
            opts.pop("weight", None)
    return fn(case.z, case.labels, get(dtype), **opts)


def torch_loss(torch: Any, path: str, case: Case, dtype: str) -> np.ndarray:
    """What installed torch gives for the same call, as float64."""
    F = torch.nn.functional
    tdt = getattr(torch, dtype)
    z = torch.from_numpy(case.z).to(tdt)
    opts = case.options
    w = opts.get("weight")
    wt = None if w is None else torch.from_numpy(np.asarray(w)).to(tdt)
    if case.family == "index":
        y = torch.from_numpy(case.labels)
        ii = opts.get("ignore_index", IGNORE)
        if path == "naive":
            out = F.nll_loss(
                torch.log(torch.softmax(z, -1)), y, wt, ignore_index=ii, reduction="none"
            )
        else:
            eps = opts.get("label_smoothing", 0.0)
            out = F.cross_entropy(z, y, wt, ignore_index=ii, label_smoothing=eps, reduction="none")
    elif case.family == "soft":
        t = torch.from_numpy(case.labels).to(tdt)
        if path == "naive":
            out = -(t * torch.log(torch.softmax(z, -1))).sum(-1)
        else:
            eps = opts.get("label_smoothing", 0.0)
            out = F.cross_entropy(z, t, wt, label_smoothing=eps, reduction="none")
    else:
        t = torch.from_numpy(case.labels).to(tdt)
        if path == "naive":
            out = F.binary_cross_entropy(torch.sigmoid(z), t, reduction="none")
        else:
            pw = opts.get("pos_weight")
            pwt = None if pw is None else torch.as_tensor(np.asarray(pw)).to(tdt)
            out = F.binary_cross_entropy_with_logits(z, t, pos_weight=pwt, reduction="none")
        if case.family == "multilabel":
            out = out.mean(-1)
    return out.to(torch.float64).numpy()


def finiteness(x: np.ndarray) -> np.ndarray:
    """Per row: 0 finite, 1 NaN, 2 +inf, 3 -inf."""
    return np.select([np.isnan(x), x == np.inf, x == -np.inf], [1, 2, 3], 0)


def compare(expected: np.ndarray, got: np.ndarray, dtype: str) -> tuple[int, float]:
    """(rows whose finiteness differs: NaN, +inf, -inf or finite; the largest error on rows
    finite in both, in units of ``eps · max(1, |L|)`` with ``L`` torch's loss)."""
    got = np.asarray(got, dtype=np.float64)
    mismatches = int((finiteness(expected) != finiteness(got)).sum())
    both = np.isfinite(expected) & np.isfinite(got)
    eps = get(dtype).eps
    err = np.abs(got[both] - expected[both]) / (eps * np.maximum(1.0, np.abs(expected[both])))
    return mismatches, float(err.max(initial=0.0))
