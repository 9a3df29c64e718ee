"""``cecheck compare``: every row's loss along every path and dtype, and the rows flagged."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

import click

from cecheck.choices import DEFAULT_MIN_HEADROOM, FAIL_ON
from cecheck.cli.options import (
    CommaChoice,
    format_option,
    framework_options,
    input_options,
    output_option,
    settings_options,
)
from cecheck.output.registry import REPORTERS

if TYPE_CHECKING:
    from cecheck.cli.sharded import Sharding
    from cecheck.inputs import Source
    from cecheck.pipeline import ChunkResult, Plan
    from cecheck.report import Report
    from cecheck.settings import Settings


@click.command(
    short_help="Compute each row's loss along every path and dtype, and flag the unstable rows."
)
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
@format_option(
    list(REPORTERS),
    "table: a report for people; json: the report as strict JSON; csv: one line per row; "
    "markdown: a compact report for a CI job summary; html: one self-contained page with "
    "figures (pip install 'cecheck[html]').",
)
@output_option("report")
@click.option(
    "--fail-on",
    type=CommaChoice(FAIL_ON, "condition"),
    default=(),
    metavar="CONDITIONS",
    help="Exit with code 1 when a row is flagged for one of these (comma list): "
    + ", ".join(FAIL_ON)
    + ". input: NaN/inf logits or bad labels; naive/stable: that path gives NaN or inf; "
    "diverged: a dtype disagrees with float64; inaccurate: an accuracy note; headroom: "
    "logits scaled by less than --min-headroom would make a textbook or naive loss NaN or "
    "inf (multiclass index labels); any: every flag (not headroom).",
)
@click.option(
    "--min-headroom",
    type=float,
    default=DEFAULT_MIN_HEADROOM,
    show_default=True,
    metavar="FACTOR",
    help="With --fail-on headroom: the smallest factor the logits must be able to grow by "
    "before a row's loss breaks.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="An input of many files: compute its shards in N processes (default: one a core, "
    "at most one a shard; 1 for one file, which the kernel computes on every core).",
)
@click.option(
    "--dask",
    metavar="ADDRESS",
    default=None,
    help="An input of many files: compute each shard as a task on the running Dask cluster "
    "whose scheduler is at ADDRESS (tcp://host:8786); needs pip install 'cecheck[dask]'.",
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
    logits_column: str | None,
    logits_key: str,
    labels_key: str,
    dtypes: tuple[str, ...] | None,
    ignore_index: int,
    rtol: float | None,
    atol: float | None,
    framework: str,
    top: int,
    all_rows: bool,
    fmt: str,
    output: str | None,
    fail_on: tuple[str, ...],
    min_headroom: float,
    workers: int | None,
    dask: str | None,
    quiet: bool,
    inputs_kind: str,
    batch_size: int | None,
    label_smoothing: float,
    class_weights: str | None,
) -> None:
    """Compute each row's loss along every path and dtype, and flag the unstable rows.

    LOGITS is a .npy, .npz, .safetensors, .pt, .pth, .csv, .tsv, .parquet, .arrow or .feather
    file. LABELS is a second file, or left out when LOGITS holds both (an .npz, .safetensors
    or .pt with --logits-key and --labels-key arrays, a .pt tuple (logits, labels), or a
    table with a --label-column). A loss dump of cecheck.torch.watch (one .safetensors file)
    brings the settings of the step that wrote it; options given here override them. Logits
    of shape (N, C) are N rows; (B, T, C) are B*T rows. An input of many files (shards): a
    quoted glob pattern, a directory, or @LIST (a text file of paths, one a line); logits and
    labels shards pair in natural order (a list's own order). A path may be an fsspec URL
    (s3://, gs://, file://...) where fsspec is installed.

    \b
    Examples:
      cecheck compare sample_data/tf_example_{logits,labels}.npy
      cecheck compare sample_data/sequence.npz --top 5
      cecheck compare sample_data/binary_sweep.csv --dtypes float16,float32
      cecheck compare logits.npy labels.npy --format json --fail-on stable
      cecheck compare logits.npy labels.npy --format csv > rows.csv
      cecheck compare 'run/logits-*.npy' 'run/labels-*.npy' --workers 4

    Exit codes: 0 ran (rows may be flagged); 1 a --fail-on condition was met; 2 a usage or
    input error; 130 interrupted (Ctrl-C); 141 stdout closed by its reader.
    """
    from cecheck.cli import common, sharded  # the library: loaded when a command runs
    from cecheck.output.registry import reporter
    from cecheck.output.verdict import verdict_line
    from cecheck.output.words import closing_sentence

    if all_rows and not reporter(fmt).all_rows:
        raise click.UsageError(
            "--all applies to the table (CSV always has every row); "
            f"{reporter(fmt).title} keeps the --top worst flagged rows"
        )
    if "diverged" in fail_on and dtypes is not None and "float64" not in dtypes:
        raise click.UsageError(
            "--fail-on diverged needs float64 in --dtypes: divergence is judged against "
            "the same path in float64"
        )
    missing = reporter(fmt).missing()
    if missing is not None:
        raise common.InputFailure(missing)
    weights_file = class_weights.strip() if class_weights is not None else None
    common.check_output(output, fmt, logits, labels, weights_file)
    # A loss dump (cecheck.torch.watch) records what the failing step computed: its settings
    # are the defaults here, and an explicit option overrides them.
    settings_of = common.with_recorded(
        ctx, logits, labels, quiet, task=task, dtypes=dtypes, framework=framework,
        ignore_index=ignore_index, label_smoothing=label_smoothing,
        class_weights=class_weights, batch_size=batch_size,
    )  # fmt: skip
    task, dtypes, framework = settings_of["task"], settings_of["dtypes"], settings_of["framework"]
    ignore_index, batch_size = settings_of["ignore_index"], settings_of["batch_size"]
    label_smoothing, class_weights = settings_of["label_smoothing"], settings_of["class_weights"]
    source, sharding = sharded.open_input(
        logits,
        labels,
        task=task,
        label_column=label_column,
        logits_key=logits_key,
        labels_key=labels_key,
        logits_column=logits_column,
    )
    settings = common.engine_settings(
        source,
        dtypes=dtypes,
        ignore_index=ignore_index,
        rtol=rtol,
        atol=atol,
        top=top,
        framework=framework,
        inputs_kind=inputs_kind,
        batch_size=batch_size,
        label_smoothing=label_smoothing,
        class_weights=class_weights,
        min_headroom=min_headroom,
    )
    plan, source = common.plan(source, settings)
    streams = (reporter(fmt).all_rows and all_rows) or fmt == "csv"
    how = sharded.processes(sharding, workers, dask, streams)
    for warning in source.warnings:
        common.say(f"warning: {warning}", quiet)
    with common.output_stream(output) as out:
        report = _render(
            source, settings, plan, fmt, out, all_rows, fail_on, quiet, how, dask, sharding
        )
    elsewhere = fmt != "table" or output is not None  # the report is not for people's eyes
    if elsewhere:
        common.say(closing_sentence(report), quiet)
    failed = report.failed(fail_on)
    # a table on the terminal ends with the verdict already: said once, not twice
    if failed and not (fmt == "table" and output is None and _stdout_is_terminal()):
        common.say(f"--fail-on {','.join(failed)} met: exit code 1", quiet)
    if elsewhere:  # the one line a CI log shows last, as the table shows it first
        common.say(verdict_line(report), quiet)
    ctx.exit(report.return_code(fail_on))


def _stdout_is_terminal() -> bool:
    import sys

    return sys.stdout.isatty()


def _render(
    source: Source,
    settings: Settings,
    plan: Plan,
    fmt: str,
    out: TextIO,
    all_rows: bool,
    fail_on: tuple[str, ...],
    quiet: bool,
    how: int = 1,
    dask: str | None = None,
    sharding: Sharding | None = None,
) -> Report:
    """Run the engine once and write the report in ``fmt`` to ``out`` (its reporter); the
    shards of ``sharding`` in ``how`` processes or on ``dask`` unless ``how`` is 1."""
    from cecheck import engine
    from cecheck.cli import common, sharded
    from cecheck.errors import InputError
    from cecheck.output.base import Options
    from cecheck.output.registry import reporter
    from cecheck.rows import ChunkRows

    rep = reporter(fmt)(out, lambda: common.report_console(out), Options(fail_on, all_rows, quiet))
    rep.start(source, settings)
    on_chunk: Callable[[ChunkResult], None] | None = None
    if rep.streams:

        def on_chunk(chunk: ChunkResult) -> None:
            rep.chunk(ChunkRows(chunk, source, settings))

    try:
        with common.progress_bar(source, quiet) as progress:
            if sharding is not None and how != 1:
                report = sharded.run(source, sharding, settings, plan, how, dask, progress)
            else:
                report = engine.run(
                    source, settings, on_chunk=on_chunk, progress=progress, plan=plan
                )
    except InputError as e:  # a problem found past the first chunk of a file
        raise common.InputFailure(common.one_line(e)) from None
    if sharding is not None:  # what the report covers
        report.shards = len(sharding.shards)
    rep.finish(report)
    return report
