"""PyTorch 2.13's ``naive`` and ``stable`` paths, by family, for the framework registry
(:mod:`cecheck.frameworks.registry`).

``naive`` is :mod:`~cecheck.frameworks.torch_naive` (``torch.log(torch.softmax(z, -1))``,
``F.binary_cross_entropy(torch.sigmoid(z), t)``), ``stable`` is
:mod:`~cecheck.frameworks.torch_fused` (``F.cross_entropy``,
``F.binary_cross_entropy_with_logits``), both as torch's CPU kernels compute them.
"""

from __future__ import annotations

from collections.abc import Callable

from cecheck.frameworks import torch_fused, torch_naive
from cecheck.losses import PathResult

# (path, kind) -> f(z, target, p, rec=ignore) -> PathResult, ``kind`` as Family.kind
PATHS: dict[tuple[str, str], Callable[..., PathResult]] = {
    ("naive", "index"): torch_naive.naive_index,
    ("naive", "soft"): torch_naive.naive_soft,
    ("naive", "binary"): torch_naive.naive_binary,
    ("naive", "multilabel"): torch_naive.naive_multilabel,
    ("stable", "index"): torch_fused.stable_index,
    ("stable", "soft"): torch_fused.stable_soft,
    ("stable", "binary"): torch_fused.stable_binary,
    ("stable", "multilabel"): torch_fused.stable_multilabel,
}

# How the report names the code of each path: "softmax" for the multiclass families, "sigmoid"
# for binary and multilabel.
CODE = {
    ("naive", "softmax"): "torch.log(torch.softmax(z, -1))",
    ("naive", "sigmoid"): "F.binary_cross_entropy(torch.sigmoid(z), t)",
    ("stable", "softmax"): "F.cross_entropy",
    ("stable", "sigmoid"): "F.binary_cross_entropy_with_logits",
}

# The framework's own label smoothing and class weights (``--label-smoothing``,
# ``--class-weights``): its stable index and soft functions take ``weight=`` and
# ``label_smoothing=``, its naive index function ``weight=``.
WEIGHTING = True
