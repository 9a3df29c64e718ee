"""PyTorch files (``.pt``, ``.pth``): loaded by torch's weights-only loader, nothing else."""

from __future__ import annotations

import builtins
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cecheck import compare as cecheck_compare
from cecheck.cli import cecheck
from cecheck.errors import InputError
from cecheck.inputs import Source, open_inputs

torch = pytest.importorskip("torch", reason="torch writes and reads .pt files")

RNG = np.random.default_rng(16)
LOGITS = RNG.normal(0, 4, (2, 3, 5))
LABELS = RNG.integers(0, 5, (2, 3))


def collect(source: Source, rows: int = 4) -> tuple[np.ndarray, np.ndarray]:
    chunks = list(source.chunks(rows))
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def save(path: Path, value: object) -> Path:
    torch.save(value, path)
    return path


def compare(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cecheck, ["compare", *args], catch_exceptions=False)
    return result.exit_code, result.stderr


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_a_dict_of_tensors_reads_exactly(tmp_path: Path, dtype: str) -> None:
    z = torch.tensor(LOGITS).to(getattr(torch, dtype))
    path = save(tmp_path / "d.pt", {"logits": z, "labels": torch.tensor(LABELS)})
    source = open_inputs(path)
    assert source.logits_dtype == dtype
    assert source.lead_shape == (2, 3)
    logits, labels = collect(source)
    np.testing.assert_array_equal(logits, z.double().numpy().reshape(6, 5))  # exact, any dtype
    np.testing.assert_array_equal(labels, LABELS.reshape(6))


def test_a_tuple_a_list_keys_and_two_files(tmp_path: Path) -> None:
    z, y = torch.tensor(LOGITS), torch.tensor(LABELS)
    for value in [(z, y), [z, y]]:
        np.testing.assert_array_equal(collect(open_inputs(save(tmp_path / "t.pth", value)))[1],
                                      LABELS.reshape(6))  # fmt: skip
    keyed = save(tmp_path / "k.pt", {"z": z, "y": y})
    np.testing.assert_array_equal(
        collect(open_inputs(keyed, logits_key="z", labels_key="y"))[0], LOGITS.reshape(6, 5)
    )
    lg, lb = save(tmp_path / "z.pt", z), save(tmp_path / "y.pt", y)
    np.testing.assert_array_equal(collect(open_inputs(lg, lb))[1], LABELS.reshape(6))


class MakesAFile:
    """Unpickling it would create ``marker``: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return builtins.open, (str(self.marker), "w")


def test_a_pickled_object_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    z = torch.tensor(LOGITS)
    path = save(tmp_path / "evil.pt", {"logits": z, "labels": MakesAFile(marker)})
    assert not marker.exists()
    code, stderr = compare(str(path))
    assert code == 2
    assert stderr.startswith(f"Error: {path} cannot be loaded with torch.load(weights_only=True)")
    assert stderr.count("\n") == 1
    assert not marker.exists()
    with open(tmp_path / "check.pkl", "wb") as f:  # the object does make the file when unpickled
        pickle.dump(MakesAFile(marker), f)
    with open(tmp_path / "check.pkl", "rb") as f:
        pickle.load(f).close()
    assert marker.exists()


def bad_pt(tmp_path: Path, case: str) -> list[Path]:
    z, y = torch.tensor(LOGITS), torch.tensor(LABELS)
    path = tmp_path / "bad.pt"
    if case == "not a torch file":
        path.write_bytes(b"not a checkpoint at all")
    elif case == "truncated":
        torch.save({"logits": z, "labels": y}, path)
        path.write_bytes(path.read_bytes()[:200])
    elif case == "missing key":
        torch.save({"logits": z}, path)
    elif case == "not a tensor":
        torch.save({"logits": z, "labels": 3}, path)
    elif case == "one tensor":
        torch.save(z, path)
    elif case == "three tensors":
        torch.save((z, y, y), path)
    return [path]


BAD = {
    "not a torch file": "cannot be loaded with torch.load",
    "truncated": "cannot be loaded with torch.load",
    "missing key": r"has no tensor 'labels' \(it holds 'logits'\): choose one with --labels-key",
    "not a tensor": r"bad.pt\['labels'\] is a int, not a tensor",
    "one tensor": "holds one tensor, the logits: give the labels as a second file",
    "three tensors": "holds a tuple: save a tensor, a dict of tensors",
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_files_are_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    (path,) = bad_pt(tmp_path, case)
    with pytest.raises(InputError, match=BAD[case]):
        open_inputs(path)
    code, stderr = compare(str(path))
    assert code == 2
    assert stderr.startswith(f"Error: {path}")
    assert stderr.count("\n") == 1


def test_without_torch_the_error_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save(tmp_path / "d.pt", {"logits": torch.tensor(LOGITS), "labels": torch.tensor(LABELS)})
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(InputError, match=r"needs torch: pip install 'cecheck\[torch\]'"):
        open_inputs(path)


def test_compare_takes_what_torch_load_returns(tmp_path: Path) -> None:
    z, y = torch.tensor(LOGITS).to(torch.bfloat16), torch.tensor(LABELS)
    held = torch.load(save(tmp_path / "d.pt", {"logits": z, "labels": y}), weights_only=True)
    from_dict = cecheck_compare(held, dtypes="bfloat16,float64", top=6)
    from_tensors = cecheck_compare(z, y, dtypes="bfloat16,float64", top=6)
    assert from_dict.summary == from_tensors.summary
    assert [r.values for r in from_dict.top] == [r.values for r in from_tensors.top]
    with pytest.raises(InputError, match=r"the dict given as logits has no 'labels' \(it holds "):
        cecheck_compare({"logits": z, "y": y})
