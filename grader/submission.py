"""A student's submission as source text: a folder tree, one ``.py``, one ``.ipynb`` or a ``.zip``.

The grader never imports student code: this module only *reads* files, and the sandboxed
child executes them. What a student or an LMS delivered is hostile input, so reading is
deliberately narrow:

* **Regular files only.** Every file is opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked
  with ``fstat`` before a byte is read, and never more than its cap is read: a named pipe never
  blocks the grader, a device (``/dev/zero``) is never read, a file that grows while being read
  is cut off. A symbolic link is followed only when it stays inside the submission and points
  at a regular file; a link that leaves the submission (``layers.py -> /srv/course/solutions``),
  a FIFO, a socket or a device anywhere in the tree makes the whole submission unreadable
  (:class:`~grader.errors.SubmissionError`) with a message that says what to do.
* **Size caps** (:data:`MAX_FILE_BYTES` for a source file or a notebook's code,
  :data:`MAX_NOTEBOOK_BYTES` for a notebook on disk with its outputs, :data:`MAX_TOTAL_BYTES`
  for all the code, :data:`MAX_FILES`, :data:`MAX_DEPTH`). A notebook's outputs are never
  graded, so they do not count: a notebook with 6 MB of plots is read, its code checked.
* **Zip files** (a ``.zip`` given directly, or one inside a folder) are read in memory, member
  by member, with the checks of :func:`zip_sources`: no absolute paths or ``..``, no links, no
  encryption, sizes counted while decompressing, and no two members whose names clash
  (letter case, Unicode normalisation, path spelling).

**Finding the code.** A folder contributes every ``.py`` and ``.ipynb`` in its tree (hidden
folders, ``__pycache__``, ``__MACOSX``, ``.ipynb_checkpoints`` and virtual environments are
skipped), however deeply a GitHub or zip upload nests them. Files are recognised by the
functions they define, not by their names: each file becomes a module (a ``.py`` keeps its
stem, so ``from layers import conv2d_forward`` works; a renamed notebook such as
``pooling (1).ipynb`` or ``jdoe_pooling-Copy1.ipynb`` gets a unique identifier), and a static
map (:attr:`Submission.symbols`, from :mod:`ast`) records which top-level names each module
defines. The sandboxed child uses the map to load only the modules an exercise needs and to
say "did you mean" without running anything.

**Notebooks** are read as Jupyter's Restart & Run All would run them: code cells in notebook
order (whatever their execution counts), IPython magics and shell escapes neutralised
(:func:`neutralise_magics`), with two differences. Test cells are never run: nbgrader's
autograder tests (metadata ``grade: true, solution: false``) and cnnlab's own check cells
(recognised by their content too, so a notebook re-saved without nbgrader's metadata is graded
the same way). And a cell is run only when the student's functions need it: every cell that
defines a function or a class, plus, transitively, every cell that binds or changes a name those
cells use (:func:`select_cells`); scratch cells that only try things out, plot or train are
left out, so they cannot time out or crash the grading.

One damaged notebook among several (cut off while uploading, not JSON) does not zero the rest:
every readable file is graded and the unreadable one is listed in
:attr:`Submission.problems` with the reason; a ``.py`` file that Python cannot decode (UTF-16)
is listed in :attr:`Submission.broken`, so the exercises it defines report that, naming the file.
"""

from __future__ import annotations

import ast
import codecs
import dataclasses
import errno
import importlib.util
import io
import json
import keyword
import os
import re
import stat
import symtable
import unicodedata
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from grader.errors import NotebookError, SubmissionError

KiB = 1024
MiB = 1024 * 1024
#: Most bytes of one source file, or of the code cells of one notebook (outputs excluded).
MAX_FILE_BYTES = 5 * MiB
#: Most bytes of one notebook on disk, outputs included (they are dropped before the code is
#: checked against :data:`MAX_FILE_BYTES`).
MAX_NOTEBOOK_BYTES = 64 * MiB
#: Most bytes of code in a whole submission.
MAX_TOTAL_BYTES = 20 * MiB
#: Most code cells of one notebook.
MAX_CELLS = 2000
#: Most ``.py``/``.ipynb`` files taken from one submission.
MAX_FILES = 200
#: Deepest folder level searched below the submission's root.
MAX_DEPTH = 8
#: Most directory entries looked at while searching a submission's tree.
MAX_WALK_ENTRIES = 20_000
#: Most bytes of one data file (not code) given to the student's code, and of all of them.
DATA_MAX_FILE_BYTES = 1 * MiB
DATA_MAX_TOTAL_BYTES = 4 * MiB
DATA_MAX_FILES = 50
#: Most members a zip may hold.
ZIP_MAX_MEMBERS = 500
#: Most bytes taken out of one zip in all (code files only; the rest is never decompressed).
ZIP_MAX_TOTAL_BYTES = 64 * MiB

WHAT_TO_PASS = "pass the folder holding your .py files or notebooks, a .py file or an .ipynb"
GRADABLE_SUFFIXES = (".py", ".ipynb")
#: Folder names never searched: caches, metadata, installed packages.
IGNORED_DIRS = frozenset(
    {"__MACOSX", "__pycache__", "node_modules", "site-packages", "dist-packages"}
)
#: File names never taken.
IGNORED_FILES = frozenset({"Thumbs.db", "desktop.ini"})
_ASSIGN_SHELL = re.compile(r"^[A-Za-z_][\w, ]*=\s*[%!]")
#: cnnlab's generated check cells (``from grader.problemset.nbgrader_bridge import check``, or
#: an explicit ``# cnnlab: check`` marker): never run when a notebook is graded.
_CHECK_CELL = re.compile(
    r"^[ \t]*(?:from[ \t]+grader(?:\.\w+)*\.nbgrader_bridge[ \t]+import\b"
    r"|import[ \t]+grader(?:\.\w+)*\.nbgrader_bridge\b"
    r"|#[ \t]*cnnlab:[ \t]*check\b)",
    re.MULTILINE,
)
_DEF_LINE = re.compile(r"^(?:async[ \t]+)?def[ \t]+([A-Za-z_]\w*)[ \t]*\(", re.MULTILINE)
_CLASS_LINE = re.compile(r"^class[ \t]+([A-Za-z_]\w*)\b", re.MULTILINE)
#: Calls that make a cell's effect on the namespace impossible to see statically.
_OPAQUE_CALLS = frozenset({"exec", "eval", "globals", "vars", "locals", "__import__", "setattr"})

#: What :attr:`Submission.symbols` says a module does with a top-level name.
SymbolKind = Literal["def", "stub", "class", "type", "value", "import"]


def _is_ignored(name: str) -> bool:
    return name.startswith((".", "~$")) or name in IGNORED_FILES or name in IGNORED_DIRS


# --------------------------------------------------------------------------- reading safely


def _mode_name(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def _size_text(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n >= MiB else f"{max(1, n // KiB)} KiB"


def _too_large(label: str, size: int, limit: int) -> SubmissionError:
    if label.lower().endswith(".zip"):
        advice = "zip only your .py files and notebooks (no data sets, no installed packages)"
    elif label.lower().endswith(".ipynb"):
        advice = "clear its outputs (Kernel > Restart & Clear Output), save it and submit it again"
    else:
        advice = "remove the data pasted into it (load data from a file instead)"
    return SubmissionError(
        f"{label} is {_size_text(size)}, more than the {_size_text(limit)} it may have: {advice}"
    )


def read_regular_file(path: str | os.PathLike[str], *, limit: int, label: str) -> bytes:
    """The bytes of ``path``, read as hostile input.

    The file is opened with ``O_NOFOLLOW | O_NONBLOCK`` (a symbolic link is refused, a named
    pipe does not block) and checked with ``fstat`` to be a regular file before anything is
    read; at most ``limit + 1`` bytes are ever read, whatever ``st_size`` says.

    Args:
        path: the file.
        limit: most bytes accepted.
        label: how messages name the file (its path inside the submission).

    Raises:
        SubmissionError: a link, a FIFO, a device, a socket, a folder, larger than ``limit``,
            or unreadable (permission denied, I/O error); the message says what to do.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SubmissionError(
                f"{label} is a symbolic link; links are not graded: put the file itself in "
                "the submission"
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise SubmissionError(f"cannot read {label}: permission denied") from None
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO opened for writing
            raise SubmissionError(
                f"{label} is not a regular file: submit ordinary .py or .ipynb files"
            ) from None
        raise SubmissionError(f"cannot read {label}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SubmissionError(
                f"{label} is {_mode_name(st.st_mode)}, not a file: submit ordinary .py or "
                ".ipynb files"
            )
        if st.st_size > limit:
            raise _too_large(label, st.st_size, limit)
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, MiB))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:  # it grew after fstat
            raise _too_large(label, len(data), limit)
        return data
    except OSError as exc:
        raise SubmissionError(f"cannot read {label}: {exc.strerror}") from None
    finally:
        os.close(fd)


class DamagedZip(SubmissionError):
    """A file named ``.zip`` that is not a readable zip (inside a folder: noted, not fatal)."""


@dataclass(frozen=True)
class SourceFile:
    """One file of a submission, before it is parsed.

    Attributes:
        relpath: its path inside the submission (POSIX, NFC), e.g. ``"hw/pooling (1).ipynb"``;
            what messages show and what decides its module name.
        read: returns its bytes (at most the cap for its kind), raising
            :class:`~grader.errors.SubmissionError` when it cannot be read.
    """

    relpath: str
    read: Callable[[], bytes] = field(repr=False, compare=False)
    size: int = 0

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.relpath).suffix.lower()

    @property
    def depth(self) -> int:
        return self.relpath.count("/")


def _limit_for(relpath: str) -> int:
    return MAX_NOTEBOOK_BYTES if relpath.lower().endswith(".ipynb") else MAX_FILE_BYTES


def file_source(path: Path, relpath: str) -> SourceFile:
    """A :class:`SourceFile` read from disk with :func:`read_regular_file`."""
    relpath = unicodedata.normalize("NFC", relpath)
    return SourceFile(
        relpath, lambda: read_regular_file(path, limit=_limit_for(relpath), label=relpath)
    )


def bytes_source(relpath: str, data: bytes) -> SourceFile:
    """A :class:`SourceFile` already in memory (a zip member)."""
    relpath = unicodedata.normalize("NFC", relpath)
    limit = _limit_for(relpath)
    if len(data) > limit:
        raise _too_large(relpath, len(data), limit)
    return SourceFile(relpath, lambda: data)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


@dataclass
class Found:
    """What a search of a submission's files found.

    Attributes:
        sources: the ``.py`` and ``.ipynb`` files.
        data: other regular files small enough to give to the student's code
            (:data:`DATA_MAX_FILE_BYTES`), which may read them next to its ``__file__``.
        notes: what was passed over, and why.
    """

    sources: list[SourceFile] = field(default_factory=list)
    data: list[SourceFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def walk_folder(root: Path, *, open_zips: bool = True) -> Found:
    """Every ``.py``/``.ipynb`` in the tree of ``root`` (and in the ``.zip`` files there).

    Hidden files and folders, :data:`IGNORED_DIRS` and virtual environments (a folder holding
    ``pyvenv.cfg``) are skipped; nothing deeper than :data:`MAX_DEPTH` is searched. Links are
    never followed into folders; a link to a file is taken only when it stays inside ``root``.

    Returns:
        The code files, the small data files, and notes on what was passed over.

    Raises:
        SubmissionError: a link leaving the submission, a FIFO, device or socket anywhere in
            the tree, too many files or entries, or a zip that :func:`zip_sources` refuses.
    """
    real_root = os.path.realpath(root)
    found = Found()
    sources, notes = found.sources, found.notes
    skipped_data = [0, 0]  # files, bytes
    seen = 0
    stack: list[tuple[str, str, int]] = [(real_root, "", 0)]
    while stack:
        folder, prefix, depth = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise SubmissionError(
                f"cannot read the folder {prefix or root.name!r}: {exc.strerror}"
            ) from None
        subdirs = []
        for entry in entries:
            seen += 1
            if seen > MAX_WALK_ENTRIES:
                raise SubmissionError(
                    f"{root.name!r} holds more than {MAX_WALK_ENTRIES} files and folders; a "
                    "submission needs only its .py files or notebooks"
                )
            name = unicodedata.normalize("NFC", entry.name)
            if _is_ignored(name):
                continue
            rel = f"{prefix}{name}"
            suffix = PurePosixPath(name).suffix.lower()
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                raise SubmissionError(f"cannot read {rel}: {exc.strerror}") from None
            if stat.S_ISLNK(st.st_mode):
                target = os.path.realpath(entry.path)
                if not _inside(target, real_root):
                    raise SubmissionError(
                        f"{rel} is a symbolic link to something outside the submission; links "
                        "are not graded: put the file itself in the submission"
                    )
                try:
                    tst = os.stat(target)
                except OSError:
                    continue  # a dangling link inside the submission: nothing to read
                if not (stat.S_ISREG(tst.st_mode) or stat.S_ISDIR(tst.st_mode)):
                    raise SubmissionError(
                        f"{rel} is a link to {_mode_name(tst.st_mode)}: submit ordinary files"
                    )
                if stat.S_ISREG(tst.st_mode) and suffix in GRADABLE_SUFFIXES:
                    sources.append(file_source(Path(target), rel))
                elif stat.S_ISREG(tst.st_mode) and suffix != ".zip":
                    _add_data(found, skipped_data, Path(target), rel, tst.st_size)
                continue  # a link to a folder inside the submission: its files are seen there
            if stat.S_ISDIR(st.st_mode):
                if os.path.exists(os.path.join(entry.path, "pyvenv.cfg")):
                    continue  # a virtual environment: installed packages, not the student's code
                subdirs.append((entry.path, f"{rel}/", depth + 1))
            elif stat.S_ISREG(st.st_mode):
                if suffix in GRADABLE_SUFFIXES:
                    sources.append(file_source(Path(entry.path), rel))
                elif suffix == ".zip" and open_zips:
                    data = read_regular_file(entry.path, limit=ZIP_MAX_TOTAL_BYTES, label=rel)
                    try:
                        inner, inner_notes = zip_sources(data, label=rel, prefix=prefix)
                    except DamagedZip as exc:
                        notes.append(str(exc))
                        continue
                    sources += inner
                    notes += inner_notes
                else:
                    _add_data(found, skipped_data, Path(entry.path), rel, st.st_size)
            else:
                raise SubmissionError(
                    f"{rel} is {_mode_name(st.st_mode)}, not a file: submit ordinary .py or "
                    ".ipynb files"
                )
            if len(sources) > MAX_FILES:
                raise SubmissionError(
                    f"{root.name!r} holds more than {MAX_FILES} .py files and notebooks; "
                    "submit only your own code (no installed packages or copies of datasets)"
                )
        for sub in reversed(subdirs):
            if sub[2] <= MAX_DEPTH:
                stack.append(sub)
            else:
                notes.append(f"{sub[1]} is more than {MAX_DEPTH} folders deep and was not searched")
    sources.sort(key=lambda s: s.relpath)
    if skipped_data[0]:
        notes.append(
            f"{skipped_data[0]} other file(s) ({_size_text(skipped_data[1])}) are not given to "
            f"your code when it is graded: only files up to {_size_text(DATA_MAX_FILE_BYTES)} "
            f"each, {_size_text(DATA_MAX_TOTAL_BYTES)} in all, are"
        )
    return found


def _add_data(found: Found, skipped: list[int], path: Path, rel: str, size: int) -> None:
    """Keep a data file for the student's code when it fits the caps, else count it."""
    total = sum(getattr(d, "size", 0) for d in found.data)
    if (
        size > DATA_MAX_FILE_BYTES
        or total + size > DATA_MAX_TOTAL_BYTES
        or len(found.data) >= DATA_MAX_FILES
    ):
        skipped[0] += 1
        skipped[1] += size
        return
    rel = unicodedata.normalize("NFC", rel)
    source = SourceFile(
        rel, lambda: read_regular_file(path, limit=DATA_MAX_FILE_BYTES, label=rel), size
    )
    found.data.append(source)


# --------------------------------------------------------------------------- zips


def _clash_key(parts: list[str]) -> str:
    """Equal for two paths that name the same file on Windows or macOS: Unicode-normalised,
    case-folded, without the trailing dots and spaces Windows drops."""
    return "/".join(unicodedata.normalize("NFC", p).casefold().rstrip(". ") for p in parts)


def zip_sources(
    archive: bytes | str | os.PathLike[str],
    *,
    label: str,
    prefix: str = "",
    max_members: int = ZIP_MAX_MEMBERS,
    max_total_bytes: int = ZIP_MAX_TOTAL_BYTES,
) -> tuple[list[SourceFile], list[str]]:
    """The ``.py`` and ``.ipynb`` members of a zip, read in memory, as hostile input.

    Refused (:class:`~grader.errors.SubmissionError`, with what to do): not a zip, more than
    ``max_members`` members, an absolute path or ``..`` (zip-slip), a symbolic link, an
    encrypted member, two members whose names clash (equal after Unicode normalisation and
    case folding, or a file that is also a folder: they would overwrite each other when
    unzipped on Windows or macOS), and more than ``max_total_bytes`` of code; sizes are counted
    while decompressing, never trusted from the headers (a zip bomb lies about them). Other
    members (data, images) are never decompressed. A zip inside the zip is not opened (noted).

    Args:
        archive: the zip's bytes or path (a path is read with :func:`read_regular_file`).
        label: how messages name the zip.
        prefix: prepended to every member's path (the folder the zip lies in).

    Returns:
        ``(sources, notes)``.
    """
    if not isinstance(archive, bytes):
        archive = read_regular_file(archive, limit=ZIP_MAX_TOTAL_BYTES, label=label)
    try:
        zf = zipfile.ZipFile(io.BytesIO(archive))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DamagedZip(
            f"{label} is not a readable zip file ({exc}); zip the folder again and resubmit"
        ) from None
    sources: list[SourceFile] = []
    notes: list[str] = []
    with zf:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise SubmissionError(
                f"{label} holds {len(infos)} files (more than {max_members}); a submission "
                "needs only its .py files or notebooks"
            )
        files: dict[str, str] = {}  # clash key -> the member's path as written
        folders: dict[str, str] = {}
        taken: list[tuple[zipfile.ZipInfo, list[str]]] = []
        for info in infos:
            member = info.filename.replace("\\", "/")
            parts = [p for p in member.split("/") if p not in ("", ".")]
            if member.startswith("/") or re.match(r"^[A-Za-z]:", member) or ".." in parts:
                raise SubmissionError(
                    f"{label} contains the unsafe path {info.filename!r} (outside the "
                    "submission); it was not opened: zip the files themselves"
                )
            if stat.S_ISLNK(info.external_attr >> 16):
                raise SubmissionError(
                    f"{label} contains a symbolic link ({info.filename!r}); links are not "
                    "accepted: zip the files themselves"
                )
            if info.flag_bits & 0x1:
                raise SubmissionError(f"{label} is encrypted; submit an unencrypted zip")
            if info.is_dir() or not parts or any(_is_ignored(p) for p in parts):
                continue
            suffix = PurePosixPath(parts[-1].rstrip(". ")).suffix.lower()  # as Windows reads it
            if suffix == ".zip":
                notes.append(f"{label}: {'/'.join(parts)} is a zip inside the zip; not opened")
                continue
            if suffix not in GRADABLE_SUFFIXES:
                continue
            path = "/".join(parts)
            key = _clash_key(parts)
            other = files.get(key) or folders.get(key)
            for i in range(1, len(parts)):
                other = other or files.get(_clash_key(parts[:i]))
            if other is not None:
                raise SubmissionError(
                    f"{label} holds two entries whose names clash: {other!r} and {path!r} "
                    "(they differ only in letter case, Unicode form or path spelling, so one "
                    "would overwrite the other when unzipped): rename one, zip the folder "
                    "again and resubmit"
                )
            files[key] = path
            for i in range(1, len(parts)):
                folders.setdefault(_clash_key(parts[:i]), "/".join(parts[:i]) + "/")
            taken.append((info, parts))
        total = 0
        for info, parts in taken:
            rel = prefix + "/".join(parts)
            limit = _limit_for(rel)
            if info.file_size > limit:
                raise _too_large(f"{label}: {'/'.join(parts)}", info.file_size, limit)
            chunks: list[bytes] = []
            size = 0
            try:
                with zf.open(info) as src:
                    while chunk := src.read(1 << 16):
                        size += len(chunk)
                        total += len(chunk)
                        if size > limit or total > max_total_bytes:
                            most = _size_text(min(limit, max_total_bytes))
                            raise SubmissionError(
                                f"{label} expands to more than {most} of code (a zip bomb?); "
                                "it was not graded"
                            )
                        chunks.append(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as exc:
                raise SubmissionError(f"{label} is damaged ({exc}); zip it again") from None
            sources.append(bytes_source(rel, b"".join(chunks)))
    return sources, notes


# --------------------------------------------------------------------------- decoding


def decode_python(raw: bytes, label: str) -> tuple[str, str | None]:
    """Source text of a ``.py`` file, and why Python could not import it (``None`` if it can).

    A PEP 263 coding cookie and a UTF-8 BOM are honoured as by the import system; bytes that
    are not valid UTF-8 are replaced (Python would refuse them, but a stray byte in a comment
    should not cost a grade). A file saved as UTF-16 or UTF-32 (a BOM, or NUL bytes) is decoded
    for the static map only: Python cannot import it, so it is reported, naming the file.
    """
    encoding = None
    if raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        encoding = "UTF-32"
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "UTF-16"
    elif b"\x00" in raw:
        odd, even = raw[1::2].count(0), raw[0::2].count(0)
        if max(odd, even) > len(raw) // 4:
            encoding = "UTF-16"
        else:
            return raw.replace(b"\x00", b"").decode("utf-8", "replace"), (
                f"{label} contains NUL bytes, which Python cannot read (is it a binary file?): "
                "save it as plain UTF-8 text and submit it again"
            )
    if encoding is not None:
        codec = "utf-16" if encoding == "UTF-16" else "utf-32"
        if encoding == "UTF-16" and not raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            codec = "utf-16-le" if raw[1::2].count(0) >= raw[0::2].count(0) else "utf-16-be"
        text = raw.decode(codec, errors="replace")
        return text, (
            f"{label} is saved as {encoding}, which Python cannot import: save it as UTF-8 "
            "(VS Code: 'Save with Encoding' > UTF-8; Notepad: Save As > Encoding UTF-8) and "
            "submit it again"
        )
    try:
        return importlib.util.decode_source(raw), None
    except (SyntaxError, UnicodeDecodeError, LookupError):
        return raw.decode("utf-8", errors="replace"), None


#: Cell magics whose body IPython runs as Python in the notebook's own namespace (what it
#: defines stays defined): the magic line goes, the body is graded. ``%%timeit`` is not one
#: (its body runs inside a timing function, so nothing it defines survives).
BODY_RUNNING_CELL_MAGICS = frozenset({"time", "capture", "prun"})


def neutralise_magics(source: str) -> str:
    """A notebook cell with IPython-only syntax made into plain Python.

    A cell magic (first line ``%%...``) turns the whole cell into comments, except one of
    :data:`BODY_RUNNING_CELL_MAGICS` (``%%time``, ``%%capture``, ``%%prun``), whose first
    line alone becomes a comment, as IPython runs its body as ordinary code; a line magic or
    shell escape (``%timeit f()``, ``!pip install x``, ``files = !ls``) becomes ``pass`` with
    the original as a comment, keeping its indentation so the cell still parses.
    """
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        magic = lines[0].lstrip()[2:].split(maxsplit=1)
        if not magic or magic[0] not in BODY_RUNNING_CELL_MAGICS:
            return "\n".join(f"# {line}" for line in lines)
        lines = [f"# {lines[0]}", *lines[1:]]
    out = []
    for line in lines:
        stripped = line.lstrip()
        if stripped[:1] in ("%", "!") or _ASSIGN_SHELL.match(stripped):
            out.append(f"{line[: len(line) - len(stripped)]}pass  # {stripped}")
        else:
            out.append(line)
    return "\n".join(out)


# --------------------------------------------------------------------------- static analysis


def _is_stub(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A function whose body (after its docstring) is only ``pass``, ``...`` or
    ``raise NotImplementedError``: an unfilled stub."""
    body = list(fn.body)
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        body = body[1:]
    if not body:
        return True
    if len(body) != 1:
        return False
    st = body[0]
    if isinstance(st, ast.Pass):
        return True
    if isinstance(st, ast.Expr) and isinstance(st.value, ast.Constant):
        return st.value.value is Ellipsis
    if isinstance(st, ast.Raise) and st.exc is not None:
        exc = st.exc.func if isinstance(st.exc, ast.Call) else st.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


def _module_body(stmts: Iterable[ast.stmt]) -> Iterable[ast.stmt]:
    """Top-level statements, looking inside module-level ``if``/``try``/``with``/``for``
    blocks (but not into ``if __name__ == "__main__":``, which never runs on import)."""
    for st in stmts:
        if isinstance(st, ast.If):
            test = st.test
            if (
                isinstance(test, ast.Compare)
                and isinstance(test.left, ast.Name)
                and test.left.id == "__name__"
            ):
                yield from _module_body(st.orelse)
                continue
            yield from _module_body(st.body)
            yield from _module_body(st.orelse)
        elif isinstance(st, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            yield from _module_body(st.body)
            for handler in st.handlers:
                yield from _module_body(handler.body)
            yield from _module_body(st.orelse)
            yield from _module_body(st.finalbody)
        elif isinstance(st, (ast.With, ast.AsyncWith, ast.For, ast.AsyncFor, ast.While)):
            yield st
            yield from _module_body(st.body)
            yield from _module_body(getattr(st, "orelse", []))
        else:
            yield st


def _target_names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for elt in target.elts for n in _target_names(elt)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


#: Base classes and decorators that make a class a plain data type (a cache, a layer
#: description), never a renamed answer: ``class DenseCache(NamedTuple)`` is not a misspelt
#: ``DenseBlock``.
_DATA_BASES = frozenset({"NamedTuple", "TypedDict", "Enum", "IntEnum", "StrEnum", "Flag"})


def _last_name(node: ast.expr) -> str:
    node = node.func if isinstance(node, ast.Call) else node
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _is_data_type(cls: ast.ClassDef) -> bool:
    """A ``NamedTuple``/``TypedDict``/``Enum`` subclass or a ``@dataclass``."""
    return any(_last_name(b) in _DATA_BASES for b in cls.bases) or any(
        _last_name(d) == "dataclass" for d in cls.decorator_list
    )


def scan_symbols(source: str) -> tuple[dict[str, SymbolKind], list[str]]:
    """The top-level names ``source`` binds and what they are, from :mod:`ast` (nothing runs).

    Returns:
        ``(symbols, star_modules)``: name -> ``"def"``, ``"stub"`` (an unfilled function,
        see :func:`_is_stub`), ``"class"``, ``"value"`` (an assignment, e.g.
        ``maxpool2d_forward = my_pool``), ``"type"`` (a data type: ``NamedTuple``, ``Enum``,
        ``@dataclass``, see :func:`_is_data_type`) or ``"import"``; later bindings win, as when
        the code runs. ``star_modules`` lists the modules of ``from M import *``. Source that
        does not parse is scanned line by line for ``def``/``class`` at column 0 (the child then
        reports the syntax error for those functions).
    """
    symbols: dict[str, SymbolKind] = {}
    stars: list[str] = []
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        for m in _DEF_LINE.finditer(source):
            symbols[m.group(1)] = "def"
        for m in _CLASS_LINE.finditer(source):
            symbols[m.group(1)] = "class"
        return symbols, stars
    for st in _module_body(tree.body):
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
            symbols[st.name] = "stub" if _is_stub(st) else "def"
        elif isinstance(st, ast.ClassDef):
            symbols[st.name] = "type" if _is_data_type(st) else "class"
        elif isinstance(st, ast.Assign):
            for target in st.targets:
                for name in _target_names(target):
                    symbols[name] = "value"
        elif isinstance(st, (ast.AnnAssign, ast.AugAssign)) and st.value is not None:
            for name in _target_names(st.target):
                symbols[name] = "value"
        elif isinstance(st, ast.Import):
            for alias in st.names:
                symbols[(alias.asname or alias.name).split(".")[0]] = "import"
        elif isinstance(st, ast.ImportFrom):
            for alias in st.names:
                if alias.name == "*":
                    if st.module and not st.level:
                        stars.append(st.module)
                else:
                    symbols[alias.asname or alias.name] = "import"
    return symbols, stars


@dataclass(frozen=True)
class CellInfo:
    """What one notebook cell does to the notebook's namespace (see :func:`analyse_cell`).

    Attributes:
        binds: names it binds at the top level (assignments, imports, ``def``, ``class``,
            loop targets) or declares ``global`` and assigns inside a function.
        changes: names whose value it may change without rebinding them: the object of an
            attribute or item assignment (``net.fc = ...``, ``d[k] = v``), and the object and
            plain-name arguments of a call made for its effect (a statement by itself:
            ``np.random.seed(0)`` changes ``np``; ``init(model)`` may change ``model``).
        uses: names it reads at the top level, and the global names read by the functions and
            classes it defines (what those need when they are called later).
        defines_code: it defines a function or a class.
        opaque: its effect cannot be seen statically (``exec``, ``globals()``, ``setattr``,
            ``from m import *``, or it does not parse): always run.
    """

    binds: frozenset[str]
    changes: frozenset[str]
    uses: frozenset[str]
    defines_code: bool
    opaque: bool


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _global_uses(table: symtable.SymbolTable) -> set[str]:
    out: set[str] = set()
    for child in table.get_children():
        for sym in child.get_symbols():
            if sym.is_global() and (sym.is_referenced() or sym.is_declared_global()):
                out.add(sym.get_name())
        out |= _global_uses(child)
    return out


def _global_binds(table: symtable.SymbolTable) -> set[str]:
    out: set[str] = set()
    for child in table.get_children():
        for sym in child.get_symbols():
            if sym.is_declared_global() and sym.is_assigned():
                out.add(sym.get_name())
        out |= _global_binds(child)
    return out


def analyse_cell(source: str) -> CellInfo:
    """A :class:`CellInfo` for one (already neutralised) code cell, from :mod:`symtable` (which
    names each scope reads and binds) and :mod:`ast` (definitions and in-place changes)."""
    try:
        tree = ast.parse(source)
        table = symtable.symtable(source, "<cell>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return CellInfo(frozenset(), frozenset(), frozenset(), True, True)
    binds: set[str] = set()
    uses: set[str] = set()
    for sym in table.get_symbols():
        if sym.is_assigned() or sym.is_imported():
            binds.add(sym.get_name())
        if sym.is_referenced():
            uses.add(sym.get_name())
    uses |= _global_uses(table)
    binds |= _global_binds(table)
    changes: set[str] = set()
    defines_code = False
    opaque = False
    for st in _module_body(tree.body):
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defines_code = True
            continue
        if isinstance(st, ast.ImportFrom) and any(a.name == "*" for a in st.names):
            opaque = True
        targets: list[ast.expr] = []
        if isinstance(st, ast.Assign):
            targets = list(st.targets)
        elif isinstance(st, (ast.AugAssign, ast.AnnAssign)):
            targets = [st.target]
        elif isinstance(st, ast.Delete):
            targets = list(st.targets)
        for target in targets:
            for elt in target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]:
                if isinstance(elt, (ast.Attribute, ast.Subscript)):
                    root = _root_name(elt)
                    if root:
                        changes.add(root)
        if isinstance(st, ast.Expr):  # a call whose value is dropped: done for its effect
            call = st.value.value if isinstance(st.value, ast.Await) else st.value
            if isinstance(call, ast.Call):
                if isinstance(call.func, ast.Attribute):
                    root = _root_name(call.func)
                    if root:
                        changes.add(root)
                for arg in [*call.args, *(k.value for k in call.keywords)]:
                    if isinstance(arg, ast.Name):
                        changes.add(arg.id)
    for node in ast.walk(tree):  # exec/globals() inside a function defined here count too
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _OPAQUE_CALLS
        ):
            opaque = True
    return CellInfo(frozenset(binds), frozenset(changes), frozenset(uses), defines_code, opaque)


def select_cells(sources: list[str]) -> list[int]:
    """Indices of the cells that grading runs, in notebook order.

    A cell runs when it defines a function or a class, when it is opaque
    (:attr:`CellInfo.opaque`), or when it binds or changes a name that a running cell uses or
    binds; repeated to a fixed point. So a helper defined in its own cell runs, so does the
    cell that imports ``numpy`` for it or sets a constant it reads, and every later cell that
    rebinds one of the student's functions (the last definition wins, as in Restart & Run
    All); a cell that only calls, prints, plots or trains, binding nothing the functions
    read, does not run.
    """
    infos = [analyse_cell(s) for s in sources]
    keep = {i for i, info in enumerate(infos) if info.defines_code or info.opaque}
    needed: set[str] = set()
    for i in keep:  # what the functions are called (a later cell may rebind them) and read
        needed |= infos[i].binds | infos[i].uses
    changed = True
    while changed:
        changed = False
        for i, info in enumerate(infos):
            if i not in keep and (info.binds | info.changes) & needed:
                keep.add(i)
                needed |= info.uses  # what it binds besides is not needed by anything
                changed = True
    return sorted(keep)


# --------------------------------------------------------------------------- notebooks


def is_test_cell(cell: dict[str, Any]) -> bool:
    """True for a cell that checks answers rather than giving one: an nbgrader autograder
    test cell (metadata ``grade: true`` and ``solution: false``) or a cnnlab check cell
    (recognised by its content as well, for notebooks saved without nbgrader's metadata)."""
    meta = cell.get("metadata") or {}
    nb = meta.get("nbgrader") if isinstance(meta, dict) else None
    if isinstance(nb, dict) and nb.get("grade") and not nb.get("solution"):
        return True
    return bool(_CHECK_CELL.search(_cell_source(cell)))


def _cell_source(cell: dict[str, Any]) -> str:
    source = cell.get("source", cell.get("input", ""))
    if isinstance(source, list):
        return "".join(str(s) for s in source)
    return source if isinstance(source, str) else ""


def _notebook_json(raw: bytes, label: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise NotebookError(
            f"{label} is not a valid notebook: it is not JSON ({exc}); it may have been cut "
            "off while saving or uploading. Open it in Jupyter and save it again (File > "
            "Revert to Checkpoint if it does not open), or pass the .py file instead"
        ) from None
    except RecursionError:
        raise NotebookError(f"{label} is not a valid notebook: it is nested too deeply") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("nbformat", 4), int):
        raise NotebookError(
            f"{label} is not a valid notebook (no notebook structure in the JSON). Open it in "
            "Jupyter and save it again, or pass the .py file instead"
        )
    return doc


def notebook_code_cells(raw: bytes, label: str) -> list[tuple[int, str]]:
    """The code cells of a notebook that grading may run: ``(number, source)`` with ``number``
    the cell's position among the notebook's code cells (1-based) and ``source`` neutralised
    (:func:`neutralise_magics`). Outputs are never looked at; test cells
    (:func:`is_test_cell`) are left out.

    Raises:
        NotebookError: not JSON, or not a notebook (nbformat 3 is converted with nbformat).
    """
    return [(c.number, c.source) for c in notebook_cells(raw, label)]


@dataclass(frozen=True)
class NotebookCell:
    """One code cell of a notebook that grading may run (see :func:`notebook_cells`).

    Attributes:
        number: its position among the notebook's code cells (1-based).
        source: its code, neutralised (:func:`neutralise_magics`).
        grade_id: nbgrader's ``grade_id`` of the cell (``"maxpool2d_backward"`` for the
            solution cell of that exercise), or ``None``.
        execution_count: the ``In [n]`` Jupyter shows next to it, or ``None`` (never run).
    """

    number: int
    source: str
    grade_id: str | None = None
    execution_count: int | None = None


def _graded_as_code(cell: dict[str, Any]) -> bool:
    """A code cell, or an nbgrader autograded answer cell (metadata ``solution: true``,
    ``grade: false``) that the student turned into a Raw or Markdown cell by accident (the
    ``r``/``m`` keys in Jupyter's command mode): nbgrader's autograde turns it back into code
    (``OverwriteCells``), so cnnlab grades it as code too."""
    if cell.get("cell_type") == "code":
        return True
    meta = cell.get("metadata")
    nb = meta.get("nbgrader") if isinstance(meta, dict) else None
    return (
        cell.get("cell_type") in ("raw", "markdown")
        and isinstance(nb, dict)
        and bool(nb.get("solution"))
        and not nb.get("grade")
    )


def notebook_cells(raw: bytes, label: str) -> list[NotebookCell]:
    """:func:`notebook_code_cells` with each cell's nbgrader ``grade_id`` and execution count.

    Raises:
        NotebookError: not JSON, or not a notebook (nbformat 3 is converted with nbformat).
    """
    doc = _notebook_json(raw, label)
    version = doc.get("nbformat", 4)
    if version < 4:
        if "worksheets" not in doc:
            raise NotebookError(f"{label} is not a valid notebook (nbformat {version})")
        try:
            import nbformat

            for ws in doc.get("worksheets") or []:
                for cell in ws.get("cells") or []:
                    if isinstance(cell, dict):
                        cell.pop("outputs", None)
            doc = nbformat.convert(nbformat.from_dict(doc), 4)
        except Exception as exc:  # nbformat raises several types for a malformed notebook
            raise NotebookError(
                f"{label} is not a valid notebook ({type(exc).__name__}); open it in Jupyter "
                "and save it again, or pass the .py file instead"
            ) from None
    cells = doc.get("cells")
    if not isinstance(cells, list):
        raise NotebookError(
            f"{label} is not a valid notebook (it has no list of cells). Open it in Jupyter "
            "and save it again, or pass the .py file instead"
        )
    out = []
    number = 0
    for cell in cells:
        if not isinstance(cell, dict) or not _graded_as_code(cell):
            continue
        number += 1
        if number > MAX_CELLS:
            raise SubmissionError(
                f"{label} has more than {MAX_CELLS} code cells: submit the notebook you worked "
                "in, not a generated one"
            )
        if is_test_cell(cell):
            continue
        meta = cell.get("metadata")
        nb = meta.get("nbgrader") if isinstance(meta, dict) else None
        grade_id = nb.get("grade_id") if isinstance(nb, dict) else None
        count = cell.get("execution_count")
        out.append(
            NotebookCell(
                number,
                neutralise_magics(_cell_source(cell)),
                grade_id if isinstance(grade_id, str) else None,
                count if isinstance(count, int) and not isinstance(count, bool) else None,
            )
        )
    return out


def cell_label(cell: NotebookCell) -> str:
    """How a message names a notebook cell so that a student finds it in Jupyter: by the
    function it defines or its first line, with the ``In [n]`` Jupyter shows when it ran,
    e.g. ``the cell defining maxpool2d_backward (code cell 5, In [7])``."""
    defs = _DEF_LINE.findall(cell.source)
    if defs:
        what = f"the cell defining {defs[0]}"
    else:
        first = next((ln.strip() for ln in cell.source.splitlines() if ln.strip()), "")
        if len(first) > 40:
            first = first[:39] + "…"
        what = f"the cell starting `{first}`" if first else "an empty cell"
    where = f"code cell {cell.number}"
    if cell.execution_count is not None:
        where += f", In [{cell.execution_count}]"
    return f"{what} ({where})"


def syntax_error(source: str, label: str) -> str | None:
    """Why Python cannot compile ``source`` (``"SyntaxError in layers.py, line 125: '(' was
    never closed"``), or ``None`` when it can. Compiling runs nothing."""
    try:
        compile(source, label, "exec", dont_inherit=True)
    except SyntaxError as exc:  # IndentationError and TabError too
        return f"{type(exc).__name__} in {label}, line {exc.lineno}: {exc.msg}"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"{label} cannot be compiled ({type(exc).__name__})"
    return None


# --------------------------------------------------------------------------- the submission


def module_identifier(stem: str) -> str:
    """A Python identifier made from a file stem: ``"pooling (1)"`` -> ``"pooling_1"``,
    ``"pooling-Copy1"`` -> ``"pooling_Copy1"``, ``"01 intro"`` -> ``"m_01_intro"``."""
    text = unicodedata.normalize("NFKC", stem)
    text = re.sub(r"\W+", "_", text).strip("_") or "module"
    if text[0].isdigit():
        text = f"m_{text}"
    if keyword.iskeyword(text):
        text += "_"
    return text


def _unique(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    n = 2
    while f"{name}_{n}" in taken:
        n += 1
    return f"{name}_{n}"


@dataclass(frozen=True)
class Submission:
    """One student's source, ready to hand to the sandbox.

    Attributes:
        path: what was passed (absolute).
        kind: ``"folder"`` (a folder or a zip), ``"file"`` or ``"notebook"``.
        modules: module name -> source text, sorted by name (a notebook: its cells that run,
            joined).
        files: module name -> the file it came from, relative to the submission (POSIX).
        cells: notebooks only: module name -> the code cells that run, in notebook order
            (neutralised); the child executes them one by one.
        cell_numbers: notebooks only: the position of each of those cells among the notebook's
            code cells (1-based), for messages.
        skipped_cells: notebooks only: code cells not run (they bind nothing the student's
            functions use, see :func:`select_cells`), by number.
        symbols: module name -> the top-level names it binds and their kind
            (:func:`scan_symbols`; names of ``from m import *`` of another module are added as
            ``"import"``).
        depth: module name -> how many folders down its file lies.
        broken: module name -> why Python cannot run it (e.g. saved as UTF-16).
        problems: ``(file, reason)`` for each file that could not be read at all (a damaged
            notebook); the rest is graded.
        notes: what was passed over and why (a zip inside a zip, a folder too deep).
        cell_labels: notebooks only: how messages name each cell that runs, so that a student
            finds it in Jupyter (:func:`cell_label`).
        syntax_errors: module name -> the syntax error(s) that stop Python compiling it (for a
            notebook, its cells that do not compile), with file, cell and line.
        unparsed: module name -> the text Python cannot compile (a ``.py`` file, or a
            notebook's failing cells with their nbgrader ``grade_id``): which exercises it was
            meant to answer is read from it (:meth:`relates_to`).
        exercise_functions: the functions every exercise of the problem set asks for (set by
            the engine): "did you mean" never suggests renaming a function to one of them.
        data: other small files of the submission (path inside it -> bytes), which the
            student's code may read next to its ``__file__`` (:data:`DATA_MAX_FILE_BYTES`): the
            sandbox's runner writes them into the run's own copy (not sent in :meth:`to_json`).
    """

    path: Path
    kind: Literal["folder", "file", "notebook"]
    modules: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)
    cells: dict[str, tuple[str, ...]] = field(default_factory=dict)
    cell_numbers: dict[str, tuple[int, ...]] = field(default_factory=dict)
    skipped_cells: dict[str, tuple[int, ...]] = field(default_factory=dict)
    symbols: dict[str, dict[str, str]] = field(default_factory=dict)
    depth: dict[str, int] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    problems: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()
    data: dict[str, bytes] = field(default_factory=dict, repr=False)
    cell_labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    syntax_errors: dict[str, str] = field(default_factory=dict)
    unparsed: dict[str, str] = field(default_factory=dict, repr=False)
    exercise_functions: tuple[str, ...] = ()

    def display_name(self, module: str) -> str:
        """What a message calls ``module``: its file name (``pooling.py``, ``hw.ipynb``)."""
        return PurePosixPath(self.files.get(module, f"{module}.py")).name

    def defined(self, module: str) -> list[str]:
        """The functions and classes ``module`` defines (unfilled stubs left out)."""
        kinds = self.symbols.get(module, {})
        return [
            n for n, k in kinds.items() if k in ("def", "class", "type") and not n.startswith("_")
        ]

    def owners(self, name: str, topic: str | None = None) -> list[str]:
        """Modules binding ``name``, in the order the sandboxed child tries them: an
        implementation before a stub before an import, then the module named ``topic``, then
        one whose file name mentions it (``pooling (1).ipynb``), then the shallowest."""
        rank = {"def": 0, "class": 0, "type": 0, "value": 0, "stub": 1, "import": 2}

        def topical(module: str) -> int:
            if topic is None:
                return 2
            if module == topic:
                return 0
            stem = PurePosixPath(self.files.get(module, module)).stem.lower()
            return 1 if topic.lower() in re.split(r"[^0-9a-z]+", stem) else 2

        found = [m for m in self.modules if name in self.symbols.get(m, {})]
        return sorted(
            found,
            key=lambda m: (rank[self.symbols[m][name]], topical(m), self.depth.get(m, 0), m),
        )

    def topical(self, module: str, topic: str | None) -> bool:
        """Whether ``module`` is the topic's (``pooling``) or its file name mentions it
        (``pooling (1).ipynb``, ``notebooks/pooling.ipynb``, ``jdoe_pooling.py``)."""
        if not topic:
            return False
        if module == topic:
            return True
        stem = PurePosixPath(self.files.get(module, module)).stem.lower()
        return topic.lower() in re.split(r"[^0-9a-z]+", stem)

    def close_names(self, function: str) -> list[str]:
        """Filled-in names the submission defines that look like ``function`` (a typo, a
        rename), never another exercise's function (:attr:`exercise_functions`) nor its
        forward/backward twin, nor a class for a function exercise (an interface type such as
        ``ReceptiveField``). The same rule as the sandboxed child's "did you mean"."""

        twins = {
            function.replace(a, b)
            for a, b in (("forward", "backward"), ("backward", "forward"))
            if a in function
        }
        taken = set(self.exercise_functions) | twins | {function}
        names = sorted(
            {
                n
                for kinds in self.symbols.values()
                for n, k in kinds.items()
                if (k in ("def", "value") or (k == "class" and function[:1].isupper()))
                and not n.startswith("_")
                and n not in taken
            }
        )
        from grader.sandbox.child import close_names

        return close_names(function, names)

    def relates_to(self, function: str, topic: str | None = None) -> bool:
        """Whether anything in the submission is meant for the exercise of ``function``: a file
        binds the name (even as an unfilled stub), a file or notebook cell that Python cannot
        compile names it (or its nbgrader ``grade_id`` does), a file is named after the
        exercise's ``topic``, or a filled-in function has a close name (a rename). An exercise
        nothing relates to was not submitted."""
        if any(function in kinds for kinds in self.symbols.values()):
            return True
        word = re.compile(rf"(?<![\w.]){re.escape(function)}(?!\w)")
        if any(word.search(text) for text in self.unparsed.values()):
            return True
        if any(self.topical(m, topic) for m in self.modules):
            return True
        return bool(self.close_names(function))

    def file_lines(self) -> list[str]:
        """One line per file graded: what it defines, and what about it needs attention.

        E.g. ``graded hw/pooling (1).ipynb: maxpool2d_forward, maxpool2d_backward (2 of 9 code
        cells not run: they define nothing your functions use)``.
        """
        lines = []
        for module in sorted(self.modules, key=lambda m: self.files.get(m, m)):
            names = self.defined(module)
            shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
            lines.append(f"graded {self.files.get(module, module)}: {shown or 'no functions'}")
        return lines

    def attention_lines(self) -> list[str]:
        """What the student should know about how the files were read: files not read, code
        Python cannot run, notebook cells not run, names defined twice, things passed over."""
        lines = []
        for module in sorted(self.modules, key=lambda m: self.files.get(m, m)):
            file = self.files.get(module, module)
            skipped = self.skipped_cells.get(module, ())
            if skipped:
                total = len(skipped) + len(self.cells.get(module, ()))
                numbers = ", ".join(str(n) for n in skipped[:10]) + (
                    ", ..." if len(skipped) > 10 else ""
                )
                lines.append(
                    f"note: {file}: {len(skipped)} of {total} code cells not run (code cells "
                    f"{numbers}, counted from the top: they define nothing your functions use)"
                )
            if module in self.broken:
                lines.append(f"cannot run {file}: {self.broken[module]}")
            elif module in self.syntax_errors:
                what = "that cell defines" if module in self.cells else "it defines"
                lines.append(
                    f"cannot run {file}: {self.syntax_errors[module]} (the functions {what} "
                    "are not graded until Python can read it)"
                )
        duplicated: dict[str, list[str]] = {}  # filled-in functions only: a class shared by
        for module in self.modules:  # two files (a cache NamedTuple) is no cause for concern
            for name, kind in self.symbols.get(module, {}).items():
                if kind == "def" and not name.startswith("_"):
                    duplicated.setdefault(name, []).append(self.files.get(module, module))
        twice = sorted((n, f) for n, f in duplicated.items() if len(f) > 1)
        if twice:
            name, where = twice[0]
            lines.append(
                f"note: {len(twice)} function(s) are defined in more than one file (e.g. {name} in "
                f"{' and '.join(where[:2])}); for each exercise the grader uses a filled-in "
                "function over a stub, then the file named after the exercise's topic, then "
                "the one highest in the folder tree"
            )
        for file, reason in self.problems:
            lines.append(f"not graded {file}: {reason}")
        lines += [f"note: {n}" for n in self.notes]
        return lines

    def summary(self) -> list[str]:
        """What was graded, in full (Gradescope's output, feedback files): one line per file,
        then :meth:`attention_lines`."""
        return self.file_lines() + self.attention_lines()

    def brief(self) -> list[str]:
        """What was graded, for a terminal: one line naming the files, then
        :meth:`attention_lines`."""
        names = [
            self.files.get(m, m) for m in sorted(self.modules, key=lambda m: self.files.get(m, m))
        ]
        shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
        return [f"Graded {len(names)} file{'s' if len(names) != 1 else ''}: {shown}"] + (
            self.attention_lines()
        )

    def to_json(self) -> str:
        """The form the sandbox child reads (plain JSON; file names relative, so the child
        learns nothing about where the submission lies)."""
        return json.dumps(
            {
                "path": self.path.name,
                "kind": self.kind,
                "modules": self.modules,
                "files": self.files,
                "cells": {k: list(v) for k, v in self.cells.items()},
                "cell_numbers": {k: list(v) for k, v in self.cell_numbers.items()},
                "symbols": self.symbols,
                "depth": self.depth,
                "broken": self.broken,
                "problems": [list(p) for p in self.problems],
                "cell_labels": {k: list(v) for k, v in self.cell_labels.items()},
                "exercise_functions": list(self.exercise_functions),
            }
        )


@dataclass
class _Parsed:
    source: SourceFile
    text: str
    cells: tuple[str, ...] | None = None
    numbers: tuple[int, ...] = ()
    skipped: tuple[int, ...] = ()
    broken: str | None = None
    symbols: dict[str, SymbolKind] = field(default_factory=dict)
    stars: list[str] = field(default_factory=list)
    labels: tuple[str, ...] = ()
    syntax: str | None = None
    unparsed: str = ""


def _parse(src: SourceFile) -> _Parsed:
    raw = src.read()
    name = PurePosixPath(src.relpath).name
    if src.suffix == ".ipynb":
        found = notebook_cells(raw, src.relpath)
        keep = select_cells([c.source for c in found])
        cells = tuple(found[i].source for i in keep)
        numbers = tuple(found[i].number for i in keep)
        labels = tuple(cell_label(found[i]) for i in keep)
        skipped = tuple(c.number for i, c in enumerate(found) if i not in set(keep))
        errors: list[str] = []
        unparsed: list[str] = []
        for j, i in enumerate(keep):
            why = syntax_error(found[i].source, f"{name}, {labels[j]}")
            if why:
                errors.append(why)
                unparsed += [found[i].grade_id or "", found[i].source]
        size = sum(len(c.encode("utf-8", "replace")) for c in cells)
        if size > MAX_FILE_BYTES:
            raise SubmissionError(
                f"{src.relpath} holds {_size_text(size)} of code, more than the "
                f"{_size_text(MAX_FILE_BYTES)} a notebook may have (outputs do not count): "
                "remove the data pasted into its cells"
            )
        symbols: dict[str, SymbolKind] = {}
        stars: list[str] = []
        for cell in cells:
            found, star = scan_symbols(cell)
            symbols.update(found)
            stars += star
        text = "\n\n".join(f"# In[{n}]:\n{c}" for n, c in zip(numbers, cells, strict=True))
        syntax = "; ".join(errors[:2]) + (f" and {len(errors) - 2} more" if len(errors) > 2 else "")
        return _Parsed(
            src, text, cells, numbers, skipped, None, symbols, stars, labels,
            syntax or None, "\n".join(unparsed),
        )  # fmt: skip
    text, broken = decode_python(raw, src.relpath)
    symbols, stars = scan_symbols(text)
    syntax = None if broken else syntax_error(text, name)
    unparsed = text if (broken or syntax) else ""
    return _Parsed(src, text, None, (), (), broken, symbols, stars, (), syntax, unparsed)


def load_sources(
    sources: Iterable[SourceFile],
    *,
    path: Path,
    kind: Literal["folder", "file", "notebook"] = "folder",
    label: str | None = None,
    notes: Iterable[str] = (),
    data: Iterable[SourceFile] = (),
) -> Submission:
    """Build a :class:`Submission` from files already found (a folder walk, a zip, the files an
    LMS layout gathered for one student).

    Every file is parsed on its own: a damaged notebook becomes a :attr:`Submission.problems`
    entry and the others are graded. Module names: a ``.py`` keeps its stem when that is an
    identifier (the shallowest file wins a name), every other file gets a unique identifier
    from its stem (:func:`module_identifier`).

    Raises:
        SubmissionError: a hostile or oversized file (see the module docstring), too much
            code, or no file that could be read (the message lists why each was not).
    """
    label = label or path.name
    parsed: list[_Parsed] = []
    problems: list[tuple[str, str]] = []
    srcs = sorted(sources, key=lambda s: (s.suffix != ".py", s.depth, s.relpath))
    if not srcs:
        raise SubmissionError(f"no .py file or notebook in {label!r}: {WHAT_TO_PASS}")
    total = 0
    for src in srcs:
        try:
            item = _parse(src)
        except NotebookError as exc:
            problems.append((src.relpath, str(exc)))
            continue
        total += len(item.text)
        if total > MAX_TOTAL_BYTES:
            raise SubmissionError(
                f"the code in {label!r} is more than {_size_text(MAX_TOTAL_BYTES)}: submit only "
                "your own .py files and notebooks"
            )
        empty = item.cells is not None and not any(c.strip() for c in item.cells)
        if empty and not item.skipped:
            problems.append((src.relpath, f"{src.relpath} has no code cells"))
            continue
        parsed.append(item)
    if not parsed:
        if len(problems) == 1:
            message = problems[0][1]
            if "no code cells" in message:
                message += f": {WHAT_TO_PASS}"
            raise (NotebookError if "not a valid notebook" in message else SubmissionError)(message)
        reasons = "; ".join(f"{why}" for _, why in problems)
        raise SubmissionError(f"no file in {label!r} could be graded: {reasons}")
    taken: set[str] = set()
    modules: dict[str, str] = {}
    files: dict[str, str] = {}
    cells: dict[str, tuple[str, ...]] = {}
    numbers: dict[str, tuple[int, ...]] = {}
    skipped: dict[str, tuple[int, ...]] = {}
    symbols: dict[str, dict[str, str]] = {}
    depth: dict[str, int] = {}
    broken: dict[str, str] = {}
    stars: dict[str, list[str]] = {}
    labels: dict[str, tuple[str, ...]] = {}
    syntax: dict[str, str] = {}
    unparsed: dict[str, str] = {}
    for item in parsed:
        stem = PurePosixPath(item.source.relpath).stem
        plain = (
            item.source.suffix == ".py"
            and stem.isidentifier()
            and not keyword.iskeyword(stem)
            and not stem.startswith("__")
        )
        name = _unique(stem if plain else module_identifier(stem), taken)
        taken.add(name)
        modules[name] = item.text
        files[name] = item.source.relpath
        symbols[name] = dict(item.symbols)
        depth[name] = item.source.depth
        stars[name] = item.stars
        if item.cells is not None:
            cells[name] = item.cells
            numbers[name] = item.numbers
            if item.skipped:
                skipped[name] = item.skipped
        if item.broken:
            broken[name] = item.broken
        if item.labels:
            labels[name] = item.labels
        if item.syntax:
            syntax[name] = item.syntax
        if item.unparsed:
            unparsed[name] = item.unparsed
    for _ in range(3):  # names of `from helpers import *` (a chain of three at most)
        for name, modules_starred in stars.items():
            for star in modules_starred:
                if star in symbols and star != name:
                    for sym in symbols[star]:
                        if not sym.startswith("_"):
                            symbols[name].setdefault(sym, "import")
    code_paths = set(files.values())
    data_bytes: dict[str, bytes] = {}
    for item in data:
        if item.relpath not in code_paths:
            data_bytes[item.relpath] = item.read()
    return Submission(
        path=path,
        kind=kind,
        data=data_bytes,
        modules=dict(sorted(modules.items())),
        files=files,
        cells=cells,
        cell_numbers=numbers,
        skipped_cells=skipped,
        symbols=symbols,
        depth=depth,
        broken=broken,
        problems=tuple(problems),
        notes=tuple(notes),
        cell_labels=labels,
        syntax_errors=syntax,
        unparsed=unparsed,
    )


def load_submission(path: str | Path) -> Submission:
    """Read a submission (without importing it).

    Args:
        path: a folder (its whole tree is searched), one ``.py`` file, one ``.ipynb``, or a
            ``.zip`` of any of these.

    Raises:
        SubmissionError: missing path, wrong kind of file, nothing gradable, a hostile or
            oversized file (see the module docstring).
        NotebookError: the only notebook given is not JSON / nbformat.
    """
    given = str(path)
    path = Path(path).expanduser()
    if not os.path.lexists(path):
        kind = "folder or file"
        if path.suffix == ".py":
            kind = "file"
        elif path.suffix == ".ipynb":
            kind = "notebook"
        elif not path.suffix:
            kind = "folder"
        raise SubmissionError(f"no such {kind} {given!r}: {WHAT_TO_PASS}")
    # The folders above are the caller's; a link in the last place is read as what it is.
    path = path.parent.resolve() / path.name
    if path.is_dir():
        path = path.resolve()
        found = walk_folder(path)
        if not found.sources:
            raise SubmissionError(
                f"no .py file or notebook in folder {given!r} (searched {MAX_DEPTH} folders "
                f"deep): {WHAT_TO_PASS}"
            )
        return load_sources(
            found.sources,
            path=path,
            kind="folder",
            label=given,
            notes=found.notes,
            data=found.data,
        )
    suffix = path.suffix.lower()
    if suffix == ".zip":
        sources, notes = zip_sources(path, label=path.name)
        if not sources:
            raise SubmissionError(f"no .py file or notebook in {given!r}: {WHAT_TO_PASS}")
        return load_sources(sources, path=path, kind="folder", label=given, notes=notes)
    if suffix in GRADABLE_SUFFIXES:
        kind: Literal["file", "notebook"] = "file" if suffix == ".py" else "notebook"
        submission = load_sources([file_source(path, path.name)], path=path, kind=kind, label=given)
        named = named_siblings(path, "\n".join(submission.modules.values()))
        if named:
            return dataclasses.replace(submission, data={s.relpath: s.read() for s in named})
        return submission
    raise SubmissionError(f"cannot grade {given!r} (a {path.suffix or 'file'}): {WHAT_TO_PASS}")


def named_siblings(path: Path, code: str) -> list[SourceFile]:
    """The small data files next to a single graded file that its code names in a string
    (``open(os.path.join(HERE, "table.json"))``): given to it as in the folder it came from.
    Only named files: the folder may be a class's, holding other students' files."""
    found: list[SourceFile] = []
    total = 0
    try:
        entries = sorted(os.scandir(path.parent), key=lambda e: e.name)
    except OSError:
        return found
    for entry in entries:
        name = entry.name
        suffix = PurePosixPath(name).suffix.lower()
        if _is_ignored(name) or suffix in (*GRADABLE_SUFFIXES, ".zip") or entry.is_symlink():
            continue
        if f'"{name}"' not in code and f"'{name}'" not in code:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_size > DATA_MAX_FILE_BYTES:
            continue
        total += st.st_size
        if total > DATA_MAX_TOTAL_BYTES or len(found) >= DATA_MAX_FILES:
            break
        p = Path(entry.path)
        found.append(
            SourceFile(
                name,
                lambda p=p, n=name: read_regular_file(p, limit=DATA_MAX_FILE_BYTES, label=n),
                st.st_size,
            )
        )
    return found
