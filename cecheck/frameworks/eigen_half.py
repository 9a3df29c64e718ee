"""Eigen's float16 (``Eigen::half``) arithmetic as TensorFlow 2.21's CPU wheel runs it,
emulated in numpy: what ``tf.nn.softmax`` computes in float16 where the CPU sends float16 to
Eigen rather than oneDNN (see :mod:`cecheck.frameworks.tf_paths`).

The wheel's Eigen is built for AVX without AVX-512 packets and without FMA, so a float16
packet is ``Packet8h``: eight values, each operation (``padd``, ``pmul``, ``pexp``, ...)
converts them to float32, computes, and rounds the result back to float16
(``Eigen/src/Core/arch/AVX/PacketMath.h``, ``MathFunctions.h``). Values here are float16
values held in float32 arrays, as :mod:`cecheck.precision` holds them.
"""

from __future__ import annotations

import numpy as np

from cecheck.arraytypes import Array
from cecheck.precision import PRECISIONS

LANES = 8  # Packet8h
LEAF = 200  # TensorReduction.h, LeafSize<half>(): packets per leaf of the tree reduction
BLOCK = 1 << 14  # values per block of exp_float32

_H = PRECISIONS["float16"].round
_F = np.float32


def exp_float32(x: Array) -> Array:
    """Eigen's ``pexp_float`` (``arch/Default/GenericPacketMathFunctions.h``) step by step in
    float32: ``m = floor(x·log2(e) + 1/2)``, ``r = x - m·ln 2`` in two parts (Cephes), a
    degree-6 polynomial, ``2**m · p(r)``; 0 below -104. ``pmadd`` is a product then a sum,
    each rounded (no FMA). Results below float32's smallest normal never reach float16, so
    the flush to zero of TensorFlow's threads changes nothing here.

    Rounded to float16, it equals glibc's ``expf`` (which Eigen's scalar path, a packet's
    leftover values, calls) and the exact exp on every float16 input (probed, all 19,712
    above -20), so which values TensorFlow leaves to the scalar path does not matter. Not
    numpy's float32 exp: an exact exp comes within 0.47 float32 ulp of a float16 midpoint
    (at ``-0.0416259765625``), and numpy's error varies with the SIMD code it picks for
    the CPU."""
    x = np.asarray(x, dtype=_F)
    flat = x.reshape(-1)
    out = np.empty_like(flat)
    # in blocks that stay in cache: the twenty-odd passes over memory cost more than the
    # arithmetic (2.6 s in one pass over 32,000,000 values)
    for i in range(0, flat.size, BLOCK):
        out[i : i + BLOCK] = _exp_block(flat[i : i + BLOCK])
    return out.reshape(x.shape)


def _exp_block(x: Array) -> Array:
    """:func:`exp_float32` of one block of values."""
    f = _F
    with np.errstate(invalid="ignore", over="ignore"):  # -inf masks, NaN rows: masked below
        zero = x < f(-104)
        xc = np.minimum(x, f(88.723))
        m = np.floor(xc * f(1.44269504088896341) + f(0.5))
        r = m * f(-0.693359375) + xc
        r = m * f(2.12194440e-4) + r
        r2 = r * r
        p_even = r2 * f(1.37449637986719608306884765625e-3) + f(4.166965186595916748046875e-2)
        p_odd = r2 * f(8.36894474923610687255859375e-3) + f(0.16666518151760101318359375)
        p_even = r2 * p_even + f(0.49999988079071044921875)
        y = r * p_odd + p_even
        y = r2 * y + (r + f(1))
        # finite m only: x = NaN or -inf gives m NaN/-inf, handled by the masks below
        scaled = np.ldexp(y, np.where(np.isfinite(m), m, 0).astype(np.int32)).astype(f)
        out = np.where(zero, f(0), np.maximum(scaled, x))  # pmax(pldexp(y, m), x)
        return np.where(np.isnan(x), x, out)


def _predux(acc: Array) -> Array:
    """``predux(Packet8h)``: the eight lanes in float32, halves added (lanes i and i+4,
    then i and i+2, then 0 and 1: ``AVX/Reductions.h``, ``SSE/Reductions.h``), rounded
    once to float16."""
    b = acc[:, :4] + acc[:, 4:]
    t = b[:, :2] + b[:, 2:]
    return _H(t[:, 0] + t[:, 1])


def _leaf_sum(e: Array) -> Array:
    """``InnerMostDimReducer<.., vectorized, no tree>`` with ``SumReducer<half>``: four
    packet accumulators over blocks of 32, folded into the first, then whole packets,
    then the remaining values one by one from 0; every addition rounded to float16."""
    n, c = e.shape
    acc = np.zeros((n, LANES), dtype=_F)
    start = 0
    if c >= 4 * LANES:
        start = c // (4 * LANES) * (4 * LANES)
        four = np.zeros((n, 4, LANES), dtype=_F)  # the four accumulators side by side
        for block in np.moveaxis(e[:, :start].reshape(n, -1, 4, LANES), 1, 0):
            four = _H(four + block)
        acc = _H(_H(_H(four[:, 0] + four[:, 1]) + four[:, 2]) + four[:, 3])
    whole = c // LANES * LANES
    for j in range(start, whole, LANES):
        acc = _H(acc + e[:, j : j + LANES])
    scalar = np.zeros(n, dtype=_F)
    for j in range(max(start, whole), c):
        scalar = _H(scalar + e[:, j])
    return _H(scalar + _predux(acc))


def _tree_sum(e: Array, first: int) -> Array:
    """``InnerMostDimReducer<.., vectorized, tree>``: above ``LANES · LEAF`` values, split
    where the packet boundary after the middle falls (``first``: the flat index of the
    first value, mod ``LANES``), reduce each side, add the two."""
    c = e.shape[1]
    if c <= LANES * LEAF:
        return _leaf_sum(e)
    split = -(-(first + -(-c // 2)) // LANES) * LANES - first
    left = min(split, c)
    total = _tree_sum(e[:, :left], first)
    if left < c:
        total = _H(total + _tree_sum(e[:, left:], (first + left) % LANES))
    return total


def row_sums(e: Array) -> Array:
    """``e.sum(along_class)`` of a (rows, classes) float16 tensor, each row taken to start on
    a packet boundary.

    In TensorFlow a row's place in its tensor (its first value's flat index mod ``LANES``)
    moves the tree's splits above ``LANES · LEAF`` classes: with a class count that is not a
    multiple of 8, the rows of one batch are summed in different orders, which may differ
    in the last bit. That place is the caller's batching, which cecheck cannot know, and a
    row must get the same loss in a file, a chunk or a shard of any size: every row is
    summed as the first row of a tensor is (exact for 32,000, 128,256 or 151,936 classes,
    or a row alone)."""
    return _tree_sum(e, 0)
