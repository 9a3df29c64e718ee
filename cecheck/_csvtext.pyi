# The CSV report's lines (cecheck/_csvtext.c): columns are C-contiguous 1-d float64 or int64
# numpy arrays, tuples of int64 arrays (an index), or lists of str. And the line ends of a plain
# CSV text (cecheck/inputs/csv_arrow.py): ``text`` is any bytes-like object.
from collections.abc import Sequence
from typing import Any

def lines(columns: Sequence[Any]) -> str: ...
def plain_lines(text: Any, tsv: bool, last: int) -> tuple[int, int]: ...
