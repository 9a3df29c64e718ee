"""Build the optional C kernels of cecheck.fast; everything else is in pyproject.toml.

The extension is optional: if it cannot be compiled (no C compiler), cecheck installs
without it and computes every path with numpy (cecheck/losses.py), only slower. So is the
CSV report's formatter (cecheck/_csvtext.c): without it cecheck/output/csvtext.py writes
the same text in Python.
"""

import sys

from setuptools import Extension, setup

# -O3 vectorises the kernel's loops. -fstrict-overflow undoes Python's own -fwrapv (or
# -fno-strict-overflow), with which the vectoriser cannot prove index arithmetic contiguous
# (the kernel runs 40% slower). -ffp-contract=off: the kernel writes every fused
# multiply-add it wants explicitly, so a vector lane and a scalar call give the same bits.
# -fno-math-errno lets fma() compile to an instruction.
UNIX_FLAGS = ["-O3", "-fstrict-overflow", "-ffp-contract=off", "-fno-math-errno"]
FLAGS = [] if sys.platform == "win32" else UNIX_FLAGS

setup(
    ext_modules=[
        Extension(
            "cecheck._kernel", ["cecheck/_kernel.c"], extra_compile_args=FLAGS, optional=True
        ),
        Extension("cecheck._csvtext", ["cecheck/_csvtext.c"], optional=True),
    ]
)
