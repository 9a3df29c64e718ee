"""The words of a row whose input has no loss, saying what to do about it: a probability row
that does not sum to 1 (what it sums to), a class label out of range (a negative one may be
the marker of rows to skip: ``--ignore-index``). Used by
:func:`cecheck.output.words.describe_flags`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cecheck.output.numbers import label_text, spell

if TYPE_CHECKING:
    from cecheck.inputs import Source
    from cecheck.report import RowRecord


def not_a_probability_row(record: RowRecord) -> str:
    """``not a probability row (values in [0, 1] summing to 1; it sums to 1.1), not scored``."""
    sums = "" if record.row_sum is None else f"; it sums to {spell(record.row_sum)}"
    return f"not a probability row (values in [0, 1] summing to 1{sums}), not scored"


def label_out_of_range(record: RowRecord, source: Source) -> str:
    """``label 7 is outside 0..4, not scored``; a negative label names ``--ignore-index``."""
    label = label_text(record.label)
    words = f"label {label} is outside 0..{source.n_classes - 1}, not scored"
    if isinstance(record.label, int) and record.label < 0:
        words += f" (if {label} marks the rows to skip, give --ignore-index {label})"
    return words
