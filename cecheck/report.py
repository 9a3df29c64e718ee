"""The Report: plain data about one comparison, and its JSON and CSV forms.

The rendering lives in :mod:`cecheck.output`; the exit-code policy lives here, on the
Report, so the library and the CLI agree on it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from cecheck import families
from cecheck import frameworks as fw
from cecheck._version import __version__
from cecheck.choices import FAIL_ON, FRAMEWORK_MODULES, ROW_CONDITIONS
from cecheck.diagnose import NOT_FLAGGED, SEVERITY_NAMES, severity_of

if TYPE_CHECKING:
    import pandas as pd

    from cecheck.frameworks import BatchSummary
    from cecheck.headroom import Headroom
    from cecheck.inputs import Source
    from cecheck.settings import Settings

SCHEMA_VERSION = 2


@dataclass(frozen=True)
class PathSummary:
    """Totals of one path in one dtype over the scored rows (not ignored, label in range)."""

    path: str  # naive, stable or reference
    dtype: str
    rows: int
    finite: int
    nan: int
    inf: int
    mean: float  # of the finite losses
    worst_rel_error: float | None  # against the reference; None for the reference itself
    bits_correct: float | None  # -log2(worst_rel_error), clipped to the dtype's bits

    @property
    def column(self) -> str:
        return "reference" if self.path == "reference" else f"{self.path}_{self.dtype}"


@dataclass(frozen=True)
class RowRecord:
    """One flagged row as the report shows it."""

    row: int  # flat row number
    index: tuple[int, ...]  # the row's index over the leading axes of N-d logits
    label: object
    max_logit: float
    values: dict[str, float]  # loss column -> value; "reference" included
    flags: list[str]
    causes: list[str]
    severity: int  # 0 input .. 5 inaccurate
    error: float  # largest relative error of a flagged value (inf for non-finite)
    rank: int  # the row's order (cecheck.diagnose.Diagnosis.rank): severity, then place
    shard: str | None = None  # an input of many files: the row's shard, and its row there
    shard_row: int | None = None
    row_sum: float | None = None  # a probability row that does not sum to 1: what it sums to


@dataclass
class Report:
    """What a comparison found. Plain data: render with :mod:`cecheck.output` or :meth:`to_dict`."""

    source: Source
    settings: Settings
    rows: int
    scored_rows: int
    summary: list[PathSummary]
    counts: dict[str, int]  # flag -> rows, flags that occurred only
    cause_counts: dict[str, int]
    flagged_rows: int  # rows with at least one problem flag (``ignored`` is not one)
    top: list[RowRecord]  # the worst flagged rows, most serious first
    frames: Callable[[], Iterator[pd.DataFrame]] = field(repr=False)
    batches: BatchSummary | None = None  # PyTorch's batch means, with a batch size only
    # path -> cause -> the rows where that path's flagged values had that cause
    path_causes: dict[str, dict[str, int]] = field(default_factory=dict)
    # how far the logits are from each path's cliff (multiclass index labels; else None)
    headroom: Headroom | None = None
    # an input of many files: the number of shards whose rows are in (None: one input)
    shards: int | None = None

    def __repr__(self) -> str:
        paths = ",".join(self.settings.paths)
        dtypes = ",".join(self.settings.dtypes)
        return (
            f"<cecheck.Report {self.rows} {'row' if self.rows == 1 else 'rows'}, "
            f"{self.flagged_rows} flagged; "
            f"paths {paths}; dtypes {dtypes}>"
        )

    def __str__(self) -> str:
        """The text report, as ``cecheck compare`` prints it to a file (100 columns, no colour)."""
        import io

        from rich.console import Console

        from cecheck.output.tables import print_report

        out = io.StringIO()
        print_report(self, Console(file=out, highlight=False, color_system=None, width=100))
        return out.getvalue()

    def _repr_html_(self) -> str:
        """Jupyter's view: the body of the ``--format html`` page (:mod:`cecheck.output.html`)."""
        from cecheck.output.notebook import notebook_html

        return notebook_html(self)

    def iter_frames(self) -> Iterator[pd.DataFrame]:
        """Every row's results, one DataFrame per chunk, recomputed from the source.

        Memory stays bounded by the chunk size, so this suits inputs of any size.
        """
        return self.frames()

    def to_frame(self) -> pd.DataFrame:
        """Every row's results in one DataFrame (columns ``row``, [``index``], ``label``,
        ``<path>_<dtype>``..., ``reference``, ``flags``, ``causes``)."""
        import pandas as pd

        return pd.concat(list(self.frames()), ignore_index=True)

    def failed(self, fail_on: Iterable[str]) -> list[str]:
        """The ``fail_on`` conditions this report meets, in the order of :data:`FAIL_ON`."""
        wanted = set(fail_on)
        unknown = wanted - set(FAIL_ON)
        if unknown:
            raise ValueError(f"unknown fail-on condition(s): {', '.join(sorted(unknown))}")
        if "any" in wanted:
            wanted |= set(ROW_CONDITIONS)
        met = {condition_of(flag) for flag in self.counts} - {None}
        if self.headroom is not None and self.headroom.below(self.settings.min_headroom):
            met.add("headroom")
        return [c for c in FAIL_ON if c in wanted and c in met]

    def return_code(self, fail_on: Iterable[str] = ()) -> int:
        """The exit code: 0 ran (rows may be flagged); 1 a ``fail_on`` condition was met.

        (2, a usage or input error, never reaches a Report: the CLI returns it.)
        """
        return 1 if self.failed(fail_on) else 0

    def to_dict(self, fail_on: Iterable[str] = ()) -> dict[str, Any]:
        """Strict-JSON-ready data: non-finite floats as "nan", "inf", "-inf"."""
        src, s = self.source, self.settings
        failed = self.failed(fail_on)
        data = {
            "schema_version": SCHEMA_VERSION,
            "cecheck_version": __version__,
            "inputs": {
                "logits": src.logits_name,
                "labels": src.labels_name,
                "logits_shape": [int(n) for n in src.logits_shape],
                "labels_shape": [int(n) for n in src.labels_shape],
                "logits_dtype": src.logits_dtype,
                "label_form": src.label_form,
                "classes": src.n_classes,
                "kind": s.inputs,
                "warnings": list(src.warnings),
            },
            "task": src.task,
            "rows": {
                "total": self.rows,
                "scored": self.scored_rows,
                "ignored": self.counts.get("ignored", 0),
                "flagged": self.flagged_rows,
            },
            "dtypes": list(s.dtypes),
            "settings": {"framework": s.framework, "emulates": framework_title(s.framework)},
            "tolerance": {
                "rtol": s.rtol,
                "atol": s.atol,
                "ignore_index": s.ignore_index,
                "by_dtype": {
                    d: dict(zip(("rtol", "atol"), s.tolerance(d), strict=True))
                    for d in s.dtypes
                    if d != "float64"
                },
            },
            "summary": [
                {
                    "path": p.path,
                    "dtype": p.dtype,
                    "rows": p.rows,
                    "finite": p.finite,
                    "nan": p.nan,
                    "inf": p.inf,
                    "mean": p.mean,
                    "worst_rel_error": p.worst_rel_error,
                    "bits_correct": p.bits_correct,
                }
                for p in self.summary
            ],
            "counts": dict(self.counts),
            "causes": dict(self.cause_counts),
            "path_causes": {path: dict(c) for path, c in self.path_causes.items()},
            "headroom": _headroom(self),
            "flagged": [
                {
                    "row": r.row,
                    "index": list(r.index),
                    "label": r.label,
                    "max_logit": r.max_logit,
                    "losses": {c: v for c, v in r.values.items() if c != "reference"},
                    "reference": r.values["reference"],
                    "flags": r.flags,
                    "causes": r.causes,
                    "severity": SEVERITY_NAMES[r.severity],
                }
                | ({} if r.shard is None else {"shard": r.shard, "shard_row": r.shard_row})
                for r in self.top
            ],
            "failed": failed,
            "exit_code": 1 if failed else 0,
        }
        if self.shards is not None:  # what the merged report covers
            data["shards"] = {"count": self.shards, "rows": self.rows}
        data |= _framework_view(self)
        strict: dict[str, Any] = _strict(data)
        return strict

    def write_json(self, out: TextIO, fail_on: Iterable[str] = ()) -> None:
        """Strict JSON (no NaN or Infinity tokens), floats at full precision."""
        # the whole text first, so that a failure cannot leave half a document behind
        out.write(json.dumps(self.to_dict(fail_on), indent=2, allow_nan=False) + "\n")


def framework_title(name: str) -> str:
    """What a framework's paths emulate: ``PyTorch 2.13``."""
    return FRAMEWORK_MODULES[name][1]


def condition_of(flag: str) -> str | None:
    """The ``--fail-on`` condition a flag belongs to: its severity's name (None for ``ignored``).

    So ``input`` covers ``invalid_probability`` too; ``stable`` covers NaN/inf of the stable
    path and of the probability conventions ``torch``, ``keras`` and ``sklearn`` (the loss a
    framework reports); ``naive`` covers the naive path and ``target_prob_zero``.
    """
    severity = severity_of(flag)
    return None if severity == NOT_FLAGGED else SEVERITY_NAMES[severity]


def row_index(row: int | None, source: Source) -> list[int] | None:
    """A flat row's index over the leading axes of the logits (``[row]`` for ``(N, C)``)."""
    if row is None:
        return None
    import numpy as np

    return [int(i) for i in np.unravel_index(row, source.lead_shape)]


def _headroom(report: Report) -> dict[str, Any] | None:
    """The JSON of :attr:`Report.headroom` (None when it does not cover the input)."""
    h = report.headroom
    if h is None:
        return None
    from cecheck.sigmoid_headroom import SigmoidCliff

    lp = h.log_partition
    return {
        "min_headroom": report.settings.min_headroom,
        "paths": [
            {
                "path": c.path,
                "dtype": c.dtype,
                "factor": c.factor,
                "row": c.row,
                "index": row_index(c.row, report.source),
                "cause": c.cause or None,
                "threshold": None if c.row is None else c.threshold,
                "rows_past": c.rows_past,
                "breaks": c.breaks,
                **({"class": c.klass} if isinstance(c, SigmoidCliff) else {}),
            }
            for c in h.cliffs
        ],
        "log_partition": None
        if lp is None
        else {
            "rows": lp.rows,
            "mean": lp.mean,
            "max": lp.max,
            "max_row": lp.max_row,
            "max_index": row_index(lp.max_row, report.source),
            "z_loss": lp.z_loss,
        },
    }


def _framework_view(report: Report) -> dict[str, Any]:
    """The JSON keys of the framework view, each only when its setting is on (so the default
    report keeps its keys): ``conventions`` for probability input, ``pytorch`` for label
    smoothing and class weights, ``batches`` for a batch size."""
    s = report.settings
    out: dict[str, Any] = {}
    if s.inputs == "probs":
        out["conventions"] = {
            "paths": dict(fw.CONVENTIONS),
            "no_stable_path": fw.NO_STABLE_PATH,
        }
    if s.weighted:
        family = families.get(report.source.task, report.source.label_form)
        out["pytorch"] = {
            "label_smoothing": s.label_smoothing,
            "class_weights": None if s.class_weights is None else list(s.class_weights),
            "notes": fw.smoothing_notes(s.label_smoothing, family.soft_targets),
        }
    if report.batches is not None:
        out["batches"] = report.batches.to_dict()
    return out


def _strict(value: Any) -> Any:
    """Replace non-finite floats by the strings "nan", "inf", "-inf", recursively."""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def write_csv(frames: Iterable[pd.DataFrame], out: TextIO) -> None:
    """Stream per-row frames as CSV, a header once, floats at full precision (round-trip)."""
    for i, frame in enumerate(frames):
        write_csv_frame(frame, out, header=i == 0)


def write_csv_frame(frame: pd.DataFrame, out: TextIO, *, header: bool) -> None:
    """One chunk's frame as CSV lines (the header too if ``header``), as :func:`write_csv`.

    For a caller that receives frames one at a time (``engine.run(on_chunk=...)``).
    """
    frame.to_csv(out, index=False, header=header, float_format="%.17g", na_rep="nan")
