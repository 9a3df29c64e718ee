# The C kernel of cecheck.fast (cecheck/_kernel.c); buffers are C-contiguous numpy arrays.
from typing import Any

def multiclass_index(
    z: Any, itemsize: int, n: int, c: int, y: Any, loss: Any, bits: Any, lo: int, hi: int
) -> None: ...
def exp(x: Any, out: Any, tame: bool) -> None: ...
