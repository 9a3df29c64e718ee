"""pytest's settings for the whole checkout (tests/conftest.py has the fixtures).

``--doctest-modules`` imports every module of the package; the two that import torch at the
top (``cecheck.torch`` and ``cecheck.dump``, the training-time wrapper), and the benchmark of
that wrapper, are left out when torch is not installed, as their tests then skip with a reason.
"""

import importlib.util

collect_ignore = (
    []
    if importlib.util.find_spec("torch")
    else ["cecheck/torch.py", "cecheck/dump.py", "tests/bench/watch_overhead.py"]
)
