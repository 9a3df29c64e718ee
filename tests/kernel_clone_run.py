"""Run every C kernel on fixed random and adversarial inputs; save the results to an .npz.

``python tests/kernel_clone_run.py OUT.npz``, with ``CECHECK_KERNEL_ISA`` set to the kernel
copy to run: tests/test_kernel_clones.py runs it once per copy and compares the files bit
for bit. The inputs come from a fixed seed, so every run computes the same ones.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np

from cecheck import _kernel, engine, fast, headroom, narrow

CLASSES = (1, 2, 3, 7, 16, 17, 300)
ROWS = 45  # five batches of 8 short rows and a tail


def _logits(rng: np.random.Generator, n: int, c: int) -> Iterator[tuple[str, np.ndarray]]:
    """(name, float64 logits) of every kind the kernels tell apart."""
    yield "normal", rng.standard_normal((n, c)) * 3
    margin = rng.standard_normal((n, c))
    margin[:, -1] += rng.uniform(20, 100, n)  # the target (the last class) wins by far
    yield "margin", margin
    yield "wide", rng.uniform(-2000, 2000, (n, c))  # beyond the tame range: direct exps
    # below zero: sigmoids whose torch stable loss cancels to 0 under a zero target (from
    # -15 in float32, -37 in float64) or saturates (clamped at 100); probabilities of 0
    yield "below", -rng.uniform(0.0, 120.0, (n, c)) * rng.choice([1.0, 8.0], (n, 1))
    yield "ties", rng.integers(-2, 3, (n, c)).astype(np.float64)  # ties at the max
    # a logit where the textbook exp overflows in float16 or bfloat16 (narrow_row decides it
    # from the max), or a value of the format below: at the target or elsewhere
    edge = rng.standard_normal((n, c)) * 2
    edge[np.arange(n), rng.integers(0, c, n)] = rng.choice([11.0859375, 11.09375, 88.5, 89.0], n)
    yield "edge", edge
    yield "tiny", rng.standard_normal((n, c)) * 1e-40  # float32 subnormals and zeros
    odd = rng.standard_normal((n, c)) * 10
    picks = rng.integers(0, n * c, 4 * n)
    specials = np.array([np.nan, np.inf, -np.inf, 1e39, -1e39, 1e308, -1e308, -0.0, 88.8, -104])
    odd.flat[picks] = rng.choice(specials, picks.size)
    yield "odd", odd
    masked = rng.standard_normal((n, c)) * 3  # -inf masks, never on the target (last class)
    masked[:, :-1][rng.random((n, c - 1)) < 0.4] = -np.inf
    masked[0, :] = -np.inf  # one row masked through and through: a masked target
    masked[1, -1] = -np.inf  # and one whose target alone is masked
    yield "mask", masked


def cases() -> Iterator[tuple[str, str, np.ndarray, np.ndarray]]:
    """(name, kernel, logits, labels) of every case, float32 and float64 logits."""
    rng = np.random.default_rng(12)
    for c in CLASSES:
        for kind, z64 in _logits(rng, ROWS, c):
            y = np.full(ROWS, c - 1, dtype=np.int64)
            y[::3] = rng.integers(0, c, len(y[::3]))
            soft = rng.dirichlet(np.ones(c), ROWS)
            soft[::4, 0] = 0.0
            hard = rng.integers(0, 2, (ROWS, c)).astype(np.float64)
            hard[::5] = rng.uniform(0, 1, hard[::5].shape)
            for dtype in (np.float32, np.float64):
                with np.errstate(over="ignore"):  # 1e39 and beyond: inf in float32
                    z = np.ascontiguousarray(z64.astype(dtype))
                name = f"{kind}-{c}-{np.dtype(dtype).name}"
                yield f"index-{name}", "multiclass_index", z, y
                yield f"sigmoid-{name}", "sigmoid", z, hard
                if c > 1:
                    yield f"soft-{name}", "soft", z, soft


def engine_with_ignored_rows() -> dict[str, np.ndarray]:
    """The engine's values and flags on multiclass rows, some ignored (label -100)."""
    rng = np.random.default_rng(13)
    out: dict[str, np.ndarray] = {}
    s = engine.Settings(("float16", "bfloat16", "float32", "float64"))
    for c in (2, 7, 300):
        z = rng.standard_normal((40, c)) * 4
        z[::6, 0] += 60.0
        z[2::6, 0] -= 150.0  # a target probability of 0 in torch's float32 naive path
        z[1::5, 1] = -np.inf  # masked classes: scored rows, or masked targets where y = 1
        y = rng.integers(0, c, 40)
        y[::4] = s.ignore_index
        r = engine.evaluate(z, y, "multiclass", "index", c, s, use_fast=True)
        for column, values in r.values.items():
            out[f"engine-{c}-{column}"] = values
        out[f"engine-{c}-flags"] = np.array([";".join(f) for f in r.diagnosis.flag_lists()])
    return out


def headroom_both_ways(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The headroom in every dtype (as its repr: every float to the bit) from the kernel's
    reference and ends, and from its reference with numpy reading the rows' ends."""
    _, ref, nonfinite, ends = fast.multiclass_index(z, y, ("float32",))
    found = []
    for given in (ends, None):
        run = headroom.Running(("float16", "bfloat16", "float32", "float64"))
        run.add(z, y, ~nonfinite, 0, ref, given)
        found.append(repr(run.result()))
    return np.array(found)


def run() -> dict[str, np.ndarray]:
    """Every case's losses and status bits, and the kernel's exp and log on hard values."""
    out: dict[str, np.ndarray] = {"isa": np.array(_kernel.isa())}
    for name, kernel, z, labels in cases():
        n, c = z.shape
        loss = np.empty((7, n))  # textbook 32, 64, stable 32, 64, reference, naive 32, 64
        bits = np.empty(n, dtype=np.uint16)
        outputs = (loss,)
        if kernel == "multiclass_index":  # and each row's max, min, other classes' max, target
            outputs = (loss, np.empty((4, n)))
            out[f"{name}-ends"] = outputs[1]
        getattr(_kernel, kernel)(z, z.itemsize, n, c, labels, *outputs, bits, 0, n)
        out[f"{name}-loss"], out[f"{name}-bits"] = loss, bits
        if kernel == "multiclass_index" and z.dtype == np.float32:  # as bfloat16 bits
            stored = (z.view(np.uint32) >> 16).astype(np.uint16)
            loss, ends = np.empty((7, n)), np.empty((4, n))
            bits = np.empty(n, dtype=np.uint16)
            _kernel.multiclass_index(stored, 2, n, c, labels, loss, ends, bits, 0, n)
            out[f"{name}-as-bfloat16-loss"], out[f"{name}-as-bfloat16-bits"] = loss, bits
            out[f"{name}-as-bfloat16-ends"] = ends
        if kernel == "multiclass_index":
            out[f"{name}-headroom"] = headroom_both_ways(z, labels)
            lam = np.resize([0.38, 1.0, 3.0, 1e-3], n)  # headroom's scaled rows
            with np.errstate(invalid="ignore"):
                top = z.max(axis=1).astype(np.float64)
            rows, lse = np.arange(n)[::-1].copy(), np.empty(n)
            _kernel.scaled_lse(z, z.itemsize, n, c, rows, lam, top[::-1].copy(), lse, 0, n)
            out[f"{name}-scaled_lse"] = lse
        if kernel == "multiclass_index":  # and in float16 and bfloat16, alone and together
            for mask, formats in ((1, ("float16",)), (2, ("bfloat16",)), (3, fast.NARROW)):
                k = len(formats)
                loss, bits = np.empty((k, 3, n)), np.empty((k, n), dtype=np.uint16)
                tables, over_at = narrow.tables(formats), narrow.exp_overflow_at(formats)
                _kernel.narrow_index(
                    z, z.itemsize, n, c, labels, mask, tables, over_at, loss, bits, 0, n
                )
                for d, d_loss, d_bits in zip(formats, loss, bits, strict=True):
                    key = f"{name}-{d}" if k == 1 else f"{name}-both-{d}"
                    out[f"{key}-loss"], out[f"{key}-bits"] = d_loss, d_bits
    x = np.random.default_rng(14).standard_normal(4096) * 300
    x = np.concatenate([x, [0.0, -0.0, 709.78, 710.0, -745.1, -746.0, np.inf, -np.inf, np.nan]])
    for fn in ("exp", "log", "log1p"):
        arg = np.abs(x) if fn != "exp" else x
        result = np.empty_like(arg)
        _kernel.apply(fn, arg, result)
        out[f"apply-{fn}"] = result
    rng = np.random.default_rng(16)  # terms of mixed magnitudes, so that the order shows
    terms = rng.standard_normal(70_000) * 10.0 ** rng.uniform(-4, 4, 70_000)
    for n in (7, 128, 250, 256, 1000, 4099, 32000, 65543):  # halves equal or not
        out[f"pairwise_sum-{n}"] = np.float32([_kernel.pairwise_sum(terms[:n].astype(np.float32))])
    patterns = np.random.default_rng(15).integers(0, 1 << 32, 1 << 16, dtype=np.uint64)
    with np.errstate(invalid="ignore"):  # NaN patterns
        x32 = patterns.astype(np.uint32).view(np.float32).astype(np.float64)
    for fn in ("round_float16", "round_bfloat16", "float16_bits"):
        result = np.empty_like(x32)
        _kernel.apply(fn, x32, result)
        out[f"apply-{fn}"] = result
    out.update(engine_with_ignored_rows())
    return out


if __name__ == "__main__":
    np.savez(sys.argv[1], **run())
