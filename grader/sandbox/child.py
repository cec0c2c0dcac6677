"""The sandboxed child: set itself up, load the student's code, run a harness on each case.

The fork server (``grader.sandbox.forkserver``) forks once per
:meth:`grader.sandbox.runner.Sandbox.run` and calls :func:`child_main` in the new process,
which never returns. In order it:

1. puts every isolation layer of the server's plan in place (:func:`grader.sandbox.layers.enter`:
   own session, namespaces and private mounts, resource limits, unprivileged uid, no
   capabilities, the Landlock allow-list, the seccomp filter), pointing stdin at ``/dev/null``
   and stdout/stderr at ``output.txt`` in the run's fresh folder (its working directory,
   ``HOME`` and ``TMPDIR``) on the way; the student's modules live in the folder's
   ``submission/`` (their ``__file__``), with the submission's data files beside them;
2. reports the layers in place to the server through a pipe it then closes (so student code
   cannot fake it), installs the audit hook (``grader.sandbox.audit``) and caps
   ``sys.stdout``/``sys.stderr``;
3. for each case: decodes ``case_NNN.in.npz``, calls the harness, writes
   ``case_NNN.out.npz`` then ``case_NNN.status.json`` (both atomically).

Nothing here is trusted by the parent: it reads the files only after this process is gone and
validates them strictly. This module must not import ``cnnref`` or ``grader.exercises``.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.abc
import importlib.machinery
import io
import json
import os
import re
import signal
import sys
import traceback
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from grader.sandbox import audit, caseio
from grader.sandbox.harness import HARNESSES, BadReturn, MissingFunction

MB = 1024 * 1024
MESSAGE_CHARS = 400
OUTPUT_FILE = "output.txt"
SUBMISSION_FILE = "submission.json"
#: Folder of the run folder that the student's files are said to lie in (``__file__``).
SUBMISSION_DIR = "submission"
SETUP_OK = b"S"


def case_in(i: int) -> str:
    return f"case_{i:03d}.in.npz"


def case_out(i: int) -> str:
    return f"case_{i:03d}.out.npz"


def case_status(i: int) -> str:
    return f"case_{i:03d}.status.json"


#: What the child was doing (``load<TAB>where`` or ``case<TAB>i``), so that a run killed for
#: its time limit can say whether the student's code hung while loading (code at the top level)
#: or inside the function. Overwritten at each step; the parent reads it after the child is
#: gone and treats it as untrusted text (:func:`grader.sandbox.runner.read_progress`).
PROGRESS_FILE = "progress.txt"
PROGRESS_BYTES = 512


class Progress:
    """Writes :data:`PROGRESS_FILE` in the run folder; never raises (student code may have
    exhausted file descriptors or hit the file-size limit: the marker is a courtesy)."""

    def __init__(self, workdir: str | None) -> None:
        self._path = os.path.join(workdir, PROGRESS_FILE) if workdir else None
        self._open, self._write, self._close = os.open, os.write, os.close  # before student code
        self.current = ""

    def set(self, text: str) -> None:
        """Record ``text`` as what runs now."""
        self.current = text
        if self._path is None:
            return
        try:
            fd = self._open(self._path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                self._write(fd, text.encode("utf-8", "replace")[:PROGRESS_BYTES])
            finally:
                self._close(fd)
        except Exception:  # noqa: BLE001, S110 - a courtesy, never a failure
            pass


# --------------------------------------------------------------------------- output capture


class CappedRaw(io.RawIOBase):
    """A write-only raw stream onto ``fd`` that silently drops everything after ``cap`` bytes.

    Python-level prints go through it, so a gigabyte of ``print`` costs the child CPU time
    only; the parent also reads no more than the cap. (Direct ``os.write(1, ...)`` goes to
    the file and is bounded by ``RLIMIT_FSIZE``.)
    """

    def __init__(self, fd: int, cap: int) -> None:
        super().__init__()
        self._fd, self._left = fd, cap

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        if self._left > 0:
            chunk = view[: self._left]
            try:
                written = 0
                while written < len(chunk):
                    written += os.write(self._fd, chunk[written:])
            except OSError:  # file-size limit or disk full: stop writing, never raise
                self._left = 0
                return n
            self._left -= len(chunk)
        return n


def _capture_output(cap: int) -> None:
    raw = CappedRaw(1, cap)
    buffered = io.BufferedWriter(raw, buffer_size=8192)
    sys.stdout = io.TextIOWrapper(
        buffered, encoding="utf-8", errors="backslashreplace", line_buffering=True
    )
    sys.stderr = io.TextIOWrapper(
        buffered, encoding="utf-8", errors="backslashreplace", write_through=True
    )


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # the student may have replaced or closed it
            stream.flush()


# --------------------------------------------------------------------------- student code


#: Name endings many exercises share: two names that only share one are not alike.
SHARED_ENDINGS = ("_forward", "_backward", "_params", "_macs", "_size", "_map", "_field")


def close_names(function: str, names: Iterable[str]) -> list[str]:
    """The names among ``names`` that look like ``function`` (a typo, a rename): the same
    name in another case first, then up to three ``difflib`` matches (ratio >= 0.6), where an
    ending both names share (``_forward``...) does not count: ``avgpool2d_forward`` is not a
    misspelt ``relu_forward``."""
    names = list(names)
    lowered = {n.lower(): n for n in names}
    same_case = [lowered[function.lower()]] if function.lower() in lowered else []
    close = []
    for name in difflib.get_close_matches(function, names, n=3, cutoff=0.6):
        a, b = function, name
        for ending in SHARED_ENDINGS:
            if a.endswith(ending) and b.endswith(ending):
                a, b = a[: -len(ending)], b[: -len(ending)]
        if difflib.SequenceMatcher(None, a, b).ratio() >= 0.6:
            close.append(name)
    return list(dict.fromkeys(same_case + close))


class StudentCode:
    """The submission's modules, loaded lazily: an exercise runs only the modules it needs.

    The parent sends, with the sources, a static map of which module binds which top-level
    name (``symbols``, built with :mod:`ast` in :func:`grader.submission.scan_symbols`). A
    lookup (:meth:`get`) loads only the modules that define the name asked for (and what
    those import), so a module that loops or crashes at import costs only the exercises whose
    functions live in it. A name nobody defines loads nothing beyond the exercise's topic
    module and gets a "did you mean" against the names the submission does define.

    Args:
        data: the parsed ``submission.json`` (see :meth:`grader.submission.Submission.to_json`).
    """

    #: Preference among modules binding the same name: an implementation, then an unfilled
    #: stub, then a module that only imports it.
    RANK = {"def": 0, "class": 0, "type": 0, "value": 0, "stub": 1, "import": 2}

    def __init__(self, data: dict[str, Any], progress: Progress | None = None) -> None:
        self.progress = progress or Progress(None)
        self.kind: str = data["kind"]
        self.sources: dict[str, str] = data["modules"]
        self.files: dict[str, str] = data.get("files", {})
        self.cells: dict[str, list[str]] = data.get("cells", {})
        self.cell_numbers: dict[str, list[int]] = data.get("cell_numbers", {})
        #: module -> name -> kind; ``None`` (no map sent): every module is a candidate.
        self.symbols: dict[str, dict[str, str]] | None = data.get("symbols")
        self.depth: dict[str, int] = data.get("depth", {})
        self.broken: dict[str, str] = data.get("broken", {})
        self.problems: list[tuple[str, str]] = [tuple(p) for p in data.get("problems", [])]
        #: notebooks: how messages name each cell ("the cell defining f (code cell 3, In [4])")
        self.cell_labels: dict[str, list[str]] = data.get("cell_labels", {})
        #: every exercise's function: never suggested as the name to rename a function to
        self.exercise_functions: frozenset[str] = frozenset(data.get("exercise_functions", ()))
        #: notebooks: module -> (cell source, why it failed, a syntax error?) of failed cells
        self.cell_failures: dict[str, list[tuple[str, str, bool]]] = {}
        self.loaded: dict[str, types.ModuleType] = {}
        self.errors: dict[str, str] = {}  # module -> why it could not be imported
        self.cell_errors: dict[str, list[str]] = {}
        #: code filename -> how messages call it ("pooling.py", "hw.ipynb, cell 3")
        self.display: dict[str, str] = {}
        #: missing helper -> the close match used in its place (see :meth:`get`)
        self.stand_ins: dict[str, Callable[..., Any] | None] = {}
        # A module named like an imported or a standard-library module (random.py, copy.py)
        # runs in a module of its own that nothing imports by that name: numpy or torch
        # importing `random` later must get the standard library's.
        stdlib = getattr(sys, "stdlib_module_names", frozenset())
        self._private = {n for n in self.sources if n in sys.modules or n in stdlib}
        sys.meta_path.insert(0, _Finder(self))

    def display_module(self, name: str) -> str:
        return os.path.basename(self.files.get(name, f"{name}.py"))

    def relative_file(self, name: str) -> str:
        """Module ``name``'s path inside the submission (``notebooks/pooling.ipynb``), as the
        student knows it, even when the runner gave it the run's own copy."""
        path = self.files.get(name) or f"{name}.py"
        if os.path.isabs(path):
            rel = os.path.relpath(path, os.path.join(os.getcwd(), SUBMISSION_DIR))
            return os.path.basename(path) if rel.startswith("..") else rel
        return path

    def filename(self, name: str) -> str:
        """Where module ``name`` says it lives (``__file__``, tracebacks): the run's own copy
        when the runner wrote one (an absolute path), else its path inside the submission
        under :data:`SUBMISSION_DIR` of the run folder; never where the parent keeps it."""
        path = self.files.get(name) or f"{name}.py"
        if os.path.isabs(path):
            return path
        return os.path.join(os.getcwd(), SUBMISSION_DIR, path)

    def exec_into(self, name: str, module: types.ModuleType) -> None:
        """Run module ``name``'s source in ``module`` (a notebook: cell by cell), recording
        in :attr:`progress` which file or cell runs, and restoring what ran before when done
        (a module imported by another one's top level)."""
        resume = self.progress.current
        try:
            self._exec_into(name, module)
        finally:
            self.progress.set(resume)

    def _exec_into(self, name: str, module: types.ModuleType) -> None:
        module.__file__ = self.filename(name)
        if name in self.broken:
            raise ImportError(self.broken[name])
        if name in self.cells:
            nb = self.display_module(name)
            errors = self.cell_errors.setdefault(name, [])
            failures = self.cell_failures.setdefault(name, [])
            numbers = self.cell_numbers.get(name) or range(1, len(self.cells[name]) + 1)
            labels = self.cell_labels.get(name) or [f"code cell {n}" for n in numbers]
            for number, label, cell in zip(numbers, labels, self.cells[name], strict=False):
                fname = f"<{nb} cell {number}>"
                self.display[fname] = f"{nb}, {label}"
                self.progress.set(f"load\t{self.display[fname]}\tnotebook")
                try:
                    exec(compile(cell, fname, "exec"), module.__dict__)
                except BaseException as exc:  # noqa: BLE001 - one bad cell must not stop the rest
                    why = self.describe(exc)
                    if self.display[fname] not in why:
                        why = f"{self.display[fname]}: {why}"
                    errors.append(why)
                    failures.append((cell, why, isinstance(exc, SyntaxError)))
            return
        fname = self.filename(name)
        self.display[fname] = self.display_module(name)
        self.progress.set(f"load\t{self.relative_file(name)}\tfile")
        exec(compile(self.sources[name], fname, "exec"), module.__dict__)

    def load(self, name: str) -> types.ModuleType | None:
        """Module ``name``, importing it the first time; ``None`` when that failed."""
        if name in self.loaded:
            return self.loaded[name]
        if name in self.errors:
            return None
        if name in self.broken:
            self.errors[name] = self.broken[name]
            return None
        try:
            if name in self._private:  # clashes with an already imported module
                module = types.ModuleType(name)
                self.exec_into(name, module)
            else:
                module = importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - SystemExit at import is the student's
            self.errors[name] = self.import_error(name, exc)
            return None
        self.loaded[name] = module
        return module

    def _source_line(self, filename: str, lineno: int) -> str:
        for name in self.sources:
            if name not in self.cells and self.filename(name) == filename:
                lines = self.sources[name].splitlines()
                if 0 < lineno <= len(lines):
                    return lines[lineno - 1].strip()
        return ""

    def import_error(self, name: str, exc: BaseException) -> str:
        """Why importing module ``name`` failed, saying where: the file and line of the
        statement at module level that failed (in ``name`` or in a helper module it imports,
        "imported from shapes.py, line 14"), and, when that statement called a function
        that raised (a test call left in the file), that it was a call at module level and
        what to do about it."""
        shown = self.display_module(name)
        frames = [
            (frame.f_code.co_name, frame.f_code.co_filename, lineno)
            for frame, lineno in traceback.walk_tb(exc.__traceback__)
            if frame.f_code.co_filename in self.display
        ]
        top = [f for f in frames if f[0] == "<module>"]
        where = ""
        if top:
            _, fname, line = top[-1]  # the innermost statement at module level
            where = f"{self.display[fname]}, line {line}"
            if top[0][1] != fname:  # a helper module, imported from the exercise's file
                where += f", imported from {self.display[top[0][1]]}, line {top[0][2]}"
        if isinstance(exc, SystemExit):
            at = f": at {where}" if where else ""
            return _short(
                f"sys.exit({exc.code!r}) was called while importing {shown}{at} (remove it, or "
                'move it under `if __name__ == "__main__":`)'
            )
        text = self.describe(exc)
        if top and frames[-1][0] != "<module>":  # it raised inside a function called at import
            _, fname, line = top[-1]
            code = self._source_line(fname, line)
            call = f" (`{code[:60]}`, a call at module level)" if code else ""
            return _short(
                f"importing {shown} failed at {where}{call}: {text}; move test code under "
                '`if __name__ == "__main__":` so that it does not run when graded'
            )
        if top and top[0][1] != top[-1][1]:
            text += f" (imported from {self.display[top[0][1]]}, line {top[0][2]})"
        return text

    def _hint_rank(self, module: str, hint: str | None) -> int:
        """0: the module is the topic's (``pooling``); 1: its file name mentions the topic
        (``pooling (1).ipynb``, ``jdoe_pooling.py``); 2: neither."""
        if not hint:
            return 2
        if module == hint:
            return 0
        stem = os.path.splitext(self.display_module(module))[0].lower()
        return 1 if hint.lower() in re.split(r"[^0-9a-z]+", stem) else 2

    def owners(self, function: str, hint: str | None) -> list[str]:
        """The modules that bind ``function`` statically, best first: an implementation over
        a stub over an import, then the topic's module, then the shallowest file."""
        if self.symbols is None:
            return sorted(self.sources, key=lambda m: (self._hint_rank(m, hint), m))
        found = [m for m in self.sources if function in self.symbols.get(m, {})]
        return sorted(
            found,
            key=lambda m: (
                self.RANK.get(self.symbols[m][function], 3),  # type: ignore[index]
                self._hint_rank(m, hint),
                self.depth.get(m, 0),
                m,
            ),
        )

    def _lookup(self, function: str, modules: list[str]) -> tuple[Callable[..., Any] | None, str]:
        """The first of ``modules`` that loads and binds a callable ``function``: (it, the
        module), else ``(None, "")``."""
        for name in modules:
            module = self.load(name)
            if module is None:
                continue
            value = module.__dict__.get(function)
            if value is not None and callable(value):
                return value, name
        return None, ""

    def _kind(self, module: str, function: str) -> str | None:
        return (self.symbols or {}).get(module, {}).get(function)

    def failure(self, function: str, modules: list[str]) -> str | None:
        """Why the student's own ``function`` could not be loaded, when it could not: one of
        ``modules`` (those that bind it, best first, then the topic's) failed to import (a
        SyntaxError, an exception at import), or the notebook cell that defines it failed.
        What an unfilled stub elsewhere (the generated notebooks next to the student's
        ``.py``) must never hide."""
        for name in modules:
            if name in self.errors:
                return f"{self.errors[name]} (so {function} could not be loaded)"
        defines = re.compile(
            rf"^(?:async[ \t]+)?(?:def|class)[ \t]+{re.escape(function)}\b", re.MULTILINE
        )
        mentions = re.compile(rf"(?<![\w.]){re.escape(function)}(?!\w)")
        for name in [*modules, *(m for m in self.cell_failures if m not in modules)]:
            for cell, why, syntax in self.cell_failures.get(name, ()):
                if defines.search(cell) or (syntax and mentions.search(cell)):
                    return f"{why} (so {function} was not defined)"
        return None

    def defined_names(self) -> dict[str, str]:
        """Every function, class or value the submission binds -> the file that binds it."""
        names: dict[str, str] = {}
        for module, symbols in sorted((self.symbols or {}).items()):
            for name, kind in symbols.items():
                if kind != "import" and not name.startswith("_"):
                    names.setdefault(name, self.display_module(module))
        for module in self.loaded.values():  # functions defined dynamically (not imported)
            for name, value in module.__dict__.items():
                if (
                    callable(value)
                    and not name.startswith("_")
                    and getattr(value, "__module__", None) == module.__name__
                ):
                    names.setdefault(name, self.display_module(module.__name__))
        return names

    def close_matches(self, function: str, exclude: tuple[str, ...] = ()) -> list[str]:
        """Names the submission defines that look like ``function`` (a typo, a rename)."""
        opposite = {"forward": "backward", "backward": "forward"}
        swapped = {
            function.replace(word, other) for word, other in opposite.items() if word in function
        }  # maxpool2d_backward is another exercise, not a misspelt maxpool2d_forward
        names = [
            n
            for n in self.defined_names()
            if n != function
            and n not in exclude
            and n not in swapped
            and n not in self.exercise_functions  # another exercise's, not a misspelling
            and (self.symbols is None or self._defined_kind(n) != "stub")
            # a class for a function exercise is an interface type (ReceptiveField), not a
            # renamed answer; a class exercise (BasicBlock) may be misspelt as a class, but
            # never as a data type (DenseCache(NamedTuple) is not a misspelt DenseBlock)
            and self._defined_kind(n) != "type"
            and (function[:1].isupper() or self._defined_kind(n) != "class")
        ]
        return close_names(function, names)

    def get(
        self, function: str, hint: str | None = None, *, exercise: str | None = None
    ) -> Callable[..., Any]:
        """The student's callable ``function``.

        Args:
            function: the name the harness asks for.
            hint: the exercise's topic (``"pooling"``): preferred when several modules define
                ``function``, and searched when none does statically.
            exercise: the exercise's own function. When the harness asks for another one (a
                backward asks for its forward, to build the cache) and the submission lacks it
                but defines exactly one close match (a rename), the match stands in and a note
                says so; the exercise's own function never has a stand-in.

        Raises:
            MissingFunction: no such function; the message names the module that failed to
                import, or suggests the names that look alike ("did you mean").
        """
        owners = self.owners(function, hint)
        found, where = self._lookup(function, owners)
        if found is not None and self._kind(where, function) != "stub":
            return found
        topical: list[str] = []
        if self.symbols is not None:  # defined dynamically? look in the topic's modules only
            topical = [m for m in self.sources if m not in owners and self._hint_rank(m, hint) < 2]
            topical.sort(key=lambda m: (self._hint_rank(m, hint), self.depth.get(m, 0), m))
            dynamic, _ = self._lookup(function, topical)
            if dynamic is not None:
                return dynamic
        # Only an unfilled stub, or nothing: what the student wrote and the grader could not
        # load (a SyntaxError, a failed cell) comes first, then a close name (a rename).
        failed = self.failure(function, [*owners, *topical])
        if failed is not None:
            raise MissingFunction(failed)
        exclude = (exercise,) if exercise else ()
        close = self.close_matches(function, exclude)
        if found is not None and not close:
            return found  # the stub: its NotImplementedError says "not implemented"
        if exercise is not None and function != exercise and function[:1].islower():
            stand_in = self._stand_in(function, close, hint, exercise)
            if stand_in is not None:
                return stand_in
        raise MissingFunction(self.missing_message(function, close, stub=where or None))

    def _stand_in(
        self, function: str, close: list[str], hint: str | None, exercise: str
    ) -> Callable[..., Any] | None:
        """The one close match of a missing helper function (see :meth:`get`), or ``None``."""
        if function in self.stand_ins:
            return self.stand_ins[function]
        found = None
        if len(close) == 1 and difflib.SequenceMatcher(None, function, close[0]).ratio() >= 0.75:
            try:
                found = self.get(close[0], hint)
            except MissingFunction:
                found = None
            if isinstance(found, type):
                found = None
        if found is not None:
            where = self.defined_names().get(close[0], "your code")
            sys.stderr.write(
                f"[cnnlab] {exercise} needs your {function}, which is not defined; your "
                f"{close[0]} ({where}) was used in its place. Rename it to {function}: the "
                f"exercise {function} itself scores 0 until you do.\n"
            )
        self.stand_ins[function] = found
        return found

    def _defined_kind(self, name: str) -> str | None:
        """The best kind any module binds ``name`` with (``def`` over ``stub``)."""
        kinds = [k.get(name) for k in (self.symbols or {}).values() if name in k]
        return min(kinds, key=lambda k: self.RANK.get(k, 3)) if kinds else None

    def missing_message(self, function: str, close: list[str], stub: str | None = None) -> str:
        """Why ``function`` is missing, with "did you mean" and what could not be read;
        ``stub``: the module whose unfilled stub of ``function`` is all there is."""
        message = f"no function named {function!r} in your submission"
        if stub is not None:
            message = (
                f"the only {function} in your submission is the unfilled stub in "
                f"{self.relative_file(stub)}"
            )
        if close:
            names = self.defined_names()
            shown = " or ".join(f"{n!r} (in {names.get(n, 'your code')})" for n in close)
            message += (
                f"; did you mean {shown}? The grader calls the function by the name the "
                f"exercise gives it: rename yours to {function}"
            )
        else:
            files = sorted({self.display_module(m) for m in self.sources})
            shown = ", ".join(files[:6]) + (", ..." if len(files) > 6 else "")
            message += f" (your files: {shown}); define it with exactly this name"
        failed = [f"{self.display_module(n)}: {e}" for n, e in self.errors.items()]
        for errs in self.cell_errors.values():
            failed += errs[:3]
        failed += [f"{file} could not be read: {why}" for file, why in self.problems]
        if failed:
            message += "; " + "; ".join(failed[:3])
        return message

    # ----------------------------------------------------------------- messages

    def where(self, tb: types.TracebackType | None) -> tuple[str, str, int] | None:
        """(function, display file, line) of the innermost student frame of ``tb``."""
        found = None
        for frame, lineno in traceback.walk_tb(tb):
            fname = frame.f_code.co_filename
            if fname in self.display:
                found = (frame.f_code.co_name, self.display[fname], lineno)
        return found

    def describe(self, exc: BaseException) -> str:
        """A one-line readable message for ``exc`` raised by student code."""
        kind = type(exc).__name__
        if isinstance(exc, SystemExit):
            return f"exited (sys.exit({exc.code!r})) before returning a result"
        if isinstance(exc, SyntaxError):
            fname = exc.filename or ""
            shown = self.display.get(fname, os.path.basename(fname))
            return _short(f"{kind} in {shown}, line {exc.lineno}: {exc.msg}")
        text = _safe_str(exc)
        if isinstance(exc, EOFError):  # input(): stdin is /dev/null in the sandbox
            text += (
                " (input() gets no answer while your work is graded: remove it, or move it "
                'under `if __name__ == "__main__":`)'
            )
        where = self.where(exc.__traceback__)
        if where is None:
            if isinstance(exc, (MissingFunction, BadReturn)):
                return _short(text)
            if isinstance(exc, TypeError):
                return _short(f"{kind}: {text} (check the function's parameters against the stub)")
            return _short(f"{kind}: {text}" if text else kind)
        func, shown, line = where
        place = f"{shown}, line {line}" if func == "<module>" else f"{func} ({shown}, line {line})"
        return _short(f"{kind} in {place}" + (f": {text}" if text else ""))


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Lets the student's modules import each other (``from layers import conv2d_forward``)."""

    def __init__(self, code: StudentCode) -> None:
        self.code = code

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname in self.code.sources and fullname not in self.code._private:
            return importlib.machinery.ModuleSpec(
                fullname, self, origin=self.code.filename(fullname)
            )
        return None

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        self.code.exec_into(module.__name__, module)


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except BaseException:  # noqa: BLE001 - a student's __str__ may raise anything
        return "(the exception's message could not be shown)"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = _safe_str(exc) if isinstance(exc, RuntimeError) else ""
    return "can't allocate memory" in text or "DefaultCPUAllocator" in text


# --------------------------------------------------------------------------- setup


def _redirect_and_enter(req: dict[str, Any]) -> None:
    """stdin from ``/dev/null``, stdout/stderr to the capped output file, the submission's
    copy as working directory, a minimal environment."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the file-size limit: EFBIG, not death
    workdir = req["workdir"]
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    out = os.open(
        os.path.join(workdir, OUTPUT_FILE),
        os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
        0o644,
    )
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update(req["env"])
    os.environ.update({"HOME": workdir, "TMPDIR": workdir})
    sys.argv = [""]
    import tempfile

    tempfile.tempdir = None  # the server's cached choice is not this run's folder


#: Descriptors above this are not looked at (the fork server opens a handful).
INHERITED_FD_LIMIT = 1024


def _close_inherited() -> None:
    """Close every descriptor but stdin/stdout/stderr before student code runs: the fork
    server's (its namespace handle, pipes, log) are not the student's to use. ``O_CLOEXEC``
    does not help across ``fork``; ``close_range`` may be refused by seccomp, so one by one."""
    for fd in range(3, INHERITED_FD_LIMIT):
        with contextlib.suppress(OSError):
            os.close(fd)


def child_main(req: dict[str, Any], sync_fd: int, plan: Any = None, res: Any = None) -> NoReturn:
    """The child's whole life (called right after ``os.fork`` in the fork server).

    Every layer of ``plan`` (:class:`grader.sandbox.layers.Plan`) is put in place before any
    student code runs; if one cannot be, the set-up fails and the parent reports a grader
    failure. The set-up report (``S`` + the JSON list of layers in place, or ``E`` + why)
    goes through ``sync_fd``, closed before student code runs so that it cannot be faked.
    """
    from grader.sandbox import layers

    try:
        plan = plan if plan is not None else layers.Plan()
        res = res if res is not None else layers.Resources()
        workdir = req["workdir"]
        done = layers.enter(plan, res, workdir, req["limits"], _redirect_and_enter, req)
        data = json.loads(Path(workdir, SUBMISSION_FILE).read_text(encoding="utf-8"))
        policy = audit.Policy(
            workdir=workdir,
            forbidden=tuple(req["policy"]["forbidden"]),
            blocked_modules=tuple(req["policy"]["blocked_modules"]),
            allowed_grader_modules=tuple(req["policy"]["allowed_grader_modules"]),
            library_dirs=tuple(req["policy"].get("library_dirs", ())),
        )
        harness = HARNESSES[req["harness"]]
        with_audit = plan.has("audit")
        if with_audit:
            done.append("audit")
    except BaseException as exc:  # noqa: BLE001 - a grader fault, reported through the pipe
        try:
            os.write(sync_fd, b"E" + f"{type(exc).__name__}: {exc}".encode()[:2000])
        finally:
            os._exit(86)
    report = {"layers": done, "seconds": layers.TIMES}
    os.write(sync_fd, SETUP_OK + json.dumps(report).encode())
    os.close(sync_fd)
    _close_inherited()
    try:
        if with_audit:
            audit.install(policy)
        _capture_output(int(req["limits"]["output_bytes"]))
        code = StudentCode(data, Progress(workdir))
        _run_cases(code, harness, req)
        _flush_output()
    except BaseException:  # noqa: BLE001 - student code may have broken the child's own code
        try:
            traceback.print_exc()
            _flush_output()
        finally:
            os._exit(87)
    os._exit(0)


def _write_status(workdir: str, i: int, status: str, message: str) -> None:
    tmp = os.path.join(workdir, f".{case_status(i)}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"status": status, "message": message}, fh)
    os.replace(tmp, os.path.join(workdir, case_status(i)))


def _run_cases(code: StudentCode, harness: Any, req: dict[str, Any]) -> None:
    function, hint = req["function"], req.get("module_hint")
    workdir = req["workdir"]
    memory_message = req["limits"].get("memory_message") or (
        f"ran out of memory (limit {req['limits']['memory_mb']} MB above the interpreter)"
    )

    def get(name: str) -> Callable[..., Any]:
        return code.get(name, hint, exercise=function)

    for i in range(int(req["n_cases"])):
        reserve = bytearray(2 * MB)  # freed on MemoryError so the status can be written
        code.progress.set(f"case\t{i}")
        try:
            case = caseio.decode_case(
                caseio.load_npz_strict(os.path.join(workdir, case_in(i)), kinds="biufcU")
            )
            outputs = harness(get, function, case)
            if not isinstance(outputs, dict) or not all(
                isinstance(k, str) and type(v) is np.ndarray for k, v in outputs.items()
            ):
                raise BadReturn("the harness produced something other than named arrays")
            caseio.save_npz(os.path.join(workdir, case_out(i)), outputs)
            status, message = "ok", ""
        except NotImplementedError as exc:
            text = _safe_str(exc)
            status = "not_implemented"
            message = _short(f"NotImplementedError: {text}" if text else code.describe(exc))
        except BaseException as exc:  # noqa: BLE001 - everything the student raises is data
            del reserve
            if is_out_of_memory(exc):
                status, message = "memory", memory_message
            elif isinstance(exc, MissingFunction):
                status, message = "error", _short(_safe_str(exc))
            else:
                status, message = "error", code.describe(exc)
            del exc
        _flush_output()
        _write_status(workdir, i, status, message)
