"""The command line's side of an input of many files: open it, pick how to run its shards
(in this process, in ``--workers`` processes, or on a ``--dask`` cluster), and turn a
failure into one line."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from cecheck import inputs
from cecheck.cli import common
from cecheck.errors import InputError
from cecheck.inputs.shards import Shard, is_sharded, open_shards

if TYPE_CHECKING:
    from cecheck.pipeline import Plan
    from cecheck.report import Report
    from cecheck.settings import Settings


@dataclass(frozen=True)
class Sharding:
    """An input's shards, and the reader options every shard is opened with."""

    shards: list[Shard]
    options: dict[str, Any]
    values: int = 0  # the logits in all: how much work (the default --workers)


def open_input(
    logits: str,
    labels: str | None,
    *,
    task: str,
    label_column: str | int,
    logits_key: str,
    labels_key: str,
    logits_column: str | None,
) -> tuple[inputs.Source, Sharding | None]:
    """The input as a Source, and its shards when it names many files (else None)."""
    options: dict[str, Any] = {
        "task": task,
        "label_column": label_column,
        "logits_key": logits_key,
        "labels_key": labels_key,
        "logits_column": logits_column,
    }
    if not (is_sharded(logits) or (labels is not None and is_sharded(labels))):
        return common.open_source(logits, labels, **options), None

    def opener(lg: str, lb: str | None) -> inputs.Source:
        return inputs.open_inputs(lg, lb, **options)

    try:
        source, shards = open_shards(logits, labels, inputs.FORMATS, opener)
        return source, Sharding(shards, options, math.prod(source.logits_shape))
    except (InputError, ValueError) as e:
        raise common.InputFailure(common.one_line(e)) from None
    except OSError as e:
        raise common.InputFailure(
            f"cannot read {e.filename or logits} ({e.strerror or e})"
        ) from None


def processes(shards: Sharding | None, workers: int | None, dask: str | None, streams: bool) -> int:
    """How many worker processes run the shards: 1 runs them here, in order (the only way
    for a format that writes every row as it is computed); 0 with ``--dask``."""
    if shards is None:
        if dask is not None or (workers or 1) > 1:
            raise click.UsageError(
                "--workers and --dask run the shards of an input of many files: give a glob "
                "pattern, a directory or an @list (one file is computed on every core already)"
            )
        return 1
    if streams and (dask is not None or (workers or 1) > 1):
        raise click.UsageError(
            "this format writes every row as it is computed, in this process: leave out "
            "--workers and --dask (or use --format json, table or markdown)"
        )
    if dask is not None:
        if workers is not None:
            raise click.UsageError("give --workers or --dask, not both")
        return 0
    if streams:
        return 1
    if workers is not None:
        return workers
    from cecheck import scaleout  # multiprocessing: only for an input of many files

    return scaleout.default_workers(len(shards.shards), shards.values)


def run(
    source: inputs.Source,
    sharding: Sharding,
    settings: Settings,
    plan: Plan,
    how: int,
    dask: str | None,
    progress: Callable[[int], None] | None,
) -> Report:
    """The shards computed apart (``how`` worker processes, or on ``dask``), merged."""
    from cecheck import engine, scaleout

    size = settings.batch_size
    sequence = math.prod(source.lead_shape[1:])  # a batch counts sequences over N-d logits
    unit = "sequences" if len(source.lead_shape) > 1 else "rows"
    straddled = [sh for sh in sharding.shards[:-1] if size and sh.rows % (size * sequence)]
    if straddled:  # the partials' batch means merge only on batch boundaries
        sh = straddled[0]
        raise common.InputFailure(
            f"--batch-size {size}: a batch would straddle {sh.name} ({sh.rows // sequence} "
            f"{unit}, not a multiple of it) and the next shard; run the shards in order with "
            "--workers 1, which forms the batches across shards"
        )
    choices = {k: v for k, v in sharding.options.items() if k != "task"}
    opening = scaleout.Opening(source.task, source.label_form, source.n_classes, **choices)
    work = list(scaleout.tasks(sharding.shards, source.lead_shape, settings, opening))
    try:
        if dask is not None:
            partial = scaleout.run_dask(work, dask, progress)
        else:
            partial = scaleout.run_local(work, how, progress)
    except scaleout.ShardFailed as e:
        raise common.InputFailure(str(e)) from None
    except (ImportError, OSError) as e:
        raise common.InputFailure(common.one_line(e)) from None
    return partial.report(source, lambda: engine.frames(source, settings, plan=plan))
