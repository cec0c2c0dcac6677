"""One fresh virtual environment per test session, made the way the Gradescope autograder
makes it: ``cnnlab export gradescope`` builds a wheel of this checkout into the zip, and the
zip's ``setup.sh`` installs torch and that wheel into a new venv (no system site-packages,
nothing of the checkout on its path). Used by the autograder's end-to-end test and by the
wheel-install test (``tests/test_wheel_install.py``), which grades ``solutions/`` with it:
building it once saves a torch install per test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

#: What the exported autograder grades, and with which seed.
EXERCISES = ("maxpool2d_forward", "maxpool2d_backward")
SEED = 2026


def clean_env(**extra: str) -> dict[str, str]:
    """The environment Gradescope's container would give: nothing of this checkout or of the
    test's own virtual environment."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "CNNLAB_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env["PYTHONNOUSERSITE"] = "1"
    return {**env, **extra}


def exported_autograder(base: Path) -> tuple[Path, Path]:
    """``(source folder, python of the fresh venv)``: the zip exported and set up in ``base``.

    Raises:
        AssertionError: the export, the venv or ``setup.sh`` failed (with their output).
    """
    from click.testing import CliRunner

    from grader.cli import main

    archive = base / "autograder.zip"  # the export builds the wheel of this checkout itself
    args = ["export", "gradescope", "--seed", str(SEED), "--out", str(archive)]
    for name in EXERCISES:
        args += ["-e", name]
    exported = CliRunner().invoke(main, args, env={})
    assert exported.exit_code == 0, exported.output
    source = base / "source"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(source)
    venv = base / "venv"
    made = subprocess.run(
        [sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=600
    )
    assert made.returncode == 0, made.stderr
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    python = venv / "bin" / "python"
    setup = subprocess.run(
        ["bash", str(source / "setup.sh")],
        cwd=base,
        env=clean_env(CNNLAB_PYTHON=str(python), PIP_NO_COMPILE="1"),
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert setup.returncode == 0, (setup.stdout + setup.stderr)[-4000:]
    where = subprocess.run(
        [str(python), "-c", "import grader, torch; print(grader.__file__, torch.__version__)"],
        cwd=base,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    installed, torch_version = where.stdout.split()
    assert installed.startswith(str(venv)), installed  # the wheel, not this checkout
    assert torch_version.startswith("2.13.0")
    return source, python
