"""The ``cecheck`` group: its commands, ``--version``, and how a run ends on Ctrl-C or a
closed pipe."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from cecheck import __version__
from cecheck.cli.compare import compare
from cecheck.cli.trace import trace_command

EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE


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


cecheck.add_command(compare)
cecheck.add_command(trace_command)


def main() -> None:
    """The console script ``cecheck`` and ``python -m cecheck``."""
    cecheck(prog_name="cecheck")
