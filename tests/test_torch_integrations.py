"""The README's recipes with the real libraries: ``cecheck.torch.watch`` in a Lightning
``training_step`` and as a Hugging Face ``Trainer``'s ``compute_loss_func``, each on a tiny
model built in code (nothing downloaded), with an inf injected so the loss turns NaN at a
known step: the run stops with :class:`~cecheck.torch.NonFiniteLoss` and the dump is there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="cecheck.torch wraps PyTorch's losses")
pytest.importorskip("safetensors", reason="the dumps are safetensors files")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import cecheck.torch as ct  # noqa: E402

# The libraries warn about this machine (no GPU, few dataloader workers, ...): not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning"
)


def _metadata(path: str) -> dict[str, str]:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        meta: dict[str, str] = json.loads(f.read(n))["__metadata__"]
    return meta


@pytest.fixture(autouse=True)
def _transformers_without_tensorflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers (which ``import lightning`` imports too) would load TensorFlow, installed
    for other tests, and refuse its Keras 3; it reads USE_TF when first imported."""
    monkeypatch.setenv("USE_TF", "0")


def test_lightning_training_step(tmp_path: Path) -> None:
    L = pytest.importorskip("lightning", reason="the Lightning recipe needs lightning")

    class Model(L.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self, dumps: Path) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
            self.loss_fn = ct.watch(F.cross_entropy, dumps)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return self.loss_fn(self.net(x), y, label_smoothing=0.1, step=self.global_step)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randint(0, 4, (64,))
    x[3 * 8 + 5, 2] = float("inf")  # row 5 of the fourth batch of 8: step 3 goes NaN
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    trainer = L.Trainer(
        max_steps=8,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    with pytest.raises(ct.NonFiniteLoss) as caught:
        trainer.fit(Model(tmp_path / "dumps"), loader)
    assert caught.value.step == 3
    assert caught.value.path == str(tmp_path / "dumps" / "cecheck-loss-step3.safetensors")
    meta = _metadata(caught.value.path)
    assert json.loads(meta["arguments"])["label_smoothing"] == 0.1
    # the inf input became NaN logits in row 5 of that batch, and the verdict says so
    assert "1 of 8 rows flagged — 1 row with NaN logits" in str(caught.value)
    assert str(caught.value).endswith("every path finite on the other rows (worst: row 5)")


def test_hugging_face_trainer_compute_loss_func(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers", reason="the Trainer recipe needs it")
    pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate")
    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=3,
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.bias[1] = float("inf")  # an injected inf: every logit row has one
    data = [
        {"input_ids": torch.randint(1, 40, (8,)), "labels": torch.tensor(i % 3)} for i in range(16)
    ]
    watched = ct.watch(F.cross_entropy, tmp_path / "dumps")

    def compute_loss_func(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        return watched(outputs.logits, labels, step=trainer.state.global_step)

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=4,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=data, compute_loss_func=compute_loss_func
    )
    with pytest.raises(ct.NonFiniteLoss) as caught:
        trainer.train()
    assert caught.value.step == 0
    meta = _metadata(caught.value.path)
    assert (meta["loss"], meta["task"]) == ("cross_entropy", "multiclass")
    assert "4 of 4 rows flagged — 4 rows with +inf logits" in str(caught.value)
