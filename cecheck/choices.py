"""The names the command line offers before anything is computed: dtypes, tasks, input kinds,
frameworks, ``--fail-on`` conditions and trace paths.

No imports, so that defining the options (and ``cecheck --help``) loads no numpy. The modules
that use a name import it from here (:mod:`cecheck.precision`, :mod:`cecheck.report`,
:mod:`cecheck.trace`); the tests check the others against their modules.
"""

DTYPES = ("float16", "bfloat16", "float32", "float64")
TASKS = ("binary", "multiclass", "multilabel")  # = cecheck.inputs.TASKS
INPUT_KINDS = ("logits", "probs")  # = cecheck.settings.INPUT_KINDS
FAIL_ON = ("input", "naive", "stable", "textbook", "diverged", "inaccurate", "headroom", "any")
# ``any``: every condition of a flagged row; ``headroom`` is a forecast, not a flag, so only
# by name (with its threshold, ``--min-headroom``)
ROW_CONDITIONS = tuple(c for c in FAIL_ON if c not in ("headroom", "any"))
DEFAULT_MIN_HEADROOM = 2.0
TRACE_PATHS = ("textbook", "naive", "stable", "reference")
# trace's paths of probabilities beyond TRACE_PATHS: cecheck.settings.INPUT_PATHS["probs"]
PROB_TRACE_PATHS = ("torch", "keras", "sklearn")

# The registry of frameworks whose idioms the naive and stable paths emulate (--framework):
# name -> (the module whose PATHS maps (path, kind) to its functions, what it emulates).
# Registering one is a line here; cecheck.frameworks.registry loads the module when used.
FRAMEWORK_MODULES = {
    "torch": ("cecheck.frameworks.torch_paths", "PyTorch 2.13"),
    "jax": ("cecheck.frameworks.jax_paths", "JAX 0.10 and optax 0.2.8"),
    "tensorflow": ("cecheck.frameworks.tf_paths", "TensorFlow 2.21"),
}
FRAMEWORKS = tuple(FRAMEWORK_MODULES)
DEFAULT_FRAMEWORK = "torch"
