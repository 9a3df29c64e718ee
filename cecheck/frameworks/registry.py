"""The frameworks whose idioms the ``naive`` and ``stable`` paths emulate (``--framework``).

:data:`cecheck.choices.FRAMEWORK_MODULES` names each framework's module (import-free, so
that ``--help`` stays light); :func:`get` loads it. A framework module has:

- ``PATHS``: ``(path, kind) -> f(z, target, p, rec=ignore) -> PathResult``, for ``path``
  ``naive`` and ``stable`` and every ``kind`` of :mod:`cecheck.families` (``index``,
  ``soft``, ``binary``, ``multilabel``), in the style of :mod:`cecheck.losses`;
- optionally ``CODE``: ``(path, "softmax" | "sigmoid") -> `` the code the report names for
  that path (such as ``F.cross_entropy``);
- optionally ``WEIGHTING = True``: its functions take PyTorch-style ``weight=`` and
  ``label_smoothing=`` (see :class:`cecheck.pathsets.WeightedPaths`).

Which of these functions the C kernel computes is the kernel's to say
(:data:`cecheck.fast.EMULATES`).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cecheck.choices import DEFAULT_FRAMEWORK, FRAMEWORK_MODULES
from cecheck.losses import PathResult

PathFunction = Callable[..., PathResult]


@dataclass(frozen=True)
class Framework:
    """One framework's paths and what they emulate."""

    name: str  # as --framework names it: torch
    title: str  # what the paths emulate, with its version: PyTorch 2.13
    paths: Mapping[tuple[str, str], PathFunction]
    weighting: bool = False  # label smoothing and class weights are its own options
    code: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def path(self, path: str, kind: str) -> PathFunction:
        """The function of ``path`` (naive or stable) for a family's ``kind``."""
        return self.paths[path, kind]

    def code_of(self, path: str, softmax: bool) -> str:
        """The code the report names for ``path``: ``F.cross_entropy``; else the path's name
        with the framework's."""
        key = (path, "softmax" if softmax else "sigmoid")
        return self.code.get(key, f"{self.title}'s {path} path")


def _quiet(f: PathFunction) -> PathFunction:
    """``f`` without numpy's floating-point warnings: a framework's inf and NaN (0 · inf on
    an infinite logit, inf - inf) are the values it computes, not accidents of the emulation."""

    @functools.wraps(f)
    def quiet(*args: Any, **kwargs: Any) -> PathResult:
        with np.errstate(all="ignore"):
            return f(*args, **kwargs)

    return quiet


@functools.cache
def get(name: str = DEFAULT_FRAMEWORK) -> Framework:
    """The registered framework ``name``; ValueError for one that is not registered."""
    if name not in FRAMEWORK_MODULES:
        known = ", ".join(FRAMEWORK_MODULES)
        raise ValueError(f"unknown framework {name!r}: cecheck emulates {known}")
    module_name, title = FRAMEWORK_MODULES[name]
    module = importlib.import_module(module_name)
    return Framework(
        name,
        title,
        {key: _quiet(f) for key, f in module.PATHS.items()},
        getattr(module, "WEIGHTING", False),
        getattr(module, "CODE", {}),
    )
