"""Building a wheel of a source folder with pip, as ``cnnlab export gradescope`` needs for
cnnlab itself (:func:`grader.classroom.gradescope.build_wheel`) and for the exercise plugins
an autograder ships (:func:`grader.plugins.plugin_wheels`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def pip_wheel(source: Path, out: Path) -> tuple[list[Path], str]:
    """``(wheels built into out, pip's last lines)`` for the project in ``source``.

    Offline first, with this environment's build backend (``--no-build-isolation``); if that
    cannot build (an old setuptools without ``bdist_wheel``, say), pip fetches the backend the
    project's ``pyproject.toml`` asks for, as ``pip install .`` does. No wheel means failure;
    the text then says why.
    """
    proc: subprocess.CompletedProcess[str] | None = None
    for isolation in (["--no-build-isolation"], []):
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "--quiet"]
            + ["--wheel-dir", str(out), str(source)],
            capture_output=True,
            text=True,
        )
        if proc.returncode == 0:
            break
    assert proc is not None
    wheels = sorted(out.glob("*.whl")) if out.is_dir() and proc.returncode == 0 else []
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
    return wheels, tail
