"""A student's submission as source text: a folder of modules, one ``.py`` or an ``.ipynb``.

The grader never imports student code: :func:`load_submission` only *reads* the files, and the
sandboxed child executes them. A folder contributes every top-level ``*.py`` whose name is a
valid module name (the ``exercises/`` layout: one module per lecture topic); a ``.py`` file
is one module named after its stem; a notebook is one module built from its code cells in
order, with IPython magics (``%...``, ``%%...``) and shell escapes (``!...``) neutralised.
The child executes a notebook cell by cell, so one cell that raises does not stop later cells
from defining their functions.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from grader.errors import NotebookError, SubmissionError

#: Refuse a single source file larger than this (bytes): no student writes 5 MB of code.
MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_TOTAL_BYTES = 20 * 1024 * 1024
WHAT_TO_PASS = "pass the folder holding your .py files, a .py file or an .ipynb"
_ASSIGN_SHELL = re.compile(r"^[A-Za-z_][\w, ]*=\s*[%!]")


@dataclass(frozen=True)
class Submission:
    """One student's source, ready to hand to the sandbox.

    Attributes:
        path: what was passed (absolute).
        kind: ``"folder"``, ``"file"`` or ``"notebook"``.
        modules: module name -> source text, in a stable order (sorted by name).
        files: module name -> the file it came from (for messages and tracebacks).
        cells: notebooks only: module name -> its code cells in order (already
            neutralised); the child executes them one by one.
        data: folders only: the other regular files at the top of the folder (a data file
            a module reads next to itself), name -> bytes; the sandbox copies them beside
            the modules in the run's own folder, the only place the child can read them.
    """

    path: Path
    kind: Literal["folder", "file", "notebook"]
    modules: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)
    cells: dict[str, tuple[str, ...]] = field(default_factory=dict)
    data: dict[str, bytes] = field(default_factory=dict, repr=False)

    def display_name(self, module: str) -> str:
        """What a message calls ``module``: its file name (``pooling.py``, ``hw.ipynb``)."""
        return Path(self.files.get(module, f"{module}.py")).name

    def to_json(self) -> str:
        """The form the sandbox child reads (plain JSON)."""
        return json.dumps(
            {
                "path": str(self.path),
                "kind": self.kind,
                "modules": self.modules,
                "files": self.files,
                "cells": {k: list(v) for k, v in self.cells.items()},
            }
        )


def _read_source(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SubmissionError(
                f"{path.name} is {size // 1024} KiB, more than the "
                f"{MAX_FILE_BYTES // (1024 * 1024)} MiB a source file may have: "
                "remove the data pasted into it"
            )
        raw = path.read_bytes()
    except PermissionError as exc:
        raise SubmissionError(f"cannot read {str(path)!r}: permission denied") from exc
    except OSError as exc:
        raise SubmissionError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    try:  # honours a PEP 263 coding cookie, like the import system
        return importlib.util.decode_source(raw)
    except (SyntaxError, UnicodeDecodeError, LookupError):
        return raw.decode("utf-8", errors="replace")


#: Data files copied with a folder submission: at most this many, each at most MAX_FILE_BYTES.
MAX_DATA_FILES = 32


def _read_data_files(folder: Path, skip: set[str]) -> dict[str, bytes]:
    """Top-level regular files of ``folder`` besides the modules (links, FIFOs, devices and
    hidden files are skipped; never followed, never blocked on)."""
    import os
    import stat

    out: dict[str, bytes] = {}
    total = 0
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name in skip or entry.name.startswith(".") or len(out) >= MAX_DATA_FILES:
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
                continue
            if total + info.st_size > MAX_TOTAL_BYTES:
                break
            out[entry.name] = fh.read(MAX_FILE_BYTES)
            total += len(out[entry.name])
    return out


def neutralise_magics(source: str) -> str:
    """A notebook cell with IPython-only syntax made into plain Python.

    A cell magic (first line ``%%...``) turns the whole cell into comments; a line magic or
    shell escape (``%timeit f()``, ``!pip install x``, ``files = !ls``) becomes ``pass`` with
    the original as a comment, keeping its indentation so the cell still parses.
    """
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        return "\n".join(f"# {line}" for line in lines)
    out = []
    for line in lines:
        stripped = line.lstrip()
        if stripped[:1] in ("%", "!") or _ASSIGN_SHELL.match(stripped):
            out.append(f"{line[: len(line) - len(stripped)]}pass  # {stripped}")
        else:
            out.append(line)
    return "\n".join(out)


def _module_name(stem: str) -> str | None:
    return stem if stem.isidentifier() and not stem.startswith("__") else None


def _load_notebook(path: Path) -> Submission:
    try:
        import nbformat
    except ImportError as exc:  # pragma: no cover - nbformat is a dependency
        raise SubmissionError("reading notebooks needs nbformat: pip install nbformat") from exc
    text = _read_source(path)
    try:
        json.loads(text)
    except ValueError as exc:
        raise NotebookError(
            f"{path.name} is not a valid notebook: it is not JSON ({exc}). Open it in "
            "Jupyter and save it again, or pass the .py file instead"
        ) from None
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises several types for a malformed notebook
        raise NotebookError(
            f"{path.name} is not a valid notebook ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). Open it in Jupyter and save "
            "it again, or pass the .py file instead"
        ) from None
    cells = tuple(
        neutralise_magics(cell.source) for cell in nb.cells if cell.get("cell_type") == "code"
    )
    if not any(c.strip() for c in cells):
        raise SubmissionError(f"{path.name} has no code cells: {WHAT_TO_PASS}")
    name = _module_name(path.stem) or "notebook"
    source = "\n\n".join(f"# In[{i + 1}]:\n{c}" for i, c in enumerate(cells))
    return Submission(
        path=path,
        kind="notebook",
        modules={name: source},
        files={name: str(path)},
        cells={name: cells},
    )


def load_submission(path: str | Path) -> Submission:
    """Read a submission (without importing it).

    Args:
        path: a folder of ``*.py`` modules, one ``.py`` file, or an ``.ipynb``.

    Raises:
        SubmissionError: missing path, wrong kind of file, no modules, unreadable file.
        NotebookError: a notebook that is not JSON / nbformat.
    """
    given = str(path)
    path = Path(path).expanduser()
    if not path.exists():
        kind = "folder or file"
        if path.suffix == ".py":
            kind = "file"
        elif path.suffix == ".ipynb":
            kind = "notebook"
        elif not path.suffix:
            kind = "folder"
        raise SubmissionError(f"no such {kind} {given!r}: {WHAT_TO_PASS}")
    path = path.resolve()
    if path.is_dir():
        modules: dict[str, str] = {}
        files: dict[str, str] = {}
        total = 0
        for file in sorted(path.glob("*.py")):
            name = _module_name(file.stem)
            if name is None or not file.is_file():
                continue
            modules[name] = _read_source(file)
            files[name] = str(file)
            total += len(modules[name])
            if total > MAX_TOTAL_BYTES:
                raise SubmissionError(f"the .py files in {given!r} are too large to grade")
        if not modules:
            notebooks = sorted(p.name for p in path.glob("*.ipynb"))
            hint = f" (pass the notebook itself, e.g. {notebooks[0]!r})" if notebooks else ""
            raise SubmissionError(f"no .py files in folder {given!r}{hint}: {WHAT_TO_PASS}")
        skip = {Path(f).name for f in files.values()}
        return Submission(
            path=path,
            kind="folder",
            modules=modules,
            files=files,
            data=_read_data_files(path, skip),
        )
    if path.suffix == ".py":
        name = _module_name(path.stem) or "submission"
        return Submission(
            path=path, kind="file", modules={name: _read_source(path)}, files={name: str(path)}
        )
    if path.suffix == ".ipynb":
        return _load_notebook(path)
    raise SubmissionError(f"cannot grade {given!r} (a {path.suffix or 'file'}): {WHAT_TO_PASS}")
