"""A class roster: the student ids ``cnnlab release --students`` writes bundles for.

The file is CSV with a header row, as nbgrader's ``nbgrader db student import`` reads it
(``id,first_name,last_name,email``); the id column may also be called ``student_id`` or
``student``, and every other column is ignored. A student id becomes a folder name and the
input of the seed derivation, so it must be non-empty, unique and made of letters, digits and
``._@+-``; two ids that differ only in case are one student (one folder on a
case-insensitive file system). Every problem is reported with its line number, before
anything is written.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from grader.errors import ConfigError

#: Names of the id column, in order of preference (nbgrader's first).
ID_COLUMNS = ("id", "student_id", "student")
_VALID_ID = re.compile(r"^[A-Za-z0-9._@+-]+$")


def read_roster(path: str | Path) -> list[str]:
    """The student ids of the roster at ``path``, in file order.

    Raises:
        ConfigError: the file is missing or unreadable, has no id column, or a line has an
            empty, invalid or repeated id (the message names the line).
    """
    path = Path(path)
    where = str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"no roster file {where!r}: pass a CSV with an `id` column") from None
    except IsADirectoryError:
        raise ConfigError(f"{where!r} is a folder: pass the roster CSV file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{where}: not UTF-8 text (byte {exc.start}); save the roster as UTF-8 CSV"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the roster {where!r}: {exc.strerror}") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise ConfigError(
            f"{where}, line 1: the roster is empty; its first line is a header with an `id` "
            "column (nbgrader's format: id,first_name,last_name,email)"
        )
    header = [cell.strip().lower() for cell in rows[0]]
    column = next((header.index(c) for c in ID_COLUMNS if c in header), None)
    if column is None:
        raise ConfigError(
            f"{where}, line 1: no `id` column in the header {rows[0]!r}; the first line names "
            "the columns, e.g. id,first_name,last_name,email"
        )
    students: list[str] = []
    seen: dict[str, tuple[str, int]] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        student = row[column].strip() if column < len(row) else ""
        if not student:
            raise ConfigError(f"{where}, line {number}: the `{header[column]}` column is empty")
        if not _VALID_ID.match(student):
            raise ConfigError(
                f"{where}, line {number}: student id {student!r} has characters other than "
                "letters, digits and ._@+- (it becomes a folder name)"
            )
        key = student.casefold()  # S1 and s1 would be one folder on macOS and Windows
        if key in seen:
            first, line = seen[key]
            same = (
                ""
                if first == student
                else f" as {first!r} (ids differing only in case are one folder on macOS and "
                "Windows)"
            )
            raise ConfigError(
                f"{where}, line {number}: student {student!r} is already on line {line}{same}"
            )
        seen[key] = (student, number)
        students.append(student)
    if not students:
        raise ConfigError(f"{where}: the roster names no student (only a header line)")
    return students
