"""pyproject.toml, LICENSE and the README's recipes: what a build and a reader rely on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cecheck import cli

ROOT = Path(__file__).resolve().parent.parent


def test_build_system_reads_the_license_string_and_ships_the_license() -> None:
    """``license = "MIT"`` (PEP 639) and ``license-files`` need setuptools 77 or later:
    an older one, which ``setuptools>=68`` allowed, rejects the pyproject.toml."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert config["project"]["license"] == "MIT"
    (setuptools,) = [r for r in config["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools)
    assert minimum is not None
    assert int(minimum.group(1)) >= 77
    assert config["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n\nCopyright (c) the cecheck authors\n")
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_ci_recipe_installs_from_the_repository() -> None:
    """No package index serves ``cecheck``: the recipe installs a checkout (or a git URL)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    recipe = readme[readme.index("## CI recipe") : readme.index("## Library")]
    installs = re.findall(r"pip install (\S+)", recipe)
    assert installs
    assert all(i.startswith(("./", '"git+')) for i in installs), installs
    assert "if: always()" in recipe


@pytest.mark.parametrize("code", ["0", "1", "2", "130", "141"])
def test_exit_codes_are_documented(code: str) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Exit codes") : readme.index("## CI recipe")]
    assert f"| `{code}` |" in table
    assert f" {code} " in " ".join((cli.__doc__ or "").split())
