"""The names the command line offers before anything is computed: dtypes, tasks, input kinds,
``--fail-on`` conditions and trace paths.

No imports, so that defining the options (and ``cecheck --help``) loads no numpy. The modules
that use a name import it from here (:mod:`cecheck.precision`, :mod:`cecheck.report`,
:mod:`cecheck.trace`); the tests check the others against their modules.
"""

DTYPES = ("float16", "bfloat16", "float32", "float64")
TASKS = ("binary", "multiclass", "multilabel")  # = cecheck.inputs.TASKS
INPUT_KINDS = ("logits", "probs")  # = cecheck.settings.INPUT_KINDS
FAIL_ON = ("input", "naive", "stable", "diverged", "inaccurate", "any")
TRACE_PATHS = ("naive", "stable", "reference")
