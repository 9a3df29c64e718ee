"""The summary's "worst rel. error / bits correct" is not dominated by rows far below eps.

The error is judged relative to ``max(1, |reference|)``: relative for a loss above 1,
absolute below. A loss of 1e-96 that float64's stable path rounds to 0 is off by 1e-96,
far below float64's epsilon, not by 100%; a loss near 1 keeps its relative error.
"""

from __future__ import annotations

import mp_reference as mp
import numpy as np
import pytest

from cecheck import compare
from cecheck import precision as prec


def _summary(report, column: str):  # type: ignore[no-untyped-def]
    path, dtype = column.split("_")
    return next(p for p in report.summary if (p.path, p.dtype) == (path, dtype))


def test_a_loss_far_below_eps_does_not_dominate_the_column() -> None:
    z = np.array([[0.0, -220.0], [0.3, 1.2], [2.0, -1.0]])  # row 0: loss exp(-220) = 1.4e-96
    y = np.array([0, 0, 1])
    assert mp.multiclass(z[0], 0) == pytest.approx(np.exp(-220.0), rel=1e-15)
    report = compare(z, y)
    stable = _summary(report, "stable_float64")
    assert stable.bits_correct is not None
    assert stable.bits_correct >= 50  # was 0.0/53, from row 0 alone
    assert stable.worst_rel_error <= 8 * prec.get("float64").eps


def test_the_error_is_relative_above_1_and_absolute_below() -> None:
    z = np.array([[0.0, 10.0], [0.0, 4.6], [0.0, 6.1]])  # losses 10.000045, 0.01, 0.0022
    y = np.array([0, 1, 1])
    report = compare(z, y, dtypes="float32,float64")
    got = _summary(report, "stable_float32").worst_rel_error
    ref = np.array([mp.multiclass(row, t) for row, t in zip(z, y, strict=True)])
    l32 = report.to_frame()["stable_float32"].to_numpy()
    want = np.max(np.abs(l32 - ref) / np.maximum(1.0, np.abs(ref)))
    assert got == pytest.approx(want, rel=1e-6)
    assert got < np.max(np.abs(l32 - ref) / np.abs(ref)) / 10  # not the plain relative error
