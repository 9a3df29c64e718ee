"""What the frameworks do with the same rows, one module a subject:

- :mod:`~cecheck.frameworks.probs`: probability inputs, under the conventions of PyTorch,
  Keras and scikit-learn (``--inputs probs``);
- :mod:`~cecheck.frameworks.weighting`: PyTorch's label smoothing and class weights, row by
  row and in the denominator of its mean;
- :mod:`~cecheck.frameworks.batches`: PyTorch's ``reduction="mean"`` over batches of rows
  (``--batch-size``);
- :mod:`~cecheck.frameworks.options`: the values of ``--label-smoothing`` and
  ``--class-weights``, checked; the only one that reads a file;
- :mod:`~cecheck.frameworks.registry`: the frameworks whose idioms the ``naive`` and
  ``stable`` paths emulate (``--framework``), each a module with its ``PATHS``:
  :mod:`~cecheck.frameworks.torch_paths` (PyTorch 2.13: :mod:`~cecheck.frameworks.torch_naive`,
  :mod:`~cecheck.frameworks.torch_fused`, :mod:`~cecheck.frameworks.torch_common`).

The numerics are pure numpy, with no printing and no I/O. Every public name is also
importable from here, as ``from cecheck import frameworks as fw; fw.probs_loss(...)``.
"""

from cecheck.frameworks.batches import (
    BATCH_RULE,
    BatchIssue,
    BatchMeans,
    BatchSummary,
    ColumnBatches,
    size_words,
)
from cecheck.frameworks.options import check_label_smoothing, parse_class_weights
from cecheck.frameworks.probs import (
    CONVENTIONS,
    KERAS_EPSILON,
    NO_STABLE_PATH,
    PROB_PATHS,
    PROB_TASKS,
    TORCH_LOG_CLAMP,
    clipped_rows,
    invalid_probabilities,
    probs_loss,
    probs_reference,
    zero_target_probability,
)
from cecheck.frameworks.weighting import (
    SOFT_SMOOTHING_NOTE,
    apply_reference_weights,
    apply_row_weights,
    row_weights,
    smoothed_formula,
    smoothed_targets,
    smoothing_notes,
)

__all__ = [
    "BATCH_RULE",
    "CONVENTIONS",
    "KERAS_EPSILON",
    "NO_STABLE_PATH",
    "PROB_PATHS",
    "PROB_TASKS",
    "SOFT_SMOOTHING_NOTE",
    "TORCH_LOG_CLAMP",
    "BatchIssue",
    "BatchMeans",
    "BatchSummary",
    "ColumnBatches",
    "apply_reference_weights",
    "apply_row_weights",
    "check_label_smoothing",
    "clipped_rows",
    "invalid_probabilities",
    "parse_class_weights",
    "probs_loss",
    "probs_reference",
    "row_weights",
    "size_words",
    "smoothed_formula",
    "smoothed_targets",
    "smoothing_notes",
    "zero_target_probability",
]
