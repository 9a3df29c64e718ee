"""Fused numba kernels: every path and dtype of a chunk in one pass over its rows.

The numpy functions in :mod:`cecheck.losses` are the specification; this module computes the
same values faster for the case that matters most by size, a language model's logits:
``multiclass`` with ``index`` labels in float32 and float64. One parallel kernel walks the rows
(both cores, rows are independent) and computes, per row, the max and argmax, the naive and
stable paths in float32 and float64, the reference, and the evidence bits, into per-row arrays;
:func:`cecheck.diagnose.diagnose` then runs unchanged on those.

How the kernel stays an honest emulation of each path
-----------------------------------------------------
* Every float32 step is a float32 operation, rounded where numpy's float32 rounds: the cast of
  the logits, the shift ``z - max``, each exp, the sum, the division, the log, the subtraction.
* Sums over classes are in the path's dtype, in blocks of 128 terms (16 for rows of at most
  16 classes) added pairwise, then the block sums in vector lanes: as accurate as numpy's
  pairwise sum (a term passes through a few tens of additions at most), in a different
  order, so not bit-identical.
* ``exp`` is an inlined polynomial in float64 (Cody-Waite reduction, a degree-11 fit in
  Estrin's scheme, about 1 ulp): numba's own exp is a scalar libm call that does not
  vectorise. A float32 exp is that float64 exp rounded to float32: the correctly rounded
  float32 exp except in rare double-rounding cases, overflowing and underflowing at the same
  arguments. One float64 exp per element serves both precisions of a path:
  ``exp(a32) = exp(a64) * exp(a32 - a64)``, where ``a32 - a64`` is the float32 rounding error
  of the argument (|.| <= 2**-17 for float32 logits), taken to second order (relative error
  below 2**-52). And while every logit of a row lies in [-300, 300], the stable path's
  ``exp(z - max)`` is ``exp(z) * exp(-max)`` (all three normal numbers; about 2.5 ulp). Rows
  outside those ranges (large or float64-only logits) take a direct exp of every argument.
* ``log`` and ``log1p`` are libm's in float64, rounded to float32 for the float32 path.

So the fast path and numpy differ by the exp and log implementations and the order of the
sums: a few units in the last place per term, which gives the bound ``tests/test_fast.py``
checks, ``|L_fast - L_numpy| <= 8 * eps(dtype) * max(1, |L_numpy|)`` on every finite loss
(a loss is the log of a sum of positive terms plus a non-negative term, so a relative error
of the terms becomes an absolute error of the log), the same non-finite pattern, the same
evidence bits, and so the same flags and causes except for a row sitting within those few ulp
of a threshold (``--rtol``, half the bits, a probability rounding to zero).

Rows the kernel does not handle itself (a non-finite logit, or a float64 logit beyond the
float32 range) are recomputed with the numpy functions: their propagation of inf and NaN is
the specification, and such rows are rare.

numba is optional (``pip install cecheck[fast]``): it is imported only when :func:`usable`
says the input is big enough to pay for loading it, and compiled kernels are cached on disk.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from cecheck import losses
from cecheck import precision as prec
from cecheck.losses import PathResult

Array = npt.NDArray

# Below this many logits the numpy path is faster than importing numba and loading the
# cached kernel (~0.6 s on a 2-core machine): the numpy path costs ~6-10 ns per logit for
# float32 + float64 and the kernel ~1.5, so the load pays for itself from ~100M logits.
MIN_ELEMENTS = 1 << 26
# Bytes of logits per chunk on the fast path: big enough that per-chunk work in numpy
# (labels, diagnosis, totals) is small next to the kernel, small enough to stay far below
# the memory budget.
CHUNK_BYTES = 32 << 20
# Rows per chunk at most: bounds the (rows, flags) matrices of the diagnosis.
MAX_CHUNK_ROWS = 1 << 17
DTYPES = ("float32", "float64")
LOGIT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

_lock = threading.Lock()
_run_lock = threading.Lock()
_kernels: dict[str, Any] | None = None


def installed() -> bool:
    """Whether numba can be imported (checked without importing it)."""
    return importlib.util.find_spec("numba") is not None


def covers(task: str, label_form: str, dtypes: Sequence[str]) -> bool:
    """Whether the fast path computes this task, label form and set of dtypes."""
    return task == "multiclass" and label_form == "index" and set(dtypes) <= set(DTYPES)


def usable(task: str, label_form: str, dtypes: Sequence[str], n_rows: int, n_classes: int) -> bool:
    """Whether to take the fast path: covered, numba installed, and the input big enough.

    The environment variable ``CECHECK_NO_NUMBA`` (any non-empty value) turns it off, to
    compare with, or fall back to, the numpy specification.
    """
    if os.environ.get("CECHECK_NO_NUMBA"):
        return False
    return (
        covers(task, label_form, dtypes)
        and n_rows * max(n_classes, 1) >= MIN_ELEMENTS
        and installed()
    )


def chunk_rows(n_classes: int, itemsize: int = 4) -> int:
    """Rows per chunk on the fast path."""
    return max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES // (max(1, n_classes) * itemsize)))


def multiclass_index(
    logits: Array, target: Array, dtypes: Sequence[str]
) -> tuple[dict[tuple[str, str], PathResult], Array, Array]:
    """Every path of a chunk of multiclass logits with valid index targets.

    Parameters
    ----------
    logits
        (n, C) float32 or float64 logits; any other dtype is converted to float64 first.
    target
        (n,) class numbers in ``[0, C)`` (the engine replaces ignored and out-of-range
        labels by 0 and masks those rows afterwards).
    dtypes
        A subset of ``("float32", "float64")``.

    Returns
    -------
    results, reference, nonfinite
        ``{(path, dtype): PathResult}`` as :func:`cecheck.losses.naive_multiclass` and
        :func:`cecheck.losses.stable_multiclass` give them, the reference losses, and the
        rows holding a non-finite logit.
    """
    kernels = load()
    z = np.asarray(logits)
    if z.dtype not in LOGIT_DTYPES:
        z = z.astype(np.float64)
    if not z.flags.c_contiguous:
        z = np.ascontiguousarray(z)
    if z.flags.writeable:  # one compiled signature (memory maps are read-only): one cache load
        z = z.view()
        z.flags.writeable = False
    y = np.asarray(target, dtype=np.int64)
    n = z.shape[0]
    loss = np.empty((5, n), dtype=np.float64)
    bits = np.empty(n, dtype=np.uint8)
    if z.dtype == np.float32:
        zbits, limit = z.view(np.int32), int(np.float32(_F32_MAX).view(np.int32))
    else:
        zbits, limit = z.view(np.int64), int(np.float64(_F32_MAX).view(np.int64))
    tame_key = _order_key(np.array(-300.0, dtype=z.dtype))
    with _run_lock:  # the workspace is shared: one kernel at a time (each uses every core)
        kernels["multiclass_index"](
            z, zbits, limit, tame_key, y, loss, bits, _workspace(z.shape[1])
        )

    special = np.flatnonzero(bits & _SPECIAL)
    evidence = {
        (d, kind): (bits & flag) != 0
        for d, flags in (("float32", (_OVER32, _UNDER32)), ("float64", (_OVER64, _UNDER64)))
        for kind, flag in zip(("over", "under"), flags, strict=True)
    }
    results: dict[tuple[str, str], PathResult] = {}
    for d, row in (("float32", 0), ("float64", 1)):
        if d not in dtypes:
            continue
        results[("naive", d)] = PathResult(
            loss[row], exp_overflow=evidence[d, "over"], prob_underflow=evidence[d, "under"]
        )
        results[("stable", d)] = PathResult(loss[row + 2])
    reference = loss[4]
    nonfinite = (bits & _NONFINITE) != 0
    if special.size:
        _recompute(z[special], y[special], special, results, reference)
    return results, reference, nonfinite


def _recompute(
    z: Array, y: Array, rows: Array, results: dict[tuple[str, str], PathResult], ref: Array
) -> None:
    """Overwrite ``rows`` of every result with the numpy specification's values."""
    for (path, d), r in results.items():
        spec = (losses.naive_multiclass if path == "naive" else losses.stable_multiclass)(
            z, y, prec.get(d)
        )
        r.loss[rows] = spec.loss
        for name in ("exp_overflow", "prob_underflow"):
            mine, theirs = getattr(r, name), getattr(spec, name)
            if mine is not None and theirs is not None:
                mine[rows] = theirs
    ref[rows] = losses.reference_multiclass(z, y)


def _order_key(x: Array) -> int:
    """The integer order key of a float scalar, as the kernel computes it from the bits."""
    b = int(x.view(np.int32 if x.itemsize == 4 else np.int64))
    mask = (1 << (8 * x.itemsize - 1)) - 1
    return b ^ ((b >> (8 * x.itemsize - 1)) & mask)


# Bits of the per-row status byte the kernel writes.
_OVER32, _UNDER32, _OVER64, _UNDER64, _NONFINITE, _SPECIAL = 1, 2, 4, 8, 16, 32
_F32_MAX = float(np.finfo(np.float32).max)

_workspaces: dict[int, Array] = {}


def _workspace(n_classes: int) -> Array:
    """Per-thread scratch rows, reused across chunks (a fresh big allocation pays page faults)."""
    import numba

    threads = numba.get_num_threads()
    key = n_classes * 1000 + threads
    ws = _workspaces.get(key)
    if ws is None:
        _workspaces.clear()
        # per thread: a block of logits, exp(z), exp(z - max) and the reference's terms
        # in float64, of exp(z) and exp(z - max) in float32, and the four block sums of a row
        ws = np.empty((threads, 5 * _BLOCK + 4 * (n_classes // _BLOCK + 1)), dtype=np.float64)
        _workspaces[key] = ws
    return ws


def load() -> dict[str, Any]:
    """Import numba and compile (or load from the cache) the kernels; once per process."""
    global _kernels
    with _lock:
        if _kernels is None:
            _prepare_cache_dir()
            _kernels = _build()
        return _kernels


def _prepare_cache_dir() -> None:
    """Make sure numba's ``cache=True`` has a writable directory before numba is imported.

    numba caches next to this file; where that is read-only (a system site-packages) it
    uses the user's cache directory. If neither is writable, point NUMBA_CACHE_DIR at a
    directory that is (the user cache dir, else the temp dir), so caching never fails.
    """
    if "NUMBA_CACHE_DIR" in os.environ or "numba" in sys.modules:
        return
    here = os.path.dirname(os.path.abspath(__file__))
    if os.access(here, os.W_OK):
        return
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for root in (base, tempfile.gettempdir()):
        path = os.path.join(root, "cecheck", "numba")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            os.environ["NUMBA_CACHE_DIR"] = path
            return


def _build() -> dict[str, Any]:
    """Import numba and compile the kernels below, or load them from numba's disk cache.

    The kernels are plain module-level functions until this runs: it replaces each by its
    numba dispatcher in the module's namespace (where the kernels look each other up), so
    importing this module never imports numba. Module-level (not nested) functions are what
    numba's ``cache=True`` can find again in the next process.
    """
    import numba
    from numba.extending import intrinsic

    def jit(f: Callable, **kw: Any) -> Any:
        try:
            return numba.njit(cache=True, **kw)(f)
        except RuntimeError:  # no writable cache directory at all: compile every run
            return numba.njit(**kw)(f)

    g = globals()
    g["_prange"] = numba.prange
    g["_thread_id"] = numba.get_thread_id
    g["_k_bits_as_float64"] = intrinsic(_bits_as_float64_typer)
    g["_k_exp64_reduced"] = jit(_k_exp64_reduced, inline="always", fastmath={"contract"})
    g["_k_exp64"] = jit(_k_exp64, inline="always", fastmath={"contract"})
    g["_k_exp64_tame"] = jit(_k_exp64_tame, inline="always", fastmath={"contract"})
    g["_k_lane_sum"] = jit(_k_lane_sum, fastmath={"reassoc"}, error_model="numpy")
    g["_k_tree_sum"] = jit(_k_tree_sum, inline="always")
    g["_k_block"] = jit(_k_block, inline="always", fastmath={"contract"}, error_model="numpy")
    g["_k_sum"] = jit(_k_sum)
    g["_k_multiclass_index"] = jit(
        _k_multiclass_index, parallel=True, fastmath={"contract"}, error_model="numpy"
    )
    return {"multiclass_index": g["_k_multiclass_index"], "exp64": g["_k_exp64"],
            "exp64_tame": g["_k_exp64_tame"], "sum": g["_k_sum"]}  # fmt: skip


# ------------------------------------------------------------------ the kernels
# Plain Python until _build() compiles them; numba resolves the names below at compile time.

_prange = range
_thread_id: Callable[[], int] = lambda: 0  # noqa: E731


def _bits_as_float64_typer(typingctx: Any, i: Any) -> Any:
    """Reinterpret an int64 as the float64 with the same bits (vectorises, unlike ldexp)."""
    from llvmlite import ir
    from numba import types

    sig = types.float64(types.int64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


def _k_bits_as_float64(i: int) -> float:
    return float(np.int64(i).view(np.float64))


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # 32 significant bits: k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_X_MAX = 709.782712893384  # the largest float64 whose exp is finite
_BIG = 1.7976931348623157e308
# (exp(r) - 1) / r on |r| <= ln(2)/2: least-squares fit on Chebyshev nodes in mpmath
# (50 digits); truncation error 0.08 ulp of exp(r).
_Q0, _Q1, _Q2, _Q3, _Q4, _Q5 = (
    1.0,
    0.5000000000000006,
    0.1666666666666668,
    0.04166666666657306,
    0.008333333333319589,
    0.0013888888932517304,
)
_Q6, _Q7, _Q8, _Q9, _Q10 = (
    0.00019841269890078585,
    2.4801504310983356e-05,
    2.75572408851544e-06,
    2.762637210237089e-07,
    2.5110049895858716e-08,
)


def _k_exp64_reduced(x: float) -> tuple[float, float]:
    """``(k, p)`` with ``exp(x) = 2**k * p``: ``k = round(x / ln 2)`` and
    ``p = 1 + r q(r)`` for the reduced ``r = x - k ln 2``; Estrin's scheme for q (short
    dependency chains keep the vector units busy)."""
    kf = np.floor(x * _LOG2E + 0.5)
    r = (x - kf * _LN2_HI) - kf * _LN2_LO
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    a = (_Q0 + _Q1 * r) + r2 * (_Q2 + _Q3 * r)
    b = (_Q4 + _Q5 * r) + r2 * (_Q6 + _Q7 * r)
    c = (_Q8 + _Q9 * r) + r2 * _Q10
    return kf, 1.0 + r * ((a + r4 * b) + r8 * c)


def _k_exp64(x: float) -> float:
    """exp in float64 to about 1 ulp, with IEEE overflow, gradual underflow and NaN.

    ``exp(x) = 2**k * p`` from :func:`_k_exp64_reduced`; fused multiply-adds are allowed
    inside.
    """
    xc = x if x > -746.0 else -746.0  # NaN becomes -746 here; restored below
    xc = xc if xc < 710.0 else 710.0
    kf, p = _k_exp64_reduced(xc)
    k = np.int64(kf)
    k1 = k >> 1
    k2 = k - k1
    # two scalings keep each power of two normal; only the second one rounds
    y = (p * _k_bits_as_float64((k1 + 1023) << 52)) * _k_bits_as_float64((k2 + 1023) << 52)
    y = y if y < _BIG else _BIG
    y = np.inf if x > _X_MAX else y
    return x if x != x else y


def _k_exp64_tame(x: float) -> float:
    """:func:`_k_exp64` for ``|x| <= 300``, bit for bit: one scaling, no special values.

    There the result and ``2**k`` are normal numbers, so ``p * 2**k`` is exact, as each of
    the two scalings of the general function is.
    """
    kf, p = _k_exp64_reduced(x)
    return p * _k_bits_as_float64((np.int64(kf) + 1023) << 52)


_BLOCK = 128  # terms per block of a sum
_SMALL = 16  # the block of a row of at most this many classes
_MAX_BLOCK = 256  # logits per block of the row max


def _k_lane_sum(a: Any, n: int) -> Any:
    """``sum(a[:n])`` in a's dtype, in vector lanes (compiled with reassociation only).

    Indices from 0 (no negative-index wraparound to rule out) give contiguous vector loads.
    """
    s = a[0]
    for j in range(1, n):
        s += a[j]
    return s


def _k_tree_sum(a: Any, width: int) -> Any:
    """``sum(a[:width])`` pairwise, for a power of two ``width``; overwrites ``a``.

    Each halving step is an element-wise vector add (no reassociation needed to vectorise),
    and the order of the additions is fixed: a term passes through log2(width) additions.
    """
    h = width
    while h > 1:
        h //= 2
        for j in range(h):
            a[j] += a[j + h]
    return a[0]


def _k_sum(a: Any, blocks: Any) -> Any:
    """Sum of ``a`` in its dtype as the kernel sums: blocks of 128 terms, then the block sums.

    Each block pairwise, the block sums in vector lanes. Like numpy's pairwise sum, each term
    passes through few additions (7 in its block, then ~log2(lanes) + blocks/lanes: about
    20 for 32000 terms), so the error bound is a few tens of units of roundoff times the sum
    of the terms (all terms are non-negative here), and far smaller in practice. The order
    differs from numpy's, so sums agree with numpy's to a few ulp, not bit for bit.
    """
    c = a.shape[0]
    buf = np.zeros(_BLOCK, dtype=a.dtype)
    nb = 0
    for lo in range(0, c, _BLOCK):
        size = min(c - lo, _BLOCK)
        buf[:] = 0
        buf[:size] = a[lo : lo + size]
        blocks[nb] = _k_tree_sum(buf, _BLOCK)
        nb += 1
    return _k_lane_sum(blocks, nb)


def _k_block(
    z: Any,
    i: int,
    lo: int,
    width: int,
    tame: bool,
    m64: float,
    m32: Any,
    em: float,
    w: Any,
    w32: Any,
    t: int,
    k: int,
) -> tuple[bool, bool, float, Any, float, Any, float, Any, float]:
    """The exps of logits ``z[i, lo:lo + width]`` (fewer at the row's end) and their sums.

    ``width`` is a constant at each call (16 for small rows, else 128), so every loop below
    has a fixed trip count and vectorises whole. ``em``: exp(-max) for a tame row, used only
    if the block is full (otherwise a spare lane computes it with the other exps, which
    takes a scalar exp off each short row). ``w`` and ``w32``: per-thread scratch in
    float64 and float32. Returns (overflow in float32, in float64, the four block sums
    naive64, naive32, stable64, stable32, exp(z[t]) in float64 and float32 if ``t`` is in the
    block, and the reference's block sum, without the argmax's term, if ``k`` is).
    """
    c = z.shape[1]
    narrow = z.itemsize == 4
    size = min(c - lo, width)
    src = w[:width]
    en64 = w[width : 2 * width]
    es64 = w[2 * width : 3 * width]
    er64 = w[3 * width : 4 * width]
    en32 = w32[:width]
    es32 = w32[width : 2 * width]
    for j in range(size):
        src[j] = z[i, lo + j]
    for j in range(size, width):
        src[j] = 0.0  # harmless arguments; their exps are zeroed below
    over32 = False
    over64 = False
    if tame:
        # Every logit in [-300, 300]: exp(z - max) = exp(z) * exp(-max), three normal
        # numbers (about 2.5 ulp), and each float32 exp from the float64 one with the
        # argument's float32 rounding error to second order (|error| < 2**-14 here).
        if size < width:
            src[size] = -m64  # a spare lane: exp(-max) comes with the others
        for j in range(width):
            en64[j] = _k_exp64_tame(src[j])  # naive: exp(z)
        if size < width:
            em = en64[size]  # the same bits as the caller's (tested)
            en64[size] = 1.0  # as the other spare lanes (no overflow flag from exp(-max))
        for j in range(width):
            v64 = src[j]
            v32 = np.float32(v64)
            e = en64[j]
            if narrow:
                e32 = np.float32(e)  # float32 logits: the same argument
            else:
                dn = np.float64(v32) - v64
                e32 = np.float32(e + e * (dn + 0.5 * dn * dn))
            en32[j] = e32
            over32 |= e32 == np.inf
            d64 = v64 - m64  # stable: exp(z - max), shared with the reference
            d32 = np.float32(v32 - m32)
            s = 1.0 if d64 == 0.0 else e * em
            es64[j] = s
            ds = np.float64(d32) - d64
            es32[j] = np.float32(s + s * (ds + 0.5 * ds * ds))
    else:  # large logits: every exp from its own argument
        for j in range(width):
            v64 = src[j]
            v32 = np.float32(v64)
            e = _k_exp64(v64)
            en64[j] = e
            over64 |= e == np.inf
            e32 = np.float32(_k_exp64(np.float64(v32)))
            en32[j] = e32
            over32 |= e32 == np.inf
            es64[j] = _k_exp64(v64 - m64)
            es32[j] = np.float32(_k_exp64(np.float64(np.float32(v32 - m32))))
    for j in range(size, width):
        en64[j] = 0.0
        es64[j] = 0.0
        en32[j] = 0.0
        es32[j] = 0.0
    et64 = 0.0
    et32 = np.float32(0.0)
    if lo <= t < lo + size:
        et64 = en64[t - lo]
        et32 = en32[t - lo]
    rest = 0.0
    if lo <= k < lo + size:
        # the reference: the sum over j != argmax of exp(z_j - max); only the block
        # holding the argmax differs from the stable path's
        for j in range(width):
            er64[j] = es64[j]
        er64[k - lo] = 0.0
        rest = _k_tree_sum(er64, width)
    sn64 = _k_tree_sum(en64, width)
    sn32 = _k_tree_sum(en32, width)
    ss64 = _k_tree_sum(es64, width)
    ss32 = _k_tree_sum(es32, width)
    return over32, over64, sn64, sn32, ss64, ss32, et64, et32, rest


def _k_multiclass_index(
    z: Any, zbits: Any, limit: int, tame_key: int, y: Any, loss: Any, bits: Any, ws: Any
) -> None:
    """Per row: naive and stable in float32 and float64, the reference, evidence bits.

    ``zbits``: the logits' bits as integers of the same width; a row with a value whose
    magnitude bits exceed ``limit`` (beyond the float32 range, inf, NaN) is left to the
    numpy specification. A row whose logits all lie in [-300, 300] (order keys from
    ``tame_key`` up; the max is checked directly) takes the shared exps. ``loss`` rows:
    naive32, naive64, stable32, stable64, reference. ``bits``: the ``_OVER32 .. _SPECIAL``
    flags. ``ws``: per-thread scratch (see :func:`_workspace`).

    The rows are split into a few parts per thread and each part walks its rows in turn:
    the scratch views are made once per part, not per row (views of shared arrays cost
    atomic reference counts, which is what dominates rows of a few classes). Each row is
    read twice: once for its max and argmax, once in blocks of 128 logits (16 for rows of
    at most 16 classes) whose exps go to block-sized scratch (in L1) and are summed at once.
    """
    n, c = z.shape
    nb = (c + _BLOCK - 1) // _BLOCK
    parts = max(1, min(n, 4 * ws.shape[0]))  # a few per thread: a slow thread holds up less
    per = (n + parts - 1) // parts
    shift = zbits.itemsize * 8 - 1
    mask = np.int64(0x7FFFFFFFFFFFFFFF) if zbits.itemsize == 8 else np.int64(0x7FFFFFFF)
    for part in _prange(parts):
        wt = ws[_thread_id()]
        w = wt[: 4 * _BLOCK]  # the blocks in float64 (see _k_block)
        w32 = wt[4 * _BLOCK : 5 * _BLOCK].view(np.float32)  # ... and in float32
        sn64 = wt[5 * _BLOCK : 5 * _BLOCK + nb]  # the four block sums of a row
        ss64 = wt[5 * _BLOCK + nb : 5 * _BLOCK + 2 * nb]
        sn32 = wt[5 * _BLOCK + 2 * nb : 5 * _BLOCK + 3 * nb].view(np.float32)[:nb]
        ss32 = wt[5 * _BLOCK + 3 * nb : 5 * _BLOCK + 4 * nb].view(np.float32)[:nb]
        for i in range(part * per, min(n, part * per + per)):
            # max, argmax block, smallest key and count of values beyond the limit, as
            # integer order keys: a float's bits b map to b ^ ((b >> (w - 1)) & mask), which
            # orders as the floats do, so the max is an exact, vectorised integer max
            b0 = zbits[i, 0]
            best = b0 ^ ((b0 >> shift) & mask)
            low_key = best
            bad = 0
            kb = 0
            for mb in range((c + _MAX_BLOCK - 1) // _MAX_BLOCK):
                lo = mb * _MAX_BLOCK
                top = best
                for j in range(min(c - lo, _MAX_BLOCK)):
                    b = zbits[i, lo + j]
                    key = b ^ ((b >> shift) & mask)
                    top = key if key > top else top
                    low_key = key if key < low_key else low_key
                    bad += (b & mask) > limit
                if top > best:
                    best = top
                    kb = lo
            if bad:
                nonfinite = False
                for j in range(c):
                    nonfinite |= not np.isfinite(z[i, j])
                bits[i] = 32 | (16 if nonfinite else 0)
                for q in range(5):
                    loss[q, i] = np.nan
                continue
            k = kb  # the first argmax
            while (zbits[i, k] ^ ((zbits[i, k] >> shift) & mask)) != best:
                k += 1
            m64 = np.float64(z[i, k])
            m32 = np.float32(z[i, k])
            tame = low_key >= tame_key and m64 <= 300.0
            # exp(-max) for the shared exps, unless the first block has a spare lane for it
            width = _SMALL if c <= _SMALL else _BLOCK
            em = _k_exp64(-m64) if tame and c >= width else 0.0
            t = y[i]
            if c <= _SMALL:
                o32, o64, sum_n64, sum_n32, sum_s64, sum_s32, et64, et32, rest = _k_block(
                    z, i, 0, _SMALL, tame, m64, m32, em, w, w32, t, k
                )
                over32 = o32
                over64 = o64
            else:
                over32 = False
                over64 = False
                et64 = 0.0
                et32 = np.float32(0.0)
                rest = 0.0
                for blk in range(nb):
                    o32, o64, sn64[blk], sn32[blk], ss64[blk], ss32[blk], e64, e32, r = _k_block(
                        z, i, blk * _BLOCK, _BLOCK, tame, m64, m32, em, w, w32, t, k
                    )
                    over32 |= o32
                    over64 |= o64
                    et64 += e64  # nonzero in t's block only
                    et32 += e32
                    rest += r  # nonzero in k's block only
                sum_n64 = _k_lane_sum(sn64, nb)
                sum_n32 = _k_lane_sum(sn32, nb)
                sum_s64 = _k_lane_sum(ss64, nb)
                sum_s32 = _k_lane_sum(ss32, nb)
                ss64[k // _BLOCK] = rest
                rest = _k_lane_sum(ss64, nb)
            zt64 = np.float64(z[i, t])
            zt32 = np.float32(z[i, t])
            # naive float32 and float64: -log(e[y] / sum e)
            p32 = np.float32(et32 / sum_n32)
            loss[0, i] = -np.float64(np.float32(np.log(np.float64(p32))))
            p64 = et64 / sum_n64
            loss[1, i] = -np.log(p64)
            # stable float32 and float64: log(sum exp(z - max)) - (z[y] - max)
            lse32 = np.float32(np.log(np.float64(sum_s32)))
            loss[2, i] = np.float64(np.float32(lse32 - np.float32(zt32 - m32)))
            loss[3, i] = np.log(sum_s64) - (zt64 - m64)
            # reference: (max - z[y]) + log1p(sum over j != argmax of exp(z_j - max))
            loss[4, i] = (m64 - zt64) + np.log1p(rest)
            flags = 0
            if over32:
                flags |= 1
            if p32 == 0:
                flags |= 2
            if over64:
                flags |= 4
            if p64 == 0:
                flags |= 8
            bits[i] = flags
