"""Seeds: every random choice in cnnlab flows from one integer.

A student's grading seed is derived from the course secret, the assignment and the student
id with HMAC-SHA256, so it can be recomputed by the grader but not guessed or shopped for by
re-downloading. The secret lives in a file or the ``CNNLAB_COURSE_SECRET`` environment
variable and is never committed or shipped in a student bundle.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from grader.errors import ConfigError

DEFAULT_SEED = 2026
DEFAULT_ASSIGNMENT = "cnn"
SECRET_ENV = "CNNLAB_COURSE_SECRET"
SECRET_FILE_ENV = "CNNLAB_COURSE_SECRET_FILE"


def derive_seed(secret: bytes | str, student_id: str, assignment: str = DEFAULT_ASSIGNMENT) -> int:
    """A 31-bit seed from HMAC-SHA256(secret, assignment NUL student_id)."""
    if isinstance(secret, str):
        secret = secret.encode()
    if not secret:
        raise ConfigError("the course secret is empty; put a long random string in it")
    if not student_id or not student_id.strip():
        raise ConfigError("a student id must be a non-empty string")
    msg = f"{assignment}\0{student_id.strip()}".encode()
    digest = hmac.new(secret, msg, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % (2**31 - 1)


def load_secret(path: str | Path | None = None) -> bytes:
    """The secret from ``path``, else ``$CNNLAB_COURSE_SECRET_FILE``, else the variable."""
    path = path or os.environ.get(SECRET_FILE_ENV)
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(
                f"course secret file {str(p)!r} does not exist; create it with "
                f"`python -c 'import secrets; print(secrets.token_hex(32))' > {p}`"
            )
        secret = p.read_bytes().strip()
    else:
        secret = os.environ.get(SECRET_ENV, "").encode()
    if not secret:
        raise ConfigError(
            "no course secret: set CNNLAB_COURSE_SECRET, or CNNLAB_COURSE_SECRET_FILE / "
            "--secret-file to a file holding a long random string (never commit it)"
        )
    return secret
