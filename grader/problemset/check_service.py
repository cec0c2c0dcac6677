"""The grading service behind a notebook's check cells (one per Jupyter kernel).

:func:`grader.problemset.nbgrader_bridge.check` starts it as a child process of the kernel and
speaks to it in JSON lines over its stdin/stdout. It keeps what is slow to start warm for the
whole session: the interpreter with numpy and torch, one :class:`grader.sandbox.runner.Sandbox`
(its fork server) and the prepared check cases. Each request grades exercises of a saved
notebook exactly as ``cnnlab grade <notebook> -e ...`` does (the student's code runs in a
sandboxed child; the comparison happens here), so a check after the first answers in the time
one exercise takes to run.

Request: ``{"id": n, "op": "grade", "notebook": path, "exercises": [names], "seed": int|null,
"cases": folder|null}`` (``seed`` and ``cases`` both null: a fresh seed). Reply: ``{"id": n,
"ok": true, "result": SubmissionResult.to_dict(), "not_checked": {name: why}}`` or ``{"id": n,
"ok": false, "error": message}``. End of file on stdin stops the service (the kernel is gone).

Runs in student bundles: imports nothing of ``cnnref`` or ``grader.exercises`` unless a request
names a seed (which needs the reference; a bundle has only its public cases).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO, Any

from grader import engine
from grader.errors import CnnlabError, ConfigError, GraderFailure
from grader.problemset import public_cases
from grader.problemset.nbgrader_bridge import SEED_ENV
from grader.results import Result


class Service:
    """The state kept between requests: a sandbox and prepared exercises."""

    def __init__(self) -> None:
        self._sandbox: Any = None
        self._prepared: dict[tuple[int, str], engine.PreparedExercise | Result] = {}
        self._saved: dict[str, tuple[int, int, list[engine.PreparedExercise], dict]] = {}

    def sandbox(self) -> Any:
        if self._sandbox is None:
            from grader.sandbox.runner import Sandbox

            self._sandbox = Sandbox()
        return self._sandbox

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

    def _from_cases(
        self, folder: str, names: list[str]
    ) -> tuple[int, list[engine.PreparedExercise], dict[str, str]]:
        manifest = Path(folder) / public_cases.MANIFEST
        try:
            stamp = manifest.stat().st_mtime_ns
        except OSError:
            stamp = -1
        cached = self._saved.get(folder)
        if cached is None or cached[1] != stamp:
            seed, prepared = public_cases.load_prepared(folder)
            unchecked = public_cases.load_not_checked(folder)
            cached = (seed, stamp, prepared, unchecked)
            self._saved[folder] = cached
        seed, _, prepared, unchecked = cached
        by_name = {p.name: p for p in prepared}
        chosen = [by_name[n] for n in names if n in by_name]
        not_checked = {}
        for name in names:
            if name in by_name:
                continue
            entry = unchecked.get(name)
            not_checked[name] = (
                public_cases.not_checked_message(name, entry)
                if entry is not None
                else f"the public check cases have no exercise {name!r}: your instructor "
                "checks it when grading"
            )
        return seed, chosen, not_checked

    def _from_seed(self, seed: int, names: list[str]) -> list[engine.PreparedExercise | Result]:
        try:
            from grader import registry
        except ImportError:  # a student bundle: no reference, only its public cases
            raise ConfigError(
                "grading with a seed needs the reference, which a student bundle does not "
                f"have: unset {SEED_ENV} to check against the bundle's public cases"
            ) from None

        out = []
        for spec in registry.select(names):
            key = (seed, spec.name)
            if key not in self._prepared:
                (item,) = engine.prepare_all([spec], seed)
                if isinstance(item, Result):  # not cached: retried on the next request
                    out.append(item)
                    continue
                self._prepared[key] = item
            out.append(self._prepared[key])
        return out

    def grade(self, request: dict[str, Any]) -> dict[str, Any]:
        from grader.submission import load_submission

        names = [str(n) for n in request.get("exercises") or []]
        submission = load_submission(request["notebook"])
        not_checked: dict[str, str] = {}
        if request.get("cases"):
            seed, prepared, not_checked = self._from_cases(request["cases"], names)
            items: list[Any] = list(prepared)
        else:
            seed = request.get("seed")
            seed = engine.fresh_seed() if seed is None else engine.check_seed(seed)
            items = self._from_seed(seed, names)
        result = engine.grade_prepared(submission, items, seed=seed, sandbox=self.sandbox())
        return {"ok": True, "result": result.to_dict(), "not_checked": not_checked}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            if request.get("op") != "grade":
                return {"ok": False, "error": f"unknown request {request.get('op')!r}"}
            return self.grade(request)
        except CnnlabError as exc:  # the notebook, a name or the seed: says what to do
            return {"ok": False, "error": str(exc)}
        except GraderFailure as exc:
            return {"ok": False, "error": f"the grader failed (not your code): {exc}"}
        except Exception as exc:  # a bug of the grader, reported, never a pass
            return {
                "ok": False,
                "error": f"the grader failed (not your code): {type(exc).__name__}: {exc}",
            }


def serve(requests: IO[str], replies: IO[str]) -> None:
    """Answer JSON-line requests from ``requests`` until end of file."""
    service = Service()
    try:
        for line in requests:
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except ValueError:
                replies.write(json.dumps({"ok": False, "error": "bad request"}) + "\n")
                replies.flush()
                continue
            reply = service.handle(request)
            reply["id"] = request.get("id")
            replies.write(json.dumps(reply) + "\n")
            replies.flush()
    finally:
        service.close()


def main() -> None:
    """Serve on this process's stdin/stdout; anything else printed goes to stderr (the log),
    so that nothing but replies reaches the kernel."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    serve(sys.stdin, replies)


if __name__ == "__main__":  # pragma: no cover - started by nbgrader_bridge
    main()
