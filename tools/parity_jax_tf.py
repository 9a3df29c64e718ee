"""Print how closely cecheck's JAX and TensorFlow emulations follow the real frameworks.

For each framework installed (jax with optax; tensorflow with keras), family, dtype and path:
the rows compared, the rows whose finiteness (finite, NaN, +inf, -inf) differs, and the
largest difference on rows finite in both, in units of ``eps · max(1, |L|)`` (``eps`` the
dtype's machine epsilon, ``L`` the framework's loss). The rows are the random and
adversarial blocks of tests/jaxtf_cases.py. optax's integer-label loss ends with
``(log Σ + max) - z[y]``, rounded at the scale of ``max``: its float32/float64 errors in this
unit reach 16 to 64 on confident rows with large logits, within 4 ``eps · |lse|``
(tests/test_jax_paths.py).

    PYTHONPATH=$PWD python tools/parity_jax_tf.py [--rows N] [--seed S] [--jit]

``--jit`` also runs the JAX losses under ``jax.jit`` (XLA fuses float16/bfloat16 chains in
float32 there; the emulations are the eager computation).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import jaxtf_cases as cases

from cecheck.precision import get


def frameworks(jit: bool) -> list[tuple[str, Any, Any]]:
    """(label, emulation module, real call) of each framework that imports."""
    found: list[tuple[str, Any, Any]] = []
    try:
        import jax
        import optax

        jax.config.update("jax_enable_x64", True)
        from cecheck.frameworks import jax_paths

        found.append(("jax", jax_paths, lambda *a: cases.jax_loss(jax, optax, *a)))
        if jit:
            found.append(
                ("jax (jit)", jax_paths, lambda *a: cases.jax_loss(jax, optax, *a, jit=True))
            )
    except ImportError as e:
        print(f"jax: not installed ({e})", file=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import keras
        import tensorflow as tf

        from cecheck.frameworks import tf_paths

        found.append(("tensorflow", tf_paths, lambda *a: cases.tf_loss(tf, keras, *a)))
    except ImportError as e:
        print(f"tensorflow: not installed ({e})", file=sys.stderr)
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5000, help="rows per family (default 5000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jit", action="store_true", help="also JAX under jax.jit")
    args = ap.parse_args()
    header = ("framework", "family", "dtype", "path", "rows", "finiteness", "max err")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for label, module, real in frameworks(args.jit):
        for family in cases.FAMILIES:
            blocks = cases.blocks(family, args.rows, args.seed)
            for dtype in cases.DTYPES:
                for path in cases.PATHS:
                    emulate = module.PATHS[(path, family)]
                    ours = [emulate(z, t, get(dtype)).loss for z, t in blocks]
                    theirs = [real(path, family, z, t, dtype) for z, t in blocks]
                    c = cases.compare(np.concatenate(ours), np.concatenate(theirs), dtype)
                    row = (label, family, dtype, path, c.rows, c.finiteness_mismatches)
                    cells = [str(v) for v in row] + [f"{c.max_error:.3g}"]
                    print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
