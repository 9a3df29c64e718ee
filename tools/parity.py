"""Print how closely cecheck's PyTorch emulations follow installed torch, row by row.

    PYTHONPATH=$PWD python tools/parity.py [--rows 600] [--seed 0]

For every family (multiclass index, one-hot/soft, binary, multilabel), dtype and path
(``naive``: softmax-then-log, ``stable``: the fused loss), it runs the random and adversarial
rows of tests/torch_cases.py (huge margins, ties, tiny losses, -inf masks, ignored rows, label
smoothing, class weights, pos_weight) through torch (``reduction="none"``) and through
:mod:`cecheck.frameworks.torch_naive` / :mod:`~cecheck.frameworks.torch_fused`, and prints: the
number of rows, the rows whose finiteness differs (NaN, +inf, -inf or finite) and the largest
difference on the rows finite in both, in units of ``eps · max(1, |L|)`` (``L`` torch's loss).
Exit status 1 if any finiteness differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch
import torch_cases as tc

from cecheck.frameworks import torch_common


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=600, help="rows per block of cases")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    capability = torch.backends.cpu.get_cpu_capability()
    torch_common.VECTOR_BITS = 512 if capability == "AVX512" else 256
    print(
        f"torch {torch.__version__}, CPU capability {capability}, "
        f"{torch.get_num_threads()} threads; cecheck sums with "
        f"{torch_common.VECTOR_BITS}-bit vectors"
    )
    print(f"{'family':<11}{'dtype':<10}{'path':<8}{'rows':>7}{'finiteness':>12}{'max err':>9}")
    bad = 0
    for family in tc.FAMILIES:
        for dtype in tc.DTYPES:
            for path in tc.PATHS:
                rows = mismatches = 0
                worst = 0.0
                for case in tc.cases(family, n=args.rows, seed=args.seed):
                    expected = tc.torch_loss(torch, path, case, dtype)
                    got = tc.ours(path, case, dtype).loss
                    m, err = tc.compare(expected, got, dtype)
                    rows += len(expected)
                    mismatches += m
                    worst = max(worst, err)
                bad += mismatches
                print(f"{family:<11}{dtype:<10}{path:<8}{rows:>7}{mismatches:>12}{worst:>9.3g}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
