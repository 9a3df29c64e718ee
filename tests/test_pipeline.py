"""The chunk pipeline (cecheck.pipeline) and the registry of families (cecheck.families).

The loss values themselves are checked against mpmath in test_engine.py, test_fast.py and
test_pathsets.py; here: which path set a run takes, what the masks do to a loss column, and
that every switch on the task and label form reads the registry.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cecheck import families, fast, inputs, pathsets, pipeline
from cecheck import frameworks as fw
from cecheck.families import FAMILIES
from cecheck.settings import Settings

NONE = np.zeros(3, dtype=bool)
NO_MASKS = {"ignored": NONE, "no_loss": NONE}
MASKS = {"ignored": np.array([True, False, False]), "no_loss": np.array([False, True, False])}


# ---------------------------------------------------------------- the masks and -0.0


@pytest.mark.parametrize("masked", [False, True])
def test_logit_path_sets_keep_a_negative_zero(masked: bool) -> None:
    """The logit path sets (numpy, kernel) keep their values as computed: a -0.0 stays -0.0
    (their functions return +0 for a certain row, so no input reaches this today), and
    nothing is copied in a chunk without masked rows."""
    loss = np.array([1.0, 2.0, -0.0])
    out = pipeline.mask(loss, MASKS if masked else NO_MASKS, masked, positive_zero=False)
    assert np.signbit(out[2])
    assert (out is loss) is not masked
    if masked:
        assert out[0] == 0.0
        assert np.isnan(out[1])
        assert loss[0] == 1.0  # the path's own result is not written into


@pytest.mark.parametrize("masked", [False, True])
def test_framework_path_sets_show_a_negative_zero_as_zero(masked: bool) -> None:
    loss = np.array([1.0, 2.0, -0.0])
    out = pipeline.mask(loss, MASKS if masked else NO_MASKS, masked, positive_zero=True)
    assert out[2] == 0.0
    assert not np.signbit(out[2])
    assert out is not loss


def test_probability_one_is_a_loss_of_positive_zero() -> None:
    """-log(1) is -0.0 under the conventions; the report shows 0 (as before the pipeline
    was one)."""
    p, y = np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([0, 0])
    plan = pipeline.chunk_plan("multiclass", "index", 2, Settings(inputs="probs"))
    computed = plan.compute(p, y).computed
    assert np.signbit(computed.results[("naive", "float64")].loss[0])
    assert np.signbit(computed.reference[0])
    values = plan.evaluate(p, y).values
    for column in ("naive_float32", "naive_float64", "torch_float64", "reference"):
        assert values[column][0] == 0.0
        assert not np.signbit(values[column][0])


# ---------------------------------------------------------------- path sets, chosen once


@pytest.mark.parametrize(
    ("kw", "kind"),
    [
        ({}, pathsets.KernelPaths),
        ({"dtypes": ("float16", "float64")}, pathsets.KernelPaths),
        ({"dtypes": ("float16", "float64"), "framework": "jax"}, pathsets.KernelPaths),
        ({"batch_size": 2}, pathsets.NumpyPaths),
        ({"inputs": "probs"}, pathsets.ProbPaths),
        ({"label_smoothing": 0.1}, pathsets.WeightedPaths),
        ({"class_weights": (1.0, 2.0, 3.0)}, pathsets.WeightedPaths),
    ],
)
def test_a_run_chooses_its_path_set_once(
    monkeypatch: pytest.MonkeyPatch, kw: dict[str, object], kind: type
) -> None:
    monkeypatch.setattr(fast, "installed", lambda: True)
    monkeypatch.delenv("CECHECK_NO_KERNEL", raising=False)
    source = inputs.from_arrays(np.zeros((4, 3)), np.array([0, 1, 2, 0]))
    plan, _ = pipeline.plan(source, Settings(**kw))  # type: ignore[arg-type]
    assert type(plan.paths) is kind


def test_plan_checks_the_settings_against_the_input() -> None:
    binary = inputs.from_arrays(np.zeros(3), np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="apply to multiclass inputs"):
        pipeline.plan(binary, Settings(label_smoothing=0.1))
    three = inputs.from_arrays(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="expected 3 class weights"):
        pipeline.plan(three, Settings(class_weights=(1.0, 2.0)))


# ---------------------------------------------------------------- the registry


def test_every_family_is_a_task_and_label_form_of_the_inputs() -> None:
    assert {f.task for f in FAMILIES.values()} == set(inputs.TASKS)
    assert {f.label_form for f in FAMILIES.values()} == set(inputs.LABEL_FORMS)
    for (task, form), f in FAMILIES.items():
        assert (f.task, f.label_form) == (task, form)
        assert families.get(task, form) is f
        assert families.of_form(form) is f


def test_the_kernel_covers_the_families_that_name_one() -> None:
    for f in FAMILIES.values():
        assert fast.covers(f.task, f.label_form, ("float32",)) == (f.kernel is not None)
        narrow = f.kernel == "index"  # float16 and bfloat16: multiclass index labels only
        assert fast.covers(f.task, f.label_form, ("float16", "bfloat16")) == narrow


def test_a_family_without_a_kernel_is_not_covered(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new family that names no kernel stays on numpy: covers reads the registry."""
    multihot = FAMILIES["multilabel", "multihot"]
    new = dataclasses.replace(multihot, task="multilabel", label_form="soft", kernel=None)
    monkeypatch.setitem(FAMILIES, ("multilabel", "soft"), new)
    assert not fast.covers("multilabel", "soft", ("float32",))
    assert not fast.usable("multilabel", "soft", ("float32",))
    s = Settings(("float32",))
    plan = pipeline.chunk_plan("multilabel", "soft", 2, s, use_fast=True)
    assert type(plan.paths) is pathsets.NumpyPaths


@pytest.mark.parametrize(("task", "form"), [("regression", "index"), ("binary", "index")])
def test_the_kernel_refuses_a_family_it_does_not_know(task: str, form: str) -> None:
    """Before the registry, fast.compute sent every pair it did not recognise to the sigmoid
    kernel."""
    z, t = np.zeros((2, 3)), np.zeros((2, 3))  # a target per logit, as the sigmoid kernel's
    with pytest.raises(ValueError, match="unknown task"):
        fast.compute(task, form, z, t, ("float32",))


def test_smoothing_note_is_for_soft_targets_only() -> None:
    soft = FAMILIES["multiclass", "soft"]
    onehot = FAMILIES["multiclass", "onehot"]
    assert fw.smoothing_notes(0.1, soft.soft_targets) == [fw.SOFT_SMOOTHING_NOTE]
    assert fw.smoothing_notes(0.1, onehot.soft_targets) == []
    assert fw.smoothing_notes(0.0, soft.soft_targets) == []
