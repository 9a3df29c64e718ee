"""The registry of frameworks (``--framework``): the names offered, what each one gives."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from cecheck import cli, families
from cecheck.choices import DEFAULT_FRAMEWORK, FRAMEWORK_MODULES, FRAMEWORKS
from cecheck.frameworks import registry
from cecheck.precision import get
from cecheck.settings import Settings


def test_the_names_offered_are_the_registered_frameworks() -> None:
    assert tuple(FRAMEWORK_MODULES) == FRAMEWORKS
    assert DEFAULT_FRAMEWORK == "torch"
    for command in ("compare", "trace"):
        out = CliRunner().invoke(cli.cecheck, [command, "--help"]).stdout
        assert "--framework [torch]" in out


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_every_framework_gives_both_paths_of_every_family(name: str) -> None:
    fw = registry.get(name)
    assert fw.title == FRAMEWORK_MODULES[name][1]
    for family in families.FAMILIES.values():
        for path in ("naive", "stable"):
            z = np.zeros(3) if family.one_logit else np.zeros((3, 4))
            t = np.zeros(3, dtype=np.int64) if family.class_labels else np.zeros_like(z)
            if family.soft_targets or (family.softmax and not family.class_labels):
                t[:, 0] = 1.0
            result = fw.path(path, family.kind)(z, t, get("float32"))
            assert result.loss.shape == (3,), (name, family.name, path)


def test_a_framework_that_is_not_registered_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown framework 'jax'"):
        registry.get("jax")
    with pytest.raises(ValueError, match="unknown framework 'jax'"):
        Settings(framework="jax")
    result = CliRunner().invoke(
        cli.cecheck, ["compare", "x.npy", "--framework", "jax"], catch_exceptions=False
    )
    assert result.exit_code == 2
    assert "'jax' is not 'torch'" in result.stderr
