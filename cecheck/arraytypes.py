"""The array types of cecheck's signatures, in one place: numpy arrays of any shape.

``Array`` is any dtype; the others say what a function takes or gives where it matters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]
FloatArray = npt.NDArray[np.floating[Any]]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.integer[Any]]
