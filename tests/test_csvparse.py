"""The C parser of plain CSV pieces (cecheck/_csvparse.c): Python's float() bit for bit, or -1.

Within its grammar and Clinger's fast path (at most 19 significant digits, a significand of
at most 2**53, a decimal exponent within +-22) a cell must read as the correctly rounded
double, which float() gives; anything else must make the whole piece answer -1 (pandas then
parses it), never a wrong number or an exception. :func:`fast_path` is the model of what
it accepts; the parser must accept exactly that, so no test passes by refusing everything.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

if importlib.util.find_spec("cecheck._csvparse") is None:
    if os.environ.get("CECHECK_REQUIRE_KERNEL"):
        raise RuntimeError("the C parser cecheck._csvparse was not built (no C compiler?)")
    pytest.skip("the C parser cecheck._csvparse was not built", allow_module_level=True)

GRAMMAR = re.compile(
    r"[+-]?(?:(?P<whole>[0-9]+)(?:\.(?P<frac>[0-9]*))?|\.(?P<frac2>[0-9]+))"
    r"(?:[eE](?P<exp>[+-]?[0-9]+))?"
)


def fast_path(cell: str) -> bool:
    """Whether the parser must accept ``cell``: its grammar, and Clinger's fast path."""
    m = GRAMMAR.fullmatch(cell)
    if m is None:
        return False
    frac = m["frac"] or m["frac2"] or ""
    digits = ((m["whole"] or "") + frac).lstrip("0")
    e = int(m["exp"] or 0) - len(frac)
    return len(digits) <= 19 and int(digits or 0) <= 2**53 and abs(e) <= 22


def parse(text: str, rows: int, cols: int, sep: str = ",") -> np.ndarray | None:
    """The (rows, cols) values the parser reads from ``text``, or None for its -1."""
    from cecheck import _csvparse

    out = np.empty((rows, cols))
    n = _csvparse.parse(text.encode(), ord(sep), out)
    assert n in (rows, -1)
    return out if n == rows else None


def parse_cell(cell: str) -> float | None:
    out = parse(cell + "\n", 1, 1)
    return None if out is None else float(out[0, 0])


def same_bits(a: float, b: float) -> bool:
    return bool(np.float64(a).view(np.uint64) == np.float64(b).view(np.uint64))


DIGITS = st.text(alphabet="0123456789", max_size=24)
SIGN = st.sampled_from(["", "+", "-"])


@st.composite
def grammar_cells(draw: st.DrawFn) -> str:
    """Cells of the grammar, inside Clinger's fast path or just outside it."""
    whole, frac = draw(DIGITS), draw(st.none() | DIGITS)
    if not whole and not frac:
        whole = "0"
    cell = draw(SIGN) + draw(st.sampled_from(["", "0", "000"])) + whole
    cell += "" if frac is None else "." + frac
    if draw(st.booleans()):
        zeros = draw(st.sampled_from(["", "0", "00"]))
        cell += draw(st.sampled_from("eE")) + draw(SIGN) + zeros + str(draw(st.integers(0, 40)))
    return cell


FINITE = st.floats(allow_nan=False, allow_infinity=False)
FORMATS: list[Callable[[float], str]] = [
    repr,
    "%.6g".__mod__,
    "%.15g".__mod__,
    "%.17g".__mod__,
    "%e".__mod__,
]
FORMATTED = st.builds(lambda f, x: f(x), st.sampled_from(FORMATS), FINITE)
INTEGERS = st.integers(-(2**64), 2**64).map(str)
CELLS = grammar_cells() | FORMATTED | INTEGERS


@settings(max_examples=2000, deadline=None)
@given(cell=CELLS)
def test_a_cell_reads_as_float_does_exactly_where_the_model_accepts_it(cell: str) -> None:
    value = parse_cell(cell)
    assert (value is not None) == fast_path(cell), cell
    if value is not None:
        assert same_bits(value, float(cell)), cell


@settings(max_examples=500, deadline=None)
@given(
    x=FINITE.filter(lambda x: x == 0 or 1e-7 <= abs(x) <= 1e20),
    style=st.sampled_from(["%.6g", "%.15g"]),
)
def test_short_formats_of_moderate_numbers_are_accepted(x: float, style: str) -> None:
    value = parse_cell(style % x)
    assert value is not None, style % x
    assert same_bits(value, float(style % x))


@given(n=st.integers(-(2**53), 2**53))
def test_integers_up_to_2_53_are_accepted(n: int) -> None:
    value = parse_cell(str(n))
    assert value is not None
    assert value == n


@pytest.mark.parametrize(
    ("cell", "value"),
    [("-0", -0.0), ("+0", 0.0), ("-0.0e5", -0.0), ("1.", 1.0), (".5", 0.5), ("-.5E+1", -5.0),
     ("007", 7.0), ("0.000000000000000000001", 1e-21), ("1e22", 1e22), ("1e-22", 1e-22),
     ("9007199254740992", 2.0**53), ("1.5e0000000000000000000000001", 15.0)],
)  # fmt: skip
def test_edge_cells(cell: str, value: float) -> None:
    got = parse_cell(cell)
    assert got is not None
    assert same_bits(got, value)  # with its sign: "-0" is -0.0


@pytest.mark.parametrize(
    "line",
    [" 1,2", "1 ,2", "1, 2", "1,2 ", "1,2\r", "1,", ",2", "1,,2", "", "nan,1", "1,NaN", "inf,1",
     "-inf,1", "1,2,3", "1", '"1",2', "1e,2", "1e+,2", "1,--1", ".,2", "+,2", "-,2", "1,e5",
     "1..2,3", "1.2.3,4", "1e5e5,2", "0x10,2", "1_000,2", "12345678901234567890,1",
     "1.0000000000000000000,1", "9007199254740993,1", "1e23,1", "1e-23,1", "1,2\x00",
     "1,\u00b2", "\ufeff1,2", "1;2"],
)  # fmt: skip
def test_cells_outside_the_grammar_give_minus_one(line: str) -> None:
    assert parse(line + "\n", 1, 2) is None
    assert parse(line, 1, 2) is None


@pytest.mark.parametrize(
    ("text", "rows"),
    [("1,2\n3,4\n", 1), ("1,2\n3,4\n", 3), ("1,2\n\n3,4\n", 3), ("1,2\n3,4\n\n", 3),
     ("\n1,2\n", 2), ("1,2\n3,4\n5", 3)],
)  # fmt: skip
def test_more_or_fewer_lines_than_asked_give_minus_one(text: str, rows: int) -> None:
    assert parse(text, rows, 2) is None


def test_rows_with_or_without_the_last_line_end() -> None:
    for text in ("1,2\n3,4\n", "1,2\n3,4"):
        out = parse(text, 2, 2)
        assert out is not None
        np.testing.assert_array_equal(out, [[1, 2], [3, 4]])
    out = parse("1\t-2.5e1\n", 1, 2, sep="\t")
    assert out is not None
    np.testing.assert_array_equal(out, [[1, -25]])


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.lists(CELLS | st.text(alphabet="0123456789.+-eE \r\"na,\t\n", max_size=4), min_size=2,
                 max_size=2) | st.lists(CELLS, min_size=1, max_size=3),
        min_size=1, max_size=6,
    ),
    sep=st.sampled_from([",", "\t"]),
    last_end=st.booleans(),
)  # fmt: skip
def test_a_piece_reads_as_its_cells_or_gives_minus_one(
    rows: list[list[str]], sep: str, last_end: bool
) -> None:
    text = "\n".join(sep.join(row) for row in rows) + ("\n" if last_end else "")
    lines = text.split("\n")[:-1] if last_end else text.split("\n")
    cells = [line.split(sep) for line in lines]
    plain = all(len(c) == 2 for c in cells) and all(fast_path(x) for c in cells for x in c)
    out = parse(text, len(lines), 2, sep)
    assert (out is not None) == plain
    if out is not None:
        expected = np.array([[float(x) for x in c] for c in cells])
        np.testing.assert_array_equal(out.view(np.uint64), expected.view(np.uint64))


def test_bad_arguments_raise() -> None:
    from cecheck import _csvparse

    with pytest.raises(ValueError, match="separator"):
        _csvparse.parse(b"1\n", ord("1"), np.empty((1, 1)))
    with pytest.raises(ValueError, match="float64"):
        _csvparse.parse(b"1\n", ord(","), np.empty((1, 1), dtype=np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        _csvparse.parse(b"1\n", ord(","), np.empty((2, 2))[:, :1])
    read_only = np.empty((1, 1))
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _csvparse.parse(b"1\n", ord(","), read_only)
