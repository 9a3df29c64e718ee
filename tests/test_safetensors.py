"""``.safetensors`` inputs: every dtype read exactly, memory-mapped in chunks, bad files refused.

The files are written by the safetensors package (a test dependency; cecheck's reader needs
none), bfloat16 through its torch writer; the bad files are made by editing good bytes.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from click.testing import CliRunner

import cecheck as cecheck_package
from cecheck import compare
from cecheck.cli import cecheck
from cecheck.errors import InputError
from cecheck.inputs import Source, open_inputs

st_numpy = pytest.importorskip("safetensors.numpy", reason="the safetensors package writes them")

RNG = np.random.default_rng(15)
LOGITS = RNG.normal(0, 4, (7, 5))
LABELS = RNG.integers(0, 5, 7)


def collect(source: Source, rows: int = 3) -> tuple[np.ndarray, np.ndarray]:
    chunks = list(source.chunks(rows))
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def save(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    st_numpy.save_file(tensors, str(path))
    return path


def save_torch(path: Path, tensors: dict[str, object]) -> Path:
    st_torch = pytest.importorskip("safetensors.torch", reason="bfloat16 is written by torch")
    st_torch.save_file(tensors, str(path))
    return path


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_numpy_floats_round_trip_exactly(tmp_path: Path, dtype: type) -> None:
    stored = LOGITS.astype(dtype)
    source = open_inputs(save(tmp_path / "d.safetensors", {"logits": stored, "labels": LABELS}))
    assert source.logits_dtype == np.dtype(dtype).name
    logits, labels = collect(source)
    assert logits.dtype == dtype
    np.testing.assert_array_equal(logits, stored)
    np.testing.assert_array_equal(labels, LABELS)


@pytest.mark.parametrize(
    ("torch_name", "ml_name"),
    [
        ("bfloat16", "bfloat16"),
        ("float8_e4m3fn", "float8_e4m3fn"),
        ("float8_e5m2", "float8_e5m2"),
    ],
)
def test_narrow_floats_round_trip_bit_for_bit(
    tmp_path: Path, torch_name: str, ml_name: str
) -> None:
    torch = pytest.importorskip("torch", reason="safetensors writes bfloat16 and float8 from torch")
    narrow = torch.tensor(LOGITS).to(getattr(torch, torch_name))
    path = save_torch(
        tmp_path / "d.safetensors", {"logits": narrow, "labels": torch.tensor(LABELS)}
    )
    source = open_inputs(path)
    assert source.logits_dtype == ml_name
    logits, labels = collect(source)
    assert logits.dtype in (np.float32, np.float64)  # both hold every narrow float exactly
    stored = narrow.double().numpy()
    np.testing.assert_array_equal(logits.astype(np.float64).view(np.uint64), stored.view(np.uint64))
    bits = narrow.view(torch.uint8 if narrow.element_size() == 1 else torch.int16).numpy()
    same = logits.astype(getattr(ml_dtypes, ml_name)).view(bits.dtype)
    np.testing.assert_array_equal(same, bits)  # and back to the very bits stored
    np.testing.assert_array_equal(labels, LABELS)


def bf16_bits_file(path: Path) -> Path:
    """Every bfloat16 bit pattern (NaN, inf, subnormals, -0 too), 256 rows of 256, no torch."""
    bits = np.arange(1 << 16, dtype="<u2").tobytes()
    labels = np.zeros(256, "<i8").tobytes()
    header = {
        "logits": {"dtype": "BF16", "shape": [256, 256], "data_offsets": [0, len(bits)]},
        "labels": {"dtype": "I64", "shape": [256], "data_offsets": [len(bits), len(bits) + 2048]},
    }
    path.write_bytes(with_header(header, bits + labels))
    return path


def test_every_bfloat16_reads_as_the_same_float32(tmp_path: Path) -> None:
    source = open_inputs(bf16_bits_file(tmp_path / "all.safetensors"))
    assert source.logits_dtype == "bfloat16"
    logits, _ = collect(source, 100)
    assert logits.dtype == np.float32
    stored = np.arange(1 << 16, dtype=np.uint16).view(ml_dtypes.bfloat16).reshape(256, 256)
    exact = stored.astype(np.float32)
    np.testing.assert_array_equal(logits, exact)  # NaN where NaN: same values everywhere else
    finite = np.isfinite(exact)
    assert np.array_equal(logits[finite].view(np.uint32), exact[finite].view(np.uint32))  # -0 too


def test_bfloat16_is_read_without_importing_ml_dtypes(tmp_path: Path) -> None:
    """ml_dtypes takes ~0.5 s to import: a run without a bfloat16 path never needs it."""
    path = bf16_bits_file(tmp_path / "all.safetensors")
    code = f"""
import sys
sys.path.insert(0, {str(Path(cecheck_package.__file__).parent.parent)!r})
from click.testing import CliRunner
from cecheck.cli import cecheck
args = ["compare", {str(path)!r}, "--dtypes", "float32,float64", "--format", "json"]
result = CliRunner().invoke(cecheck, args)
assert result.exit_code == 0, result.output
assert '"logits_dtype": "bfloat16"' in result.stdout
assert "ml_dtypes" not in sys.modules, "ml_dtypes was imported"
"""
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]
)
def test_integer_labels(tmp_path: Path, dtype: type) -> None:
    path = save(tmp_path / "d.safetensors", {"logits": LOGITS, "labels": LABELS.astype(dtype)})
    np.testing.assert_array_equal(collect(open_inputs(path))[1], LABELS)


def test_bool_multihot_labels(tmp_path: Path) -> None:
    multihot = RNG.integers(0, 2, LOGITS.shape).astype(bool)
    source = open_inputs(save(tmp_path / "d.safetensors", {"logits": LOGITS, "labels": multihot}))
    assert (source.task, source.label_form) == ("multilabel", "multihot")
    np.testing.assert_array_equal(collect(source)[1], multihot)


def test_keys_and_two_files(tmp_path: Path) -> None:
    one = save(tmp_path / "one.safetensors", {"z": LOGITS, "y": LABELS, "other": LABELS[:2]})
    source = open_inputs(one, logits_key="z", labels_key="y")
    assert source.logits_name == str(one)
    np.testing.assert_array_equal(collect(source)[0], LOGITS)
    lg = save(tmp_path / "lg.safetensors", {"logits": LOGITS})
    lb = save(tmp_path / "lb.safetensors", {"labels": LABELS})
    np.testing.assert_array_equal(collect(open_inputs(lg, lb))[1], LABELS)
    npy = tmp_path / "y.npy"
    np.save(npy, LABELS)
    np.testing.assert_array_equal(collect(open_inputs(lg, npy))[0], LOGITS)


def test_a_file_bigger_than_a_chunk_is_read_from_its_memory_map(tmp_path: Path) -> None:
    big = RNG.normal(size=(1000, 33)).astype(np.float32)
    y = RNG.integers(0, 33, 1000)
    path = save(tmp_path / "big.safetensors", {"logits": big, "labels": y, "__pad": y[:3]})
    chunks = list(open_inputs(path).chunks(64))
    assert len(chunks) == 16
    for logits, _ in chunks:  # views of the map, never a copy of the file
        assert not logits.flags.owndata
        assert not logits.flags.writeable
        base = logits
        while base.base is not None and not isinstance(base, np.memmap):
            base = base.base
        assert isinstance(base, np.memmap)
    np.testing.assert_array_equal(np.concatenate([c[0] for c in chunks]), big)
    np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), y)


# ---------------------------------------------------------------- bad files


def good_bytes(tmp_path: Path) -> bytes:
    return save(tmp_path / "good.safetensors", {"logits": LOGITS, "labels": LABELS}).read_bytes()


def with_header(header: dict[str, object], data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def edit_header(edit: Callable[[dict[str, dict[str, object]]], None]) -> Callable[[bytes], bytes]:
    def make(good: bytes) -> bytes:
        (n,) = struct.unpack("<Q", good[:8])
        header = json.loads(good[8 : 8 + n])
        edit(header)
        return with_header(header, good[8 + n :])

    return make


def set_entry(key: str, field: str, value: object) -> Callable[[bytes], bytes]:
    return edit_header(lambda h: h[key].__setitem__(field, value))


def overlap(header: dict[str, dict[str, object]]) -> None:
    header["logits"]["data_offsets"] = [0, 280]
    header["labels"]["data_offsets"] = [8, 64]


BAD = {
    "shorter than the size": (lambda g: g[:5], "shorter than the 8-byte header size"),
    "truncated header": (lambda g: g[:40], "its header claims \\d+ bytes, more than the \\d+"),
    "header too long": (lambda g: struct.pack("<Q", 1 << 40) + g[8:], "claims 1099511627776"),
    "not JSON": (lambda g: g[:8] + b"{" * struct.unpack("<Q", g[:8])[0] + g[8:], "not JSON"),
    "not an object": (lambda g: with_header([1], b""), "not a JSON object"),  # type: ignore[arg-type]
    "truncated data": (lambda g: g[:-16], "lies at bytes \\d+..\\d+ of a \\d+-byte buffer"),
    "offsets past the end": (set_entry("labels", "data_offsets", [0, 10**9]), "lies at bytes"),
    "overlapping": (edit_header(overlap), "overlap in the byte buffer"),
    "unknown dtype": (set_entry("logits", "dtype", "F4"), "has dtype F4, which cecheck does not"),
    "missing shape": (set_entry("logits", "shape", "5"), "lacks a dtype, shape or data_offsets"),
    "wrong size": (set_entry("logits", "shape", [7, 4]), "needs 224 bytes but has 280"),
    "missing key": (edit_header(lambda h: h.pop("labels")), "has no tensor 'labels'"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_files_are_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    make, match = BAD[case]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(make(good_bytes(tmp_path)))
    with pytest.raises(InputError, match=match) as error:
        collect(open_inputs(path))
    assert str(path) in str(error.value)
    result = CliRunner().invoke(cecheck, ["compare", str(path)], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ")
    assert result.stderr.count("\n") == 1
    assert str(path) in result.stderr


def test_metadata_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "meta.safetensors"
    st_numpy.save_file({"logits": LOGITS, "labels": LABELS}, str(path), metadata={"a": "b"})
    np.testing.assert_array_equal(collect(open_inputs(path))[0], LOGITS)


# ---------------------------------------------------------------- the stored precision


def bf16_file(tmp_path: Path) -> Path:
    torch = pytest.importorskip("torch", reason="safetensors writes bfloat16 from torch")
    z = torch.tensor(LOGITS).to(torch.bfloat16)
    return save_torch(tmp_path / "bf16.safetensors", {"logits": z, "labels": torch.tensor(LABELS)})


def compare_json(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(cecheck, ["compare", *args, "--format", "json"])
    assert result.exit_code == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_stored_bfloat16_is_in_the_header_and_the_default_dtypes(tmp_path: Path) -> None:
    path = bf16_file(tmp_path)
    result = CliRunner().invoke(cecheck, ["compare", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    assert "logits (7, 5) bfloat16, labels (7,)" in result.stdout
    assert "dtypes   bfloat16, float32, float64;" in result.stdout
    assert compare_json(str(path))["dtypes"] == ["bfloat16", "float32", "float64"]
    named = compare_json(str(path), "--dtypes", "float32,float64")  # what is named is kept
    assert named["dtypes"] == ["float32", "float64"]


def test_the_stored_bfloat16_values_are_the_ones_computed(tmp_path: Path) -> None:
    """The bfloat16 file and a float32 .npy of the same values give the same report."""
    path = bf16_file(tmp_path)
    as_float32 = open_inputs(path).chunks(100)
    logits, labels = next(as_float32)
    np.save(tmp_path / "z.npy", logits.astype(np.float32))
    np.save(tmp_path / "y.npy", labels)
    dtypes = ["--dtypes", "bfloat16,float32,float64"]
    a = compare_json(str(path), *dtypes, "--top", "7")
    b = compare_json(str(tmp_path / "z.npy"), str(tmp_path / "y.npy"), *dtypes, "--top", "7")
    for key in ("summary", "counts", "flagged"):
        assert a[key] == b[key]


def test_float8_is_shown_as_stored_and_not_added(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="safetensors writes float8 from torch")
    z = torch.tensor(LOGITS).to(torch.float8_e4m3fn)
    path = save_torch(tmp_path / "f8.safetensors", {"logits": z, "labels": torch.tensor(LABELS)})
    result = CliRunner().invoke(cecheck, ["compare", str(path)], env={"COLUMNS": "200"})
    assert "logits (7, 5) float8_e4m3fn" in result.stdout
    assert compare_json(str(path))["dtypes"] == ["float32", "float64"]


def test_compare_takes_what_load_file_returns(tmp_path: Path) -> None:
    path = save(tmp_path / "d.safetensors", {"logits": LOGITS, "labels": LABELS})
    report = compare(st_numpy.load_file(str(path)), top=7)
    assert report.summary == compare(LOGITS, LABELS, top=7).summary
