"""The ``cecheck`` command line: thin click commands over the library.

Each command parses its options, opens the inputs (:func:`cecheck.inputs.open_inputs`), runs
the engine once and renders the :class:`~cecheck.report.Report`. The report goes to stdout
(or ``-o FILE``); messages for people (warnings, progress, the closing sentence of a JSON or
CSV run) go to stderr, so machine output stays clean.

A report written with ``-o`` reaches its file only when the run succeeds
(:func:`cecheck.atomicfile.atomic_text_file`); an ``-o`` that names one of the inputs is
refused before anything is read or written.

Exit codes: 0 ran, whatever was flagged; 1 a ``--fail-on`` condition was met; 2 a usage or
input error, said in one line on stderr; 130 interrupted (Ctrl-C, SIGINT), as shells report
it; 141 (128 + SIGPIPE, what a shell reports for a program killed by a closed pipe) stdout
was closed by its reader, as in ``cecheck compare ... | head``, ended without a message.

The input and settings options are decorators (:func:`input_options`,
:func:`settings_options`) so that other commands can take the same options.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO, TypeVar

import click
from rich.console import Console

from cecheck import __version__, engine, inputs
from cecheck import framework_view as fv
from cecheck import frameworks as fw
from cecheck import precision as prec
from cecheck.atomicfile import atomic_text_file
from cecheck.errors import InputError
from cecheck.output.base import Options
from cecheck.output.reporters import REPORTERS
from cecheck.output.words import closing_sentence
from cecheck.report import FAIL_ON, Report
from cecheck.rowpick import parse_row, pick_row, read_row
from cecheck.rows import ChunkRows
from cecheck.trace import PATHS, trace
from cecheck.trace_render import print_trace, write_trace_json

F = TypeVar("F", bound=Callable[..., Any])

# Inputs with more logits than this get a progress bar (when stderr is a terminal).
PROGRESS_ELEMENTS = 1 << 24
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE


class InputFailure(click.ClickException):
    """An input or settings problem: ``Error: <sentence>`` on stderr, exit code 2."""

    exit_code = 2


# ---------------------------------------------------------------- option parsing


def _comma_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_dtypes(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    """``--dtypes float16,float32`` -> ("float16", "float32"); BadParameter for others."""
    names = _comma_list(value)
    if not names:
        raise click.BadParameter(f"name at least one of {', '.join(prec.DTYPES)}")
    unknown = [n for n in names if n not in prec.DTYPES]
    if unknown:
        raise click.BadParameter(
            f"unknown dtype {', '.join(unknown)}: choose from {', '.join(prec.DTYPES)}"
        ) from None
    return tuple(dict.fromkeys(names))


def parse_fail_on(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[str, ...]:
    """``--fail-on naive,stable`` -> ("naive", "stable"); BadParameter for unknown names."""
    if value is None:
        return ()
    names = _comma_list(value)
    unknown = [n for n in names if n not in FAIL_ON]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown condition {', '.join(unknown) or repr(value)}: "
            f"choose from {', '.join(FAIL_ON)}"
        ) from None
    return tuple(dict.fromkeys(names))


def parse_label_column(_ctx: click.Context, _param: click.Parameter, value: str) -> str | int:
    """A header name, or a whole number: the 0-based position in a CSV without header."""
    return int(value) if re.fullmatch(r"-?\d+", value.strip()) else value


def input_options(f: F) -> F:
    """LOGITS [LABELS] and the options that say how to read them."""
    decorators = [
        # No click checks: cecheck says what is wrong with a file in one line (open_source).
        click.argument("logits", type=click.Path(readable=False), metavar="LOGITS"),
        click.argument(
            "labels", type=click.Path(readable=False), required=False, metavar="[LABELS]"
        ),
        click.option(
            "--task",
            type=click.Choice(["auto", *inputs.TASKS]),
            default="auto",
            show_default=True,
            help="binary: one sigmoid logit per row; multiclass: softmax over C logits; "
            "multilabel: C independent sigmoids. auto infers it from the shapes and labels.",
        ),
        click.option(
            "--label-column",
            default="label",
            show_default=True,
            callback=parse_label_column,
            help="The label column of a one-file CSV/TSV/Parquet input; a number is a "
            "0-based position (for a CSV without header).",
        ),
        click.option(
            "--logits-key",
            default="logits",
            show_default=True,
            help="The name of the logits array in an .npz file.",
        ),
        click.option(
            "--labels-key",
            default="labels",
            show_default=True,
            help="The name of the labels array in an .npz file.",
        ),
    ]
    for decorate in reversed(decorators):
        f = decorate(f)
    return f


def settings_options(f: F) -> F:
    """The options that say what to compute and how strictly to judge it (:class:`Settings`)."""
    decorators = [
        click.option(
            "--dtypes",
            default="float32,float64",
            show_default=True,
            callback=parse_dtypes,
            help="Comma list of the precisions the naive and stable paths are emulated in: "
            + ", ".join(prec.DTYPES)
            + ".",
        ),
        click.option(
            "--ignore-index",
            type=int,
            default=-100,
            show_default=True,
            help="Class-index labels equal to this are skipped, as in PyTorch.",
        ),
        click.option(
            "--rtol",
            type=click.FloatRange(min=0),
            default=1e-4,
            show_default=True,
            help="Relative tolerance of 'diverged': |L - L64| > atol + rtol * |L64|.",
        ),
        click.option(
            "--atol",
            type=click.FloatRange(min=0),
            default=1e-6,
            show_default=True,
            help="Absolute tolerance of 'diverged'.",
        ),
    ]
    for decorate in reversed(decorators):
        f = decorate(f)
    return f


def framework_options(f: F) -> F:
    """The framework view: probability input, PyTorch's batch mean, smoothing and weights."""
    decorators = [
        click.option(
            "--inputs",
            "inputs_kind",
            type=click.Choice(fv.INPUT_KINDS),
            default="logits",
            show_default=True,
            help="probs: the file holds probabilities (softmax or sigmoid outputs), not "
            "logits; the paths are then naive (-log p) and the conventions of torch, keras "
            "and sklearn.",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            default=None,
            metavar="B",
            help="Also compute PyTorch's reduction='mean' over consecutive batches of B rows "
            "and flag the batches whose mean is NaN or inf.",
        ),
        click.option(
            "--label-smoothing",
            type=click.FloatRange(0, 1),
            default=0.0,
            show_default=True,
            metavar="EPS",
            help="PyTorch's label_smoothing (multiclass logits): the target mixed with the "
            "uniform distribution, soft targets too.",
        ),
        click.option(
            "--class-weights",
            default=None,
            metavar="TEXT",
            help="PyTorch's weight (multiclass logits): a comma list of C numbers, or a file "
            "of them (.npy or text).",
        ),
    ]
    for decorate in reversed(decorators):
        f = decorate(f)
    return f


# ---------------------------------------------------------------- library calls


def framework_settings(
    settings: engine.Settings,
    source: inputs.Source,
    inputs_kind: str,
    batch_size: int | None,
    label_smoothing: float,
    class_weights: str | None,
) -> tuple[engine.Settings, inputs.Source]:
    """The settings with the framework-view options, and the source checked against them;
    a rejected combination becomes an exit-2 :class:`InputFailure`."""
    try:
        if (label_smoothing > 0 or class_weights is not None) and source.task != "multiclass":
            raise ValueError(
                "--label-smoothing and --class-weights apply to multiclass logits (PyTorch's "
                f"cross_entropy), not to this {source.task} input"
            )
        weights = None
        if class_weights is not None:
            weights = tuple(fw.parse_class_weights(class_weights, source.n_classes))
        settings = dataclasses.replace(
            settings,
            inputs=inputs_kind,
            batch_size=batch_size,
            label_smoothing=label_smoothing,
            class_weights=weights,
        )
        return settings, fv.prepare(source, settings)
    except ValueError as e:
        raise InputFailure(_one_line(e)) from None


def open_source(
    logits: str,
    labels: str | None,
    *,
    task: str,
    label_column: str | int,
    logits_key: str,
    labels_key: str,
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
        )
    except (InputError, ValueError) as e:
        raise InputFailure(_one_line(e)) from None
    except OSError as e:  # such as a file the user may not read
        name = e.filename if e.filename is not None else logits
        denied = e.errno in (errno.EACCES, errno.EPERM)
        what = "check its permissions" if denied else "check the file"
        raise InputFailure(f"cannot read {name} ({e.strerror or e}): {what}") from None


def make_settings(
    dtypes: tuple[str, ...], ignore_index: int, rtol: float, atol: float, top: int
) -> engine.Settings:
    """Settings from the options; a rejected value becomes an exit-2 :class:`InputFailure`."""
    try:
        return engine.Settings(dtypes, ignore_index, rtol, atol, top)
    except ValueError as e:
        raise InputFailure(_one_line(e)) from None


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split()) or type(e).__name__


@contextlib.contextmanager
def progress_bar(source: inputs.Source, quiet: bool) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar on stderr for a big input when stderr is a terminal; else None.

    Yields the callback the engine calls with the number of rows done.
    """
    big = source.n_rows * max(1, source.n_classes) > PROGRESS_ELEMENTS
    console = Console(stderr=True)
    if quiet or not big or not console.is_terminal:
        yield None
        return
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("computing losses", total=source.n_rows)
        yield lambda done: bar.update(task, completed=done)


def check_output(output: str | None, fmt: str, *read: str | None) -> None:
    """Refuse, before anything is read or written, an ``-o`` that is a directory, one of the
    files the command reads (``read``: inputs, class-weights file; the same file by any name),
    or an existing file the user may not write."""
    if output is None or output == "-":
        return
    if os.path.isdir(output):
        example = os.path.join(output, f"report.{'txt' if fmt == 'table' else fmt}")
        raise InputFailure(f"-o {output} is a directory: give a file name, such as {example}")
    if any(path is not None and _same_file(output, path) for path in read):
        raise InputFailure(f"-o {output} is one of the inputs")
    if os.path.exists(output) and not os.access(output, os.W_OK):
        raise InputFailure(f"cannot write {output} (Permission denied): check its permissions")


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


class _ReportConsole(Console):
    """A Console that lets a closed pipe reach :meth:`_Group.invoke` (rich would exit 1)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def report_console(out: TextIO) -> Console:
    """A rich Console writing to ``out``: colour only on a terminal (and not with NO_COLOR)."""
    if out is sys.stdout:
        return _ReportConsole(highlight=False)
    return _ReportConsole(file=out, highlight=False, color_system=None, width=100)


def _silence_stdout() -> None:
    """Python's recipe for a closed pipe (see the signal module's note on SIGPIPE): devnull
    over stdout's descriptor, so the flush at exit writes nowhere instead of failing."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (e.g. in tests)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def say(message: str, quiet: bool) -> None:
    """A message for people, on stderr, unless --quiet."""
    if not quiet:
        click.echo(message, err=True)


# ---------------------------------------------------------------- the commands


class _Group(click.Group):
    """The ``cecheck`` group: a command ended by Ctrl-C exits 130 with one line on stderr
    (click would say ``Aborted!`` and exit 1, the code of ``--fail-on``); one whose stdout
    reader went away exits 141 without a word."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            try:
                return super().invoke(ctx)
            finally:
                sys.stdout.flush()  # a closed pipe shows here when the report fit the buffer
        except KeyboardInterrupt:
            click.echo("Interrupted (Ctrl-C)", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            _silence_stdout()
            ctx.exit(EXIT_CLOSED_PIPE)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="cecheck")
def cecheck() -> None:
    """Find the rows where a cross-entropy loss blows up, and say why.

    cecheck computes every row's loss along the naive path (softmax or sigmoid, then log),
    the stable path (what the frameworks do) and an accurate reference, in several
    precisions, and flags the rows where a path gives NaN or inf or loses its accuracy.

    \b
    Examples:
      cecheck compare logits.npy labels.npy
      cecheck compare outputs.npz --dtypes float16,bfloat16,float32,float64
      cecheck compare preds.csv --label-column target --format json -o report.json
    """


@cecheck.command()
@click.pass_context
@input_options
@settings_options
@framework_options
@click.option(
    "--top",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="How many flagged rows the table and the JSON show, worst first.",
)
@click.option(
    "--all",
    "all_rows",
    is_flag=True,
    help="Show every row in the table, not only the flagged ones (table format; CSV always "
    "has every row; not with --format json).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(REPORTERS)),
    default="table",
    show_default=True,
    help="table: a report for people; json: the report as strict JSON; csv: one line per row; "
    "markdown: a compact report for a CI job summary.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(readable=False),  # checked by check_output, in one line
    default=None,
    help="Write the report to this file instead of stdout; it is replaced only when the run "
    "succeeds.",
)
@click.option(
    "--fail-on",
    callback=parse_fail_on,
    default=None,
    metavar="CONDITIONS",
    help="Exit with code 1 when a row is flagged for one of these (comma list): "
    + ", ".join(FAIL_ON)
    + ". input: NaN/inf logits or bad labels; naive/stable: that path gives NaN or inf; "
    "diverged: a dtype disagrees with float64; inaccurate: an accuracy note; any: all.",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No messages on stderr (warnings, progress, summary); the table format prints only "
    "the closing sentence.",
)
def compare(
    ctx: click.Context,
    logits: str,
    labels: str | None,
    task: str,
    label_column: str | int,
    logits_key: str,
    labels_key: str,
    dtypes: tuple[str, ...],
    ignore_index: int,
    rtol: float,
    atol: float,
    top: int,
    all_rows: bool,
    fmt: str,
    output: str | None,
    fail_on: tuple[str, ...],
    quiet: bool,
    inputs_kind: str,
    batch_size: int | None,
    label_smoothing: float,
    class_weights: str | None,
) -> None:
    """Compute each row's loss along every path and dtype, and flag the unstable rows.

    LOGITS is a .npy, .npz, .csv, .tsv or .parquet file. LABELS is a second file, or left
    out when LOGITS holds both (an .npz with --logits-key and --labels-key arrays, or a table
    with a --label-column). Logits of shape (N, C) are N rows; (B, T, C) are B*T rows.

    \b
    Examples:
      cecheck compare sample_data/tf_example_logits.npy sample_data/tf_example_labels.npy
      cecheck compare sample_data/sequence.npz --top 5
      cecheck compare sample_data/binary_sweep.csv --dtypes float16,float32,float64
      cecheck compare logits.npy labels.npy --format json -o report.json --fail-on stable
      cecheck compare logits.npy labels.npy --format csv > rows.csv

    Exit codes: 0 ran (rows may be flagged); 1 a --fail-on condition was met; 2 a usage or
    input error; 130 interrupted (Ctrl-C); 141 stdout closed by its reader.
    """
    if all_rows and not REPORTERS[fmt].all_rows:
        raise click.UsageError(
            "--all applies to the table (CSV always has every row); "
            f"{REPORTERS[fmt].title} keeps the --top worst flagged rows"
        )
    if "diverged" in fail_on and "float64" not in dtypes:
        raise click.UsageError(
            "--fail-on diverged needs float64 in --dtypes: divergence is judged against "
            "the same path in float64"
        )
    weights_file = class_weights.strip() if class_weights is not None else None
    check_output(output, fmt, logits, labels, weights_file)
    settings = make_settings(dtypes, ignore_index, rtol, atol, top)
    source = open_source(
        logits,
        labels,
        task=task,
        label_column=label_column,
        logits_key=logits_key,
        labels_key=labels_key,
    )
    settings, source = framework_settings(
        settings, source, inputs_kind, batch_size, label_smoothing, class_weights
    )
    for warning in source.warnings:
        say(f"warning: {warning}", quiet)
    with output_stream(output) as out:
        report = _render(source, settings, fmt, out, all_rows, fail_on, quiet)
    if fmt != "table" or output is not None:
        say(closing_sentence(report), quiet)
    failed = report.failed(fail_on)
    if failed:
        say(f"--fail-on {','.join(failed)} met: exit code 1", quiet)
    ctx.exit(report.return_code(fail_on))


def _render(
    source: inputs.Source,
    settings: engine.Settings,
    fmt: str,
    out: TextIO,
    all_rows: bool,
    fail_on: tuple[str, ...],
    quiet: bool,
) -> Report:
    """Run the engine once and write the report in ``fmt`` to ``out`` (its reporter)."""
    reporter = REPORTERS[fmt](out, report_console(out), Options(fail_on, all_rows, quiet))
    reporter.start(source, settings)
    on_chunk: Callable[[engine.ChunkResult], None] | None = None
    if reporter.streams:

        def on_chunk(chunk: engine.ChunkResult) -> None:
            reporter.chunk(ChunkRows(chunk, source, settings))

    try:
        with progress_bar(source, quiet) as progress:
            report = engine.run(source, settings, on_chunk=on_chunk, progress=progress)
    except InputError as e:  # a problem found past the first chunk of a file
        raise InputFailure(_one_line(e)) from None
    reporter.finish(report)
    return report


@cecheck.command("trace")
@input_options
@settings_options
@click.option(
    "--row",
    default=None,
    metavar="I",
    help="The row to trace: a flat row number, or an index tuple such as 3,17 for (B, T, C) "
    "logits. Default: the worst flagged row (row 0 if no row is flagged).",
)
@click.option(
    "--path",
    "path_choice",
    type=click.Choice([*PATHS, "all"]),
    default="all",
    show_default=True,
    help="The path(s) to walk: naive (softmax or sigmoid, then log), stable (what the "
    "frameworks do), reference (accurate, float64).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table: the steps for people; json: the same steps as strict JSON.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(readable=False),  # checked by check_output, in one line
    default=None,
    help="Write the trace to this file instead of stdout; it is replaced only when the run "
    "succeeds.",
)
def trace_command(
    logits: str,
    labels: str | None,
    task: str,
    label_column: str | int,
    logits_key: str,
    labels_key: str,
    dtypes: tuple[str, ...],
    ignore_index: int,
    rtol: float,
    atol: float,
    row: str | None,
    path_choice: str,
    fmt: str,
    output: str | None,
) -> None:
    """Walk one row's loss step by step in each path and dtype; mark the first bad step.

    Every intermediate value (exp of each logit, their sum, the probability, its log, ...)
    is shown in the dtype it is computed in, and the first step that gives inf or NaN, or a
    probability or sigmoid of exactly 0 or 1, is marked with a sentence on why. Many classes:
    the target, the top 5 logits and one line for the rest. Without --row, the worst row
    that compare flags (with the same --dtypes, --rtol and --atol) is traced.

    \b
    Examples:
      cecheck trace sample_data/tf_example_logits.npy sample_data/tf_example_labels.npy
      cecheck trace sample_data/sequence.npz --row 2,5 --dtypes float16,float32
      cecheck trace sample_data/binary_sweep.csv --row 0 --path naive --format json

    Exit codes: 0 traced; 2 a usage or input error (such as a row out of range); 130
    interrupted (Ctrl-C); 141 stdout closed by its reader.
    """
    check_output(output, fmt, logits, labels)
    settings = make_settings(dtypes, ignore_index, rtol, atol, 1)
    source = open_source(
        logits,
        labels,
        task=task,
        label_column=label_column,
        logits_key=logits_key,
        labels_key=labels_key,
    )
    for warning in source.warnings:
        say(f"warning: {warning}", False)
    try:
        if row is None:
            with progress_bar(source, False) as progress:
                pick = pick_row(source, settings, progress)
        else:
            pick = parse_row(row, source.lead_shape)
        z, y = read_row(source, pick.row)
    except (InputError, ValueError) as e:
        raise InputFailure(_one_line(e)) from None
    if source.label_form == "index" and int(y) == ignore_index:
        raise InputFailure(
            f"row {pick.row} has label {ignore_index}, the --ignore-index: the row is skipped, "
            "so it has no loss to trace"
        )
    paths = PATHS if path_choice == "all" else (path_choice,)
    try:
        t = trace(z, y, task=source.task, label_form=source.label_form, dtypes=dtypes, paths=paths)
    except ValueError as e:
        raise InputFailure(f"row {pick.row}: {_one_line(e)}") from None
    t = dataclasses.replace(t, row=pick.row, index=pick.index, origin=pick.origin)
    with output_stream(output) as out:
        if fmt == "json":
            write_trace_json(t, out)
        else:
            print_trace(t, report_console(out))


def main() -> None:
    """The console script ``cecheck`` and ``python -m cecheck``."""
    cecheck(prog_name="cecheck")
