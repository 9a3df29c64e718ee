"""Measure the default tolerance of ``diverged``: ``|L - L64| / (eps (1 + |L64|))``.

``python tests/bench/tolerance_factor.py`` prints, per task, path and dtype, the largest
ratio of a loss's difference from the same path in float64 to the dtype's epsilon times
``1 + |L64|``, over N(0, 3) logits and ``sample_data/benign_*``. The default tolerance,
``cecheck.settings.TOLERANCE_EPS`` eps, must clear every multiclass value (README,
"Tolerances"); the float32_diverges sample's ratios show it still diverges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cecheck import losses
from cecheck import precision as prec

DATA = Path(__file__).resolve().parents[2] / "sample_data"
NARROW = ("float16", "bfloat16", "float32")


def ratios(kind: str, z: np.ndarray, t: np.ndarray) -> dict[str, float]:
    """The largest ratio per ``<path>_<dtype>`` over the rows finite in both dtypes."""
    naive, stable, _ = losses.PATHS[kind]
    out = {}
    for path, fn in (("naive", naive), ("stable", stable)):
        l64 = fn(z, t, prec.get("float64")).loss
        for d in NARROW:
            p = prec.get(d)
            loss = fn(z, t, p).loss
            ok = np.isfinite(loss) & np.isfinite(l64)
            r = np.abs(loss - l64)[ok] / (p.eps * (1 + np.abs(l64[ok])))
            out[f"{path}_{d}"] = float(r.max(initial=0.0))
    return out


def main() -> None:
    rng = np.random.default_rng(1)
    rows: list[tuple[str, dict[str, float]]] = []
    z, y = np.load(DATA / "benign_logits.npy"), np.load(DATA / "benign_labels.npy")
    rows.append(("benign sample", ratios("index", z, y)))
    for c in (10, 100, 1000):
        worst: dict[str, float] = {}
        for _ in range(5):
            n = 2_000_000 // c
            found = ratios("index", rng.normal(0, 3, (n, c)), rng.integers(0, c, n))
            worst = {k: max(v, worst.get(k, 0.0)) for k, v in found.items()}
        rows.append((f"N(0, 3), C = {c}", worst))
    soft = rng.dirichlet(np.ones(10), 20_000)
    rows.append(("N(0, 3) soft, C = 10", ratios("soft", rng.normal(0, 3, (20_000, 10)), soft)))
    t = rng.integers(0, 2, 200_000).astype(np.float64)
    rows.append(("N(0, 3) binary", ratios("binary", rng.normal(0, 3, 200_000), t)))
    z, y = (
        np.load(DATA / "float32_diverges_logits.npy"),
        np.load(DATA / "float32_diverges_labels.npy"),
    )
    rows.append(("float32_diverges sample", ratios("index", z, y)))
    names = list(rows[0][1])
    print(f"{'data':26}" + "".join(f"{n:>17}" for n in names))
    for label, r in rows:
        print(f"{label:26}" + "".join(f"{r[n]:17.1f}" for n in names))


if __name__ == "__main__":
    main()
