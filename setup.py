"""Build the optional C kernel of cecheck.fast; everything else is in pyproject.toml.

The extension is optional: if it cannot be compiled (no C compiler), cecheck installs
without it and computes every path with numpy (cecheck/losses.py), only slower.
"""

import sys

from setuptools import Extension, setup

# -O3 vectorises the kernel's loops; -ffp-contract=off: the kernel writes every fused
# multiply-add it wants explicitly, so a vector lane and a scalar call give the same bits;
# -fno-math-errno lets fma() compile to an instruction.
FLAGS = [] if sys.platform == "win32" else ["-O3", "-ffp-contract=off", "-fno-math-errno"]

setup(
    ext_modules=[
        Extension("cecheck._kernel", ["cecheck/_kernel.c"], extra_compile_args=FLAGS, optional=True)
    ]
)
