"""``cecheck.torch.watch``: the wrapped loss is the loss, bit for bit; a NaN/inf loss leaves a
dump that ``cecheck compare DUMP`` reads with the step's settings.

The losses a test asserts come from mpmath (tests/mp_reference.py); torch's own per-row
losses say which rows it made NaN or inf.
"""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import mp_reference
import numpy as np
import pytest
from click.testing import CliRunner

from cecheck.cli import cecheck

torch = pytest.importorskip("torch", reason="cecheck.torch wraps PyTorch's losses")
st_torch = pytest.importorskip("safetensors.torch", reason="the dumps are safetensors files")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import cecheck.torch as ct  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _ce_case(dtype: Any, shape: tuple[int, ...] = (6, 5)) -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(shape, generator=g) * 4).to(dtype)
    n, c = shape[0], shape[1]
    target = torch.randint(0, c, (n, *shape[2:]), generator=g)
    target.view(-1)[1] = -1  # an ignored row where ignore_index=-1
    return logits, target


def _forms() -> list[tuple[str, Any, dict[str, Any]]]:
    """(id, loss to wrap, call keyword arguments) for every supported form."""
    w5 = torch.tensor([1.0, 0.5, 2.0, 1.5, 0.25])
    w4 = torch.tensor([0.5, 1.0, 2.0, 1.0])
    forms: list[tuple[str, Any, dict[str, Any]]] = []
    for red in ("mean", "sum", "none"):
        forms += [
            (f"F.ce-{red}", F.cross_entropy, {"reduction": red}),
            (
                f"F.ce-args-{red}",
                F.cross_entropy,
                {"reduction": red, "ignore_index": -1, "label_smoothing": 0.1, "weight": w5},
            ),
            (
                f"nn.ce-{red}",
                nn.CrossEntropyLoss(weight=w5, ignore_index=-1, label_smoothing=0.2, reduction=red),
                {},
            ),
            (f"F.bce-{red}", F.binary_cross_entropy_with_logits, {"reduction": red}),
            (
                f"F.bce-args-{red}",
                F.binary_cross_entropy_with_logits,
                {"reduction": red, "weight": w4, "pos_weight": w4 * 3},
            ),
            (f"nn.bce-{red}", nn.BCEWithLogitsLoss(weight=w4, pos_weight=w4, reduction=red), {}),
        ]
    return forms


def _inputs(form: str, dtype: Any) -> tuple[Any, Any]:
    if "bce" in form:
        g = torch.Generator().manual_seed(4)
        return (torch.randn(6, 4, generator=g) * 4).to(dtype), torch.rand(6, 4, generator=g)
    return _ce_case(dtype)


@pytest.mark.parametrize(("form", "loss_fn", "kwargs"), _forms(), ids=[f[0] for f in _forms()])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
def test_the_wrapped_loss_has_the_same_value_and_gradients(
    tmp_path: Path, form: str, loss_fn: Any, kwargs: dict[str, Any], dtype: str
) -> None:
    logits, target = _inputs(form, getattr(torch, dtype))
    if isinstance(loss_fn, nn.Module):  # weights in the logits' dtype, as torch requires
        loss_fn = copy.deepcopy(loss_fn).to(logits.dtype)
    kwargs = {k: v.to(logits.dtype) if torch.is_tensor(v) else v for k, v in kwargs.items()}
    if "ce" in form and "bce" not in form and kwargs.get("ignore_index", -100) == -100:
        target = target.clamp(min=0)
    if "bce" in form and dtype != "float32":
        target = target.to(getattr(torch, dtype))
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    want = loss_fn(a, target, **kwargs)
    got = ct.watch(loss_fn, tmp_path)(b, target, **kwargs)
    assert torch.equal(got, want)
    assert got.dtype == want.dtype
    grad = torch.linspace(0.5, 2, got.numel()).reshape(got.shape).to(got.dtype)
    want.backward(grad)
    got.backward(grad)
    assert torch.equal(b.grad, a.grad)
    assert list(tmp_path.iterdir()) == []  # finite: nothing written


def test_spatial_logits_and_probability_targets_are_the_same_too(tmp_path: Path) -> None:
    logits, target = _ce_case(torch.float32, (3, 5, 4))
    probs = torch.softmax(torch.randn(3, 5, 4), dim=1)
    for t in (target, probs):
        a, b = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
        want = F.cross_entropy(a, t, ignore_index=-1, label_smoothing=0.05)
        got = ct.watch(F.cross_entropy, tmp_path)(b, t, ignore_index=-1, label_smoothing=0.05)
        want.backward()
        got.backward()
        assert torch.equal(got, want)
        assert torch.equal(b.grad, a.grad)


def test_only_the_losses_it_knows_are_wrapped(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"wraps F\.cross_entropy"):
        ct.watch(F.nll_loss, tmp_path)
    with pytest.raises(ValueError, match="on_nonfinite"):
        ct.watch(F.cross_entropy, tmp_path, on_nonfinite="ignore")
    with pytest.raises(ValueError, match="every"):
        ct.watch(F.cross_entropy, tmp_path, every=0)
    assert issubclass(ct.NonFiniteLoss, FloatingPointError)
    again = pickle.loads(pickle.dumps(ct.NonFiniteLoss("loss nan at step 3", "d.st", 3)))
    assert (str(again), again.path, again.step) == ("loss nan at step 3", "d.st", 3)


def _compare_json(path: Path, *options: str) -> tuple[dict[str, Any], str]:
    result = CliRunner().invoke(cecheck, ["compare", str(path), *options, "--format", "json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def _train_until_nan(tmp_path: Path, **watch: Any) -> tuple[ct.NonFiniteLoss, list[int]]:
    """A tiny MLP under float16 autocast with a learning rate that makes its logits
    overflow float16 in a few steps; the steps it completed."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=50.0)
    x, y = torch.randn(32, 8), torch.randint(0, 4, (32,))
    y[:3] = -1
    loss_fn = ct.watch(F.cross_entropy, tmp_path / "dumps", **watch)
    done: list[int] = []

    def train() -> None:
        for step in range(40):
            with torch.autocast("cpu", dtype=torch.float16):
                loss = loss_fn(model(x), y, ignore_index=-1, label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done.append(step)

    with pytest.raises(ct.NonFiniteLoss) as caught:
        train()
    return caught.value, done


def test_a_training_run_that_goes_nan_stops_with_the_batch_saved(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    error, done = _train_until_nan(tmp_path)
    step = len(done)
    assert error.step == step
    assert error.path == str(tmp_path / "dumps" / f"cecheck-loss-step{step}.safetensors")
    err = capfd.readouterr().err
    assert err.splitlines() == [str(error)]
    assert str(error).startswith(f"cecheck: loss nan at step {step}: batch saved to {error.path}. ")

    tensors = st_torch.load_file(error.path)
    logits, labels = tensors["logits"], tensors["labels"]
    assert logits.dtype == torch.float16  # autocast's output, as torch held it
    with open(error.path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        meta = json.loads(f.read(n))["__metadata__"]
    assert meta["autocast_dtype"] == "float16"
    assert meta["logits_dtype"] == "float16"
    assert meta["step"] == str(step)
    assert json.loads(meta["arguments"]) == {
        "ignore_index": -1,
        "label_smoothing": 0.1,
        "reduction": "mean",
    }
    assert meta["torch_version"] == torch.__version__
    assert "rank" not in meta

    # torch's own per-row losses on the saved batch: the rows it made NaN or inf
    rows = F.cross_entropy(
        logits.float(), labels, ignore_index=-1, label_smoothing=0.1, reduction="none"
    )
    broken = {i for i in range(len(rows)) if not math.isfinite(rows[i]) and labels[i] != -1}
    assert broken

    report, stderr = _compare_json(Path(error.path), "--top", "100")
    assert report["pytorch"]["label_smoothing"] == 0.1
    assert report["tolerance"]["ignore_index"] == -1
    assert report["dtypes"] == ["float16", "float32", "float64"]
    assert report["inputs"]["logits_dtype"] == "float16"
    assert report["rows"]["ignored"] == 3
    flagged = {r["row"]: r for r in report["flagged"]}
    assert broken <= set(flagged)  # cecheck flags more: the textbook and naive paths break too
    # the causes: inf logits; a -inf logit that label smoothing gives target mass to
    causes = {c for i in broken for c in flagged[i]["causes"]}
    assert causes == {"inf_input", "masked_target"}
    assert all(set(flagged[i]["causes"]) & causes for i in broken)
    # ignore_index -1 applied: an ignored row is flagged only for its inf logits
    assert all("label_out_of_range" not in r["flags"] for r in report["flagged"])
    assert report["batches"]["nonfinite_batches"] == 1
    # the verdict the wrapper printed is the one the CLI closes with
    verdict = stderr.splitlines()[-1].removeprefix("cecheck: ")
    assert str(error).endswith(f"{verdict} (worst: row {report['flagged'][0]['row']})")


def test_compare_applies_the_recorded_smoothing_to_the_values(tmp_path: Path) -> None:
    logits = torch.tensor(
        [[1000.0, 2000.0, 2500.0], [float("inf"), 0.0, 1.0], [0.5, -1.0, 2.0], [1.0, 2.0, 3.0]]
    )
    labels = torch.tensor([1, 2, 0, -1])
    watched = ct.watch(F.cross_entropy, tmp_path)
    with pytest.raises(ct.NonFiniteLoss) as caught:
        watched(logits, labels, ignore_index=-1, label_smoothing=0.25, step=7)
    path = Path(caught.value.path)
    assert path.name == "cecheck-loss-step7.safetensors"
    report, _ = _compare_json(path)
    rows = {r["row"]: r for r in report["flagged"]}
    assert rows[1]["causes"] == ["inf_input"]
    assert rows[0]["losses"]["textbook_float32"] == "nan"  # exp(1000) overflows
    smoothed = np.full(3, 0.25 / 3) + 0.75 * np.eye(3)[1]
    want = mp_reference.soft(np.array([1000.0, 2000.0, 2500.0]), smoothed)
    assert rows[0]["reference"] == pytest.approx(want, rel=1e-12)
    assert rows[0]["losses"]["stable_float32"] == pytest.approx(want, rel=1e-6)
    assert 3 not in rows
    assert report["rows"]["ignored"] == 1


def test_trace_walks_a_dump_with_its_recorded_settings(tmp_path: Path) -> None:
    """trace DUMP traces the row as the failing step computed it (smoothing, weights, dtypes),
    and an explicit option still wins."""
    logits = torch.tensor([[0.5, -1.0, 2.0], [float("inf"), 0.0, 1.0]], dtype=torch.bfloat16)
    weight = torch.tensor([0.5, 2.0, 1.0], dtype=torch.bfloat16)
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=0.25)
    with pytest.raises(ct.NonFiniteLoss) as caught:
        ct.watch(loss_fn, tmp_path)(logits, torch.tensor([0, 2]))
    dump = caught.value.path

    def trace(*options: str) -> dict[str, Any]:
        args = ["trace", dump, "--row", "0", "--format", "json", *options]
        result = CliRunner().invoke(cecheck, args)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    t = trace()
    assert t["label_smoothing"] == 0.25
    assert t["class_weights"] == [0.5, 2.0, 1.0]
    assert t["dtypes"] == ["bfloat16", "float32", "float64"]
    smoothed = np.full(3, 0.25 / 3) + 0.75 * np.eye(3)[0]
    z = np.array([0.5, -1.0, 2.0])
    per_class = [mp_reference.soft(z, np.eye(3)[k]) for k in range(3)]
    terms = zip([0.5, 2.0, 1.0], smoothed, per_class, strict=True)
    want = float(sum(w * target * loss for w, target, loss in terms))
    assert t["reference"] == pytest.approx(want, rel=1e-12)
    t = trace("--label-smoothing", "0", "--dtypes", "float64")
    assert (t["label_smoothing"], t["dtypes"]) == (0.0, ["float64"])
    assert t["class_weights"] == [0.5, 2.0, 1.0]


def test_explicit_options_override_the_recorded_ones(tmp_path: Path) -> None:
    logits = torch.tensor([[float("nan"), 0.0], [1.0, 2.0]], dtype=torch.bfloat16)
    with pytest.raises(ct.NonFiniteLoss) as caught:
        ct.watch(F.cross_entropy, tmp_path)(logits, torch.tensor([0, -5]), ignore_index=-5)
    path = Path(caught.value.path)
    report, _ = _compare_json(path)
    assert report["dtypes"] == ["bfloat16", "float32", "float64"]
    assert report["inputs"]["logits_dtype"] == "bfloat16"
    assert report["tolerance"]["ignore_index"] == -5
    report, _ = _compare_json(path, "--dtypes", "float64", "--ignore-index", "-100")
    assert report["dtypes"] == ["float64"]
    assert report["tolerance"]["ignore_index"] == -100


def test_class_weights_are_saved_and_applied(tmp_path: Path) -> None:
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([0.5, 2.0, 1.0]), reduction="sum")
    logits = torch.tensor([[float("inf"), 0.0, 0.0], [1.0, 3.0, -2.0]])
    with pytest.raises(ct.NonFiniteLoss) as caught:
        ct.watch(loss_fn, tmp_path)(logits, torch.tensor([1, 1]))
    report, _ = _compare_json(Path(caught.value.path))
    assert report["pytorch"]["class_weights"] == [0.5, 2.0, 1.0]
    assert "batches" not in report  # reduction='sum': no batch mean to show


def test_spatial_logits_are_stored_with_the_classes_last(tmp_path: Path) -> None:
    logits, target = _ce_case(torch.float32, (2, 3, 4))
    logits[1, :, 2] = float("-inf")  # every class masked at one position: NaN
    with pytest.raises(ct.NonFiniteLoss) as caught:
        ct.watch(F.cross_entropy, tmp_path)(logits, target.clamp(min=0), reduction="none")
    saved = st_torch.load_file(caught.value.path)
    assert torch.equal(saved["logits"], logits.movedim(1, -1))
    assert "1 of 8 values not finite" in str(caught.value)
    report, _ = _compare_json(Path(caught.value.path))
    assert [r["index"] for r in report["flagged"]] == [[1, 2]]


def test_a_spatial_mean_is_one_batch_of_its_samples(tmp_path: Path) -> None:
    """reduction='mean' over (N, C, d) logits is the mean over the whole batch: compare DUMP
    forms one batch of the N samples (N·d rows, as cecheck counts sequences over N-d rows)."""
    logits, target = _ce_case(torch.float32, (2, 3, 4))
    logits[1, :, 2] = float("-inf")  # every class masked at one position: NaN
    with pytest.raises(ct.NonFiniteLoss) as caught:
        ct.watch(F.cross_entropy, tmp_path)(logits, target, ignore_index=-1)
    report, _ = _compare_json(Path(caught.value.path))
    batches = report["batches"]
    assert (batches["batch_size"], batches["unit"], batches["rows_per_batch"]) == (
        2,
        "sequences",
        8,
    )
    assert (batches["count"], batches["last_batch_rows"]) == (1, 8)
    (nan,) = batches["nonfinite"]
    assert (nan["first_sequence"], nan["sequences"], nan["rows"]) == (0, 2, 8)
    assert nan["reasons"]["reference"].startswith("row (1, 2) in batch 0 (sequences 0-1)")
    assert str(caught.value).endswith("(worst: row (1, 2))")  # named by its index, as there


def test_binary_dumps_say_the_weights_are_not_applied(tmp_path: Path) -> None:
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0, 1.0, 1.0]))
    logits = torch.tensor([[0.0, float("nan"), 1.0], [2.0, -1.0, 0.5]])
    with pytest.raises(ct.NonFiniteLoss) as caught:
        ct.watch(loss_fn, tmp_path)(logits, torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    assert set(st_torch.load_file(caught.value.path)) == {"logits", "labels", "pos_weight"}
    report, stderr = _compare_json(Path(caught.value.path))
    assert report["task"] == "multilabel"
    assert "records a pos_weight that cecheck does not apply" in stderr
    assert [r["row"] for r in report["flagged"]] == [0]


def test_warn_goes_on_and_dumps_are_capped_and_never_overwritten(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    watched = ct.watch(F.cross_entropy, tmp_path, on_nonfinite="warn", max_dumps=2)
    bad = torch.tensor([[float("inf"), 0.0]])
    warned = []
    for _ in range(3):
        with pytest.warns(ct.NonFiniteLossWarning) as caught:
            loss = watched(bad, torch.tensor([1]), step=5)
        assert torch.isnan(loss)
        warned += list(caught)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["cecheck-loss-step5-2.safetensors", "cecheck-loss-step5.safetensors"]
    assert len(warned) == 3
    assert "not saved (max_dumps=2 written already)" in str(warned[2].message)
    assert capfd.readouterr().err == ""  # the warnings are the lines


def test_warn_says_it_once_on_stderr(tmp_path: Path) -> None:
    """With on_nonfinite="warn" each failure is one warning on stderr, not also a print."""
    script = f"""
import torch, torch.nn.functional as F, cecheck.torch as ct
watched = ct.watch(F.cross_entropy, {str(tmp_path)!r}, on_nonfinite="warn")
for step in (3, 4):
    watched(torch.tensor([[float("inf"), 0.0]]), torch.tensor([1]), step=step)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    said = [line for line in run.stderr.splitlines() if "cecheck: loss" in line]
    assert len(said) == 2, run.stderr
    assert all("NonFiniteLossWarning: cecheck: loss nan at step" in line for line in said)


def test_a_dump_that_cannot_be_written_still_stops_the_run(tmp_path: Path) -> None:
    taken = tmp_path / "a-file"
    taken.write_text("not a directory")
    with pytest.raises(ct.NonFiniteLoss, match="could not save the batch in ") as caught:
        ct.watch(F.cross_entropy, taken)(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))
    assert caught.value.path is None


def test_every_n_checks_only_every_nth_call(tmp_path: Path) -> None:
    watched = ct.watch(F.cross_entropy, tmp_path, every=3)
    good, bad = torch.tensor([[1.0, 0.0]]), torch.tensor([[float("nan"), 0.0]])
    y = torch.tensor([0])
    watched(good, y)  # call 0: checked
    watched(bad, y)  # calls 1 and 2: not checked
    watched(bad, y)
    with pytest.raises(ct.NonFiniteLoss, match="at step 3"):
        watched(bad, y)


def _write(path: Path, meta: dict[str, str]) -> Path:
    st_torch.save_file(
        {"logits": torch.zeros(2, 3), "labels": torch.tensor([0, 1])}, str(path), metadata=meta
    )
    return path


GOOD_META = {
    "cecheck": "loss-dump/1",
    "loss": "cross_entropy",
    "arguments": '{"ignore_index": -1, "label_smoothing": 0.1, "reduction": "mean"}',
    "task": "multiclass",
    "logits_dtype": "float32",
    "step": "3",
}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"cecheck": "loss-dump/9"}, "its format 'loss-dump/9' is not 'loss-dump/1'"),
        ({"loss": "nll_loss"}, "its loss 'nll_loss' is not one of"),
        ({"arguments": "{ignore"}, "its arguments are not JSON"),
        ({"arguments": "[1]"}, "its arguments are not a JSON object"),
        ({"arguments": '{"ignore_index": 1.5}'}, "its ignore_index 1.5 is not a whole number"),
        ({"arguments": '{"label_smoothing": 2}'}, "its label_smoothing 2 is not a number in"),
        ({"arguments": '{"reduction": "max"}'}, "its reduction 'max' is not one of"),
        ({"arguments": '{"weight": true}'}, "its arguments name a weight that the file does"),
        ({"task": "regression"}, "its task 'regression' is not one of"),
        ({"logits_dtype": "int8"}, "its logits_dtype 'int8' is not one of"),
        ({"step": "three"}, "its step 'three' is not a whole number"),
        ({"task": None}, "it lacks the key 'task'"),
    ],
)
def test_a_malformed_dump_is_one_sentence_and_exit_2(
    tmp_path: Path, change: dict[str, str | None], words: str
) -> None:
    meta = {k: v for k, v in (GOOD_META | change).items() if v is not None}
    path = _write(tmp_path / "d.safetensors", meta)
    result = CliRunner().invoke(cecheck, ["compare", str(path)], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"Error: {path} has cecheck dump metadata, but {words}")


def test_other_safetensors_metadata_changes_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.safetensors", {"format": "pt"})  # what transformers writes
    report, _ = _compare_json(path)
    assert report["tolerance"]["ignore_index"] == -100
    assert "pytorch" not in report  # no smoothing, no weights
    good, _ = _compare_json(_write(tmp_path / "g.safetensors", GOOD_META))
    assert good["tolerance"]["ignore_index"] == -1


WORKER = textwrap.dedent(
    """
    import sys
    import torch, torch.distributed as dist, torch.nn.functional as F
    import cecheck.torch as ct
    rank, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    try:
        ct.watch(F.cross_entropy, out)(torch.tensor([[float("inf"), 0.0]]), torch.tensor([1]))
    except ct.NonFiniteLoss as e:
        print(e.path)
    dist.barrier()
    dist.destroy_process_group()
    """
)


def test_each_rank_writes_its_own_dump(tmp_path: Path) -> None:
    """Two processes in a gloo group on 127.0.0.1: one file per rank, named by its rank."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(rank), port, str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    paths = [out.strip() for out, _ in outs]
    assert paths == [str(tmp_path / f"cecheck-loss-step0-rank{r}.safetensors") for r in (0, 1)]
    for rank, path in enumerate(paths):
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            meta = json.loads(f.read(n))["__metadata__"]
        assert (meta["rank"], meta["world_size"]) == (str(rank), "2")


def test_max_rows_keeps_the_nonfinite_rows_and_a_sample(tmp_path: Path) -> None:
    logits = torch.randn(4, 50, 7)  # (B, T, V): 200 rows
    logits[1, 10, 3] = float("inf")
    logits[3, 49, 0] = float("nan")
    labels = torch.randint(0, 7, (4, 50))
    watched = ct.watch(F.cross_entropy, tmp_path, max_rows=6)
    with pytest.raises(ct.NonFiniteLoss) as caught:
        watched(logits.reshape(-1, 7), labels.reshape(-1))
    saved = st_torch.load_file(caught.value.path)
    kept = saved["row_index"].tolist()
    assert len(kept) == 6
    assert {60, 199} <= set(kept)
    assert kept == sorted(kept)
    torch.testing.assert_close(
        saved["logits"], logits.reshape(-1, 7)[kept], rtol=0, atol=0, equal_nan=True
    )
    assert torch.equal(saved["labels"], labels.reshape(-1)[kept])
    report, stderr = _compare_json(Path(caught.value.path))
    assert "keeps 6 of 200 rows (max_rows)" in stderr
    assert "batches" not in report  # a mean over the kept rows is not the step's mean
    assert sorted(r["row"] for r in report["flagged"]) == [kept.index(60), kept.index(199)]
