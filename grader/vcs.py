"""Is a file about to be committed by accident? (``git check-ignore``)

cnnlab writes files that must never reach a repository: the Gradescope autograder zip (the
course secret or the one grading seed), per-student problem sets (their solutions), gradebooks
(every student's grades and seeds). :func:`unignored_in_git` says when such a file lies inside a
git work tree where ``.gitignore`` does not cover it, so the command can warn; outside a work
tree, or without git, there is nothing to warn about.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

__all__ = ["secret_warning", "unignored_in_git"]


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str] | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        return subprocess.run(
            [git, *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def unignored_in_git(path: str | Path) -> Path | None:
    """The root of the git work tree that holds ``path`` when git would *not* ignore it
    (``git check-ignore`` says so), else ``None`` (ignored, outside any work tree, no git).

    ``path`` need not exist yet (its nearest existing folder is asked)."""
    path = Path(path).absolute()
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    top = _git(["rev-parse", "--show-toplevel"], folder)
    if top is None or top.returncode != 0 or not top.stdout.strip():
        return None
    root = Path(top.stdout.strip())
    check = _git(["check-ignore", "-q", str(path)], folder)  # a tracked file: not ignored
    if check is None or check.returncode not in (0, 1):
        return None  # git could not tell (e.g. a path outside the tree): nothing to say
    return root if check.returncode == 1 else None


def secret_warning(path: str | Path, what: str) -> str | None:
    """A warning for ``path`` (holding ``what``) when it is inside a git work tree and not
    ignored, else ``None``."""
    root = unignored_in_git(path)
    if root is None:
        return None
    path = Path(path).absolute()
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = str(path)
    pattern = "/" + rel + ("/" if path.is_dir() else "")
    return (
        f"warning: {rel} holds {what} and lies inside the git work tree {root} without being "
        f"ignored, so `git add .` would commit it: add it to .gitignore "
        f"(`echo '{pattern}' >> {root / '.gitignore'}`) or write it outside the repository"
    )
