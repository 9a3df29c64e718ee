"""The one exception a person sees: a file-level problem, said in one sentence."""


class InputError(Exception):
    """A file-level problem with the inputs (missing, corrupt, pickled, mismatched shapes).

    The message is one sentence that names the file and says what to do; the CLI prints it
    on stderr and exits with code 2.
    """


class SetupError(InputError):
    """A problem with where cecheck runs, not with the files (such as ``CECHECK_KERNEL_ISA``
    naming a kernel this CPU cannot run): said and handled as an :class:`InputError`."""
