"""Every error tuner raises on purpose, under one base class.

Each class carries the exit code the ``tuner`` command ends with (``exit_code``), and the Python
API raises them as they are, so a caller can catch ``tuner.TunerError`` and know the message
says what to do. The classes also derive from the built-in error a caller would expect
(``SpecError`` is a ``ValueError``, ``MissingExtraError`` an ``ImportError``).
"""

from __future__ import annotations


class TunerError(Exception):
    """Base of tuner's errors; the message says what happened and what to change."""

    exit_code = 1
    """What the ``tuner`` command exits with when this ends it."""


class InputError(TunerError, ValueError):
    """What was asked for cannot be done as given: a spec, a study name, an option."""

    exit_code = 2


class ConflictError(TunerError):
    """The study is in a state that refuses the request (another process runs it, ...)."""

    exit_code = 1


class SetupError(TunerError):
    """Something the study needs is missing or unreachable (a package, a database)."""

    exit_code = 2


EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
