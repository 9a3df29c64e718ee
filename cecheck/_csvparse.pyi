# The C parser of plain CSV pieces of cecheck.inputs (cecheck/_csvparse.c); out is a
# C-contiguous float64 (rows, cols) numpy array; returns rows, or -1 outside its grammar.
from typing import Any

def parse(text: Any, sep: int, out: Any) -> int: ...
