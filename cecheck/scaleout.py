"""Shards computed apart and merged: in local worker processes, or as tasks on a Dask cluster.

Each shard is one task (:class:`ShardTask`, small and picklable: the shard's files, its place
in the input, the settings): :func:`run_shard` opens the shard where it runs (a path on a
shared filesystem, or an fsspec URL), computes it with the engine and returns its
:class:`~cecheck.partial.Partial`, whose size does not depend on the shard's rows. The
caller merges the partials in shard order as they arrive (:class:`InOrder`: only the
partials that arrived ahead of an earlier one wait), so the merged report is the report of
the concatenated input, bit for bit.

A shard that fails is named (:class:`ShardFailed`): no report is made from the others. Local
workers are processes of ``forkserver`` (``spawn`` where there is none), each running the
kernel on its share of the cores (``CECHECK_THREADS``). Dask (:func:`run_dask`, the
``cecheck[dask]`` extra) is imported only there; it retries a failed task
(:data:`DASK_RETRIES`) before the shard is reported.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any

from cecheck import engine, pipeline
from cecheck.errors import InputError
from cecheck.inputs import open_inputs, urls
from cecheck.inputs.shards import Shard, shard_view
from cecheck.partial import Partial
from cecheck.settings import Settings

DASK_RETRIES = 2  # a failed shard task runs at most 1 + this many times
DASK_INSTALL = "pip install 'cecheck[dask]'"
# How often the local client looks for a worker process that ended unseen: one killed while
# it sends its result leaves the pool's reader waiting for the rest of the message, forever
# (CPython's ProcessPoolExecutor), so the pool never reports it broken.
WATCH_SECONDS = 1.0


class ShardFailed(Exception):
    """A shard whose computation failed: its name and why, in one sentence."""

    def __init__(self, shard: str, why: str) -> None:
        super().__init__(shard, why)
        self.shard, self.why = shard, why

    def __str__(self) -> str:
        return f"shard {self.shard} failed ({self.why}): no report, as it would miss its rows"


@dataclass(frozen=True)
class Opening:
    """How every shard is opened: the options of :func:`cecheck.inputs.open_inputs`, and what
    the first shard was found to hold (each shard is checked against it)."""

    task: str
    label_form: str
    n_classes: int
    label_column: str | int = "label"
    logits_key: str = "logits"
    labels_key: str = "labels"
    logits_column: str | None = None


@dataclass(frozen=True)
class ShardTask:
    """One shard's work, as sent to a worker."""

    shard: Shard
    lead_shape: tuple[int, ...]  # the whole input's
    settings: Settings
    opening: Opening


def run_shard(task: ShardTask) -> Partial:
    """Open and compute one shard; its partial result. Any failure is a :class:`ShardFailed`."""
    shard, o = task.shard, task.opening
    try:
        src = open_inputs(
            shard.logits,
            shard.labels,
            task=o.task,
            label_column=o.label_column,
            logits_key=o.logits_key,
            labels_key=o.labels_key,
            logits_column=o.logits_column,
        )
        if (src.label_form, src.n_classes) != (o.label_form, o.n_classes):
            raise InputError(
                f"it holds {src.label_form} labels over {src.n_classes} classes, not "
                f"{o.label_form} over {o.n_classes}: was it changed?"
            )
        view = shard_view(src, shard, task.lead_shape)
        plan, view = pipeline.plan(view, task.settings)
        partial = engine.accumulate(view, task.settings, plan)
    except ShardFailed:
        raise
    except Exception as e:  # named, whatever it is: the client says which shard failed
        raise ShardFailed(shard.name, " ".join(str(e).split()) or type(e).__name__) from None
    finally:
        for name in {shard.logits, shard.labels} - {None}:
            urls.release(str(name))
    partial.shards = 1
    return partial


class InOrder:
    """Merge partials in shard order as they arrive: a partial waits only for the earlier
    shards still running, so memory stays bounded by the shards in flight."""

    def __init__(self) -> None:
        self.merged: Partial | None = None
        self.next = 0  # the first shard not merged yet
        self.waiting: dict[int, Partial] = {}

    def add(self, i: int, partial: Partial) -> None:
        self.waiting[i] = partial
        while self.next in self.waiting:
            p = self.waiting.pop(self.next)
            self.merged = p if self.merged is None else self.merged.merge(p)
            self.next += 1

    def result(self) -> Partial:
        assert self.merged is not None
        assert not self.waiting
        return self.merged


def tasks(
    shards: list[Shard], lead_shape: tuple[int, ...], s: Settings, opening: Opening
) -> Iterator[ShardTask]:
    return (ShardTask(shard, lead_shape, s, opening) for shard in shards)


def run_local(
    work: list[ShardTask], workers: int, progress: Callable[[int], None] | None = None
) -> Partial:
    """Every shard in ``workers`` processes (at most twice as many shards in flight)."""
    threads = max(1, _cores() // workers)  # the kernel's threads in each worker
    context: BaseContext = multiprocessing.get_context("spawn")
    if "forkserver" in multiprocessing.get_all_start_methods():
        server = multiprocessing.get_context("forkserver")
        server.set_forkserver_preload([__name__])  # imported once, before the workers fork
        context = server
    merged, done = InOrder(), 0
    pids = context.Array("q", max(1, len(work)), lock=False)  # each shard's worker, once begun
    pool = ProcessPoolExecutor(
        workers, context, initializer=_worker_start, initargs=(threads, pids)
    )
    try:
        running: dict[Future[Partial], int] = {}
        queue = iter(enumerate(work))
        while True:
            for i, task in queue:
                running[pool.submit(_run_shard_at, i, task)] = i
                if len(running) >= 2 * workers:
                    break
            if not running:
                break
            finished, _ = wait(running, timeout=WATCH_SECONDS, return_when=FIRST_COMPLETED)
            if not finished:
                _check_workers(pool, running, pids, work)
            for future in finished:
                i = running.pop(future)
                merged.add(i, _result(future, work[i].shard.name))
                done += work[i].shard.rows
                if progress is not None:
                    progress(done)
    except BaseException:  # a failed shard or Ctrl-C: stop every worker now
        _stop(pool)
        raise
    pool.shutdown()
    return merged.result()


def _check_workers(
    pool: ProcessPoolExecutor, running: dict[Future[Partial], int], pids: Any, work: list[ShardTask]
) -> None:
    """A :class:`ShardFailed` if a worker process ended while shards are in flight (the pool
    would report it, but may wait forever: :data:`WATCH_SECONDS`), naming the shard that
    worker was computing (else the first in flight)."""
    ended = [p for p in list(getattr(pool, "_processes", {}).values()) if p.exitcode is not None]
    if not ended:
        return
    begun = {pids[i]: i for f, i in running.items() if not f.done()}
    i = next((begun[p.pid] for p in ended if p.pid in begun), min(running.values()))
    codes = ", ".join(str(p.exitcode) for p in ended)
    raise ShardFailed(work[i].shard.name, f"its worker process ended: exit code {codes}")


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop every worker now; then close this process's end of the pool's result pipe, so
    that a reader left waiting for the rest of a killed worker's message reads its end and
    stops (else this process would wait for it as it exits)."""
    processes = list(getattr(pool, "_processes", {}).values())
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=WATCH_SECONDS)
    writer = getattr(getattr(pool, "_result_queue", None), "_writer", None)
    if writer is not None:
        with contextlib.suppress(OSError):
            writer.close()
    pool.shutdown(wait=False, cancel_futures=True)


def _result(future: Future[Partial], name: str) -> Partial:
    try:
        return future.result()
    except ShardFailed:
        raise
    except Exception as e:  # such as a worker process killed (BrokenProcessPool)
        why = " ".join(str(e).split()) or type(e).__name__
        raise ShardFailed(name, f"its worker process ended: {why}") from None


_pids: Any = None  # a local worker's: each shard's worker process id (run_local's ``pids``)


def _worker_start(threads: int, pids: Any) -> None:
    """A local worker: Ctrl-C is the client's to handle; the kernel on its share of cores."""
    global _pids
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["CECHECK_THREADS"] = str(threads)
    _pids = pids


def _run_shard_at(i: int, task: ShardTask) -> Partial:
    """:func:`run_shard` in a local worker, shard ``i`` marked as this process's first."""
    _pids[i] = os.getpid()
    return run_shard(task)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# One process keeps about this many cores busy: the kernel's threads compute a chunk while
# its main thread diagnoses the one before (numpy, one core), about half of a chunk's time.
PROCESS_CORES = 2
# Below this many logit values (1 GB of float32: about a second in one process here), the
# workers' start-up (a forkserver importing cecheck, then the workers: 0.7 s) eats the gain.
WORKER_VALUES = 1 << 28


def default_workers(shards: int, values: int) -> int:
    """``--workers`` by default: one per :data:`PROCESS_CORES` cores, no more than the
    shards; 1 (in this process) on fewer than twice that many cores, or for an input of
    fewer than :data:`WORKER_VALUES` logits, where processes have nothing to win."""
    if values < WORKER_VALUES:
        return 1
    return max(1, min(_cores() // PROCESS_CORES, shards))


def run_dask(
    work: list[ShardTask], address: str, progress: Callable[[int], None] | None = None
) -> Partial:
    """Every shard as a task on the Dask cluster at ``address`` (its scheduler), merged here.

    An ImportError without dask.distributed (``cecheck[dask]``); an OSError (one sentence)
    when the scheduler cannot be reached.
    """
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ImportError(f"--dask needs dask.distributed: {DASK_INSTALL}") from None
    try:
        client = Client(address, timeout="20s", set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as e:
        why = " ".join(str(e).split()) or type(e).__name__
        raise OSError(f"cannot reach the Dask scheduler at {address} ({why})") from None
    merged, done = InOrder(), 0
    with client:
        futures = {
            client.submit(run_shard, t, retries=DASK_RETRIES, pure=False): i
            for i, t in enumerate(work)
        }
        try:
            for future in as_completed(futures, loop=client.loop):  # type: ignore[no-untyped-call]
                i = futures[future]
                merged.add(i, _dask_result(future, work[i].shard.name))
                done += work[i].shard.rows
                if progress is not None:
                    progress(done)
        except BaseException:
            client.cancel(list(futures))  # type: ignore[no-untyped-call]
            raise
    return merged.result()


def _dask_result(future: object, name: str) -> Partial:
    try:
        partial: Partial = future.result()  # type: ignore[attr-defined]
    except ShardFailed:
        raise
    except Exception as e:  # such as KilledWorker: the task's workers died
        why = " ".join(str(e).split()) or type(e).__name__
        raise ShardFailed(name, f"{type(e).__name__}: {why}") from None
    return partial
