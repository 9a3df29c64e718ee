"""bfloat16 bits read as float32: widened (:func:`cecheck.narrow.widen_bfloat16`) by the kernel
when it is built, bit for bit numpy's 16-bit shift; the ``.safetensors`` reader keeps its BF16
tensors as bits (:class:`cecheck.narrow.Bfloat16Rows`), which the kernel's multiclass pass
reads as stored and everything else as float32."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cecheck import engine, fast, narrow
from cecheck.cli import cecheck
from cecheck.inputs import open_inputs
from cecheck.inputs.safetensors_files import open_safetensors

ALL = np.arange(1 << 16, dtype=np.uint16)  # every bfloat16: zeros, subnormals, inf, NaNs


def shifted(bits: np.ndarray) -> np.ndarray:
    """The specification: the bits shifted left by 16, as float32."""
    return np.left_shift(bits, 16, dtype=np.uint32).view(np.float32)


def bf16_file(path: Path, bits: np.ndarray) -> str:
    """A .safetensors file of one BF16 tensor, ``logits``, of these bits."""
    data = bits.astype("<u2").tobytes()
    entry = {"dtype": "BF16", "shape": list(bits.shape), "data_offsets": [0, len(data)]}
    header = json.dumps({"logits": entry}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return str(path)


needs_kernel = pytest.mark.skipif(not fast.installed(), reason="the C kernel is not built")


@needs_kernel
def test_the_kernel_widens_every_bfloat16_to_its_float32_bits() -> None:
    out = np.empty(ALL.size, dtype=np.float32)
    fast.kernel().widen_bfloat16(ALL, out, 0, ALL.size)
    assert np.array_equal(out.view(np.uint32), shifted(ALL).view(np.uint32))


@needs_kernel
def test_the_kernel_widens_only_the_items_asked_for() -> None:
    out = np.zeros(ALL.size, dtype=np.float32)
    fast.kernel().widen_bfloat16(ALL, out, 100, 200)
    expected = np.zeros(ALL.size, dtype=np.float32)
    expected[100:200] = shifted(ALL[100:200])
    assert np.array_equal(out.view(np.uint32), expected.view(np.uint32))
    with pytest.raises(ValueError, match="range"):
        fast.kernel().widen_bfloat16(ALL, out, 0, ALL.size + 1)
    with pytest.raises(ValueError, match="out holds"):
        fast.kernel().widen_bfloat16(ALL, out[:-1], 0, 10)


@pytest.mark.parametrize("built", [True, False])
def test_widen_bfloat16_is_the_shift_in_any_shape(
    monkeypatch: pytest.MonkeyPatch, built: bool
) -> None:
    if built and not fast.installed():
        pytest.skip("the C kernel is not built")
    monkeypatch.setattr(fast, "installed", lambda: built)
    rows = np.random.default_rng(0).permutation(ALL).reshape(256, 256)
    for bits in (rows, rows[::2, 1:], rows.reshape(4, 64, 256), rows[:0]):
        out = narrow.widen_bfloat16(bits)
        assert out.dtype == np.float32
        assert out.shape == bits.shape
        assert np.array_equal(out.view(np.uint32), shifted(bits).view(np.uint32))


def test_the_safetensors_reader_keeps_the_bits_and_a_source_gives_float32(
    tmp_path: Path,
) -> None:
    bits = np.random.default_rng(1).permutation(ALL)[:600].reshape(20, 30)
    path = bf16_file(tmp_path / "z.safetensors", bits)
    part = open_safetensors(path, [("logits", "--logits-key")])[0]
    blocks = [b[0] for b in part.blocks(7, 1)]
    assert all(isinstance(b, narrow.Bfloat16Rows) for b in blocks)
    assert np.array_equal(np.concatenate([b.bits for b in blocks]), bits)
    labels = np.zeros(20, dtype=np.int64)
    np.save(tmp_path / "y.npy", labels)
    source = open_inputs(path, str(tmp_path / "y.npy"))
    for lazy, kind in ((False, np.ndarray), (True, narrow.Bfloat16Rows)):
        chunks = [z for z, _ in source.chunks(7, lazy=lazy)]
        assert all(isinstance(z, kind) for z in chunks)
        widened = np.concatenate([np.asarray(z) for z in chunks])
        assert widened.dtype == np.float32
        assert np.array_equal(widened.view(np.uint32), shifted(bits).view(np.uint32))


def test_bfloat16_rows_read_as_their_float32_values() -> None:
    bits = np.random.default_rng(2).permutation(ALL)[:600].reshape(20, 30)
    rows, wide = narrow.Bfloat16Rows(bits), shifted(bits)

    def same(a: object, b: np.ndarray) -> None:
        a = np.asarray(a)
        assert a.dtype == np.float32
        assert a.shape == b.shape
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))

    assert (rows.shape, rows.ndim, rows.size, len(rows), rows.dtype) == (
        (20, 30), 2, 600, 20, np.dtype(np.float32)
    )  # fmt: skip
    assert isinstance(rows[2:9], narrow.Bfloat16Rows)
    same(rows[2:9], wide[2:9])
    same(rows[3], wide[3])
    mask = np.arange(20) % 3 == 0
    same(rows[mask], wide[mask])
    pick = (np.arange(20), np.arange(20) % 30)
    same(rows[pick], wide[pick])
    assert np.array_equal(np.float32(rows[4, 5]).view(np.uint32), wide[4, 5].view(np.uint32))
    assert isinstance(rows.reshape(600), narrow.Bfloat16Rows)
    same(rows.reshape(600), wide.reshape(600))
    assert rows.astype(np.float32, copy=False) is rows
    kept = np.asarray(rows)
    assert not kept.flags.writeable  # the widened block is kept: nobody may change it
    mine = np.array(rows, copy=True)
    mine[0, 0] = 7.0  # a copy is a copy
    same(rows, wide)
    with np.errstate(invalid="ignore"):  # signalling NaNs
        wide64 = rows.astype(np.float64)
        assert wide64.dtype == np.float64
        assert np.array_equal(wide64, wide.astype(np.float64), equal_nan=True)
        same(rows.max(axis=1), wide.max(axis=1))  # any other ndarray attribute
        same(np.nanmin(rows, axis=0), np.nanmin(wide, axis=0))


@needs_kernel
@pytest.mark.parametrize("c", [1, 3, 7, 16, 17, 300, 4099])
def test_the_kernel_reads_bfloat16_bits_as_their_float32_values(c: int) -> None:
    """multiclass_index on the bits (itemsize 2) gives the float32 run's bits exactly: random
    rows and every special value (NaN, inf, -inf masks, subnormals, huge, ties)."""
    rng = np.random.default_rng(c)
    n = 45
    z = (rng.standard_normal((n, c)) * rng.choice([1.0, 10.0, 1000.0], (n, 1))).astype(np.float32)
    bits = (z.view(np.uint32) >> 16).astype(np.uint16)
    special = np.array([0x7FC0, 0x7F80, 0xFF80, 0x0001, 0x8001, 0x7F7F, 0x4400, 0x0000, 0x8000])
    picks = rng.integers(0, n * c, 2 * n)
    bits.flat[picks] = rng.choice(special, picks.size)
    bits[0] = 0x3F80  # ties at the max: every logit 1.0
    y = rng.integers(0, c, n).astype(np.int64)

    def run(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        loss, ends, status = np.empty((7, n)), np.empty((4, n)), np.empty(n, dtype=np.uint16)
        fast.kernel().multiclass_index(z, z.itemsize, n, c, y, loss, ends, status, 0, n)
        return loss, ends, status

    wide_loss, wide_ends, wide_status = run(shifted(bits))
    loss, ends, status = run(bits)
    assert np.array_equal(loss.view(np.uint64), wide_loss.view(np.uint64))
    assert np.array_equal(ends.view(np.uint64), wide_ends.view(np.uint64))
    assert np.array_equal(status, wide_status)
    with pytest.raises(ValueError, match="itemsize"):  # bits are for the multiclass pass only
        fast.kernel().sigmoid(bits, 2, n, c, np.zeros((n, c)), loss, status, 0, n)


@needs_kernel
def test_the_engine_hands_the_kernel_the_bits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signalling = ((ALL & 0x7F80) == 0x7F80) & ((ALL & 0x7F) != 0) & ((ALL & 0x40) == 0)
    bits = np.random.default_rng(3).permutation(ALL[~signalling])[:3000].reshape(100, 30)
    path = bf16_file(tmp_path / "z.safetensors", bits)
    np.save(tmp_path / "y.npy", np.arange(100) % 30)
    sizes = []
    real = fast.kernel()

    class Spy:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def multiclass_index(self, z: np.ndarray, itemsize: int, *args: object) -> None:
            sizes.append(itemsize)
            real.multiclass_index(z, itemsize, *args)

    monkeypatch.setattr(fast, "kernel", Spy)
    settings = engine.Settings(("float32", "float64"))
    engine.run(open_inputs(path, str(tmp_path / "y.npy")), settings)
    assert sizes
    assert set(sizes) == {2}


@pytest.mark.parametrize("dtypes", ["float32,float64", "float16,bfloat16,float32,float64"])
@pytest.mark.parametrize("options", [(), ("--batch-size", "7"), ("--framework", "tensorflow")])
def test_bfloat16_bits_report_as_their_float32_twin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtypes: str, options: tuple[str, ...]
) -> None:
    """Every row (CSV) and the JSON report of a BF16 .safetensors file equal those of the same
    values as a float32 .npy, over many chunks, rows that break included."""
    rng = np.random.default_rng(4)
    z = (rng.standard_normal((90, 40)) * 8).astype(np.float32)
    z[3, 5], z[10, :] = 120.0, 3e38  # exp overflow; a sum overflowing float32
    z[20, 7], z[30, :20], z[31, :] = np.nan, -np.inf, -np.inf  # NaN; masks; all masked
    bits = (z.view(np.uint32) >> 16).astype(np.uint16)
    y = rng.integers(0, 40, 90)
    y[::11] = -100
    st = bf16_file(tmp_path / "z.safetensors", bits)
    np.save(tmp_path / "z.npy", shifted(bits))
    np.save(tmp_path / "y.npy", y)
    monkeypatch.setattr(fast, "CHUNK_BYTES", 40 * 4 * 16)  # 16 rows a chunk
    args = ["--dtypes", dtypes, "--top", "90", *options]

    def run(logits: str, fmt: str) -> str:
        got = CliRunner().invoke(
            cecheck, ["compare", logits, str(tmp_path / "y.npy"), *args, "--format", fmt]
        )
        assert got.exit_code == 0, got.stderr
        return got.stdout

    assert run(st, "csv") == run(str(tmp_path / "z.npy"), "csv")
    ours, theirs = (json.loads(run(p, "json")) for p in (st, str(tmp_path / "z.npy")))
    assert ours.pop("inputs")["logits_dtype"] == "bfloat16"
    theirs.pop("inputs")
    assert ours == theirs
    assert ours["counts"]["nonfinite_input"] == 1
