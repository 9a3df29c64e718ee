"""bfloat16 bits widened to float32 (:func:`cecheck.narrow.widen_bfloat16`): by the kernel
when it is built, and bit for bit numpy's 16-bit shift; the
``.safetensors`` reader widens its BF16 tensors that way."""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from cecheck import fast, narrow
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


@needs_kernel
def test_the_safetensors_reader_widens_bfloat16_by_the_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bits = np.random.default_rng(1).permutation(ALL)[:600].reshape(20, 30)
    path = bf16_file(tmp_path / "z.safetensors", bits)
    calls = []
    real = fast.kernel()

    class Spy:
        def widen_bfloat16(self, *args: object) -> None:
            calls.append(args[2:])
            real.widen_bfloat16(*args)

    monkeypatch.setattr(fast, "kernel", Spy)
    part = open_safetensors(path, [("logits", "--logits-key")])[0]
    blocks = [b[0] for b in part.blocks(7, 1)]
    assert calls  # the kernel did it, in the rows of each block
    widened = np.concatenate(blocks)
    assert widened.dtype == np.float32
    assert np.array_equal(widened.view(np.uint32), shifted(bits).view(np.uint32))


def test_the_next_bfloat16_block_is_widened_before_it_is_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the consumer computes a block, the next one is widened on a thread of its own."""
    bits = np.random.default_rng(2).permutation(ALL)[:600].reshape(20, 30)
    path = bf16_file(tmp_path / "z.safetensors", bits)
    widened: list[int] = []
    second = threading.Event()
    real = narrow.widen_bfloat16

    def spy(b: np.ndarray) -> np.ndarray:
        widened.append(len(b))
        if len(widened) == 2:
            second.set()
        return real(b)

    monkeypatch.setattr(narrow, "widen_bfloat16", spy)
    part = open_safetensors(path, [("logits", "--logits-key")])[0]
    blocks = part.blocks(7, 1)
    first = next(blocks)[0]
    assert second.wait(30)  # the second block, not yet asked for
    rest = [b[0] for b in blocks]
    assert widened == [7, 7, 6]
    got = np.concatenate([first, *rest])
    assert np.array_equal(got.view(np.uint32), shifted(bits).view(np.uint32))
