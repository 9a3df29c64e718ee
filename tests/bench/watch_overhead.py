"""What cecheck.torch.watch costs a training step: a small CPU step with and without it.

The step: an MLP (256 -> 512 -> 512 -> 100 classes, ReLU) on a batch of 256 rows, forward,
F.cross_entropy, backward, SGD. Two copies of the same model train side by side, one with
the loss wrapped; the steps are interleaved (A B, then B A, ...) so that a load on a shared
machine falls on both alike. Each sample times ``--block`` consecutive steps; the report is
the median of each, and their ratio (target: within 3%). Not a test: pytest does not collect
it. Needs torch (``pip install torch==2.13.0``) and safetensors.

    python tests/bench/watch_overhead.py              # 400 samples of 10 steps each
    python tests/bench/watch_overhead.py --samples 100 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import cecheck.torch as ct


def trainer(loss_fn: Callable[..., torch.Tensor], model: nn.Module) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(256, 256, generator=g), torch.randint(0, 100, (256,), generator=g)

    def step() -> None:
        loss = loss_fn(model(x), y, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def timed(step: Callable[[], None], block: int) -> float:
    start = time.perf_counter()
    for _ in range(block):
        step()
    return (time.perf_counter() - start) / block


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=400, help="timed blocks of each (default 400)")
    ap.add_argument("--block", type=int, default=10, help="steps per timed block (default 10)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 100)
    )
    with tempfile.TemporaryDirectory() as dumps:
        plain = trainer(F.cross_entropy, copy.deepcopy(model))
        watched = trainer(ct.watch(F.cross_entropy, dumps), copy.deepcopy(model))
        for _ in range(20):  # warm up both
            plain()
            watched()
        a: list[float] = []
        b: list[float] = []
        for i in range(args.samples):
            if i % 2:
                b.append(timed(watched, args.block))
                a.append(timed(plain, args.block))
            else:
                a.append(timed(plain, args.block))
                b.append(timed(watched, args.block))
    ma, mb = statistics.median(a), statistics.median(b)
    print(
        f"training step, MLP 256-512-512-100, batch 256, {args.threads} thread(s), "
        f"{args.samples} samples of {args.block} steps each"
    )
    print(f"  without watch: median {ma * 1e3:.3f} ms/step")
    print(f"  with watch:    median {mb * 1e3:.3f} ms/step")
    print(f"  ratio {mb / ma:.4f} ({(mb / ma - 1) * 100:+.2f}%; target within 3%)")


if __name__ == "__main__":
    main()
