"""``cecheck trace``: one row's loss step by step, the first bad step marked."""

from __future__ import annotations

import click

from cecheck.choices import PROB_TRACE_PATHS, TRACE_PATHS
from cecheck.cli.options import (
    format_option,
    input_options,
    loss_options,
    output_option,
    settings_options,
)


@click.command(
    "trace",
    short_help="Walk one row's loss step by step in each path and dtype; mark the first bad step.",
)
@click.pass_context
@input_options
@settings_options
@loss_options
@click.option(
    "--row",
    default=None,
    metavar="I",
    help="The row to trace: a flat row number, or an index tuple such as 3,17 for (B, T, C) "
    "logits. Default: the worst flagged row whose logits are not all NaN (row 0 if no row "
    "is flagged).",
)
@click.option(
    "--path",
    "path_choice",
    type=click.Choice([*TRACE_PATHS, *PROB_TRACE_PATHS, "all"]),
    default="all",
    show_default=True,
    help="The path(s) to walk: textbook (unshifted exp(z) / Σ exp(z) or 1 / (1 + exp(-z)), "
    "then log), naive (the framework's softmax or sigmoid, then log), stable (its fused "
    "loss), reference (accurate, float64). With --inputs probs: compare's probability paths "
    "naive (-log p), torch, keras, sklearn, and reference (exact -log p, float64).",
)
@format_option(
    ["table", "json"], "table: the steps for people; json: the same steps as strict JSON."
)
@output_option("trace")
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No messages on stderr (warnings, progress); the trace itself still prints.",
)
def trace_command(
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
    row: str | None,
    path_choice: str,
    fmt: str,
    output: str | None,
    quiet: bool,
    inputs_kind: str,
    label_smoothing: float,
    class_weights: str | None,
) -> None:
    """Walk one row's loss step by step in each path and dtype; mark the first bad step.

    Every intermediate value (exp of each logit, their sum, the probability, its log, ...)
    is shown in the dtype it is computed in, and the first step that gives inf or NaN, or a
    probability or sigmoid of exactly 0 or 1, is marked with a sentence on why. Many classes:
    the target, the top 5 logits and one line for the rest. Without --row, the worst row
    that compare flags (with the same --dtypes, --rtol and --atol) is traced; a loss dump
    of cecheck.torch.watch is traced with the settings it records, as compare reads it. With
    --label-smoothing or --class-weights each path is the one compare computes with them:
    the smoothed target, the smoothing term and the w[y] product are steps of their own.
    With --inputs probs the row's probabilities are walked along compare's probability
    paths: each convention's clamp, renormalisation or clip is a step of its own.

    \b
    Examples:
      cecheck trace sample_data/tf_example_{logits,labels}.npy
      cecheck trace sample_data/sequence.npz --row 2,5 --dtypes float16,float32
      cecheck trace sample_data/binary_sweep.csv --row 0 --path textbook
      cecheck trace sample_data/sequence.npz --format json -o trace.json
      cecheck trace sample_data/sequence.npz --row 2,5 --label-smoothing 0.1
      cecheck trace probs.npy labels.npy --inputs probs --path keras

    Exit codes: 0 traced; 2 a usage or input error (such as a row out of range); 130
    interrupted (Ctrl-C); 141 stdout closed by its reader.
    """
    from cecheck.cli import common  # the library: loaded when a command runs, not for --help
    from cecheck.errors import InputError
    from cecheck.rowpick import parse_row, pick_row, trace_row
    from cecheck.trace_render import print_trace, write_trace_json

    weights_file = class_weights.strip() if class_weights is not None else None
    common.check_output(output, fmt, logits, labels, weights_file)
    # a loss dump's settings, as compare applies them: the row is traced as the step computed it
    settings_of = common.with_recorded(
        ctx, logits, labels, quiet, task=task, dtypes=dtypes, framework=framework,
        ignore_index=ignore_index, label_smoothing=label_smoothing, class_weights=class_weights,
    )  # fmt: skip
    task, dtypes, framework = settings_of["task"], settings_of["dtypes"], settings_of["framework"]
    ignore_index, label_smoothing = settings_of["ignore_index"], settings_of["label_smoothing"]
    class_weights = settings_of["class_weights"]
    source = common.open_source(
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
        top=1,
        framework=framework,
        label_smoothing=label_smoothing,
        class_weights=class_weights,
        inputs_kind=inputs_kind,
    )
    if settings.weighted:  # checked against the input as compare checks them
        common.plan(source, settings)
    if settings.inputs == "probs":  # checked as compare checks probabilities (and warns)
        _, source = common.plan(source, settings)
    for warning in source.warnings:
        common.say(f"warning: {warning}", quiet)
    paths = (*settings.paths, "reference") if path_choice == "all" else (path_choice,)
    try:
        if row is None:
            with common.progress_bar(source, quiet) as progress:
                pick = pick_row(source, settings, progress)
        else:
            pick = parse_row(row, source.lead_shape)
        t = trace_row(source, settings, pick, paths)
    except (InputError, ValueError) as e:
        raise common.InputFailure(common.one_line(e)) from None
    with common.output_stream(output) as out:
        if fmt == "json":
            write_trace_json(t, out)
        else:
            print_trace(t, common.report_console(out))
