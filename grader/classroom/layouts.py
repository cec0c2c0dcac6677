"""Where a class's submissions lie on disk: the layouts LMS downloads use, and each student's files.

:func:`discover` turns a submissions folder into :class:`Entry` records, one per student and
assignment, for the layout it detects (or is told with ``cnnlab batch --layout``):

``folders``
    One entry per student: a folder (of any depth: a zip of a folder, a GitHub download), a
    ``.zip``, a ``.py`` or an ``.ipynb``; its name is the student id.
``canvas``
    Canvas's *Download Submissions*: one flat folder of files named
    ``{lastnamefirstname}_{user id}_{submission id}_{file name}``, with ``_LATE`` after the
    name for a late submission (``doe_LATE_12345_67890_pooling.py``) and quiz file uploads as
    ``{name}{user id}_question_{question id}_{attachment id}_{file name}``. A file uploaded again
    under the same name is renamed ``{stem}-{N}{ext}`` (``pooling-1.py``): the newest (highest
    submission id, then highest ``N``) is graded under its original name and the older one is
    dropped, with a note. The student id is Canvas's numeric user id (the ``ID`` column of
    Canvas's gradebook export); the name is kept for reports.
``moodle``
    Moodle's *Download all submissions*: a folder per student named
    ``{Full Name}_{participant id}_assignsubmission_file_`` holding the files as uploaded
    (*Download submissions in folders*, Moodle's default since 3.1), or flat files named
    ``{Full Name}_{participant id}_assignsubmission_file_{file name}``. Online-text answers
    (``..._assignsubmission_onlinetext_``) are not code and are skipped; with blind marking
    the name is ``Participant``. The student id is the participant id (the ``Identifier`` of
    Moodle's grading worksheet); a zip the student uploaded is opened.
``blackboard``
    Blackboard Learn's *Download Assignment*: flat files named
    ``{assignment}_{username}_attempt_{YYYY-MM-DD-HH-MM-SS}_{file name}`` beside one receipt
    ``{assignment}_{username}_attempt_{...}.txt`` per attempt. Only the newest attempt is graded.
    The student id is the username.
``nbgrader``
    ``course/submitted/<student>/<assignment>/`` (or ``submitted/`` itself): every assignment
    found, or only the one asked for.

In every layout a student's files are read as hostile input (:mod:`grader.submission`):
regular files only, no link leaving the submission, size caps, zips checked member by member.
A student whose files cannot be read is *unreadable* with the reason; the batch goes on.
Inside a student's files, names an LMS prefixed are restored (``doe_12345_67890_layers.py`` is
graded as ``layers.py``), so their modules can import each other.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Literal

from grader import seeds
from grader.errors import SubmissionError
from grader.submission import (
    GRADABLE_SUFFIXES,
    Found,
    SourceFile,
    Submission,
    file_source,
    load_sources,
    read_regular_file,
    walk_folder,
    zip_sources,
)

#: Layouts :func:`discover` understands; ``auto`` detects one of the others.
LAYOUTS = ("auto", "folders", "canvas", "moodle", "blackboard", "nbgrader")
Layout = Literal["auto", "folders", "canvas", "moodle", "blackboard", "nbgrader"]
EntryKind = Literal["folder", "file", "notebook", "zip", "files"]

_IGNORED_NAMES = {"__MACOSX", "__pycache__", "Thumbs.db", "desktop.ini"}
#: Most bytes of a refused file read to fingerprint it (see :func:`content_hash`).
RAW_HASH_LIMIT = 64 * 1024 * 1024

#: Canvas: ``doe_12345_67890_pooling.py``, ``doe_LATE_12345_67890_pooling.py``.
CANVAS_FILE = re.compile(
    r"^(?P<name>[^_]+?)(?P<late>_late)?_(?P<uid>\d+)_(?P<sid>\d+)_(?P<file>.+)$", re.IGNORECASE
)
#: Canvas quiz file uploads: ``doe12345_question_111_222_answer.py``.
CANVAS_QUIZ_FILE = re.compile(
    r"^(?P<name>[^_\d]+?)(?P<uid>\d+)_question_(?P<qid>\d+)_(?P<sid>\d+)_(?P<file>.+)$"
)
#: Canvas's rename of a file uploaded again under the same name: ``pooling-1.py``.
CANVAS_VERSION = re.compile(r"^(?P<stem>.+?)-(?P<n>\d+)(?P<ext>\.[^.]+)?$")
#: Moodle: ``Jane Doe_123456_assignsubmission_file_`` (a folder) or ``..._file_pooling.py``.
MOODLE_ENTRY = re.compile(
    r"^(?P<name>[^_]+)_(?P<id>\d+)_assignsubmission_(?P<plugin>[a-z]+)_(?P<file>.*)$"
)
#: Blackboard: ``HW1_jdoe_attempt_2026-01-31-23-59-59_pooling.py`` and the ``....txt`` receipt.
BLACKBOARD_FILE = re.compile(
    r"^(?P<assignment>.*)_(?P<user>[^_]+)_attempt_"
    r"(?P<when>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})(?:_(?P<file>.+)|\.txt)$"
)

_EXPECTED = {
    "canvas": "lastnamefirstname_12345_67890_pooling.py (Canvas's Download Submissions)",
    "moodle": "'Full Name_123456_assignsubmission_file_' folders or files (Moodle's Download "
    "all submissions)",
    "blackboard": "HW1_username_attempt_2026-01-31-23-59-59_pooling.py (Blackboard's Download "
    "Assignment)",
}


@dataclass(frozen=True)
class Entry:
    """One student's submission of one assignment, as found on disk.

    Attributes:
        student: student id (``alice`` for ``alice/``, ``alice.zip``, ``alice.py``,
            ``alice.ipynb`` or nbgrader's ``submitted/alice/<assignment>/``; the LMS's id in
            the LMS layouts).
        assignment: assignment name (nbgrader's folder name, else the batch's assignment).
        path: the folder, file or zip to grade (for ``files``: the folder holding them).
        kind: ``folder``, ``file`` (.py), ``notebook`` (.ipynb), ``zip``, or ``files`` (the
            files an LMS layout gathered for the student, in ``members``).
        members: ``files`` only: ``(name in the submission, file on disk)``; a folder or a zip
            among them contributes its contents.
        name: the student's name as the LMS wrote it (``doejane``, ``Jane Doe``), if any.
        late: the LMS marked the submission late.
        notes: what was decided about the student's files (an older upload dropped).
    """

    student: str
    assignment: str
    path: Path
    kind: EntryKind
    members: tuple[tuple[str, Path], ...] = ()
    name: str = ""
    late: bool = False
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Discovery:
    """What :func:`discover` found.

    Attributes:
        entries: gradable entries, sorted by (assignment, student).
        skipped: ``(path, reason)`` for everything that was not taken (shown as warnings).
        nbgrader: True when the folder had nbgrader's ``submitted/`` layout.
        layout: the layout used (detected or given).
    """

    entries: tuple[Entry, ...]
    skipped: tuple[tuple[Path, str], ...] = ()
    nbgrader: bool = False
    layout: str = "folders"


def _ignored(p: Path | str) -> bool:
    name = p if isinstance(p, str) else p.name
    return name.startswith(".") or name in _IGNORED_NAMES or name.startswith("~$")


def _kind_of(p: Path) -> EntryKind | None:
    if p.is_dir() and not p.is_symlink():
        return "folder"
    suffix = p.suffix.lower()
    return {".py": "file", ".ipynb": "notebook", ".zip": "zip"}.get(suffix)  # type: ignore[return-value]


def _student_id(name: str) -> str:
    """The id as the layout spells it; ``batch.normalize_entries`` normalises it (NFC, spacing,
    e-mail case) and refuses two spellings of one student."""
    return name.strip()


def original_name(filename: str) -> str | None:
    """The name a file had when the student uploaded it, if an LMS prefixed it
    (``doe_12345_67890_pooling-1.py`` -> ``pooling.py``); ``None`` when it was not."""
    for pattern in (CANVAS_QUIZ_FILE, CANVAS_FILE, BLACKBOARD_FILE):
        found = pattern.match(filename)
        if found and found.group("file"):
            name = found.group("file")
            if pattern is not BLACKBOARD_FILE:
                version = CANVAS_VERSION.match(name)
                if version:
                    name = version.group("stem") + (version.group("ext") or "")
            return name
    found = MOODLE_ENTRY.match(filename)
    if found and found.group("plugin") == "file" and found.group("file"):
        return found.group("file")
    return None


def detect_layout(root: Path) -> Layout:
    """The layout of ``root``: nbgrader's ``submitted/`` folder, else the LMS whose file names
    most of its entries carry (Moodle, Blackboard, Canvas), else ``folders``."""
    if root.name == "submitted" or (root / "submitted").is_dir():
        return "nbgrader"
    try:
        names = [p.name for p in root.iterdir() if not _ignored(p)]
    except OSError:
        return "folders"
    if not names:
        return "folders"
    counts = {
        "moodle": sum(bool(MOODLE_ENTRY.match(n)) for n in names),
        "blackboard": sum(bool(BLACKBOARD_FILE.match(n)) for n in names),
        "canvas": sum(bool(CANVAS_FILE.match(n) or CANVAS_QUIZ_FILE.match(n)) for n in names),
    }
    layout, count = max(counts.items(), key=lambda kv: kv[1])
    return layout if count and 2 * count >= len(names) else "folders"  # type: ignore[return-value]


def discover(
    root: str | Path,
    *,
    layout: str = "auto",
    assignment: str = seeds.DEFAULT_ASSIGNMENT,
    only_assignment: str | None = None,
    exclude: Iterable[Path] = (),
) -> Discovery:
    """Find one submission per student in ``root``.

    Args:
        root: the submissions folder (an LMS download, unzipped).
        layout: one of :data:`LAYOUTS`; ``auto`` detects it (:func:`detect_layout`).
        assignment: assignment name given to entries of every layout but nbgrader's.
        only_assignment: nbgrader layout: grade only this assignment.
        exclude: paths never taken as a submission (the batch's own --out folder).

    Returns:
        The entries found, what was skipped, and the layout.

    Raises:
        SubmissionError: ``root`` is missing or not a folder, holds no submission of the
            layout, or holds two entries for the same student (folders layout).
    """
    root = Path(root)
    if layout not in LAYOUTS:
        raise SubmissionError(f"unknown layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    if not root.exists():
        raise SubmissionError(
            f"no such folder {str(root)!r}: pass the folder holding one folder, .zip, .py or "
            ".ipynb per student, an LMS download (unzipped) or nbgrader's course folder"
        )
    if not root.is_dir():
        hint = (
            f"unzip it first (e.g. `unzip {root.name} -d submissions/`) and pass the folder"
            if root.suffix.lower() == ".zip"
            else f"to grade one submission run `cnnlab grade {root}`"
        )
        raise SubmissionError(
            f"{str(root)!r} is a file: `cnnlab batch` takes a folder of submissions; {hint}"
        )
    chosen = detect_layout(root) if layout == "auto" else layout
    if chosen == "nbgrader":
        nb_root = root if root.name == "submitted" else root / "submitted"
        if not nb_root.is_dir():
            raise SubmissionError(
                f"no submitted/ folder in {str(root)!r}: nbgrader's layout is "
                "course/submitted/<student>/<assignment>/ (pass the course folder or submitted/)"
            )
        return _discover_nbgrader(nb_root, only_assignment)
    excluded = {q.resolve() for q in exclude}
    children = [
        p for p in sorted(root.iterdir()) if not _ignored(p) and p.resolve() not in excluded
    ]
    if chosen == "folders":
        return _discover_folders(root, children, assignment)
    if chosen == "canvas":
        found = _discover_canvas(root, children, assignment)
    elif chosen == "moodle":
        found = _discover_moodle(root, children, assignment)
    else:
        found = _discover_blackboard(root, children, assignment)
    if not found.entries:
        raise SubmissionError(
            f"no {chosen.capitalize()} submissions in {str(root)!r}: expected "
            f"{_EXPECTED[chosen]}; pass --layout folders for one folder, .zip, .py or .ipynb per "
            "student"
        )
    return found


def _discover_folders(root: Path, children: list[Path], assignment: str) -> Discovery:
    entries: list[Entry] = []
    skipped: list[tuple[Path, str]] = []
    seen: dict[str, Path] = {}
    for p in children:
        kind = _kind_of(p)
        if kind is None:
            skipped.append((p, "not a folder, .zip, .py or .ipynb"))
            continue
        student = _student_id(p.stem if kind != "folder" else p.name)
        if student in seen:
            raise SubmissionError(
                f"two submissions for student {student!r}: {seen[student].name} and {p.name}; "
                "keep one of them (or move the other out of the folder) and run again"
            )
        seen[student] = p
        entries.append(Entry(student, assignment, p, kind))
    if not entries:
        raise SubmissionError(
            f"no submissions in {str(root)!r}: expected one folder, .zip, .py or .ipynb per "
            "student, an LMS download (--layout canvas, moodle or blackboard) or nbgrader's "
            "submitted/<student>/<assignment>/ layout"
        )
    return Discovery(tuple(entries), tuple(skipped), layout="folders")


def _newest(
    files: list[tuple[str, tuple[int, ...], Path]],
) -> tuple[list[tuple[str, Path]], list[str]]:
    """One file per original name, the one with the highest version key; notes for the rest."""
    best: dict[str, tuple[tuple[int, ...], Path]] = {}
    notes = []
    for name, key, path in files:
        old = best.get(name)
        if old is None or key > old[0]:
            if old is not None:
                notes.append(f"{old[1].name} replaced by the newer {path.name} (graded as {name})")
            best[name] = (key, path)
        else:
            notes.append(f"{path.name} replaced by the newer {old[1].name} (graded as {name})")
    return sorted((name, path) for name, (_key, path) in best.items()), sorted(notes)


def _discover_canvas(root: Path, children: list[Path], assignment: str) -> Discovery:
    by_user: dict[str, list[tuple[str, tuple[int, ...], Path]]] = {}
    names: dict[str, str] = {}
    late: dict[str, bool] = {}
    skipped: list[tuple[Path, str]] = []
    for p in children:
        found = CANVAS_QUIZ_FILE.match(p.name) or CANVAS_FILE.match(p.name)
        if found is None or p.is_dir():
            skipped.append((p, f"not a Canvas submission file ({_EXPECTED['canvas']})"))
            continue
        uid = found.group("uid")
        original = found.group("file")
        version = 0
        renamed = CANVAS_VERSION.match(original)
        if renamed:
            version = int(renamed.group("n"))
            original = renamed.group("stem") + (renamed.group("ext") or "")
        by_user.setdefault(uid, []).append((original, (int(found.group("sid")), version), p))
        names.setdefault(uid, found.group("name"))
        late[uid] = late.get(uid, False) or bool(found.groupdict().get("late"))
    entries = []
    for uid, files in sorted(by_user.items()):
        members, notes = _newest(files)
        entries.append(
            Entry(
                student=_student_id(uid),
                assignment=assignment,
                path=root,
                kind="files",
                members=tuple(members),
                name=names[uid],
                late=late[uid],
                notes=tuple(notes),
            )
        )
    return Discovery(tuple(entries), tuple(skipped), layout="canvas")


def _discover_moodle(root: Path, children: list[Path], assignment: str) -> Discovery:
    by_id: dict[str, list[tuple[str, Path]]] = {}
    names: dict[str, str] = {}
    skipped: list[tuple[Path, str]] = []
    for p in children:
        found = MOODLE_ENTRY.match(p.name)
        if found is None:
            skipped.append((p, f"not a Moodle submission ({_EXPECTED['moodle']})"))
            continue
        if found.group("plugin") != "file":
            skipped.append((p, f"Moodle {found.group('plugin')} submission, not files: not graded"))
            continue
        pid = found.group("id")
        names.setdefault(pid, found.group("name"))
        if p.is_dir() and not p.is_symlink():
            by_id.setdefault(pid, []).append(("", p))  # "Download submissions in folders"
        elif found.group("file"):
            by_id.setdefault(pid, []).append((found.group("file"), p))
        else:
            skipped.append((p, "a Moodle entry that is neither a folder nor a named file"))
    entries = [
        Entry(
            student=_student_id(pid),
            assignment=assignment,
            path=root,
            kind="files",
            members=tuple(sorted(members)),
            name=names[pid],
        )
        for pid, members in sorted(by_id.items())
    ]
    return Discovery(tuple(entries), tuple(skipped), layout="moodle")


def _discover_blackboard(root: Path, children: list[Path], assignment: str) -> Discovery:
    attempts: dict[str, dict[str, list[tuple[str, Path]]]] = {}
    skipped: list[tuple[Path, str]] = []
    for p in children:
        found = BLACKBOARD_FILE.match(p.name)
        if found is None or p.is_dir():
            skipped.append((p, f"not a Blackboard submission file ({_EXPECTED['blackboard']})"))
            continue
        user, when = found.group("user"), found.group("when")
        files = attempts.setdefault(user, {}).setdefault(when, [])
        if found.group("file"):
            files.append((found.group("file"), p))
    entries = []
    for user, by_time in sorted(attempts.items()):
        newest = max(by_time)
        older = sorted(t for t in by_time if t != newest)
        notes = tuple(f"attempt of {t} replaced by the newer attempt of {newest}" for t in older)
        members = sorted(by_time[newest])
        if not members:
            skipped.append((root / f"{user}", f"the newest attempt of {user} holds no file"))
            continue
        entries.append(
            Entry(
                student=_student_id(user),
                assignment=assignment,
                path=root,
                kind="files",
                members=tuple(members),
                name=user,
                notes=notes,
            )
        )
    return Discovery(tuple(entries), tuple(skipped), layout="blackboard")


def _discover_nbgrader(submitted: Path, only_assignment: str | None) -> Discovery:
    entries: list[Entry] = []
    skipped: list[tuple[Path, str]] = []
    found_assignments: set[str] = set()
    for student_dir in sorted(submitted.iterdir()):
        if _ignored(student_dir):
            continue
        if not student_dir.is_dir() or student_dir.is_symlink():
            skipped.append((student_dir, "nbgrader layout: expected a folder per student"))
            continue
        for assignment_dir in sorted(student_dir.iterdir()):
            if _ignored(assignment_dir) or not assignment_dir.is_dir():
                continue
            found_assignments.add(assignment_dir.name)
            if only_assignment is not None and assignment_dir.name != only_assignment:
                continue
            entries.append(
                Entry(_student_id(student_dir.name), assignment_dir.name, assignment_dir, "folder")
            )
    if not entries:
        if only_assignment is not None and found_assignments:
            raise SubmissionError(
                f"no submission of assignment {only_assignment!r} in {str(submitted)!r}; "
                f"assignments found: {', '.join(sorted(found_assignments))}"
            )
        raise SubmissionError(
            f"no submissions in {str(submitted)!r}: nbgrader's layout is "
            "submitted/<student>/<assignment>/ with the notebooks inside"
        )
    entries.sort(key=lambda e: (e.assignment, e.student))
    return Discovery(tuple(entries), tuple(skipped), nbgrader=True, layout="nbgrader")


# -- one student's files -------------------------------------------------------------------


def _renamed(source: SourceFile, relpath: str) -> SourceFile:
    return replace(source, relpath=relpath)


def _restore_names(sources: list[SourceFile]) -> list[SourceFile]:
    """Give files an LMS prefixed their uploaded names back, when that clashes with nothing."""
    taken = {s.relpath for s in sources}
    out = []
    for source in sources:
        path = PurePosixPath(source.relpath)
        original = original_name(path.name)
        if original:
            new = str(path.with_name(original))
            if new not in taken:
                taken.discard(source.relpath)
                taken.add(new)
                source = _renamed(source, new)
        out.append(source)
    return out


def entry_files(entry: Entry) -> Found:
    """Every file of ``entry`` as :class:`~grader.submission.SourceFile` records, read as
    hostile input: the tree of a folder, the members of a zip (also a zip inside a folder or
    uploaded to an LMS), or the files an LMS layout gathered.

    Raises:
        SubmissionError: the entry is a link, a FIFO or a device; anything
            :func:`grader.submission.walk_folder` or :func:`grader.submission.zip_sources`
            refuses.
    """
    members = entry.members if entry.kind == "files" else (("", entry.path),)
    found = Found()
    for rel, path in members:
        label = rel or path.name
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise SubmissionError(f"cannot read {label}: {exc.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            raise SubmissionError(
                f"{label} is a symbolic link; links are not graded: submit the files themselves"
            )
        if stat.S_ISDIR(st.st_mode):
            inner = walk_folder(path)
            prefix = f"{rel.rstrip('/')}/" if rel else ""
            found.sources += [_renamed(s, prefix + s.relpath) for s in inner.sources]
            found.data += [_renamed(s, prefix + s.relpath) for s in inner.data]
            found.notes += inner.notes
            continue
        if not stat.S_ISREG(st.st_mode):
            raise SubmissionError(
                f"{label} is not a regular file (a FIFO, a device or a socket): submit ordinary "
                ".py or .ipynb files"
            )
        name = rel or path.name
        suffix = PurePosixPath(name).suffix.lower()
        if suffix == ".zip":
            folder = str(PurePosixPath(name).parent)
            prefix = "" if folder in (".", "") else f"{folder}/"
            sources, notes = zip_sources(path, label=label, prefix=prefix)
            found.sources += sources
            found.notes += notes
        elif suffix in GRADABLE_SUFFIXES:
            found.sources.append(file_source(path, name))
    found.sources = _restore_names(found.sources)
    return found


def load_entry(entry: Entry) -> Submission:
    """The :class:`~grader.submission.Submission` of one entry (what a worker grades).

    Raises:
        SubmissionError: the student's files cannot be read, or hold no code.
    """
    found = entry_files(entry)
    label = entry.path.name if entry.kind != "files" else f"the files of {entry.student}"
    if not found.sources:
        raise SubmissionError(
            f"no .py file or notebook in {label}: a submission is .py files or notebooks (or a "
            "zip of them)"
        )
    kind: Literal["folder", "file", "notebook"] = "folder"
    if entry.kind == "file":
        kind = "file"
    elif entry.kind == "notebook":
        kind = "notebook"
    return load_sources(
        found.sources,
        path=entry.path.resolve(),
        kind=kind,
        label=label,
        notes=[*entry.notes, *found.notes],
        data=found.data,
    )


def content_hash(entry: Entry) -> str:
    """SHA-256 of what is graded: the path inside the submission and the bytes of every
    ``.py``/``.ipynb`` (nbgrader's ``timestamp.txt``, caches and data files do not count).

    A zip (or an LMS's files) whose contents are refused is fingerprinted by its own bytes, so
    ``--resume`` keeps its "unreadable" verdict until the file changes.

    Raises:
        SubmissionError: the entry cannot be read at all (a link, a FIFO, a device, a folder
            holding one): the batch records the student as unreadable and goes on.
    """
    h = hashlib.sha256()
    try:
        sources = sorted(entry_files(entry).sources, key=lambda s: s.relpath)
        for source in sources:
            rel = source.relpath.encode("utf-8", "surrogateescape")  # any file name
            h.update(len(rel).to_bytes(4, "big") + rel)
            data = source.read()
            h.update(len(data).to_bytes(8, "big") + data)
        return h.hexdigest()
    except SubmissionError:
        members = entry.members if entry.kind == "files" else (("", entry.path),)
        if any(p.is_dir() or p.is_symlink() for _, p in members):
            raise
    except (OSError, ValueError, MemoryError) as exc:
        raise SubmissionError(f"cannot read the files of {entry.student}: {exc}") from None
    h = hashlib.sha256(b"raw\0")
    for rel, path in members:
        data = read_regular_file(path, limit=RAW_HASH_LIMIT, label=rel or path.name)
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()
