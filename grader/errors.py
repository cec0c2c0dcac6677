"""Typed errors of the grader library.

The library raises these; only the command line (``grader.commands``) turns them into
messages and exit codes. Every message says what went wrong *and* what to do next.
"""

from __future__ import annotations


class CnnlabError(Exception):
    """Base class of every error cnnlab reports to a user (exit status 2 on the command line)."""


class SubmissionError(CnnlabError):
    """A submission path is missing, unreadable or not a folder, .py, .ipynb or .zip."""


class NotebookError(SubmissionError):
    """A notebook that is not valid JSON / nbformat."""


class UnknownExerciseError(CnnlabError):
    """An exercise name that is not in the registry; the message carries a "did you mean"."""


class ConfigError(CnnlabError):
    """Missing or malformed configuration: course secret, output folder, seed."""


class GraderFailure(Exception):
    """The grader itself failed (not the student). Reported as ``grader_error``, never a score.

    Deliberately not a ``CnnlabError``: it is a bug or an environment fault, exit status 3.
    """
