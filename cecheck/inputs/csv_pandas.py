"""CSV/TSV text read by pandas' C parser: the reader of every file pyarrow does not take.

pandas reads where pyarrow is not installed, and any file (or the rest of a file) that is
not plain numbers in rows of one length: rows shorter than the first (their missing cells
read as NaN), a cell pyarrow cannot convert, or a cell it converts where pandas would not
("NAN", "+nan"). Its values and its one-line errors are the reference for both readers:
every cell a float64, booleans as 0/1, a cell among pandas' missing values as NaN, any other
text an InputError naming its line and column. pandas is imported only here.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from cecheck.errors import InputError
from cecheck.inputs.files import reason
from cecheck.inputs.source import Columns


class PandasCsv:
    """One CSV/TSV file as pandas reads it, with the header row or without."""

    def __init__(self, path: str, sep: str, header: bool, columns: Sequence[str]) -> None:
        self.path, self.sep, self.columns = path, sep, columns
        self.first_line = 2 if header else 1
        self.header: dict[str, Any] = (
            {"header": 0} if header else {"header": None, "names": list(range(len(columns)))}
        )

    def _read(self, **kw: Any) -> Any:
        import pandas as pd

        return pd.read_csv(self.path, sep=self.sep, index_col=False, **self.header, **kw)

    def n_rows(self) -> int:
        """The data rows, as the parser counts them (quotes, blank lines and all)."""
        with errors(self.path), strict():
            return sum(len(c) for c in self._read(usecols=[0], dtype=str, chunksize=1 << 16))

    def blocks(self, rows: int, done: int, used: set[int]) -> Iterator[Columns]:
        """Blocks of ``rows`` rows as float64 columns, the first ``done`` rows skipped; only
        the ``used`` columns are read as numbers (NaN in the place of the others)."""
        line = self.first_line + done
        # _read() runs inside errors(): the items of a with statement are entered in order
        with errors(self.path), self._read(chunksize=rows) as reader:
            while (frame := _next_frame(reader)) is not None:
                if done:  # skip the rows another reader delivered
                    skip = min(done, len(frame))
                    frame, done = frame.iloc[skip:], done - skip
                    if not len(frame):
                        continue
                yield _float_columns(frame, self.path, self.columns, line, used)
                line += len(frame)


@contextlib.contextmanager
def strict() -> Iterator[None]:
    """Make pandas' ParserWarning (a row longer than the header: data dropped) an error."""
    from pandas.errors import ParserWarning

    with warnings.catch_warnings():  # only catches: cecheck never emits Python warnings
        warnings.simplefilter("error", ParserWarning)
        yield


def _next_frame(reader: Any) -> Any:
    """The next chunk of a pandas reader, or None; strict only around the read itself."""
    with strict():
        return next(reader, None)


@contextlib.contextmanager
def errors(path: str) -> Iterator[None]:
    """Turn pandas' parse errors into one InputError naming the file."""
    from pandas.errors import ParserWarning

    try:
        yield
    except ParserWarning:
        raise InputError(f"{path} has a row with more cells than the header: fix it") from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text: export it as a UTF-8 CSV") from None
    except (ValueError, OSError, IndexError) as e:
        text = reason(e)
        if "No columns to parse" in text:
            raise InputError(f"{path} holds no data: write the rows to it again") from None
        raise InputError(f"{path} cannot be parsed ({text}): fix the file") from None


def _plain_numbers(cells: Any) -> np.ndarray | None:
    """A parsed column as stored if pandas read it as numbers (floats or integers), else None."""
    if isinstance(cells.dtype, np.dtype) and cells.dtype.kind in "iuf":
        return np.asarray(cells.to_numpy())
    return None


def _float_columns(
    frame: Any, path: str, columns: Sequence[str], first_line: int, used: set[int]
) -> Columns:
    """The columns of a parsed chunk as float64, or an InputError at the first non-number.

    A column not ``used`` (pandas' index, left out) is not read: NaN in its place.
    """
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    if frame.shape[1] != len(columns):
        raise InputError(f"{path} line {first_line}: the rows have a varying number of cells")
    out = []
    for j in range(frame.shape[1]):
        if j not in used:
            out.append(np.broadcast_to(np.nan, len(frame)))
            continue
        cells = frame.iloc[:, j]
        numbers = _plain_numbers(cells)
        if numbers is not None:
            out.append(numbers.astype(np.float64, copy=False))
            continue
        if not (is_numeric_dtype(cells) or is_bool_dtype(cells)):
            numbers = pd.to_numeric(cells, errors="coerce")
            bad = (numbers.isna() & cells.notna()).to_numpy()
            if bad.any():
                i = int(np.argmax(bad))
                raise InputError(
                    f"{path} line {first_line + i}, {columns[j]}: {cells.iloc[i]!r} is not a "
                    "number: fix or remove that cell"
                )
            cells = numbers
        out.append(cells.to_numpy(dtype=np.float64, na_value=np.nan))
    return out
