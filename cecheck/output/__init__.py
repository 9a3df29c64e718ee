"""Rendering a :class:`~cecheck.report.Report`: one reporter per ``--format``.

:data:`cecheck.output.registry.REPORTERS` maps each format name to its reporter
(:class:`cecheck.output.base.Reporter`); the plain words live in :mod:`~cecheck.output.words`
and :mod:`~cecheck.output.explain`, the rich tables in :mod:`~cecheck.output.tables`, the
spelling of numbers in :mod:`~cecheck.output.numbers`.
"""
