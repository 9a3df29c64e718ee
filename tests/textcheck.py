"""Helpers for tests that read what cecheck prints: strict JSON, flattened text, goldens."""

from __future__ import annotations

import json
import os
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
    """``text`` equals ``golden/<name>.txt`` (the version masked); rewritten with
    ``CECHECK_UPDATE_GOLDEN=1``."""
    text = text.replace(__version__, "<version>")
    path = GOLDEN / f"{name}.txt"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden {path.name}: run with CECHECK_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")
