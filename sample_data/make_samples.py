"""Regenerate the sample inputs in this folder: ``python sample_data/make_samples.py``.

Every file is small (a few KB) and deterministic (seeded), so the README's output and the
tests' golden renderings stay the same from one regeneration to the next.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20240607


def tf_example(out: Path) -> None:
    """The classic TensorFlow example: logits [1000, 2000, 2500], target class 1.

    The stable loss is 2500 - 2000 = 500; the naive softmax overflows: exp(1000) is inf in
    float32 and float64, and inf / inf = NaN.
    """
    np.save(out / "tf_example_logits.npy", np.array([[1000.0, 2000.0, 2500.0]], np.float32))
    np.save(out / "tf_example_labels.npy", np.array([1], np.int64))


def binary_sweep(out: Path) -> None:
    """One binary logit per row from -1000 to 1000, each with target 0 and 1, in one CSV.

    Past |z| = 88.72 the naive sigmoid saturates or exp(-z) overflows in float32 (past 709.78
    in float64) and log(0) turns the naive loss into inf or NaN.
    """
    mags = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    logits = sorted({s * m for m in mags for s in (-1, 1)})
    lines = ["logit,label"]
    lines += [f"{z},{t}" for z in logits for t in (0, 1)]
    (out / "binary_sweep.csv").write_text("\n".join(lines) + "\n")


def sequence(out: Path, rng: np.random.Generator) -> None:
    """A (batch, seq, vocab) = (4, 12, 16) language-model output in one .npz.

    The ends of sequences are padding (label -100, ignored); one logit explodes to 120,
    beyond float32's largest finite exp argument (88.72), so the naive float32 path fails
    on that position while float64 and the stable path do not.
    """
    batch, seq, vocab = 4, 12, 16
    logits = (2.0 * rng.standard_normal((batch, seq, vocab))).astype(np.float32)
    labels = rng.integers(0, vocab, size=(batch, seq)).astype(np.int64)
    lengths = [12, 9, 7, 10]
    for b, n in enumerate(lengths):
        labels[b, n:] = -100
    labels[2, 3] = 5
    logits[2, 3, 11] = 120.0  # the exploding logit; the target is class 5, not 11
    write_npz(out / "sequence.npz", logits=logits, labels=labels)


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """As ``numpy.savez``, but with a fixed timestamp in the zip, so the bytes are reproducible."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for key, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
            zf.writestr(
                zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue()
            )


def benign(out: Path, rng: np.random.Generator) -> None:
    """Ordinary logits of a 10-class classifier, 64 rows: nothing is flagged."""
    logits = rng.standard_normal((64, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=64).astype(np.int64)
    np.save(out / "benign_logits.npy", logits)
    np.save(out / "benign_labels.npy", labels)


def float32_diverges(out: Path, rng: np.random.Generator) -> None:
    """Logits near 20000 stored in float64, 16 rows of 8 classes.

    float32 holds numbers near 20000 only to within 0.001, so the stable float32 loss
    diverges from the float64 one by more than the tolerance; the naive path overflows in
    both dtypes (exp(20000)).
    """
    logits = 20000.0 + 2.0 * rng.standard_normal((16, 8))
    labels = rng.integers(0, 8, size=16).astype(np.int64)
    np.save(out / "float32_diverges_logits.npy", logits)
    np.save(out / "float32_diverges_labels.npy", labels)


def main(out: Path = HERE) -> None:
    rng = np.random.default_rng(SEED)
    tf_example(out)
    binary_sweep(out)
    sequence(out, rng)
    benign(out, rng)
    float32_diverges(out, rng)


if __name__ == "__main__":
    main()
