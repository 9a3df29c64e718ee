"""The options of the commands, in bundles that decorate a command, and their parameter types.

:func:`input_options` (LOGITS [LABELS] and how to read them) and :func:`settings_options`
(what to compute, how strictly to judge it) are shared by ``compare`` and ``trace``;
:func:`framework_options` (``compare``), :func:`loss_options` (the part of it that changes
what a row's paths compute, ``trace``) and :func:`output_option` are the others' building
blocks.
:class:`CommaChoice` reads a comma list of names (``--dtypes float16,float32``).

Light on purpose: the choices come from :mod:`cecheck.choices` and
:mod:`cecheck.output.registry`, so defining the options (and ``cecheck --help``) loads
no numpy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cecheck.choices import DEFAULT_FRAMEWORK, DTYPES, FRAMEWORKS, INPUT_KINDS, TASKS

F = TypeVar("F", bound=Callable[..., Any])


if TYPE_CHECKING:  # generic in click's annotations (8.2+), not at run time in click 8.1
    _ParamType = click.ParamType[tuple[str, ...]]
else:
    _ParamType = click.ParamType


class CommaChoice(_ParamType):
    """A comma list of names out of ``choices``: the tuple of the names, each once, in the
    order given (``"float16, float32,float16"`` -> ``("float16", "float32")``).

    An unknown name is a usage error listing the choices. An empty list is one too: with
    ``at_least_one``, "name at least one of ..."; else the value is an unknown ``noun``.
    """

    name = "text"  # the metavar, TEXT, as for any text option

    def __init__(self, choices: Sequence[str], noun: str, *, at_least_one: bool = False) -> None:
        self.choices = tuple(choices)
        self.noun = noun
        self.at_least_one = at_least_one

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, ...]:
        if isinstance(value, tuple):  # a default given as a tuple, or converted already
            return value
        names = [v.strip() for v in value.split(",") if v.strip()]
        choices = ", ".join(self.choices)
        if not names and self.at_least_one:
            self.fail(f"name at least one of {choices}", param, ctx)
        unknown = [n for n in names if n not in self.choices]
        if unknown or not names:
            self.fail(
                f"unknown {self.noun} {', '.join(unknown) or repr(value)}: choose from {choices}",
                param,
                ctx,
            )
        return tuple(dict.fromkeys(names))


def parse_label_column(_ctx: click.Context, _param: click.Parameter, value: str) -> str | int:
    """A header name, or a whole number: the 0-based position in a CSV without header."""
    return int(value) if re.fullmatch(r"-?\d+", value.strip()) else value


def _apply(f: F, decorators: list[Callable[[F], F]]) -> F:
    """``f`` decorated as if the decorators were written above it in this order."""
    for decorate in reversed(decorators):
        f = decorate(f)
    return f


def input_options(f: F) -> F:
    """LOGITS [LABELS] and the options that say how to read them."""
    return _apply(
        f,
        [
            # No click checks: cecheck says what is wrong with a file in one line (open_source).
            click.argument("logits", type=click.Path(readable=False), metavar="LOGITS"),
            click.argument(
                "labels", type=click.Path(readable=False), required=False, metavar="[LABELS]"
            ),
            click.option(
                "--task",
                type=click.Choice(["auto", *TASKS]),
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
                help="The label column of a one-file CSV/TSV/Parquet/Arrow input; a number is a "
                "0-based position (for a CSV without header).",
            ),
            click.option(
                "--logits-column",
                default=None,
                help="The column of a Parquet/Arrow/Feather input that holds each row's logits "
                "as a list (as a Hugging Face dataset stores them). Default: the only list "
                "column, else every column but the label column.",
            ),
            click.option(
                "--logits-key",
                default="logits",
                show_default=True,
                help="The name of the logits array in an .npz, .safetensors or .pt file.",
            ),
            click.option(
                "--labels-key",
                default="labels",
                show_default=True,
                help="The name of the labels array in an .npz, .safetensors or .pt file.",
            ),
        ],
    )


def settings_options(f: F) -> F:
    """The options that say what to compute and how strictly to judge it (the engine's
    settings)."""
    return _apply(
        f,
        [
            click.option(
                "--dtypes",
                type=CommaChoice(DTYPES, "dtype", at_least_one=True),
                default=None,
                help="Comma list of the precisions the paths are emulated in: "
                + ", ".join(DTYPES)
                + ". Default: float32,float64, and the logits' stored dtype when it is float16 "
                "or bfloat16.",
            ),
            click.option(
                "--framework",
                type=click.Choice(FRAMEWORKS),
                default=DEFAULT_FRAMEWORK,
                show_default=True,
                help="Whose idioms the naive path (softmax, then log) and the stable path (the "
                "fused loss) emulate, as its CPU kernels compute them.",
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
                default=None,
                help="Relative tolerance of 'diverged': |L - L64| > atol + rtol * |L64|, for "
                "every dtype. Default: 64 times each dtype's machine epsilon (what its own "
                "rounding explains).",
            ),
            click.option(
                "--atol",
                type=click.FloatRange(min=0),
                default=None,
                help="Absolute tolerance of 'diverged', for every dtype. Default: 64 times "
                "each dtype's machine epsilon.",
            ),
        ],
    )


# The options of the framework view, each a decorator that adds a new click option.
_INPUTS = click.option(
    "--inputs",
    "inputs_kind",
    type=click.Choice(INPUT_KINDS),
    default="logits",
    show_default=True,
    help="probs: the file holds probabilities (softmax or sigmoid outputs), not "
    "logits; the paths are then naive (-log p) and the conventions of torch, keras "
    "and sklearn.",
)
_BATCH_SIZE = click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    metavar="B",
    help="Also compute PyTorch's reduction='mean' over consecutive batches of B "
    "rows (B sequences of (B, T, V) logits) and flag the batches whose mean is "
    "NaN or inf.",
)
_LABEL_SMOOTHING = click.option(
    "--label-smoothing",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    metavar="EPS",
    help="PyTorch's label_smoothing (multiclass logits): the target mixed with the "
    "uniform distribution, soft targets too.",
)
_CLASS_WEIGHTS = click.option(
    "--class-weights",
    default=None,
    metavar="TEXT",
    help="PyTorch's weight (multiclass logits): a comma list of C numbers, or a "
    "file of them (.npy or text).",
)


def framework_options(f: F) -> F:
    """The framework view: probability input, PyTorch's batch mean, smoothing and weights."""
    return _apply(f, [_INPUTS, _BATCH_SIZE, _LABEL_SMOOTHING, _CLASS_WEIGHTS])


def loss_options(f: F) -> F:
    """The framework view's options that change what a row's paths compute (``trace``):
    probability input, PyTorch's label smoothing and class weights."""
    return _apply(f, [_INPUTS, _LABEL_SMOOTHING, _CLASS_WEIGHTS])


def format_option(formats: Sequence[str], help: str) -> Callable[[F], F]:
    """``--format``, one of ``formats`` (the first is the default)."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(formats)),
        default=formats[0],
        show_default=True,
        help=help,
    )


def output_option(what: str) -> Callable[[F], F]:
    """``-o/--output FILE``: the ``what`` (report, trace) goes there instead of stdout."""
    return click.option(
        "-o",
        "--output",
        type=click.Path(readable=False),  # checked by check_output, in one line
        default=None,
        help=f"Write the {what} to this file instead of stdout; it is replaced only when the "
        "run succeeds.",
    )
