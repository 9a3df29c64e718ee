"""The ``cecheck`` command line: thin click commands over the library.

Each command parses its options, opens the inputs (:func:`cecheck.inputs.open_inputs`), runs
the library once and renders what it returns. The report goes to stdout (or ``-o FILE``);
messages for people (warnings, progress, the closing sentence of a JSON or CSV run) go to
stderr, so machine output stays clean.

A report written with ``-o`` reaches its file only when the run succeeds
(:func:`cecheck.atomicfile.atomic_text_file`); an ``-o`` that names one of the inputs is
refused before anything is read or written.

Exit codes: 0 ran, whatever was flagged; 1 a ``--fail-on`` condition was met; 2 a usage or
input error, said in one line on stderr; 130 interrupted (Ctrl-C, SIGINT), as shells report
it; 141 (128 + SIGPIPE, what a shell reports for a program killed by a closed pipe) stdout
was closed by its reader, as in ``cecheck compare ... | head``, ended without a message.

The modules: :mod:`~cecheck.cli.group` (the group, ``--version``, Ctrl-C and closed pipes),
one module per command (:mod:`~cecheck.cli.compare`, :mod:`~cecheck.cli.trace`), the option
bundles both take (:mod:`~cecheck.cli.options`), and what they do around the library
(:mod:`~cecheck.cli.common`, imported when a command runs, so that ``--help`` and
``--version`` load click and these modules only).
"""

from cecheck.cli.group import cecheck, main

__all__ = ["cecheck", "main"]
