"""Running untrusted student code: the parent side, the child side and one module per layer.

Parent side (imported by the grading core, never by a child):

* :mod:`grader.sandbox.runner` — :class:`~grader.sandbox.runner.Sandbox`, one fresh limited
  child per (submission, exercise), and reading what the child left behind as hostile data.

Child side (preloaded in the fork server; imports nothing of the parent side, of ``cnnref``
or of ``grader.exercises``):

* :mod:`grader.sandbox.forkserver` — the clean, preloaded interpreter that forks children;
* :mod:`grader.sandbox.child` — the child's set-up and the loop over cases;
* :mod:`grader.sandbox.harness`, ``harness_torch``, ``harness_questions`` — how each kind of
  exercise calls the student's code and turns the result into named arrays;
* :mod:`grader.sandbox.caseio` — cases and outputs as ``.npz`` (used on both sides; the
  parent's reading of hostile files lives there too).

One module per isolation layer (docs/security.md), put in place by
:mod:`grader.sandbox.layers` after the fork and before any student code runs:

* :mod:`grader.sandbox.filesystem` — the Landlock allow-list, the private mount namespace,
  and the single-use container's lockdown;
* :mod:`grader.sandbox.processes` — a PID namespace per run with its own init, or the
  process group;
* :mod:`grader.sandbox.syscalls` — the seccomp filter (libseccomp) and the network namespace;
* :mod:`grader.sandbox.privileges` — no capabilities, an unprivileged uid where possible;
* :mod:`grader.sandbox.limits` — resource limits, memory inside the container's own limit;
* :mod:`grader.sandbox.audit` — the PEP 578 audit hook, a cheap first layer (never a barrier).

``from grader.sandbox import Sandbox, Limits`` works without importing the parent side until
one of those names is used.
"""

from __future__ import annotations

from typing import Any

_RUNNER_NAMES = ("Sandbox", "Limits", "CaseOutcome", "RunOutcome", "default_forbidden_paths")

__all__ = list(_RUNNER_NAMES)


def __getattr__(name: str) -> Any:
    if name in _RUNNER_NAMES:
        from grader.sandbox import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'grader.sandbox' has no attribute {name!r}")
