"""Helpers for tests that read what cecheck prints: strict JSON, flattened text, goldens."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from cecheck import __version__

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("CECHECK_UPDATE_GOLDEN") == "1"


def strict_json(text: str) -> dict:
    """JSON that must not hold NaN or Infinity tokens."""

    def refuse(token: str) -> None:
        raise ValueError(f"non-strict JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def flat(text: str) -> str:
    """The text with every run of whitespace (line wraps included) as one space."""
    return " ".join(text.split())


def check_golden(name: str, text: str) -> None:
    """``text`` matches ``golden/<name>.txt`` (the version masked) as :func:`same_text` says;
    rewritten with ``CECHECK_UPDATE_GOLDEN=1``."""
    text = text.replace(__version__, "<version>")
    path = GOLDEN / f"{name}.txt"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden {path.name}: run with CECHECK_UPDATE_GOLDEN=1"
    golden = path.read_text(encoding="utf-8")
    assert same_text(text, golden), f"{path.name} differs:\n{text}"


# A decimal number, and the bits column of the tables ("52.3/53").
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_BITS = re.compile(r"(\d+\.\d)/(\d+)")


def same_text(text: str, golden: str) -> bool:
    """The same text, but for numbers that differ by rounding noise.

    numpy's exp and log differ by an ulp between CPUs (its AVX-512 code against libm), which
    moves the last digit of a value and the ulp-sized error statistics of the tables. So the
    words, the line breaks and the order of tokens must match; a number may differ in its last
    printed digits (relative 1e-6), an error at the rounding level (below 1e-6) by up to a
    factor of 2, the bits column by up to one bit; column padding may shift with the widths.
    """
    if text == golden:
        return True
    ours, theirs = text.splitlines(), golden.splitlines()
    return len(ours) == len(theirs) and all(
        len(a.split()) == len(b.split()) and all(map(_same_token, a.split(), b.split()))
        for a, b in zip(ours, theirs, strict=True)
    )


def _same_token(a: str, b: str) -> bool:
    if a == b:
        return True
    bits_a, bits_b = _BITS.fullmatch(a), _BITS.fullmatch(b)
    if bits_a and bits_b:
        return bits_a[2] == bits_b[2] and abs(float(bits_a[1]) - float(bits_b[1])) <= 1.0
    if _NUMBER.split(a) != _NUMBER.split(b):
        return False
    return all(
        _close(float(x), float(y))
        for x, y in zip(_NUMBER.findall(a), _NUMBER.findall(b), strict=True)
    )


def _close(x: float, y: float) -> bool:
    if x == y or abs(x - y) <= 1e-6 * max(abs(x), abs(y)):
        return True
    return 0 < abs(x) < 1e-6 and 0 < abs(y) < 1e-6 and 0.5 <= x / y <= 2
