"""The pieces of the command line: the comma-choice parameter type, the registries the options
read their choices from, and the library's tracing of a picked row."""

from __future__ import annotations

import click
import numpy as np
import pytest

from cecheck import choices, inputs, precision, report, settings
from cecheck.cli.options import CommaChoice
from cecheck.engine import Settings
from cecheck.output.base import Reporter
from cecheck.output.registry import REPORTERS, reporter
from cecheck.rowpick import RowPick, parse_row, trace_row
from cecheck.trace import PATHS


def test_comma_choice_keeps_each_name_once_in_the_order_given() -> None:
    dtypes = CommaChoice(choices.DTYPES, "dtype", at_least_one=True)
    assert dtypes.convert(" float64, float16,float64,", None, None) == ("float64", "float16")
    assert dtypes.convert(("float32",), None, None) == ("float32",)  # a tuple default


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        (CommaChoice(("a", "b"), "thing"), "a,c,d", "unknown thing c, d: choose from a, b"),
        (CommaChoice(("a", "b"), "thing"), " , ", "unknown thing ' , ': choose from a, b"),
        (CommaChoice(("a", "b"), "x", at_least_one=True), ",", "name at least one of a, b"),
    ],
)
def test_comma_choice_names_what_is_wrong(kind: CommaChoice, value: str, message: str) -> None:
    with pytest.raises(click.BadParameter) as e:
        kind.convert(value, None, None)
    assert e.value.message == message


def test_the_registry_resolves_every_format_to_its_reporter() -> None:
    assert list(REPORTERS) == ["table", "json", "csv", "markdown", "html"]
    for name in REPORTERS:
        found = reporter(name)
        assert issubclass(found, Reporter)
        assert found.title


def test_the_light_choices_are_the_library_s() -> None:
    assert choices.DTYPES == precision.DTYPES
    assert choices.TASKS == inputs.TASKS
    assert choices.INPUT_KINDS == settings.INPUT_KINDS
    assert choices.FAIL_ON == report.FAIL_ON
    assert choices.TRACE_PATHS == PATHS


def test_trace_row_names_the_row_and_how_it_was_picked() -> None:
    z = np.array([[[0.0, 1.0], [2.0, 90.0]]], dtype=np.float32)
    source = inputs.from_arrays(z, np.array([[1, 0]]))
    t = trace_row(source, Settings(("float32",)), parse_row("0,1", source.lead_shape), PATHS)
    assert (t.row, t.index, t.origin) == (1, (0, 1), None)
    picked = trace_row(source, Settings(("float32",)), RowPick(0, (0, 0), "why"), ("naive",))
    assert (picked.row, picked.origin, len(picked.paths)) == (0, "why", 1)


def test_trace_row_refuses_a_row_without_a_loss() -> None:
    source = inputs.from_arrays(np.zeros((2, 3)), np.array([0, 7]))
    with pytest.raises(ValueError, match=r"^row 1: label 7 is not a class"):
        trace_row(source, Settings(), RowPick(1, (1,)), PATHS)
    with pytest.raises(ValueError, match=r"^row 0 has label 0, the --ignore-index"):
        trace_row(source, Settings(ignore_index=0), RowPick(0, (0,)), PATHS)
