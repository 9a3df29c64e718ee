"""Probability inputs: what PyTorch, Keras and scikit-learn compute from a file of
probabilities rather than logits. Pure numpy, no I/O.

When a file holds probabilities (softmax or sigmoid outputs) rather than logits, no stable
path exists: the information a log-sum-exp would have kept is gone, and a probability that
rounded to 0 (or to 1, for the other class of a binary row) makes ``-log`` infinite. Each
framework hides this differently, so the paths here are the conventions themselves:

``naive``
    ``-log p`` straight, no guard: ``inf`` at a target probability of 0, and ``0 * log 0 =
    NaN`` where a zero target meets a zero probability.
``torch``
    Binary: ``torch.nn.functional.binary_cross_entropy`` (``BCELoss``), each log clamped at
    -100: ``(t - 1) * max(log1p(-p), -100) - t * max(log(p), -100)``, so a hopeless row costs
    exactly 100. Checked against the CPU kernel of torch 2.13.0 (which uses ``log1p(-p)`` for
    the second term; older releases' ``aten/src/ATen/native/Loss.cpp`` wrote ``log(1 - p)``).
    Multiclass: PyTorch has no probability-input cross-entropy; what a PyTorch user writes is
    ``nll_loss(torch.log(p), y)`` (or ``-(t * p.log()).sum(-1)`` for soft targets), which is
    the naive formula: ``inf`` at ``p[y] = 0``.
``keras``
    Keras 3 ``binary_crossentropy`` / ``categorical_crossentropy`` /
    ``sparse_categorical_crossentropy`` with ``from_logits=False`` (``keras/src/backend/
    {numpy,jax,tensorflow}/nn.py``, Keras 3.x): categorical rows are first renormalised,
    ``p / sum(p)``; then every probability is clipped to ``[1e-7, 1 - 1e-7]`` (``epsilon()``,
    both bounds converted to the array's dtype), then logged. In float32 a hopeless row costs
    ``-log(float32(1e-7)) = 16.118095`` (p = 0, t = 1) but ``-log(2**-23) = 15.942385``
    (p = 1, t = 0), because ``float32(1 - 1e-7) = 1 - 2**-23``. In float16 and bfloat16
    ``1 - 1e-7`` rounds to 1, so the upper clip does nothing and p = 1, t = 0 is ``inf``.
    (A Keras ``Loss`` object casts its inputs to ``floatx()``, float32 by default, so the
    float32 column is what a Keras training loop reports.) The TensorFlow backend's sparse
    variant clips before normalising (``softmax(log(clip(p)))``); it differs from this by
    ``log(sum(clip(p)))``, below ``C * 1e-7``.
``sklearn``
    scikit-learn >= 1.5 ``sklearn.metrics.log_loss`` (``sklearn/metrics/_classification.py``):
    probabilities are clipped to ``[eps, 1 - eps]`` with ``eps = np.finfo(p.dtype).eps``
    (2.2e-16 in float64, 1.19e-7 in float32, 9.8e-4 in float16) and **not renormalised** (it
    only warns when rows do not sum to 1; releases before 1.5 renormalised after clipping).
    A 1-d binary ``p`` becomes the two columns ``[1 - p, p]`` before clipping. A hopeless row
    costs ``-log(eps)``: 36.043653 in float64, 15.942385 in float32. scikit-learn converts
    bfloat16 to float64; this path instead clips at bfloat16's own eps (2**-7), to show what
    that rule gives in that format.

Every path is emulated in a :class:`~cecheck.precision.Precision` like those of
:mod:`cecheck.losses`: the input probabilities are rounded to the format first (a small
probability may underflow to 0 right there), then every step is rounded. Evidence:
``prob_underflow`` marks a row whose target probability is exactly 0 as the format holds it
(or exactly 1 where the target is the other class of a binary row), ``zero_times_inf`` a
zero target multiplied by ``log 0``.
"""

from __future__ import annotations

import numpy as np

from cecheck.arraytypes import Array
from cecheck.losses import PathResult, Recorder, ignore
from cecheck.precision import Precision
from cecheck.settings import INPUT_PATHS

PROB_PATHS = INPUT_PATHS["probs"]
PROB_TASKS = ("binary", "multiclass", "multilabel")

KERAS_EPSILON = 1e-7  # keras.config.epsilon() default
TORCH_LOG_CLAMP = -100.0  # BCELoss clamps each log at -100

# One line per path, for the report's legend.
CONVENTIONS = {
    "naive": "-log(p) with no guard: inf where the target probability is 0",
    "torch": (
        "torch 2.13 BCELoss: each log clamped at -100 (a hopeless row costs 100); "
        "multiclass: nll_loss(log(p)), inf where p[y] = 0"
    ),
    "keras": (
        "Keras 3 from_logits=False: categorical rows renormalised, then p clipped to "
        "[1e-7, 1 - 1e-7] in the array's dtype (16.118095 at p = 0 in float32)"
    ),
    "sklearn": (
        "scikit-learn >= 1.5 log_loss: p clipped to [eps, 1 - eps], eps = finfo(dtype).eps, "
        "rows not renormalised (36.043653 at p = 0 in float64)"
    ),
}

NO_STABLE_PATH = (
    "These are probabilities, not logits: no stable path exists once the logits are gone, "
    "because a probability that rounded to 0 has lost the information -log needs. Each "
    "framework only caps the damage (PyTorch at 100, Keras at -log(1e-7), scikit-learn at "
    "-log(eps)). Export the logits and use a loss that takes them (cross_entropy, "
    "binary_cross_entropy_with_logits, from_logits=True)."
)


def _xlogy(t: Array, logq: Array, p: Precision) -> Array:
    """``t * log q`` rounded to ``p``; 0 where ``t`` is 0 (scipy's xlogy), for sklearn."""
    with np.errstate(invalid="ignore"):
        return np.where(t == 0, 0.0, p.round(t * logq)).astype(p.work)


def _binary_evidence(q: Array, t: Array) -> Array:
    """The target's probability is exactly 0: ``p = 0`` with ``t > 0``, or ``p = 1`` with
    ``t < 1``."""
    hopeless: Array = ((t > 0) & (q == 0)) | ((t < 1) & (q == 1))
    return hopeless


def _multiclass_evidence(q: Array, t: Array) -> Array:
    """(N,) bool: ``q[y] = 0`` for index labels ``t``, ``q_c = 0`` with ``t_c > 0`` for rows."""
    if t.ndim == 1:
        return np.asarray(_take(q, t) == 0)
    return _any_per_row((t > 0) & (q == 0))


def _any_per_row(x: Array) -> Array:
    """(N,) bool: any true in each row of an (N, C) array."""
    return np.asarray(x.any(axis=1), dtype=bool)


def _zero_times_inf(o: Array, t: Array) -> Array:
    """A zero target meets ``log 0``: ``t = 0`` at ``o = 0``, or ``1 - t = 0`` at ``o = 1``."""
    zero: Array = ((t == 0) & (o == 0)) | ((t == 1) & (o == 1))
    return zero


def _naive_binary_elements(
    q: Array, t: Array, p: Precision, rec: Recorder = ignore
) -> tuple[Array, Array | None]:
    """``-(t log q + (1 - t) log(1 - q))`` elementwise, every step rounded."""
    r = p.round
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) and 0 * -inf: what we show
        log_q = rec("log_p", "log p", r(np.log(q)))
        log_1mq = rec("log_1mp", "log(1 - p)", r(np.log(rec("1mp", "1 - p", r(1 - q)))))
        return -r(r(t * log_q) + r(r(1 - t) * log_1mq)), _zero_times_inf(q, t)


def _torch_binary_elements(
    q: Array, t: Array, p: Precision, rec: Recorder = ignore
) -> tuple[Array, Array | None]:
    """``(t - 1) * max(log1p(-q), -100) - t * max(log(q), -100)``, as torch 2.13's CPU kernel."""
    r = p.round
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) = -inf is then clamped
        a = rec("log_1mp", "log1p(-p)", r(np.log1p(-q)))
        a = rec("clamped_log_1mp", "max(log1p(-p), -100)", np.maximum(a, TORCH_LOG_CLAMP))
        b = rec("log_p", "log p", r(np.log(q)))
        b = rec("clamped_log_p", "max(log p, -100)", np.maximum(b, TORCH_LOG_CLAMP))
        return r(r(r(t - 1) * a) - r(t * b)), None


def _keras_bounds(p: Precision) -> tuple[Array, Array]:
    """``epsilon()`` and ``1 - epsilon()`` (computed in Python floats) as the format holds them."""
    return p.cast(KERAS_EPSILON), p.cast(1.0 - KERAS_EPSILON)


def _keras_binary_elements(
    q: Array, t: Array, p: Precision, rec: Recorder = ignore
) -> tuple[Array, Array | None]:
    """Keras 3 ``binary_crossentropy``: clip to [1e-7, 1 - 1e-7], then the textbook formula.

    Where ``1 - 1e-7`` rounds to 1 (float16, bfloat16), ``p = 1`` stays 1: ``t = 1`` then
    gives ``0 * log 0 = NaN``, as Keras does in those formats.
    """
    r = p.round
    lo, hi = _keras_bounds(p)
    o = rec("clipped", "o = clip(p, 1e-7, 1 - 1e-7)", np.clip(q, lo, hi))
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) where 1 - 1e-7 rounds to 1
        log_o = rec("log_o", "log o", r(np.log(o)))
        log_1mo = rec("log_1mo", "log(1 - o)", r(np.log(rec("1mo", "1 - o", r(1 - o)))))
        bce = r(r(t * log_o) + r(r(1 - t) * log_1mo))
    return -bce, _zero_times_inf(o, t)


def _sklearn_eps(p: Precision) -> float:
    return float(p.finfo.eps)


def _sklearn_binary_elements(
    q: Array, t: Array, p: Precision, rec: Recorder = ignore
) -> tuple[Array, Array | None]:
    """scikit-learn ``log_loss`` on a 1-d ``p``: columns ``[1 - p, p]``, clipped, ``-xlogy``."""
    r = p.round
    eps = _sklearn_eps(p)
    neg = rec("clipped_1mp", "clip(1 - p, eps, 1 - eps)", np.clip(r(1 - q), eps, 1 - eps))
    pos = rec("clipped", "clip(p, eps, 1 - eps)", np.clip(q, eps, 1 - eps))
    log_neg = rec("log_1mp", "log clip(1 - p)", r(np.log(neg)))
    log_pos = rec("log_p", "log clip(p)", r(np.log(pos)))
    return -r(_xlogy(r(1 - t), log_neg, p) + _xlogy(t, log_pos, p)), None


_BINARY_ELEMENTS = {
    "naive": _naive_binary_elements,
    "torch": _torch_binary_elements,
    "keras": _keras_binary_elements,
    "sklearn": _sklearn_binary_elements,
}


def _take(a: Array, y: Array) -> Array:
    return a[np.arange(len(y)), y]


def _multiclass_from_log(
    logq: Array, target: Array, p: Precision, rec: Recorder = ignore, q: str = "p"
) -> PathResult:
    """``-logq[y]`` for index labels, ``-sum(t * logq)`` for (N, C) target rows (``q``: the
    name of what was logged, for the recorder)."""
    if target.ndim == 1:
        return PathResult(rec("loss", f"loss = -log {q}_y", -_take(logq, target)))
    tc = p.cast(target)
    with np.errstate(invalid="ignore"):  # 0 * -inf = NaN: what the naive formula gives
        terms = rec("t_log_p", f"t · log {q}", p.round(tc * logq))
        loss = rec("loss", f"loss = -Σ t · log {q}", -p.round(terms.sum(axis=1)))
    return PathResult(loss, zero_times_inf=_any_per_row((tc == 0) & np.isinf(logq)))


def _naive_multiclass(q: Array, target: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) = -inf; log(-x) = NaN
        return _multiclass_from_log(rec("log_p", "log p", p.round(np.log(q))), target, p, rec)


def _keras_renormalised(q: Array, p: Precision, rec: Recorder = ignore) -> Array:
    """``q / sum(q)`` per row, rounded to ``p``: what Keras does to a categorical row first."""
    with np.errstate(divide="ignore", invalid="ignore"):  # an all-zero row: 0 / 0
        total = rec("sum", "Σ p", p.round(q.sum(axis=1, keepdims=True))[:, 0])
        return rec("renormalised", "p / Σ p", p.round(q / total[:, None]))


def _keras_multiclass(q: Array, target: Array, p: Precision, rec: Recorder = ignore) -> PathResult:
    """Renormalise ``q / sum(q)``, clip to [1e-7, 1 - 1e-7], log (Keras 3, numpy/jax backend)."""
    lo, hi = _keras_bounds(p)
    o = np.clip(_keras_renormalised(q, p, rec), lo, hi)  # >= 1e-7 > 0, or NaN: log(o) is quiet
    o = rec("clipped", "o = clip(p, 1e-7, 1 - 1e-7)", o)
    return _multiclass_from_log(rec("log_p", "log o", p.round(np.log(o))), target, p, rec, "o")


def _sklearn_multiclass(
    q: Array, target: Array, p: Precision, rec: Recorder = ignore
) -> PathResult:
    """Clip to [eps, 1 - eps], no renormalisation, ``-sum xlogy(t, q)`` (scikit-learn >= 1.5)."""
    eps = _sklearn_eps(p)
    clipped = rec("clipped", "o = clip(p, eps, 1 - eps)", np.clip(q, eps, 1 - eps))
    logq = rec("log_p", "log o", p.round(np.log(clipped)))
    if target.ndim == 1:
        return PathResult(rec("loss", "loss = -log o_y", -_take(logq, target)))
    terms = rec("t_log_p", "xlogy(t, o)", _xlogy(p.cast(target), logq, p))
    return PathResult(rec("loss", "loss = -Σ xlogy(t, o)", -p.round(terms.sum(axis=1))))


_MULTICLASS = {
    "naive": _naive_multiclass,
    # PyTorch has no probability-input cross-entropy: nll_loss(torch.log(p)) is the naive path.
    "torch": _naive_multiclass,
    "keras": _keras_multiclass,
    "sklearn": _sklearn_multiclass,
}


def zero_target_probability(task: str, probs: Array, target: Array) -> Array:
    """Rows whose target probability is exactly 0 in the stored values: (N,) bool.

    Binary: ``p = 0`` where ``t > 0``, or ``p = 1`` where ``t < 1`` (then ``1 - p = 0``).
    Multiclass: ``p[y] = 0`` for index labels, ``p_c = 0`` with ``t_c > 0`` for target rows.
    Multilabel: any class of the row as binary. Only ``torch``/``keras``/``sklearn`` keep
    such a row finite, each at its own constant.
    """
    q = np.asarray(probs, dtype=np.float64)
    t = np.asarray(target)
    if task == "binary":
        return _binary_evidence(q, t)
    if task == "multilabel":
        return _any_per_row(_binary_evidence(q, t))
    return _multiclass_evidence(q, t)


def probs_loss(
    path: str, task: str, probs: Array, target: Array, p: Precision, rec: Recorder = ignore
) -> PathResult:
    """Per-row loss of probabilities ``probs`` along one framework ``path`` in precision ``p``.

    Parameters
    ----------
    path
        One of :data:`PROB_PATHS`: ``naive``, ``torch``, ``keras``, ``sklearn`` (see the module
        docstring for each rule and the version it matches).
    task
        ``binary`` (``probs`` and ``target`` (N,)), ``multiclass`` (``probs`` (N, C); ``target``
        (N,) valid class indices, or (N, C) target rows) or ``multilabel`` ((N, C) both; the row
        loss is the mean over classes, as Keras's ``binary_crossentropy`` and PyTorch's
        ``MultiLabelSoftMarginLoss``).
    probs, target
        The engine masks ignored and out-of-range index labels before calling, as for
        :mod:`cecheck.losses`.
    rec
        Receives each step as it is computed (:class:`cecheck.losses.Recorder`), for
        ``cecheck trace``; the default records nothing.

    Returns
    -------
    PathResult
        ``loss``; ``prob_underflow`` where the target probability is exactly 0 as ``p`` stores
        it; ``zero_times_inf`` where the formula multiplied a zero target by ``log 0``.

    Examples
    --------
    A hopeless row, p = 0 for a positive target, in float32:

    >>> from cecheck.precision import get
    >>> p, t = np.array([0.0]), np.array([1.0])
    >>> [float(probs_loss(path, "binary", p, t, get("float32")).loss[0]) for path in PROB_PATHS]
    [inf, 100.0, 16.11809539794922, 15.942384719848633]
    """
    if path not in PROB_PATHS:
        raise ValueError(f"unknown path {path!r}: choose from {', '.join(PROB_PATHS)}")
    if task not in PROB_TASKS:
        raise ValueError(f"unknown task {task!r}: choose from {', '.join(PROB_TASKS)}")
    q = rec("p", f"p as {p.name}", p.cast(probs))
    if task == "multiclass":
        target = np.asarray(target)
        result = _MULTICLASS[path](q, target, p, rec)
        rows = target if target.ndim == 1 else p.cast(target)
        result.prob_underflow = _multiclass_evidence(q, rows)
        return result
    t = rec("t", f"t as {p.name}", p.cast(target), shown=False)
    loss, zti = _BINARY_ELEMENTS[path](q, t, p, rec)
    evidence = _binary_evidence(q, t)
    formula = "-(t log p + (1 - t) log(1 - p))"
    if task == "binary":
        return PathResult(
            rec("loss", f"loss = {formula}", loss), prob_underflow=evidence, zero_times_inf=zti
        )
    rec("class_loss", formula, loss)
    with np.errstate(invalid="ignore"):
        total = rec("sum_classes", "Σ over classes", p.round(loss.sum(axis=1)))
        row = rec("loss", f"loss = Σ / {loss.shape[1]}", p.round(total / loss.shape[1]))
    return PathResult(
        row,
        prob_underflow=_any_per_row(evidence),
        zero_times_inf=None if zti is None else _any_per_row(zti),
    )


def probs_reference(task: str, probs: Array, target: Array) -> Array:
    """The exact loss of the probabilities as stored, in float64: ``-sum xlogy(t, p)``.

    Binary rows use ``log1p(-p)`` for the other class, so nothing cancels; ``0 * log 0`` is 0
    (a zero target contributes nothing). It is ``inf`` exactly where the target probability is
    0: that is the truth the conventions replace with a constant. Rows are not renormalised.
    """
    q = np.asarray(probs, dtype=np.float64)
    t = np.asarray(target)
    with np.errstate(divide="ignore", invalid="ignore"):
        if task in ("binary", "multilabel"):
            t = t.astype(np.float64)
            pos = np.where(t == 0, 0.0, t * np.log(q))
            neg = np.where(t == 1, 0.0, (1 - t) * np.log1p(-q))
            loss = -(pos + neg)
            return loss.mean(axis=1) if task == "multilabel" else loss
        if t.ndim == 1:
            return -np.log(_take(q, t))
        t = t.astype(np.float64)
        soft: Array = -np.where(t == 0, 0.0, t * np.log(q)).sum(axis=1)
        return soft


def clipped_rows(path: str, task: str, probs: Array, target: Array, p: Precision) -> Array:
    """Rows whose loss ``path``'s guard changed, in precision ``p``: (N,) bool.

    The guard is PyTorch's clamp of a log at -100 (binary and multilabel; its multiclass path
    has none), Keras's clip of the (renormalised) probability to [1e-7, 1 - 1e-7], and
    scikit-learn's clip to [eps, 1 - eps]; ``naive`` has none. A row counts when the guard
    moved a probability the loss reads with a nonzero target weight: this is why such a
    row's value differs from ``-log p`` by more than rounding (the cause ``clipped``).
    ``target`` is masked as for :func:`probs_loss`.
    """
    q = p.cast(probs)
    target = np.asarray(target)
    none = np.zeros(q.shape[0], dtype=bool)
    if path == "naive" or (path == "torch" and task == "multiclass"):
        return none
    if task == "multiclass":
        if path == "keras":
            q = _keras_renormalised(q, p)
            lo, hi = _keras_bounds(p)
        else:
            eps = _sklearn_eps(p)
            lo, hi = np.asarray(eps), np.asarray(1 - eps)
        outside = _outside(q, lo, hi)
        if target.ndim == 1:
            return np.asarray(_take(outside, target), dtype=bool)
        return _any_per_row(outside & (p.cast(target) > 0))
    t = p.cast(target)
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) is clamped: a hit
        if path == "torch":
            hit = ((t > 0) & (np.log(q) < TORCH_LOG_CLAMP)) | (
                (t < 1) & (np.log1p(-q) < TORCH_LOG_CLAMP)
            )
        elif path == "keras":  # both terms read the same clipped o
            lo, hi = _keras_bounds(p)
            hit = _outside(q, lo, hi)
        else:  # the columns [1 - q, q], each read where its target weight is not 0
            eps = _sklearn_eps(p)
            neg = p.round(1 - q)
            hit = ((t > 0) & _outside(q, eps, 1 - eps)) | ((t < 1) & _outside(neg, eps, 1 - eps))
    return np.asarray(hit, dtype=bool) if task == "binary" else _any_per_row(hit)


def _outside(x: Array, lo: Array | float, hi: Array | float) -> Array:
    """Where a clip to ``[lo, hi]`` moves ``x``."""
    return (x < lo) | (x > hi)


def invalid_probabilities(task: str, probs: Array, sum_tolerance: float = 1e-3) -> Array:
    """Rows that are not probabilities: (N,) bool.

    A value that is not finite or outside [0, 1] (PyTorch's ``BCELoss`` raises on it), or for
    multiclass a row whose sum is off 1 by more than ``sum_tolerance`` (Keras renormalises
    such a row, scikit-learn does not: the conventions then disagree for that reason alone).
    """
    q = np.asarray(probs, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(q) | (q < 0) | (q > 1)
        if q.ndim == 1:
            return bad
        bad = _any_per_row(bad)
        if task == "multiclass":
            bad |= ~(np.abs(q.sum(axis=1) - 1) <= sum_tolerance)
    return bad
