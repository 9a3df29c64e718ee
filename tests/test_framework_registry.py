"""The registry of frameworks (``--framework``): the names offered, what each one gives."""

from __future__ import annotations

import json
from pathlib import Path

import mp_reference as mp
import numpy as np
import pytest
from click.testing import CliRunner

from cecheck import cli, families
from cecheck.choices import DEFAULT_FRAMEWORK, FRAMEWORK_MODULES, FRAMEWORKS
from cecheck.frameworks import registry
from cecheck.precision import get
from cecheck.settings import Settings

DATA = Path(__file__).resolve().parent.parent / "sample_data"


def test_the_names_offered_are_the_registered_frameworks() -> None:
    assert tuple(FRAMEWORK_MODULES) == FRAMEWORKS
    assert DEFAULT_FRAMEWORK == "torch"
    for command in ("compare", "trace"):
        out = CliRunner().invoke(cli.cecheck, [command, "--help"]).stdout
        assert "--framework [torch|jax|tensorflow]" in out


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
    with pytest.raises(ValueError, match="unknown framework 'mxnet'"):
        registry.get("mxnet")
    with pytest.raises(ValueError, match="unknown framework 'mxnet'"):
        Settings(framework="mxnet")
    result = CliRunner().invoke(
        cli.cecheck, ["compare", "x.npy", "--framework", "mxnet"], catch_exceptions=False
    )
    assert result.exit_code == 2
    assert "'mxnet' is not one of 'torch', 'jax', 'tensorflow'" in result.stderr


@pytest.mark.parametrize(("name", "code"), [("jax", "optax"), ("tensorflow", "tf.nn")])
def test_jax_and_tensorflow_run_the_seed_example(name: str, code: str) -> None:
    """The TF seed example under each framework: naive inf in float32 (probability
    underflow), 500 in float64; stable 500; the report names the framework's code."""
    data = f"{DATA}/tf_example_"
    args = ["compare", f"{data}logits.npy", f"{data}labels.npy", "--format", "json"]
    result = CliRunner().invoke(cli.cecheck, [*args, "--framework", name])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["settings"]["framework"] == name
    losses = report["flagged"][0]["losses"]
    assert losses["naive_float32"] == "inf"
    exact = mp.multiclass([1000.0, 2000.0, 2500.0], 1)  # 500, from mpmath
    f32, f64 = 4 * 2.0**-24, 4 * 2.0**-53  # a few units of each dtype's rounding
    assert losses["naive_float64"] == pytest.approx(exact, rel=f64)
    assert losses["stable_float32"] == pytest.approx(exact, rel=f32)
    assert losses["stable_float64"] == pytest.approx(exact, rel=f64)
    assert code in result.stderr


def test_smoothing_needs_a_framework_that_has_it() -> None:
    data = f"{DATA}/benign_"
    args = ["compare", f"{data}logits.npy", f"{data}labels.npy", "--label-smoothing", "0.1"]
    result = CliRunner().invoke(cli.cecheck, [*args, "--framework", "jax"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ")
