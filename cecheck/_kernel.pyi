# The C kernels of cecheck.fast (cecheck/_kernel.c); buffers are C-contiguous numpy arrays.
from typing import Any

def multiclass_index(
    z: Any, itemsize: int, n: int, c: int, y: Any, loss: Any, bits: Any, lo: int, hi: int
) -> None: ...
def sigmoid(
    z: Any, itemsize: int, n: int, c: int, t: Any, loss: Any, bits: Any, lo: int, hi: int
) -> None: ...
def apply(name: str, x: Any, out: Any) -> None: ...
