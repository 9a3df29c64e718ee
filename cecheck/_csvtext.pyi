# The CSV report's lines (cecheck/_csvtext.c): columns are C-contiguous 1-d float64 or int64
# numpy arrays, tuples of int64 arrays (an index), or lists of str.
from collections.abc import Sequence
from typing import Any

def lines(columns: Sequence[Any]) -> str: ...
