"""The fused loss kernels: every path and dtype of a chunk in one pass over its rows.

The numpy functions are the specification (the textbook path and the reference of
:mod:`cecheck.losses`, PyTorch's naive and stable paths of
:mod:`cecheck.frameworks.torch_naive` and :mod:`~cecheck.frameworks.torch_fused`); this
module computes the same values faster in float32 and float64 for every task:
``multiclass`` with ``index`` labels (a language model's logits, the case that matters most
by size) or soft labels, ``binary`` and ``multilabel``. A C kernel (``cecheck/_kernel.c``,
compiled when cecheck is installed) computes, per row, the textbook, naive and stable paths
in float32 and float64, the reference and the evidence bits, into per-row arrays; the rows
of a chunk are split over threads (rows are independent, the kernel releases the GIL), and
:func:`cecheck.diagnose.diagnose` then runs unchanged on the results. float16 and bfloat16
are computed for ``multiclass`` with ``index`` labels, bit for bit as the specification
(:mod:`cecheck.narrow`); for the other tasks they stay on numpy (:func:`covers`), and so do
the paths of another framework (:data:`EMULATES` names the functions the kernel computes,
in every dtype :func:`covers` accepts) and PyTorch's class weights and label smoothing.

PyTorch's paths in the kernel: ``naive`` is ``exp(z - max) * (1 / Σ exp(z - max))``, then
its log (index labels: at the target; soft: ``-Σ t · log p``), from the same terms and sums as
the stable path ``(z - max) - log Σ exp(z - max)``; binary and multilabel: ``naive`` is
``(t - 1) · max(log1p(-s), -100) - t · max(log s, -100)`` of the textbook path's sigmoid s,
``stable`` is ``(1 - t) · z - (min(z, 0) - log1p(exp(-|z|)))`` with its cancellation bit.

How the kernels stay an honest emulation of each path
-----------------------------------------------------
* Every float32 step is a float32 operation, rounded where numpy's float32 rounds: the cast of
  the logits, the shift ``z - max``, each exp, sum, division, log, product and subtraction.
* Sums over classes are in the path's dtype: 16 lanes within a block of 256 terms, then the
  block results merged pairwise: as accurate as numpy's pairwise sum (a term passes through
  16 additions in its block, 4 across lanes and log2(blocks) after), in a different order,
  so not bit-identical. Rows of at most 16 classes go 8 at a time, one per vector lane, in the
  same order: a row's bits never depend on its neighbours, nor on the CPU (every
  instruction-set copy of the kernel gives the same bits, tests/test_kernel_clones.py).
* ``exp`` is a polynomial in float64 (Cody-Waite reduction, a degree-11 fit, about 1 ulp) that
  the compiler vectorises; libm's exp is a scalar call. A float32 exp is that float64 exp
  rounded to float32: the correctly rounded float32 exp except in rare double-rounding cases,
  overflowing and underflowing at the same arguments. A float32 term is the float64 one times
  ``1 + (a32 - a64)`` where the float32 argument differs from the float64 one by its rounding
  error (|.| <= 2**-24 |a|; the neglected second-order term is below 2**-30 of a float32 ulp).
* multiclass: while every logit of a row lies in [-300, 80], one float64 exp per logit
  serves every path: the stable path's ``exp(z - max)`` is ``exp(z) * exp(-max)`` (three
  normal numbers, about 2.5 ulp); no float32 exp overflows there. Other rows take a direct
  exp of every argument. Soft labels take a second pass over the row, for the probability
  and log of every class.
* binary and multilabel: one exp per logit, ``E = exp(-|z|)``; the textbook path's
  ``exp(-z)`` is ``E`` or ``1 / E`` (1.5 ulp; ``1 / 0 = inf`` where it overflows).
* ``log`` and ``log1p`` are fdlibm's log, written so that it vectorises (within 1 ulp), in
  float64, rounded to float32 for the float32 paths.

So the kernels and numpy differ by the exp and log implementations and the order of the
sums: a few units in the last place per term. That gives the bound ``tests/test_fast.py``
checks on every finite loss, ``|L_fast - L_numpy| <= 8 eps(dtype) (max(1, |L_numpy|) + K)``,
with K = 0 but for the textbook and naive binary and multilabel paths, where ``log(1 - p)``
(``log1p(-s)``) cancels as p nears 1 and amplifies a one-ulp difference in p by
``K = (1 - t) p / (1 - p)`` (averaged over the classes; numpy's float32 exp and log are not
correctly rounded, the kernel's nearly are).
A multiclass loss is the log of a sum of positive terms plus a non-negative term, so a
relative error of the terms becomes an absolute error of the log. The non-finite pattern and
the evidence bits are the same, and so the flags and causes, except for a row sitting within
those few ulp of a threshold (``--rtol``, half the bits, a probability rounding to 0 or 1).
PyTorch's exact values are exact in the kernel too, with the same proviso: a loss of 0 (a
probability of 1, the stable binary path's cancellation), 100 (the clamp), inf (a
probability of 0).

Rows the kernels do not handle themselves (a non-finite logit or target, or a float64 logit
beyond the float32 range) are recomputed with the numpy functions: their propagation of inf
and NaN is the specification, and such rows are rare. A softmax row's -inf logit is a masked
class: such a row is recomputed too, but it is not an input problem (its non-finite bit is
for NaN and +inf only; a sigmoid's -inf logit stays one).

Why C and not numba: importing numba and loading a cached kernel costs ~0.6 s and ~150 MB,
more than the whole computation on a 2 GB file. The kernels are one C file with no dependency
beyond Python's headers, built by ``setup.py`` as an optional extension: where no C compiler
is available cecheck installs without it and uses numpy for every input.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import numpy as np

from cecheck import families, losses, narrow, rowends
from cecheck import precision as prec
from cecheck.arraytypes import Array
from cecheck.errors import SetupError
from cecheck.losses import PathResult

# Every path of a chunk {(path, dtype): PathResult}, the reference, non-finite rows, row ends.
KernelResult = tuple[dict[tuple[str, str], PathResult], Array, Array, rowends.RowEnds | None]
# A framework path's numpy function f(z, target, p) -> PathResult.
PathFunction = Callable[..., PathResult]
# The framework paths a kernel computes, by name (naive, stable), with the numpy function each
# stands for: it recomputes the rows the kernel leaves to numpy.
FrameworkPaths = Mapping[str, PathFunction]

# The numpy specifications the kernels compute, (path, family kind) -> "module.function":
# PyTorch 2.13's naive and stable paths (cecheck.frameworks.torch_naive, torch_fused),
# without class weights or label smoothing. Known by name, so that importing this module
# does not import them.
EMULATES = {
    ("naive", "index"): "cecheck.frameworks.torch_naive.naive_index",
    ("naive", "soft"): "cecheck.frameworks.torch_naive.naive_soft",
    ("naive", "binary"): "cecheck.frameworks.torch_naive.naive_binary",
    ("naive", "multilabel"): "cecheck.frameworks.torch_naive.naive_multilabel",
    ("stable", "index"): "cecheck.frameworks.torch_fused.stable_index",
    ("stable", "soft"): "cecheck.frameworks.torch_fused.stable_soft",
    ("stable", "binary"): "cecheck.frameworks.torch_fused.stable_binary",
    ("stable", "multilabel"): "cecheck.frameworks.torch_fused.stable_multilabel",
}

# Bytes of logits per chunk on the fast path: big enough that per-chunk work in numpy is
# small next to the kernel; two chunks are in flight, both mapped (engine._pipelined): 2 x 28
# MB stays below the memory budget, the one-pass read's 64 MB chunk (tests/bench).
CHUNK_BYTES = 28 << 20
# Rows per chunk at most: bounds the (rows, flags) matrices of the diagnosis.
MAX_CHUNK_ROWS = 1 << 17
DTYPES = ("float32", "float64")
# The formats the multiclass index kernel also computes, each in a pass of its own
# (narrow_index in _kernel.c): float16 and bfloat16, with the bits of the numpy specification.
NARROW = ("float16", "bfloat16")
# The kernels a family may name (cecheck.families.Family.kernel): multiclass index, soft
# labels (one-hot or soft), sigmoid (binary and multi-hot targets).
KERNELS = ("index", "soft", "sigmoid")
LOGIT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Losses per row the kernels write (as N_OUT in _kernel.c), in this order: the textbook path
# in float32 and float64, the stable path in both, the reference, the naive path in both.
_OUTPUTS = 7
_TEXTBOOK, _STABLE, _REFERENCE, _NAIVE = 0, 2, 4, 5
# Bits of the per-row status words the kernels write (as in _kernel.c): the multiclass
# index kernel's, then the NONFINITE and SPECIAL bits of the sigmoid and soft-label kernels,
# whose evidence bits _per_class reads.
_OVER32, _UNDER32, _OVER64, _UNDER64, _NONFINITE, _SPECIAL = 1, 2, 4, 8, 16, 32
_NUNDER32, _NUNDER64 = 64, 128
_S_NONFINITE, _S_SPECIAL = 64, 128

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def installed() -> bool:
    """Whether the compiled kernel is there (checked without importing it)."""
    return importlib.util.find_spec("cecheck._kernel") is not None


def covers(task: str, label_form: str, dtypes: Sequence[str]) -> bool:
    """Whether the kernels compute this task, label form and set of dtypes: a family of
    :mod:`cecheck.families` that names a kernel of :data:`KERNELS`, in float32 and float64,
    and for the multiclass index kernel in float16 and bfloat16 too (:data:`NARROW`)."""
    if not families.known(task, label_form):
        return False
    kernel = families.get(task, label_form).kernel
    computed = DTYPES + NARROW if kernel == "index" else DTYPES
    return kernel in KERNELS and set(dtypes) <= set(computed)


def compute(
    task: str,
    label_form: str,
    logits: Array,
    target: Array,
    dtypes: Sequence[str],
    *,
    framework: FrameworkPaths | None = None,
) -> KernelResult:
    """The textbook path and the reference of a chunk (and the framework's paths named in
    ``framework``), by the family's kernel: :func:`multiclass_index`, :func:`soft` or
    :func:`sigmoid`. ValueError for a family no kernel computes.

    ``framework``: ``{path: numpy function}`` of the naive and stable paths to return, each a
    function the kernel computes (:func:`emulates`); it recomputes the rows the kernel leaves
    to numpy. The kernel's other paths are not returned.
    """
    kernel = families.get(task, label_form).kernel
    if kernel not in KERNELS:
        raise ValueError(f"no kernel computes {task} with {label_form} labels")
    ours = dict(framework or {})
    results, ref, nonfinite, ends = _kernels()[kernel](logits, target, dtypes, ours)
    results = {key: r for key, r in results.items() if key[0] == "textbook" or key[0] in ours}
    return results, ref, nonfinite, ends


def emulates(path: str, kind: str, function: PathFunction) -> bool:
    """Whether the kernel computes ``function`` as the ``path`` (naive, stable) of a family's
    ``kind`` (:data:`EMULATES`; a wrapper made by ``functools.wraps`` counts as what it
    wraps)."""
    name = f"{function.__module__}.{function.__qualname__}"
    return EMULATES.get((path, kind)) == name


def usable(task: str, label_form: str, dtypes: Sequence[str]) -> bool:
    """Whether to take the fast path: covered and the kernel built.

    Never a question of the input's size: a row gets the same losses, and so the same
    flags, alone or in a file of a billion rows (the kernel and numpy differ by a few ulp,
    enough to move a row that sits on a threshold). The environment variable
    ``CECHECK_NO_KERNEL`` (any non-empty value) turns it off, to compare with, or fall back
    to, the numpy specification.
    """
    if os.environ.get("CECHECK_NO_KERNEL"):
        return False
    if not (covers(task, label_form, dtypes) and installed()):
        return False
    kernel()  # a CECHECK_KERNEL_ISA this CPU cannot run is said before any output
    return True


def kernel() -> ModuleType:
    """The compiled kernel: the copy ``CECHECK_KERNEL_ISA`` names, or the best this CPU runs.

    Raises :class:`cecheck.errors.SetupError` when the variable names a copy this build lacks
    or this CPU cannot run.
    """
    try:
        from cecheck import _kernel
    except ImportError as e:
        if not os.environ.get("CECHECK_KERNEL_ISA"):
            raise
        raise SetupError(f"{e} (unset CECHECK_KERNEL_ISA, or name one of those)") from None
    return _kernel


def chunk_rows(n_classes: int, itemsize: int = 4) -> int:
    """Rows per chunk on the fast path."""
    return max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES // (max(1, n_classes) * itemsize)))


def threads() -> int:
    """The cores this process may run on; at most ``CECHECK_THREADS`` when it is set (a
    worker process's share of the cores, see :mod:`cecheck.scaleout`)."""
    has_affinity = hasattr(os, "sched_getaffinity")  # Linux
    cores = len(os.sched_getaffinity(0)) if has_affinity else (os.cpu_count() or 1)
    share = os.environ.get("CECHECK_THREADS", "")
    return max(1, min(cores, int(share))) if share.isdigit() else cores


def multiclass_index(
    logits: Array, target: Array, dtypes: Sequence[str], framework: FrameworkPaths | None = None
) -> KernelResult:
    """Every path of a chunk of multiclass logits with valid index targets.

    Parameters
    ----------
    logits
        (n, C) float32 or float64 logits (bfloat16 as a :class:`~cecheck.narrow.Bfloat16Rows`,
        whose bits the kernel reads); any other dtype is converted to float64 first.
    target
        (n,) class numbers in ``[0, C)`` (the engine replaces ignored and out-of-range
        labels by 0 and masks those rows afterwards).
    dtypes
        A subset of ``("float16", "bfloat16", "float32", "float64")``.
    framework
        ``{path: numpy function}``: the functions of :data:`EMULATES` that recompute the rows
        the kernel leaves to numpy, for the naive and stable paths they name.

    Returns
    -------
    results, reference, nonfinite, ends
        ``{(path, dtype): PathResult}`` as :func:`cecheck.losses.textbook_multiclass` and
        PyTorch's naive (``log(softmax)``) and stable (``cross_entropy``) paths give them, the
        reference losses, the rows holding a NaN or +inf logit (a -inf is a masked class, not
        an input problem) and each row's ends (:mod:`cecheck.rowends`). The rows the kernel
        leaves to numpy keep the kernel's NaN in a path absent from ``framework``.
    """
    z = logits if isinstance(logits, narrow.Bfloat16Rows) else _logits(logits)
    y = np.ascontiguousarray(target, dtype=np.int64)
    loss, bits = _run(kernel().multiclass_index, narrow.stored(z), y, ends := np.empty((4, len(z))))
    results: dict[tuple[str, str], PathResult] = {}
    flags = {"float32": (_OVER32, _UNDER32, _NUNDER32), "float64": (_OVER64, _UNDER64, _NUNDER64)}
    for d, row in (("float32", 0), ("float64", 1)):
        if d not in dtypes:
            continue
        over, under, naive_under = ((bits & flag) != 0 for flag in flags[d])
        results[("textbook", d)] = PathResult(
            loss[_TEXTBOOK + row], exp_overflow=over, prob_underflow=under
        )
        results[("naive", d)] = PathResult(loss[_NAIVE + row], prob_underflow=naive_under)
        results[("stable", d)] = PathResult(loss[_STABLE + row])
    reference = loss[_REFERENCE]
    nonfinite = (bits & _NONFINITE) != 0
    special = np.flatnonzero(bits & _SPECIAL)
    if special.size:
        spec = (*losses.PATHS["index"], framework or {})
        _overwrite(special, results, spec, z[special], y[special], reference)
    _rescale_tiny(reference, losses.reference_multiclass, z, y)
    formats = tuple(d for d in NARROW if d in dtypes)
    if formats:
        results.update(_narrow_index(np.asarray(z), y, formats, framework or {}))
    return results, reference, nonfinite, rowends.filled(ends, special, z, y)


# Outputs of the narrow kernel, per row: the textbook, stable and naive losses; its status bits.
_N_TEXTBOOK, _N_STABLE, _N_NAIVE = 0, 1, 2
_N_OVER, _N_UNDER, _N_NUNDER = 1, 2, 4


def _narrow_index(
    z: Array, y: Array, formats: tuple[str, ...], framework: FrameworkPaths
) -> dict[tuple[str, str], PathResult]:
    """The paths of a chunk in float16 and bfloat16 (``formats``: one or both, a row in both
    while it is in the cache) by the kernel's narrow_index, with the specification's bits
    (:mod:`cecheck.narrow`); a row with a logit not finite in the format by numpy."""
    n, c = z.shape
    loss, bits = np.empty((len(formats), 3, n)), np.empty((len(formats), n), dtype=np.uint16)
    mask, tables = sum(1 << NARROW.index(d) for d in formats), narrow.tables(formats)
    over_at = narrow.exp_overflow_at(formats)

    def part(lo: int, hi: int) -> None:
        kernel().narrow_index(z, z.itemsize, n, c, y, mask, tables, over_at, loss, bits, lo, hi)

    _run_parts(part, n)
    results: dict[tuple[str, str], PathResult] = {}
    for d, out, status in zip(formats, loss, bits, strict=True):
        ours = {
            ("textbook", d): PathResult(
                out[_N_TEXTBOOK],
                exp_overflow=(status & _N_OVER) != 0,
                prob_underflow=(status & _N_UNDER) != 0,
            ),
            ("naive", d): PathResult(out[_N_NAIVE], prob_underflow=(status & _N_NUNDER) != 0),
            ("stable", d): PathResult(out[_N_STABLE]),
        }
        special = np.flatnonzero(status & _SPECIAL)
        if special.size:
            spec = (losses.textbook_multiclass, losses.reference_multiclass, framework)
            _overwrite(special, ours, spec, z[special], y[special], None)
        results.update(ours)
    return results


def sigmoid(
    logits: Array, target: Array, dtypes: Sequence[str], framework: FrameworkPaths | None = None
) -> KernelResult:
    """Every path of a chunk of binary (n,) or multilabel (n, C) logits and targets.

    As :func:`multiclass_index` returns them, for :func:`cecheck.losses.textbook_binary` and
    the other binary and multilabel functions (a row's loss is the mean over its classes):
    PyTorch's naive ``binary_cross_entropy(sigmoid(z), t)`` and stable
    ``binary_cross_entropy_with_logits``.
    """
    family = "binary" if np.ndim(logits) == 1 else "multilabel"
    return _per_class(kernel().sigmoid, family, logits, target, dtypes, framework)


def soft(
    logits: Array, target: Array, dtypes: Sequence[str], framework: FrameworkPaths | None = None
) -> KernelResult:
    """Every path of a chunk of (n, C) multiclass logits with (n, C) probability targets.

    As :func:`multiclass_index` returns them, for :func:`cecheck.losses.textbook_soft` and
    PyTorch's ``-(t * log(softmax)).sum(-1)`` and ``cross_entropy`` with probability targets.
    """
    return _per_class(kernel().soft, "soft", logits, target, dtypes, framework)


# The evidence in the status words of the sigmoid and soft-label kernels, per path: (name,
# bit in float32, bit in float64). The textbook path's first (as in _kernel.c), then the
# naive path's; the stable path's cancellation (sigmoid only).
_TEXTBOOK_BITS = {
    "sigmoid": (("exp_overflow", 1, 8), ("sigmoid_saturated", 2, 16), ("zero_times_inf", 4, 32)),
    "soft": (("exp_overflow", 1, 8), ("prob_underflow", 2, 16), ("zero_times_inf", 4, 32)),
}
_NAIVE_BITS = {
    "sigmoid": (("sigmoid_saturated", 2, 16),),  # the same sigmoid as the textbook path's
    "soft": (("prob_underflow", 256, 1024), ("zero_times_inf", 512, 2048)),
}
# The soft-label stable path's evidence: the kernel's rows have finite logits, whose
# log_softmax is finite (no probability of 0, no 0 * inf); a sum overflowing is an infinite
# loss there. The sigmoid stable path's: its cancellation bits.
_STABLE_BITS = {"sigmoid": (("cancellation", 256, 512),), "soft": ()}


def _per_class(
    kernel: Callable[..., None],
    family: str,
    logits: Array,
    target: Array,
    dtypes: Sequence[str],
    framework: FrameworkPaths | None,
) -> KernelResult:
    """A kernel with a float64 target per logit (sigmoid or soft) and its results, with the
    evidence of :data:`_TEXTBOOK_BITS`, :data:`_NAIVE_BITS` and :data:`_STABLE_BITS`."""
    z = _logits(np.reshape(logits, (len(logits), -1)))
    t = np.ascontiguousarray(np.asarray(target, dtype=np.float64).reshape(z.shape))
    loss, bits = _run(kernel, z, t)
    which = "soft" if family == "soft" else "sigmoid"
    results: dict[tuple[str, str], PathResult] = {}
    for d, row in (("float32", 0), ("float64", 1)):
        if d not in dtypes:
            continue
        for path, first, table in (
            ("textbook", _TEXTBOOK, _TEXTBOOK_BITS),
            ("naive", _NAIVE, _NAIVE_BITS),
            ("stable", _STABLE, _STABLE_BITS),
        ):
            evidence = {name: (bits & flag[row]) != 0 for name, *flag in table[which]}
            results[(path, d)] = PathResult(loss[first + row], **evidence)
        stable = results[("stable", d)]
        if family == "soft":
            stable.prob_underflow = np.zeros(len(z), dtype=bool)
            stable.zero_times_inf = np.zeros(len(z), dtype=bool)
            stable.sum_overflow = np.isinf(stable.loss)
    reference = loss[_REFERENCE]
    special = np.flatnonzero(bits & _S_SPECIAL)
    if special.size:
        zs, ts = z[special], t[special]
        if family == "binary":
            zs, ts = zs[:, 0], ts[:, 0]
        _overwrite(special, results, (*losses.PATHS[family], framework or {}), zs, ts, reference)
    if family == "soft":
        _rescale_tiny(reference, losses.reference_soft, z, t)
    return results, reference, (bits & _S_NONFINITE) != 0, None


def _logits(logits: Array) -> Array:
    """(n, C) logits as the kernels take them: C-contiguous float32 or float64."""
    z = np.asarray(logits)
    return np.ascontiguousarray(z if z.dtype in LOGIT_DTYPES else z.astype(np.float64))


def _run(kernel: Callable[..., None], z: Array, labels: Array, *ends: Array) -> tuple[Array, Array]:
    """The (7, n) losses (:data:`_OUTPUTS`) and (n,) status words of ``kernel`` on
    (z, labels), rows split over the cores (and the multiclass index kernel's ``ends``)."""
    n, c = z.shape
    loss = np.empty((_OUTPUTS, n), dtype=np.float64)
    bits = np.empty(n, dtype=np.uint16)

    def part(lo: int, hi: int) -> None:
        kernel(z, z.itemsize, n, c, labels, loss, *ends, bits, lo, hi)

    _run_parts(part, n)
    return loss, bits


def _run_parts(part: Callable[[int, int], None], n: int) -> None:
    """``part(lo, hi)`` over ``[0, n)`` split into one range per core, run in parallel."""
    global _pool
    k = min(threads(), max(1, n))
    if k == 1:
        part(0, n)
        return
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=k, thread_name_prefix="cecheck")
        pool = _pool
    futures = [pool.submit(part, n * i // k, n * (i + 1) // k) for i in range(1, k)]
    part(0, n // k)  # the first range on this thread: a hand-off to the pool fewer (~50 µs)
    for future in futures:
        future.result()


def _overwrite(
    rows: Array,
    results: dict[tuple[str, str], PathResult],
    spec: tuple[PathFunction, Callable[..., Array], FrameworkPaths],
    z: Array,
    t: Array,
    ref: Array | None,
) -> None:
    """Overwrite ``rows`` of every result (and of ``ref`` unless None) with the numpy
    specification's values on (z, t).

    ``spec``: the textbook and reference functions of :mod:`cecheck.losses` and the
    framework paths' functions (a path absent there is left as it is, to be dropped).
    """
    textbook, reference, framework = spec
    for (path, d), r in results.items():
        function = textbook if path == "textbook" else framework.get(path)
        if function is None:
            continue
        theirs = function(z, t, prec.get(d))
        r.loss[rows] = theirs.loss
        for name in losses.EVIDENCE:
            mine, value = getattr(r, name), getattr(theirs, name)
            if mine is not None and value is not None:
                mine[rows] = value
    if ref is not None:
        ref[rows] = reference(z, t)


def _rescale_tiny(ref: Array, reference: Callable[..., Array], z: Array, t: Array) -> None:
    """Recompute with numpy (:func:`cecheck.losses.max_and_rest` rescales their subnormal
    terms) the softmax references below :data:`cecheck.losses.RESCALE_BELOW`: rare rows."""
    tiny = np.flatnonzero(ref < losses.RESCALE_BELOW)
    if tiny.size:
        ref[tiny] = reference(z[tiny], t[tiny])


def _kernels() -> dict[
    str, Callable[[Array, Array, Sequence[str], FrameworkPaths | None], KernelResult]
]:
    """The kernels by the name a family gives (looked up at each call, so a test may
    replace one)."""
    return {"index": multiclass_index, "soft": soft, "sigmoid": sigmoid}
