"""A real float16 failure, made here: ``python sample_data/make_fp16_lm.py`` (needs PyTorch).

A small character-level language model (4 characters of context, an embedding and one linear
layer) learns the source of Python's own ``textwrap`` module, in float16, with the loss
written by hand the way many people write it::

    loss = -torch.log(torch.softmax(z, -1))[rows, y].mean()

A step whose gradients are not finite is skipped, as ``torch.amp.GradScaler`` skips it. As
the model grows confident, its logits spread; at step 940 a batch holds a row whose target
probability underflows float16 (below 6e-8, the smallest subnormal): its ``softmax`` is 0,
``log(0)`` is -inf, and the mean loss is inf. That batch is written here:

- ``fp16_lm_logits.npy`` (256, V) float16, the logits torch computed;
- ``fp16_lm_labels.npy`` (256,) int64, the next characters;
- ``fp16_lm_torch_loss.npy`` (256,) float16, torch's ``-log(softmax(z))[y]`` per row.

Seeded and single-threaded; another CPU (or PyTorch version) may take other rounding in
float16 matrix products and stop at another step: the committed files are the record.
"""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
CONTEXT, WIDTH, BATCH, LR, SEED = 4, 32, 256, 0.3, 0


class CharLM(torch.nn.Module):
    """The next character from the previous CONTEXT: embeddings, then one linear layer."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, WIDTH)
        self.out = torch.nn.Linear(WIDTH * CONTEXT, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(x).flatten(1))


Tensor = torch.Tensor


def train_until_the_loss_breaks(max_steps: int = 20_000) -> tuple[int, Tensor, Tensor, Tensor]:
    """The step, logits, targets and per-row losses of the first batch whose loss is not
    finite."""
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    text = inspect.getsource(textwrap)
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text])
    model = CharLM(len(chars)).half()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    rows = torch.arange(BATCH)
    for step in range(max_steps):
        start = torch.randint(0, len(data) - CONTEXT - 1, (BATCH,))
        x = torch.stack([data[start + k] for k in range(CONTEXT)], 1)
        y = data[start + CONTEXT]
        z = model(x)
        row_loss = -torch.log(torch.softmax(z, -1))[rows, y]
        loss = row_loss.mean()
        if not torch.isfinite(loss):
            return step, z.detach(), y, row_loss.detach()
        opt.zero_grad()
        loss.backward()
        if all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None):
            opt.step()
    raise RuntimeError(f"the loss stayed finite for {max_steps} steps")


def main() -> None:
    step, z, y, row_loss = train_until_the_loss_breaks()
    np.save(HERE / "fp16_lm_logits.npy", z.numpy())
    np.save(HERE / "fp16_lm_labels.npy", y.numpy().astype(np.int64))
    np.save(HERE / "fp16_lm_torch_loss.npy", row_loss.numpy())
    bad = np.flatnonzero(~np.isfinite(row_loss.numpy()))
    print(f"step {step}: {len(bad)} non-finite rows of {len(y)}: {bad.tolist()}")


if __name__ == "__main__":
    main()
