"""What cecheck.torch.watch costs a training step: a small CPU step with and without it.

The step: an MLP (256 -> 512 -> 512 -> 100 classes, ReLU) on a batch of 256 rows, forward,
F.cross_entropy, backward, SGD. Three copies of the same model train side by side: one with
the loss wrapped, two without (the second a control: its ratio to the first is the noise of
the measurement). The steps are interleaved, in an order that rotates from one round to the
next, so that a load on a shared machine falls on all alike. Each sample times ``--block``
consecutive steps; the report is the median of each, and the ratios (target: within 3%).
Not a test: pytest does not collect it. Needs torch (``pip install torch==2.13.0``) and
safetensors.

    python tests/bench/watch_overhead.py              # 2000 samples of 2 steps each
    python tests/bench/watch_overhead.py --samples 500 --threads 2
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
    ap.add_argument("--samples", type=int, default=2000, help="timed blocks of each (default 2000)")
    ap.add_argument("--block", type=int, default=2, help="steps per timed block (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 100)
    )
    with tempfile.TemporaryDirectory() as dumps:
        steps = {
            "without watch": trainer(F.cross_entropy, copy.deepcopy(model)),
            "with watch": trainer(ct.watch(F.cross_entropy, dumps), copy.deepcopy(model)),
            "without (control)": trainer(F.cross_entropy, copy.deepcopy(model)),
        }
        names = list(steps)
        for _ in range(20):  # warm up
            for step in steps.values():
                step()
        times: dict[str, list[float]] = {name: [] for name in names}
        for i in range(args.samples):
            for name in names[i % 3 :] + names[: i % 3]:
                times[name].append(timed(steps[name], args.block))
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians["without watch"]
    print(
        f"training step, MLP 256-512-512-100, batch 256, {args.threads} thread(s), "
        f"{args.samples} samples of {args.block} steps each, interleaved"
    )
    for name, m in medians.items():
        ratio = "" if m is base else f"  ratio {m / base:.4f} ({(m / base - 1) * 100:+.2f}%)"
        print(f"  {name:18} median {m * 1e3:.3f} ms/step{ratio}")
    print("  target: with watch within 3% of without; the control shows the noise")


if __name__ == "__main__":
    main()
