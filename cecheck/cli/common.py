"""What the commands do around the library: open the inputs, build the engine's settings, show
progress, guard and open the output, and turn a library error into one line.

Imported by a command when it runs (not when the options are defined): it loads the library.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

import click

from cecheck import families, inputs, pipeline
from cecheck import frameworks as fw
from cecheck.atomicfile import atomic_text_file
from cecheck.choices import DEFAULT_FRAMEWORK, DEFAULT_MIN_HEADROOM
from cecheck.errors import InputError
from cecheck.settings import Settings, check_weighting, default_dtypes

if TYPE_CHECKING:
    from rich.console import Console

# Inputs with more logits than this get a progress bar (when stderr is a terminal).
PROGRESS_ELEMENTS = 1 << 24
# How the command line names the weighting options in its errors.
WEIGHTING_FLAGS = "--label-smoothing and --class-weights"


class InputFailure(click.ClickException):
    """An input or settings problem: ``Error: <sentence>`` on stderr, exit code 2."""

    exit_code = 2


def one_line(e: Exception) -> str:
    """The message of ``e`` on one line (its type's name if it has none)."""
    return " ".join(str(e).split()) or type(e).__name__


def open_source(
    logits: str,
    labels: str | None,
    *,
    task: str,
    label_column: str | int,
    logits_key: str,
    labels_key: str,
    logits_column: str | None = None,
) -> inputs.Source:
    """The inputs as a Source; an unreadable input becomes an exit-2 :class:`InputFailure`."""
    try:
        return inputs.open_inputs(
            logits,
            labels,
            task=task,
            label_column=label_column,
            logits_key=logits_key,
            labels_key=labels_key,
            logits_column=logits_column,
        )
    except (InputError, ValueError) as e:
        raise InputFailure(one_line(e)) from None
    except OSError as e:  # such as a file the user may not read
        name = e.filename if e.filename is not None else logits
        denied = e.errno in (errno.EACCES, errno.EPERM)
        what = "check its permissions" if denied else "check the file"
        raise InputFailure(f"cannot read {name} ({e.strerror or e}): {what}") from None


def with_recorded(
    ctx: click.Context, logits: str, labels: str | None, quiet: bool, **options: Any
) -> dict[str, Any]:
    """``options`` (a command's parameters by name) with the values a loss dump records
    (:func:`cecheck.inputs.recorded_settings`) in place of those the command line leaves at
    their defaults: an explicit option overrides the file. ``options`` unchanged for two
    files, shards, a URL or a file that records none; a malformed record is an exit-2
    :class:`InputFailure`. What the file records but cecheck does not apply is a warning on
    stderr."""
    recorded = _recorded_options(ctx, logits, labels, quiet)
    return {k: recorded.get(k, v) for k, v in options.items()}


def _recorded_options(
    ctx: click.Context, logits: str, labels: str | None, quiet: bool
) -> dict[str, Any]:
    """The options a loss dump records that the command line leaves at their defaults."""
    from cecheck.inputs.shards import is_sharded
    from cecheck.inputs.urls import is_url

    if labels is not None or is_sharded(logits) or is_url(logits):  # a dump is one local file
        return {}
    try:
        recorded = inputs.recorded_settings(logits)
    except InputError as e:
        raise InputFailure(one_line(e)) from None
    except OSError:  # open_source says what is wrong with the file
        return {}
    if recorded is None:
        return {}
    for note in recorded.notes:
        say(f"warning: {note}", quiet)
    default = click.core.ParameterSource.DEFAULT
    return {k: v for k, v in recorded.options().items() if ctx.get_parameter_source(k) == default}


def engine_settings(
    source: inputs.Source,
    *,
    dtypes: tuple[str, ...] | None,
    ignore_index: int,
    rtol: float | None,
    atol: float | None,
    top: int,
    framework: str = DEFAULT_FRAMEWORK,
    inputs_kind: str = "logits",
    batch_size: int | None = None,
    label_smoothing: float = 0.0,
    class_weights: str | None = None,
    min_headroom: float = DEFAULT_MIN_HEADROOM,
) -> Settings:
    """The engine's settings from the options, checked against ``source``: the one place the
    command line builds them. A rejected value or combination becomes an exit-2
    :class:`InputFailure`. ``dtypes`` None: :func:`~cecheck.settings.default_dtypes`."""
    try:
        wanted = label_smoothing > 0 or class_weights is not None
        applies = families.of(source).weighting  # before a weights file is read
        check_weighting(wanted, source.task, applies, options=WEIGHTING_FLAGS, noun="logits")
        weights = None
        if class_weights is not None:
            weights = tuple(fw.parse_class_weights(class_weights, source.n_classes))
        return Settings(
            dtypes if dtypes is not None else default_dtypes(source.logits_dtype),
            ignore_index,
            rtol,
            atol,
            top,
            inputs=inputs_kind,
            batch_size=batch_size,
            label_smoothing=label_smoothing,
            class_weights=weights,
            framework=framework,
            min_headroom=min_headroom,
        )
    except ValueError as e:
        raise InputFailure(one_line(e)) from None


def plan(source: inputs.Source, settings: Settings) -> tuple[pipeline.Plan, inputs.Source]:
    """The run's plan, with ``source`` checked against ``settings`` (probabilities...); a
    rejected input, or a kernel this CPU cannot run, becomes an exit-2 :class:`InputFailure`."""
    try:
        return pipeline.plan(source, settings, options=WEIGHTING_FLAGS, noun="logits")
    except (InputError, ValueError) as e:
        raise InputFailure(one_line(e)) from None


@contextlib.contextmanager
def progress_bar(source: inputs.Source, quiet: bool) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar on stderr for a big input when stderr is a terminal; else None.

    Yields the callback the engine calls with the number of rows done.
    """
    big = source.n_rows * max(1, source.n_classes) > PROGRESS_ELEMENTS
    if quiet or not big or not _may_be_terminal(sys.stderr):
        yield None
        return
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("computing losses", total=source.n_rows)
        yield lambda done: bar.update(task, completed=done)


def _may_be_terminal(stream: TextIO) -> bool:
    """False where rich's Console would find ``stream`` is no terminal, told without importing
    rich (18 ms of start-up): not a tty, and neither of the variables that make rich treat a
    stream as one (``FORCE_COLOR``, ``TTY_COMPATIBLE``) set. True: rich decides."""
    if "FORCE_COLOR" in os.environ or "TTY_COMPATIBLE" in os.environ:
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def check_output(output: str | None, fmt: str, *read: str | None) -> None:
    """Refuse, before anything is read or written, an ``-o`` that is a directory, one of the
    files the command reads (``read``: inputs, class-weights file; the same file by any name),
    or an existing file the user may not write."""
    if output is None or output == "-":
        return
    if os.path.isdir(output):
        example = os.path.join(output, f"report.{'txt' if fmt == 'table' else fmt}")
        raise InputFailure(f"-o {output} is a directory: give a file name, such as {example}")
    files = [f for path in read if path is not None for f in _files_read(path)]
    if any(_same_file(output, path) for path in files):
        raise InputFailure(f"-o {output} is one of the inputs")
    if os.path.exists(output) and not os.access(output, os.W_OK):
        raise InputFailure(f"cannot write {output} (Permission denied): check its permissions")


def _files_read(name: str) -> list[str]:
    """The local files an input names: itself, or its shards (and an @list's list)."""
    from cecheck.inputs.shards import expand, is_sharded
    from cecheck.inputs.urls import is_url

    if is_url(name) or not is_sharded(name):
        return [name]
    try:
        shards = expand(name, inputs.FORMATS)
    except (InputError, OSError):  # opening the input says what is wrong with it
        shards = []
    return [name.removeprefix("@"), *shards] if name.startswith("@") else shards


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)  # symlinks, hard links, ./a and a
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


@contextlib.contextmanager
def output_stream(path: str | None) -> Iterator[TextIO]:
    """``-o FILE``, written whole or not at all (:func:`atomic_text_file`), or stdout."""
    if path is None or path == "-":
        yield sys.stdout
        return
    with contextlib.ExitStack() as stack:
        try:
            f = stack.enter_context(atomic_text_file(path))
        except OSError as e:
            raise InputFailure(
                f"cannot write {path} ({e.strerror or e}): check that its directory exists "
                "and that you may write there"
            ) from None
        yield f


def report_console(out: TextIO) -> Console:
    """A rich Console writing to ``out``: colour only on a terminal (and not with NO_COLOR)."""
    from cecheck.cli.console import ReportConsole  # rich: only for a report that prints with it

    if out is sys.stdout:
        return ReportConsole(highlight=False)
    return ReportConsole(file=out, highlight=False, color_system=None, width=100)


def say(message: str, quiet: bool) -> None:
    """A message for people, on stderr, unless --quiet."""
    if not quiet:
        click.echo(message, err=True)
