"""What the frameworks do with the same rows: probability inputs, label smoothing, class
weights and PyTorch's batch mean. Pure numpy, no printing; only :func:`parse_class_weights`
reads a file (the one the user names).

Probability inputs
------------------
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

Label smoothing and class weights
---------------------------------
PyTorch's ``cross_entropy(weight=w, label_smoothing=eps, reduction="none")`` is, per row,
the soft-label loss ``-sum_c t'_c log_softmax(z)_c`` with targets

    ``t'_c = w_c * ((1 - eps) * t_c + eps / C)``

where ``t`` is the one-hot row of an index label, or the given soft row: PyTorch smooths soft
targets too, mixing them with the uniform distribution just like hard ones. For index labels
PyTorch computes ``(1 - eps) * w[y] * nll + eps / C * sum_c(-w_c log_softmax(z)_c)``
(``cross_entropy_loss_label_smoothing`` in ``aten/src/ATen/native/LossNLL.cpp``), which is
the same sum regrouped. Because every soft-label path of :mod:`cecheck.losses` is linear in
the targets, :func:`smoothed_targets` lets the engine reuse them unchanged. With ``eps = 0``
and index labels PyTorch does not go through that formula but through ``nll_loss``, whose row
loss is ``w[y] * CE``: use :func:`apply_row_weights` on the index paths (the soft form would
turn ``0 * log 0`` of the other classes into NaN where PyTorch gives a finite value).

What ``reduction="mean"`` divides by differs: the sum of the target classes' weights over
the rows that are not ``ignore_index`` for index labels, but the number of rows for soft
targets, whatever the weights. :func:`row_weights` gives each row's share of that
denominator.

Batch means
-----------
:class:`BatchMeans` streams PyTorch's ``reduction="mean"`` over consecutive batches of B rows
(the last batch may be shorter, as a DataLoader with ``drop_last=False`` gives it), and says
why a batch mean is NaN or infinite.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import numpy.typing as npt

from cecheck.losses import PathResult
from cecheck.precision import Precision

Array = npt.NDArray

PROB_PATHS = ("naive", "torch", "keras", "sklearn")
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

SOFT_SMOOTHING_NOTE = (
    "Like PyTorch, label smoothing is applied to soft targets too: they are mixed with the "
    "uniform distribution, (1 - eps) * t + eps / C, even though they are already soft."
)


# ----------------------------------------------------------------------- probability inputs


def _xlogy(t: Array, logq: Array, p: Precision) -> Array:
    """``t * log q`` rounded to ``p``; 0 where ``t`` is 0 (scipy's xlogy), for sklearn."""
    with np.errstate(invalid="ignore"):
        return np.where(t == 0, 0.0, p.round(t * logq)).astype(p.work)


def _binary_evidence(q: Array, t: Array) -> Array:
    """The target's probability is exactly 0: ``p = 0`` with ``t > 0``, or ``p = 1`` with
    ``t < 1``."""
    return ((t > 0) & (q == 0)) | ((t < 1) & (q == 1))


def _any_per_row(x: Array) -> Array:
    """(N,) bool: any true in each row of an (N, C) array."""
    return np.asarray(x.any(axis=1), dtype=bool)


def _zero_times_inf(o: Array, t: Array) -> Array:
    """A zero target meets ``log 0``: ``t = 0`` at ``o = 0``, or ``1 - t = 0`` at ``o = 1``."""
    return ((t == 0) & (o == 0)) | ((t == 1) & (o == 1))


def _naive_binary_elements(q: Array, t: Array, p: Precision) -> tuple[Array, Array | None]:
    """``-(t log q + (1 - t) log(1 - q))`` elementwise, every step rounded."""
    r = p.round
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) and 0 * -inf: what we show
        log_q = r(np.log(q))
        log_1mq = r(np.log(r(1 - q)))
        return -r(r(t * log_q) + r(r(1 - t) * log_1mq)), _zero_times_inf(q, t)


def _torch_binary_elements(q: Array, t: Array, p: Precision) -> tuple[Array, Array | None]:
    """``(t - 1) * max(log1p(-q), -100) - t * max(log(q), -100)``, as torch 2.13's CPU kernel."""
    r = p.round
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) = -inf is then clamped
        a = np.maximum(r(np.log1p(-q)), TORCH_LOG_CLAMP)
        b = np.maximum(r(np.log(q)), TORCH_LOG_CLAMP)
        return r(r(r(t - 1) * a) - r(t * b)), None


def _keras_bounds(p: Precision) -> tuple[Array, Array]:
    """``epsilon()`` and ``1 - epsilon()`` (computed in Python floats) as the format holds them."""
    return p.cast(KERAS_EPSILON), p.cast(1.0 - KERAS_EPSILON)


def _keras_binary_elements(q: Array, t: Array, p: Precision) -> tuple[Array, Array | None]:
    """Keras 3 ``binary_crossentropy``: clip to [1e-7, 1 - 1e-7], then the textbook formula.

    Where ``1 - 1e-7`` rounds to 1 (float16, bfloat16), ``p = 1`` stays 1: ``t = 1`` then
    gives ``0 * log 0 = NaN``, as Keras does in those formats.
    """
    r = p.round
    lo, hi = _keras_bounds(p)
    o = np.clip(q, lo, hi)
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) where 1 - 1e-7 rounds to 1
        bce = r(r(t * r(np.log(o))) + r(r(1 - t) * r(np.log(r(1 - o)))))
    return -bce, _zero_times_inf(o, t)


def _sklearn_eps(p: Precision) -> float:
    return float(ml_dtypes.finfo(p.storage).eps)


def _sklearn_binary_elements(q: Array, t: Array, p: Precision) -> tuple[Array, Array | None]:
    """scikit-learn ``log_loss`` on a 1-d ``p``: columns ``[1 - p, p]``, clipped, ``-xlogy``."""
    r = p.round
    eps = _sklearn_eps(p)
    neg = np.clip(r(1 - q), eps, 1 - eps)
    pos = np.clip(q, eps, 1 - eps)
    return -r(_xlogy(r(1 - t), r(np.log(neg)), p) + _xlogy(t, r(np.log(pos)), p)), None


_BINARY_ELEMENTS = {
    "naive": _naive_binary_elements,
    "torch": _torch_binary_elements,
    "keras": _keras_binary_elements,
    "sklearn": _sklearn_binary_elements,
}


def _take(a: Array, y: Array) -> Array:
    return a[np.arange(len(y)), y]


def _multiclass_from_log(logq: Array, target: Array, p: Precision) -> PathResult:
    """``-logq[y]`` for index labels, ``-sum(t * logq)`` for (N, C) target rows."""
    if target.ndim == 1:
        return PathResult(-_take(logq, target))
    tc = p.cast(target)
    with np.errstate(invalid="ignore"):  # 0 * -inf = NaN: what the naive formula gives
        loss = -p.round(p.round(tc * logq).sum(axis=1))
    return PathResult(loss, zero_times_inf=_any_per_row((tc == 0) & np.isinf(logq)))


def _naive_multiclass(q: Array, target: Array, p: Precision) -> PathResult:
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) = -inf; log(-x) = NaN
        return _multiclass_from_log(p.round(np.log(q)), target, p)


def _keras_multiclass(q: Array, target: Array, p: Precision) -> PathResult:
    """Renormalise ``q / sum(q)``, clip to [1e-7, 1 - 1e-7], log (Keras 3, numpy/jax backend)."""
    r = p.round
    lo, hi = _keras_bounds(p)
    with np.errstate(divide="ignore", invalid="ignore"):  # an all-zero row: 0 / 0
        o = np.clip(r(q / r(q.sum(axis=1, keepdims=True))), lo, hi)
        logq = r(np.log(o))
    return _multiclass_from_log(logq, target, p)


def _sklearn_multiclass(q: Array, target: Array, p: Precision) -> PathResult:
    """Clip to [eps, 1 - eps], no renormalisation, ``-sum xlogy(t, q)`` (scikit-learn >= 1.5)."""
    eps = _sklearn_eps(p)
    logq = p.round(np.log(np.clip(q, eps, 1 - eps)))
    if target.ndim == 1:
        return PathResult(-_take(logq, target))
    return PathResult(-p.round(_xlogy(p.cast(target), logq, p).sum(axis=1)))


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
    if t.ndim == 1:
        return np.asarray(_take(q, t) == 0)
    return _any_per_row((t > 0) & (q == 0))


def probs_loss(path: str, task: str, probs: Array, target: Array, p: Precision) -> PathResult:
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
    q = p.cast(probs)
    if task == "multiclass":
        target = np.asarray(target)
        result = _MULTICLASS[path](q, target, p)
        if target.ndim == 1:
            result.prob_underflow = _take(q, target) == 0
        else:
            result.prob_underflow = ((p.cast(target) > 0) & (q == 0)).any(axis=1)
        return result
    t = p.cast(target)
    loss, zti = _BINARY_ELEMENTS[path](q, t, p)
    evidence = _binary_evidence(q, t)
    if task == "binary":
        return PathResult(loss, prob_underflow=evidence, zero_times_inf=zti)
    with np.errstate(invalid="ignore"):
        row = p.round(p.round(loss.sum(axis=1)) / loss.shape[1])
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
        return -np.where(t == 0, 0.0, t * np.log(q)).sum(axis=1)


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
            with np.errstate(divide="ignore", invalid="ignore"):  # an all-zero row: 0 / 0
                q = p.round(q / p.round(q.sum(axis=1, keepdims=True)))
            lo, hi = _keras_bounds(p)
        else:
            eps = _sklearn_eps(p)
            lo, hi = np.asarray(eps), np.asarray(1 - eps)
        outside = (q < lo) | (q > hi)
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
            hit = (q < lo) | (q > hi)
        else:  # the columns [1 - q, q], each read where its target weight is not 0
            eps = _sklearn_eps(p)
            neg = p.round(1 - q)
            hit = ((t > 0) & ((q < eps) | (q > 1 - eps))) | (
                (t < 1) & ((neg < eps) | (neg > 1 - eps))
            )
    return np.asarray(hit, dtype=bool) if task == "binary" else _any_per_row(hit)


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


# ------------------------------------------------------------ label smoothing, class weights


def check_label_smoothing(eps: float) -> float:
    """``eps`` as a float if ``0 <= eps <= 1`` (PyTorch's own check); ValueError otherwise."""
    value = float(eps)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"label smoothing must be between 0 and 1, got {eps}")
    return value


def parse_class_weights(text_or_path: str, n_classes: int) -> Array:
    """Class weights from a comma list (``"1,2.5,0.5"``) or a file of ``n_classes`` numbers.

    A file is read when ``text_or_path`` names one: a ``.npy`` array (no pickles) or text with
    the numbers separated by commas, spaces or newlines. Raises ValueError with one sentence
    for a missing file, a value that is not a number, the wrong count, a negative or
    non-finite weight, or weights that are all 0 (every mean would be 0/0).
    """
    source = text_or_path.strip()
    if os.path.isfile(source):
        where = f"class weights file {source}"
        if source.endswith(".npy"):
            try:
                values = np.load(source, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise ValueError(f"{where} is not a readable .npy array ({e})") from None
            if values.dtype.kind not in "fiu":
                raise ValueError(f"{where} holds {values.dtype} values, not numbers")
            weights = np.asarray(values, dtype=np.float64).ravel()
        else:
            try:
                with open(source, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError(f"cannot read {where}: {e}") from None
            weights = _numbers(text, where)
    else:
        where = "class weights"
        if not source:
            raise ValueError("class weights are empty: give C numbers such as 1,2,0.5 or a file")
        if not re.search(r"[,\s]", source) and not _is_number(source):
            raise ValueError(
                f"class weights {source!r}: no such file, and not a comma-separated list of numbers"
            )
        weights = _numbers(source, where)
    if weights.size != n_classes:
        raise ValueError(
            f"{where}: expected {n_classes} weights (one per class), got {weights.size}"
        )
    if not np.isfinite(weights).all():
        raise ValueError(f"{where}: every weight must be a finite number")
    if (weights < 0).any():
        i = int(np.flatnonzero(weights < 0)[0])
        raise ValueError(f"{where}: weights must be >= 0, class {i} has {weights[i]:g}")
    if not (weights > 0).any():
        raise ValueError(f"{where}: all weights are 0, so every mean would be 0/0")
    return weights


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _numbers(text: str, where: str) -> Array:
    tokens = [tok for tok in re.split(r"[,\s]+", text.strip()) if tok]
    for tok in tokens:
        if not _is_number(tok):
            raise ValueError(f"{where}: {tok!r} is not a number")
    return np.array([float(tok) for tok in tokens], dtype=np.float64)


def _valid_index(labels: Array, n_classes: int) -> Array:
    return (labels >= 0) & (labels < n_classes)


def _check_form(label_form: str) -> None:
    if label_form not in ("index", "onehot", "soft"):
        raise ValueError(
            "label smoothing and class weights apply to multiclass labels (index, one-hot or "
            f"soft), not to {label_form} labels"
        )


def smoothed_targets(
    labels: Array,
    label_form: str,
    n_classes: int,
    eps: float = 0.0,
    weights: Array | None = None,
) -> Array:
    """The (N, C) float64 targets ``t'_c = w_c * ((1 - eps) * t_c + eps / C)``.

    Fed to the soft-label paths of :mod:`cecheck.losses`, they give PyTorch's
    ``cross_entropy(weight=w, label_smoothing=eps, reduction="none")`` row by row, for index
    labels (``t`` one-hot) and for one-hot or soft rows (smoothed too, as PyTorch does).
    Index labels that are not a class (``ignore_index``, out of range) get a row of zeros, so
    their loss is 0; the engine masks them as usual.
    """
    _check_form(label_form)
    labels = np.asarray(labels)
    if label_form == "index":
        valid = _valid_index(labels, n_classes)
        t = np.zeros((labels.shape[0], n_classes))
        t[np.flatnonzero(valid), labels[valid]] = 1.0
    else:
        valid = np.ones(labels.shape[0], dtype=bool)
        t = np.asarray(labels, dtype=np.float64)
    out = (1.0 - eps) * t + eps / n_classes
    if weights is not None:
        out = out * np.asarray(weights, dtype=np.float64)
    out[~valid] = 0.0
    return out


def row_weights(
    labels: Array,
    label_form: str,
    n_classes: int,
    weights: Array | None = None,
    ignore_index: int = -100,
) -> Array:
    """Each row's share of the denominator of PyTorch's ``reduction="mean"``: (N,) float64.

    Index labels: ``w[y]`` (1 without weights), 0 for ``ignore_index`` and out-of-range
    labels. Every other label form: 1 (PyTorch divides soft-target, binary and multilabel
    means by the number of rows, with or without weights). For index labels with
    ``eps = 0`` this is also the factor PyTorch's ``nll_loss`` puts on each row's loss.
    """
    labels = np.asarray(labels)
    if label_form != "index":
        return np.ones(labels.shape[0])
    valid = (labels != ignore_index) & _valid_index(labels, n_classes)
    out = np.zeros(labels.shape[0])
    out[valid] = 1.0 if weights is None else np.asarray(weights, dtype=np.float64)[labels[valid]]
    return out


def apply_row_weights(result: PathResult, row_w: Array, p: Precision) -> PathResult:
    """``w[y] * loss``, the product rounded to ``p`` (PyTorch's weighted ``nll_loss`` row)."""
    with np.errstate(invalid="ignore"):  # 0 * inf = NaN, as PyTorch gives it
        loss = p.round(p.cast(row_w) * result.loss)
    return PathResult(
        loss,
        exp_overflow=result.exp_overflow,
        prob_underflow=result.prob_underflow,
        sigmoid_saturated=result.sigmoid_saturated,
        zero_times_inf=result.zero_times_inf,
    )


# ----------------------------------------------------------------------------- batch means


@dataclass(frozen=True)
class BatchIssue:
    """A batch whose mean is NaN or infinite in at least one column."""

    batch: int  # 0-based batch number
    first_row: int  # its first row
    rows: int  # rows in it (the last batch may be shorter)
    ignored: int  # rows with ignore_index
    means: dict[str, float]  # every column's batch mean
    reasons: dict[str, str]  # column -> why, for the non-finite columns only

    @property
    def reason(self) -> str:
        """The distinct reasons, joined: often one sentence for every column."""
        return "; ".join(dict.fromkeys(self.reasons.values()))


@dataclass(frozen=True)
class ColumnBatches:
    """One column's batch means over the whole input."""

    nan: int  # batches whose mean is NaN
    inf: int  # batches whose mean is infinite
    worst_batch: int | None  # the finite batch with the largest mean
    worst_mean: float | None

    @property
    def nonfinite(self) -> int:
        return self.nan + self.inf


@dataclass(frozen=True)
class BatchSummary:
    """PyTorch's ``reduction="mean"`` per batch of ``batch_size`` rows: plain data."""

    batch_size: int
    batches: int
    rows: int
    columns: dict[str, ColumnBatches]
    issues: list[BatchIssue]  # the first ``max_issues`` non-finite batches, in order
    nonfinite_batches: int  # batches non-finite in at least one column, all of them
    ignore_index: int

    @property
    def truncated(self) -> bool:
        return self.nonfinite_batches > len(self.issues)

    def to_dict(self) -> dict[str, object]:
        """The JSON ``batches`` object (floats raw: the report makes non-finite ones strings)."""
        return {
            "batch_size": self.batch_size,
            "count": self.batches,
            "rows": self.rows,
            "last_batch_rows": self.rows - (self.batches - 1) * self.batch_size
            if self.batches
            else 0,
            "reduction": "mean",
            "rule": BATCH_RULE,
            "columns": {
                c: {
                    "nan": s.nan,
                    "inf": s.inf,
                    "worst_batch": s.worst_batch,
                    "worst_mean": s.worst_mean,
                }
                for c, s in self.columns.items()
            },
            "nonfinite_batches": self.nonfinite_batches,
            "nonfinite": [
                {
                    "batch": i.batch,
                    "first_row": i.first_row,
                    "rows": i.rows,
                    "ignored": i.ignored,
                    "means": dict(i.means),
                    "reasons": dict(i.reasons),
                }
                for i in self.issues
            ],
            "truncated": self.truncated,
        }


BATCH_RULE = (
    "PyTorch reduction='mean' over consecutive batches: the sum of the row losses (class "
    "weight included) over the rows that are not ignore_index, divided by the sum of their "
    "target classes' weights (the row count for soft, binary and multilabel targets); "
    "computed in float64"
)


@dataclass
class _Segments:
    """Per-batch totals of consecutive rows, one entry per batch (or part of one).

    ``rows``, ``ignored``, ``weight``, and per column: ``sums`` of the values of the rows not
    ignored, the number of those rows whose value is NaN (``nan``) or infinite (``inf``), and
    the first such row (``first_nan``, ``first_inf``; ``_NO_ROW`` when there is none).
    """

    rows: Array
    ignored: Array
    weight: Array
    sums: dict[str, Array]
    nan: dict[str, Array]
    inf: dict[str, Array]
    first_nan: dict[str, Array]
    first_inf: dict[str, Array]

    def take(self, sl: slice) -> _Segments:
        def part(d: dict[str, Array]) -> dict[str, Array]:
            return {c: v[sl] for c, v in d.items()}

        return _Segments(
            self.rows[sl],
            self.ignored[sl],
            self.weight[sl],
            part(self.sums),
            part(self.nan),
            part(self.inf),
            part(self.first_nan),
            part(self.first_inf),
        )

    def merge_first(self, other: _Segments) -> None:
        """Add ``other`` (one segment: the open batch) into this one's first segment."""
        self.rows[0] += other.rows[0]
        self.ignored[0] += other.ignored[0]
        self.weight[0] += other.weight[0]
        for c in self.sums:
            self.sums[c][0] += other.sums[c][0]
            self.nan[c][0] += other.nan[c][0]
            self.inf[c][0] += other.inf[c][0]
            self.first_nan[c][0] = min(self.first_nan[c][0], other.first_nan[c][0])
            self.first_inf[c][0] = min(self.first_inf[c][0], other.first_inf[c][0])


_NO_ROW = np.iinfo(np.int64).max


class BatchMeans:
    """Stream PyTorch's per-batch ``reduction="mean"`` over consecutive chunks of rows.

    Feed every chunk in row order with :meth:`add`; a batch may straddle chunks. Memory is
    bounded: per column the count of NaN and infinite batches and the worst finite mean, and
    the first ``max_issues`` non-finite batches with a reason for each column. Complete
    batches are handled in numpy, so small batches cost no Python loop per batch.

    The mean is computed in float64 from the per-row values (each already rounded to its
    column's dtype by the path that produced it) and is not rounded back to that dtype. That
    matches PyTorch up to the last bit of the mean: PyTorch sums float16 and bfloat16 losses
    in float32, so no intermediate sum overflows there either, and a mean of finite values
    is never larger than the largest of them.
    """

    def __init__(
        self,
        batch_size: int,
        columns: list[str] | tuple[str, ...],
        *,
        ignore_index: int = -100,
        max_issues: int = 100,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be a positive number of rows, got {batch_size}")
        self.batch_size = int(batch_size)
        self.columns = tuple(columns)
        self.ignore_index = ignore_index
        self.max_issues = max_issues
        self.rows = 0  # rows seen
        self.batches = 0  # batches completed
        self._open: _Segments | None = None  # the batch not complete yet
        self._nan = dict.fromkeys(self.columns, 0)
        self._inf = dict.fromkeys(self.columns, 0)
        self._worst: dict[str, tuple[int, float] | None] = dict.fromkeys(self.columns)
        self._issues: list[BatchIssue] = []
        self._nonfinite_batches = 0

    def add(self, values: dict[str, Array], weights: Array, ignored: Array) -> dict[str, Array]:
        """Take the next chunk; return the batches it completed, as columns of arrays.

        ``values`` maps each column to its (n,) row losses as PyTorch's ``reduction="none"``
        gives them (class weight included; ignored rows are left out whatever they hold).
        ``weights`` is each row's share of the denominator (:func:`row_weights`), ``ignored``
        the ``ignore_index`` rows. The returned dict holds ``batch``, ``first_row``, ``rows``,
        ``ignored``, ``weight`` and one mean per column, one entry per completed batch (for a
        per-batch CSV).
        """
        ignored = np.asarray(ignored, dtype=bool)
        n = ignored.shape[0]
        if n == 0:
            return self._close(None)
        rows = np.arange(self.rows, self.rows + n)
        # Segment k covers rows[starts[k]:starts[k + 1]]: a new one wherever a batch begins.
        starts = np.flatnonzero(rows % self.batch_size == 0)
        if starts.size == 0 or starts[0] != 0:
            starts = np.concatenate(([0], starts))
        used = ~ignored
        seg = _Segments(
            rows=np.diff(np.append(starts, n)),
            ignored=np.add.reduceat(ignored.astype(np.int64), starts),
            weight=np.add.reduceat(np.where(ignored, 0.0, np.asarray(weights, np.float64)), starts),
            sums={},
            nan={},
            inf={},
            first_nan={},
            first_inf={},
        )
        for c in self.columns:
            v = np.asarray(values[c], dtype=np.float64)
            nan, inf = np.isnan(v) & used, np.isinf(v) & used
            seg.sums[c] = np.add.reduceat(np.where(used, v, 0.0), starts)
            seg.nan[c] = np.add.reduceat(nan.astype(np.int64), starts)
            seg.inf[c] = np.add.reduceat(inf.astype(np.int64), starts)
            seg.first_nan[c] = np.minimum.reduceat(np.where(nan, rows, _NO_ROW), starts)
            seg.first_inf[c] = np.minimum.reduceat(np.where(inf, rows, _NO_ROW), starts)
        if self._open is not None:
            seg.merge_first(self._open)
        self.rows += n
        complete = len(starts) if seg.rows[-1] == self.batch_size else len(starts) - 1
        self._open = seg.take(slice(complete, None)) if complete < len(starts) else None
        return self._close(seg.take(slice(0, complete)))

    def flush(self) -> dict[str, Array]:
        """Close the last, shorter batch if one is open; return it as :meth:`add` does."""
        last, self._open = self._open, None
        return self._close(last)

    def _close(self, seg: _Segments | None) -> dict[str, Array]:
        """Finish complete batches: their means, the counts, the worst, and the issues."""
        k = 0 if seg is None else len(seg.rows)
        batch = np.arange(self.batches, self.batches + k)
        first = batch * self.batch_size
        done: dict[str, Array] = {"batch": batch, "first_row": first}
        if seg is None or k == 0:
            done |= {"rows": batch, "ignored": batch, "weight": np.zeros(0)}
            return done | {c: np.zeros(0) for c in self.columns}
        done |= {"rows": seg.rows, "ignored": seg.ignored, "weight": seg.weight}
        bad = np.zeros(k, dtype=bool)
        with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 = NaN: PyTorch's answer
            for c in self.columns:
                mean = seg.sums[c] / seg.weight
                done[c] = mean
                finite = np.isfinite(mean)
                self._nan[c] += int(np.isnan(mean).sum())
                self._inf[c] += int(np.isinf(mean).sum())
                bad |= ~finite
                if finite.any():
                    i = int(np.argmax(np.where(finite, mean, -np.inf)))
                    worst = self._worst[c]
                    if worst is None or mean[i] > worst[1]:
                        self._worst[c] = (int(batch[i]), float(mean[i]))
        self._nonfinite_batches += int(bad.sum())
        room = self.max_issues - len(self._issues)
        for i in np.flatnonzero(bad)[: max(room, 0)]:
            means = {c: float(done[c][i]) for c in self.columns}
            reasons = {
                c: self._reason(seg, int(i), c, int(batch[i]), m)
                for c, m in means.items()
                if not np.isfinite(m)
            }
            self._issues.append(
                BatchIssue(
                    int(batch[i]),
                    int(first[i]),
                    int(seg.rows[i]),
                    int(seg.ignored[i]),
                    means,
                    reasons,
                )
            )
        self.batches += k
        return done

    def _reason(self, seg: _Segments, i: int, c: str, b: int, mean: float) -> str:
        """One sentence on why column ``c`` of batch ``b`` (segment ``i``) has a non-finite mean."""
        rows, first = int(seg.rows[i]), b * self.batch_size
        span = f"batch {b} (rows {first}-{first + rows - 1})"
        result = "NaN" if np.isnan(mean) else "inf"
        if seg.ignored[i] == rows:
            return (
                f"every label in {span} is {self.ignore_index} (ignore_index): "
                "PyTorch's mean is 0/0 = NaN"
            )
        if seg.nan[c][i]:
            return _row_reason(
                int(seg.first_nan[c][i]), int(seg.nan[c][i]), "a NaN loss", span, result
            )
        if seg.weight[i] == 0:
            return (
                f"every label in {span} that is not ignored has class weight 0: "
                "PyTorch's mean is 0/0 = NaN"
            )
        if seg.inf[c][i]:
            return _row_reason(
                int(seg.first_inf[c][i]), int(seg.inf[c][i]), "an infinite loss", span, result
            )
        return f"the sum of the losses in {span} overflows: the mean is {result}"

    def result(self) -> BatchSummary:
        """The summary over every batch; closes the last, shorter batch first if open."""
        self.flush()
        columns = {}
        for c in self.columns:
            worst = self._worst[c]
            columns[c] = ColumnBatches(
                nan=self._nan[c],
                inf=self._inf[c],
                worst_batch=None if worst is None else worst[0],
                worst_mean=None if worst is None else worst[1],
            )
        return BatchSummary(
            batch_size=self.batch_size,
            batches=self.batches,
            rows=self.rows,
            columns=columns,
            issues=list(self._issues),
            nonfinite_batches=self._nonfinite_batches,
            ignore_index=self.ignore_index,
        )


def _row_reason(row: int, count: int, what: str, span: str, result: str) -> str:
    more = f" ({count - 1} more row{'s' if count > 2 else ''} too)" if count > 1 else ""
    return f"row {row} in {span} has {what}{more}: the mean is {result}"
