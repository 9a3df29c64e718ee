"""What a model returns goes straight into cecheck.compare and cecheck.trace.

numpy arrays, lists and torch tensors (with ``requires_grad``, in bfloat16 or float16) are
taken as their exact values; ``dtypes`` as a sequence or a comma string; a path or None gets
an InputError that says to open files with ``cecheck.inputs.open_inputs``. Loss values are
checked against ``mp_reference`` (mpmath, rounded once to float64).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import mp_reference as mp
import numpy as np
import pytest

import cecheck
from cecheck import InputError, compare
from cecheck.inputs import as_array

try:  # torch is optional: its tests skip with a reason when it is absent
    import torch
except ImportError:  # pragma: no cover - torch is installed in CI
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")
FLOAT64_RTOL = 1e-13


def test_lists_and_arrays_are_taken_as_they_are() -> None:
    z = [[1000.0, 2000.0, 2500.0], [0.0, 1.0, 2.0]]
    from_list = compare(z, [1, 2], dtypes=["float64"], top=5)
    from_array = compare(np.array(z), np.array([1, 2]), dtypes=["float64"], top=5)
    assert from_list.summary == from_array.summary


@pytest.mark.parametrize(
    "dtypes", ["float16,float32", " float16 , float32 ", ("float16", "float32")]
)
def test_dtypes_as_a_comma_string_or_a_sequence(dtypes: str | tuple[str, ...]) -> None:
    report = compare([[1.0, 2.0, 3.0]], [0], dtypes=dtypes)
    assert report.settings.dtypes == ("float16", "float32")


def test_dtypes_as_a_comma_string_in_trace() -> None:
    assert cecheck.trace([1.0, 2.0], 0, dtypes="float16,float64").dtypes == ("float16", "float64")


def test_an_unknown_dtype_in_a_comma_string_is_named() -> None:
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        compare([[1.0, 2.0]], [0], dtypes="float32,float8")


@pytest.mark.parametrize(
    "value", ["logits.npy", Path("logits.npy"), None], ids=["str", "PathLike", "None"]
)
def test_a_path_or_none_points_to_open_inputs(value: object) -> None:
    with pytest.raises(InputError, match=r"cecheck\.inputs\.open_inputs") as error:
        compare(value, [0])
    assert "\n" not in str(error.value)
    with pytest.raises(InputError, match=r"labels is .*cecheck\.inputs\.open_inputs"):
        compare([[1.0, 2.0]], value)
    with pytest.raises(InputError, match=r"cecheck\.inputs\.open_inputs"):
        cecheck.trace(value, 0)


def test_a_pathlike_that_is_not_a_path_class_is_refused_too() -> None:
    class Where(os.PathLike[str]):
        def __fspath__(self) -> str:
            return "logits.npy"

    with pytest.raises(InputError, match=r"a path \(logits\.npy\)"):
        as_array(Where(), "logits")


def test_numpy_bfloat16_enters_exactly() -> None:
    z = np.array([[1000.0, 2000.0, 2500.0]], dtype=ml_dtypes.bfloat16)  # 2500 -> 2496
    report = compare(z, [1], dtypes=["bfloat16", "float64"])
    assert report.source.logits_dtype == "bfloat16"
    assert report.top[0].values["reference"] == mp.multiclass([1000.0, 2000.0, 2496.0], 1)


@needs_torch
def test_a_tensor_that_requires_grad_is_detached() -> None:
    z = torch.tensor([[1000.0, 2000.0, 2500.0], [0.5, -1.0, 2.0]], requires_grad=True)
    y = torch.tensor([1, 0])
    report = compare(z, y, dtypes=["float32", "float64"], top=5)
    assert report.source.logits_dtype == "float32"
    want = [mp.multiclass([1000.0, 2000.0, 2500.0], 1), mp.multiclass([0.5, -1.0, 2.0], 0)]
    got = next(report.frames())["reference"].to_numpy()
    np.testing.assert_allclose(got, want, rtol=FLOAT64_RTOL, atol=0)
    assert z.requires_grad  # the caller's tensor is left as it was
    assert z.grad is None


@needs_torch
@pytest.mark.parametrize(
    ("torch_dtype", "ml_dtype", "name"),
    [("bfloat16", ml_dtypes.bfloat16, "bfloat16"), ("float16", np.float16, "float16")],
)
def test_narrow_tensors_keep_their_exact_values(
    torch_dtype: str, ml_dtype: type, name: str
) -> None:
    # Values the format holds exactly but float16 / bfloat16 round differently: 2496 and
    # 2500 in float16, 3.0e30 (beyond float16) in bfloat16; no value goes through float32
    # and back with another rounding.
    values = [[1000.0, 2000.0, 2500.0, 3.0e30 if name == "bfloat16" else 60000.0]]
    z = torch.tensor(values, requires_grad=True).to(getattr(torch, torch_dtype))
    exact = np.array(values, dtype=ml_dtype)
    got = as_array(z, "logits")
    assert got.dtype == np.dtype(ml_dtype)
    assert got.tobytes() == exact.tobytes()  # bit for bit
    report = compare(z, torch.tensor([1]), dtypes=[name, "float64"])
    assert report.source.logits_dtype == name
    want = mp.multiclass(exact.astype(np.float64)[0], 1)
    np.testing.assert_allclose(report.top[0].values["reference"], want, rtol=FLOAT64_RTOL)


@needs_torch
def test_a_non_contiguous_bfloat16_tensor_is_read_in_order() -> None:
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4).to(torch.bfloat16)
    z = base.t()[1:]  # (3, 3), not contiguous
    assert not z.is_contiguous()
    got = as_array(z, "logits")
    np.testing.assert_array_equal(got.astype(np.float64), z.float().numpy())


@needs_torch
def test_trace_takes_a_tensor_row() -> None:
    z = torch.tensor([1000.0, 2000.0, 2500.0], requires_grad=True).to(torch.bfloat16)
    t = cecheck.trace(z, torch.tensor(1), dtypes="bfloat16")
    assert dict(t.logits)[2] == 2496.0  # bfloat16's 2500, entered exactly
    assert t.reference == mp.multiclass([1000.0, 2000.0, 2496.0], 1)


def test_torch_is_not_imported_for_numpy_input() -> None:
    code = (
        "import sys, numpy as np, cecheck\n"
        "cecheck.compare(np.array([[1.0, 2.0]]), np.array([0]))\n"
        "cecheck.trace([1.0, 2.0], 0)\n"
        "print('torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(cecheck.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
