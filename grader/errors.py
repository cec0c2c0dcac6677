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


def did_you_mean(name: str, options: object) -> str:
    """``" Did you mean 'a', 'b'?"`` for the options ``name`` most likely meant (``""`` when
    none): first those it begins, is a whole ``_``-separated part of, or (three characters or
    more) is inside, ignoring case (``q1`` -> ``q1_conv_layer_params``, ``backward`` ->
    ``maxpool2d_backward``, ``pool`` -> ``maxpool2d_forward``), then the closest spellings
    (:func:`difflib.get_close_matches`, cutoff 0.5); three at most."""
    import difflib

    choices = [str(o) for o in options]  # type: ignore[attr-defined]
    key = name.strip().lower()
    picked: list[str] = []
    if key:
        picked = [c for c in choices if c.lower().startswith(key)]
        picked += [c for c in choices if key in c.lower().split("_") and c not in picked]
        if len(key) >= 3:  # inside a name part: "pool" -> maxpool2d_forward
            picked += [c for c in choices if key in c.lower() and c not in picked]
    picked += [
        c for c in difflib.get_close_matches(name, choices, n=3, cutoff=0.5) if c not in picked
    ]
    picked = picked[:3]
    return f" Did you mean {', '.join(repr(c) for c in picked)}?" if picked else ""


def exercise_hint(name: str, exercises: object) -> str:
    """What ``-e NAME`` most likely meant among ``exercises`` (objects with ``name``,
    ``number`` and ``topic``, e.g. registry specs or prepared exercises): an exercise number
    (``3.1``, ``Exercise 3.1``, as ``cnnlab list`` and the notebooks show it) names its
    exercise, a topic (``layers``) lists its exercises, anything else gets
    :func:`did_you_mean`."""
    items = list(exercises)  # type: ignore[call-overload]
    key = name.strip().lower().removeprefix("exercise").strip()
    by_number = [e for e in items if str(getattr(e, "number", "")).lower() == key]
    if by_number:
        found = by_number[0]
        return f" Exercise {found.number} is {found.name!r}: pass -e {found.name}."
    in_topic = [e.name for e in items if str(getattr(e, "topic", "")).lower() == key]
    if in_topic:
        shown = ", ".join(repr(n) for n in in_topic)
        return (
            f" {name!r} is a topic; its exercises are {shown}: pass each with -e, or grade "
            f"the topic's file alone (e.g. exercises/{key}.py)."
        )
    return did_you_mean(name, [e.name for e in items])
