"""A Gradescope autograder for cnnlab: ``cnnlab export gradescope`` builds the zip, and the
zip's ``run_autograder`` calls ``python -m grader.classroom.gradescope run`` inside
Gradescope's container.

Gradescope runs one container per submission, which is how a class of any size is graded.
The zip holds:

* ``setup.sh``: installs ``torch==2.13.0`` (CPU build) first, then cnnlab from the wheel in
  ``dist/`` (no network beyond the package registries);
* ``run_autograder``: grades ``$AUTOGRADER_ROOT/submission`` (default ``/autograder``) in
  cnnlab's sandbox with ``cnnlab grade --gradescope``: the student's ``.py`` files and
  notebooks wherever they lie in that folder (a GitHub or zip upload nests them), recognised by
  the functions they define, with what was graded among the output's notes; it moves the
  result to
  ``results/results.json`` only after the grading process, and with it every child that ran
  student code, has exited. A ``results.json`` that exists before grading (a forgery) is
  removed first;
* ``cnnlab_autograder.json``: the exercises, the assignment name and the seed policy;
* ``course_secret`` (per-student seeds only).

Seeds inside Gradescope: with ``--seed N`` every submission is graded with seed N. With a
course secret (``--secret-file`` / ``$CNNLAB_COURSE_SECRET``) the seed is
``derive_seed(secret, student, assignment)`` as in ``cnnlab batch``, the student being the
submitter from ``/autograder/submission_metadata.json``, read from one field chosen at export
(``--id-field``): ``email`` (the default: Gradescope's documented metadata always has it) or
``sid`` (only when the course roster carries student ids). The id is normalised as everywhere
(:func:`grader.seeds.normalize_student_id`: NFC, stripped, e-mail in lower case), so the
student whose per-student problem set was made with ``cnnlab generate --student ID`` (and whose
batch folder is named ``ID``) gets the same seed here. A name is never an id (not unique). A
user without the chosen field is a grader failure the staff sees, never a guessed seed. A group
submission joins its members' ids, sorted, with ``+``. The secret is read by a short-lived
process that prints the seed and deletes the file, before any student code runs; the grading
process never holds it, gets the seed through ``$CNNLAB_ASSIGNED_SEED`` (not its command line)
and never prints it: neither ``results.json`` nor the autograder's output names a seed, since
with it a student could regenerate the solutions of their problem set. The seed beats the
header of the submitted ``questions.py`` (see :mod:`grader.seeds`).

A grader failure (the grade command exits 3, crashes, or gives no result) is retried once;
if it persists ``results.json`` carries an explanation and **no score** (Gradescope then
shows the autograder as failed, for the staff to look at) and ``run_autograder`` exits 3.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from grader import __version__, seeds
from grader.errors import ConfigError, GraderFailure
from grader.registry import VIEW_ENV
from grader.sanitize import fit_json
from grader.wheels import pip_wheel

ROOT_ENV = "AUTOGRADER_ROOT"
#: How the grading process gets its seed (read and removed by ``cnnlab grade``).
ASSIGNED_SEED_ENV = "CNNLAB_ASSIGNED_SEED"
#: The check cases' seed of this submission (see :func:`seed_for_submission`).
ASSIGNED_CASES_SEED_ENV = "CNNLAB_ASSIGNED_CASES_SEED"
PYTHON_ENV = "CNNLAB_PYTHON"
CONFIG_NAME = "cnnlab_autograder.json"
SECRET_NAME = "course_secret"
TORCH_VERSION = "2.13.0"
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
GRADE_TIMEOUT_S = 30 * 60
#: Fields of a Gradescope user that may be the student id (``--id-field``).
ID_FIELDS = ("email", "sid")
DEFAULT_ID_FIELD = "email"
#: results.json budget (see grader.render.GRADESCOPE_MAX_BYTES).
RESULTS_MAX_BYTES = 1_000_000
#: Files a wheel must hold for the autograder to work (the registry lives in grader.exercises).
REQUIRED_IN_WHEEL = ("grader/engine.py", "grader/sandbox/runner.py", "grader/exercises/__init__.py")

SETUP_SH = f"""#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder image.
# torch first (the CPU build: Gradescope has no GPU), then cnnlab from the wheel in dist/.
set -euo pipefail
cd "$(dirname "${{BASH_SOURCE[0]}}")"
PY="${{{PYTHON_ENV}:-python3}}"
export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1
if ! "$PY" -m pip --version >/dev/null 2>&1; then
  apt-get update && apt-get install -y --no-install-recommends python3 python3-pip
fi
"$PY" -m pip install --no-cache-dir "torch=={TORCH_VERSION}" --index-url {TORCH_INDEX}
"$PY" -m pip install --no-cache-dir dist/*.whl
"$PY" -c "import grader, torch; print('cnnlab', grader.__version__, 'torch', torch.__version__)"
# every exercise graded must be registered (a plugin's wheel is in dist/ too): fail the build
"$PY" -m grader.cli list >/dev/null
"$PY" -c "import json; from grader import registry; \
registry.select(json.load(open('{CONFIG_NAME}'))['exercises'])"
"""

RUN_AUTOGRADER = f"""#!/usr/bin/env bash
# Gradescope runs this once per submission. It grades $ROOT/submission in cnnlab's sandbox and
# writes $ROOT/results/results.json after the student's code has exited.
# {ROOT_ENV} stands in for /autograder (tests), {PYTHON_ENV} for python3.
set -uo pipefail
ROOT="${{{ROOT_ENV}:-/autograder}}"
PY="${{{PYTHON_ENV}:-python3}}"
unset CNNLAB_COURSE_SECRET CNNLAB_COURSE_SECRET_FILE
exec "$PY" -m grader.classroom.gradescope run --root "$ROOT"
"""

README = """cnnlab autograder for Gradescope
================================

Upload this zip as the autograder of a Gradescope "programming assignment" (Ubuntu base
image). setup.sh installs torch and cnnlab; run_autograder grades each submission (.py files
and notebooks, wherever they lie in the uploaded folder) and writes results.json.

Built by `cnnlab export gradescope` (cnnlab {version}); settings in cnnlab_autograder.json.
Keep this zip private when it contains course_secret (per-student seeds).
"""


@dataclass(frozen=True)
class AutograderConfig:
    """What ``run_autograder`` needs, stored as ``cnnlab_autograder.json`` in the zip.

    Attributes:
        assignment: assignment name used in per-student seeds.
        exercises: exercise names graded (empty: all).
        seed: the one seed for everyone, or ``None`` for per-student seeds from the secret.
        id_field: the field of ``submission_metadata.json``'s users that is the student id
            (``email`` or ``sid``).
        cnnlab_version: the version that built the zip.
        allow_weak_sandbox: grade even where the sandbox has no filesystem layer (then
            every results.json says so); otherwise such a container gives no score.
        view: the course assignment's :class:`grader.registry.AssignmentView` as JSON (its
            exercises' points and time limits), or ``None`` outside a course.
    """

    assignment: str
    exercises: tuple[str, ...]
    seed: int | None
    id_field: str = DEFAULT_ID_FIELD
    cnnlab_version: str = __version__
    allow_weak_sandbox: bool = False
    view: str | None = None

    def __post_init__(self) -> None:
        if self.id_field not in ID_FIELDS:
            raise ConfigError(
                f"the student id field must be one of {', '.join(ID_FIELDS)}, got {self.id_field!r}"
            )

    def to_json(self) -> str:
        return (
            json.dumps(
                {
                    "assignment": self.assignment,
                    "exercises": list(self.exercises),
                    "seed": self.seed,
                    "per_student_seeds": self.seed is None,
                    "id_field": self.id_field,
                    "cnnlab_version": self.cnnlab_version,
                    "allow_weak_sandbox": self.allow_weak_sandbox,
                    "view": None if self.view is None else json.loads(self.view),
                },
                indent=2,
            )
            + "\n"
        )

    @classmethod
    def from_json(cls, text: str) -> AutograderConfig:
        doc = json.loads(text)
        return cls(
            assignment=str(doc["assignment"]),
            exercises=tuple(doc.get("exercises") or ()),
            seed=None if doc.get("seed") is None else int(doc["seed"]),
            id_field=str(doc.get("id_field", DEFAULT_ID_FIELD)),
            cnnlab_version=str(doc.get("cnnlab_version", "")),
            allow_weak_sandbox=bool(doc.get("allow_weak_sandbox", False)),
            view=None if doc.get("view") is None else json.dumps(doc["view"], sort_keys=True),
        )


# -- building the zip (instructor side) ----------------------------------------------------


def source_root() -> Path | None:
    """The source checkout cnnlab runs from (``pyproject.toml`` next to ``grader/``), if any."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "cnnref").is_dir() else None


_SKIP_DIRS = {".git", "build", "dist", "__pycache__", ".venv", "venv", ".tox", ".nox"}


def _source_files(root: Path) -> list[str]:
    """The files a wheel is built from, relative to ``root``: in a git checkout, the tracked
    and the untracked-but-not-ignored files (what a clone holds once they are committed: no
    build folders, gradebooks, submissions or secrets); elsewhere, the packages' folders and
    the top-level metadata files."""
    if (root / ".git").exists() and shutil.which("git"):
        proc = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others"]
            + ["--exclude-standard"],
            capture_output=True,
        )
        if proc.returncode == 0:
            names = [n.decode() for n in proc.stdout.split(b"\0") if n]
            return [n for n in names if (root / n).is_file()]
    files = []
    for name in ("cnnref", "grader", "templates"):
        for path in sorted((root / name).rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and not _SKIP_DIRS.intersection(rel.parts) and path.suffix != ".pyc":
                files.append(rel.as_posix())
    for path in root.iterdir():
        if path.is_file() and (
            path.suffix in (".toml", ".md", ".cfg", ".in") or path.name.startswith("LICENSE")
        ):
            files.append(path.name)
    return files


def build_wheel(root: Path, dest: Path) -> Path:
    """Build a wheel of cnnlab from the checkout ``root`` into ``dest`` (offline, without build
    isolation, when this environment can; else with pip's build isolation; the checkout is
    copied first so no build folder lands in it).

    Raises:
        ConfigError: the build failed (the message carries pip's last lines).
    """
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cnnlab-wheel-") as tmp:
        copy = Path(tmp) / "src"
        copy.mkdir()
        for rel in _source_files(root):
            target = copy / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, target)
        built, tail = pip_wheel(copy, dest)
    wheels = [w for w in built if w.name.startswith("cnnlab-")]
    if not wheels:
        raise ConfigError(
            f"could not build a wheel of cnnlab from {root}:\n{tail}\n"
            "build one yourself (`pip wheel --no-deps . -w dist/`) and pass --wheel FILE"
        )
    with zipfile.ZipFile(wheels[-1]) as whl:
        missing = [m for m in REQUIRED_IN_WHEEL if m not in set(whl.namelist())]
    if missing:
        raise ConfigError(
            f"the wheel built from {root} lacks {', '.join(missing)}, so the autograder would "
            "grade nothing; list every package (grader.exercises too) under "
            "[tool.setuptools] packages in pyproject.toml, or pass --wheel FILE"
        )
    return wheels[-1]


def _add(zf: zipfile.ZipFile, name: str, data: str | bytes, *, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    mode = 0o755 if executable else 0o644
    if name == SECRET_NAME:
        mode = 0o600
    info.external_attr = (stat.S_IFREG | mode) << 16
    zf.writestr(info, data)


def build_autograder(
    out: str | Path,
    *,
    config: AutograderConfig,
    secret: bytes | None = None,
    wheel: str | Path | None = None,
    extra_wheels: Sequence[Path] = (),
) -> Path:
    """Write the Gradescope autograder zip to ``out`` (atomically).

    Args:
        out: the ``.zip`` to write.
        config: exercises, assignment and seed policy.
        secret: the course secret (required when ``config.seed`` is ``None``).
        wheel: a cnnlab wheel or sdist to ship; default: built from this checkout.
        extra_wheels: wheels installed with it (the exercise plugins the exercises come from,
            :func:`grader.plugins.plugin_wheels`).

    Raises:
        ConfigError: no seed and no secret, a missing wheel, or no checkout to build from.
    """
    if (config.seed is None) == (secret is None):
        raise ConfigError(
            "the autograder needs a course secret (per-student seeds) or --seed N, not both"
        )
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a folder; pass a file name like autograder.zip")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cnnlab-export-") as tmp:
        if wheel is None:
            root = source_root()
            if root is None:
                raise ConfigError(
                    "cnnlab is not installed from a source checkout, so no wheel can be built; "
                    "pass --wheel path/to/cnnlab-*.whl (or a .tar.gz sdist)"
                )
            package = build_wheel(root, Path(tmp) / "dist")
        else:
            package = Path(wheel)
            if not package.is_file() or not package.name.endswith((".whl", ".tar.gz")):
                raise ConfigError(
                    f"--wheel {str(package)!r} is not a .whl or .tar.gz file; build one with "
                    "`pip wheel --no-deps . -w dist/`"
                )
        fd, tmp_zip = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        os.close(fd)
        try:
            with zipfile.ZipFile(tmp_zip, "w") as zf:
                _add(zf, "setup.sh", SETUP_SH, executable=True)
                _add(zf, "run_autograder", RUN_AUTOGRADER, executable=True)
                _add(zf, CONFIG_NAME, config.to_json())
                _add(zf, "README.txt", README.format(version=__version__))
                if secret is not None:
                    _add(zf, SECRET_NAME, secret)
                _add(zf, f"dist/{package.name}", package.read_bytes())
                for extra in extra_wheels:
                    _add(zf, f"dist/{extra.name}", Path(extra).read_bytes())
            os.replace(tmp_zip, out)
        except BaseException:
            Path(tmp_zip).unlink(missing_ok=True)
            raise
    return out


# -- running inside Gradescope -------------------------------------------------------------


def student_id(metadata_path: Path, id_field: str = DEFAULT_ID_FIELD) -> str:
    """The submitter's id from Gradescope's ``submission_metadata.json``: the ``id_field``
    (``email`` or ``sid``) of each user, normalised; a group's ids sorted and joined with ``+``.

    Raises:
        GraderFailure: the file is missing or unreadable, or a user lacks ``id_field`` (the
            staff must fix the roster or export with the other ``--id-field``; a seed from
            another field would grade against another problem set).
    """
    if id_field not in ID_FIELDS:
        raise GraderFailure(f"unknown student id field {id_field!r}")
    try:
        doc = json.loads(metadata_path.read_text(encoding="utf-8"))
        users = doc["users"]
        if not isinstance(users, list):
            raise TypeError("'users' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GraderFailure(f"cannot read the submitter from {metadata_path}: {exc}") from exc
    if not users:
        raise GraderFailure(f"{metadata_path} names no submitter")
    ids = []
    for user in users:
        value = user.get(id_field) if isinstance(user, dict) else None
        try:
            ids.append(seeds.normalize_student_id(value if isinstance(value, str) else ""))
        except ConfigError:
            who = user.get("name") or user.get("id") if isinstance(user, dict) else user
            other = "sid" if id_field == "email" else "email"
            raise GraderFailure(
                f"Gradescope user {who!r} has no {id_field!r} in {metadata_path.name}, so their "
                f"seed cannot be derived; add it to the course roster or export the autograder "
                f"with --id-field {other}"
            ) from None
    return "+".join(sorted(ids))


def seed_for_submission(root: Path, config: AutograderConfig) -> tuple[int, int]:
    """This submission's ``(problem seed, check-case seed)``; reads **and deletes**
    ``source/course_secret``.

    The problem seed (the numbers of the student's questions) is the student's, the same on
    every resubmission and in ``cnnlab batch``. The check cases of the coding exercises are
    drawn afresh for each submission (from the problem seed and Gradescope's submission id;
    a regrade of the same submission gets the same cases): feedback names expected values of
    the cases that failed, and with cases fixed per student a table of those values,
    resubmitted, would earn the points (SECURITY.md case 24).
    """
    if config.seed is not None:
        problem = config.seed
    else:
        secret_path = root / "source" / SECRET_NAME
        try:
            secret = secret_path.read_bytes().strip()
        except OSError as exc:
            raise GraderFailure(
                f"the course secret is missing from the autograder ({exc})"
            ) from exc
        finally:
            secret_path.unlink(missing_ok=True)
        student = student_id(root / "submission_metadata.json", config.id_field)
        problem = seeds.derive_seed(secret, student, config.assignment)
    return problem, _cases_seed(root, problem)


def _cases_seed(root: Path, problem: int) -> int:
    """The check cases' seed of this submission: from the problem seed and the submission's
    id in ``submission_metadata.json``; a random one where Gradescope gives no id."""
    try:
        meta = json.loads((root / "submission_metadata.json").read_text(encoding="utf-8"))
        submission = meta.get("id") if isinstance(meta, dict) else None
    except (OSError, ValueError):
        submission = None
    if submission is None or isinstance(submission, bool):
        return seeds.fresh_seed()
    return seeds.derive_seed(str(problem).encode(), f"submission {submission}", "check cases")


#: results.json's format fields (Gradescope's specification): plain text, never HTML/Markdown.
TEXT_FORMATS = ("output_format", "test_output_format", "test_name_format")


def _failure_results(message: str) -> dict:
    """results.json for a grader failure: an explanation and deliberately no score."""
    return {
        "output": (
            "The autograder itself failed on this submission (not your code): "
            f"{message}\nYour course staff can see this and will regrade it."
        ),
        "tests": [],
        "extra_data": {"cnnlab_grader_error": True},
    }


#: The command-line advice of a loader message ("...: pass the folder holding your .py files",
#: "... or pass the .py file instead"), which means nothing on Gradescope.
_CLI_ADVICE = re.compile(r"(?:[:;,]| or) pass .*$", re.DOTALL)


def _unreadable_results(message: str, root: Path | None = None) -> dict:
    """results.json for a submission that cannot be read: the student's to fix, scored 0.
    The container's paths and the command-line advice are replaced by what to upload."""
    if root is not None:
        message = message.replace(str(root / "submission"), "your upload")
    message = _CLI_ADVICE.sub("", message).rstrip(" .;:")
    return {
        "score": 0.0,
        "output": (
            f"Your submission could not be graded: {message}. Upload your .py files or Jupyter "
            "notebooks (.ipynb), or a .zip of them, and submit again."
        ),
        "tests": [],
    }


def _write_json(path: Path, doc: dict) -> None:
    """Write results.json atomically: every string cleaned of control characters and the
    whole within :data:`RESULTS_MAX_BYTES` (:func:`grader.sanitize.fit_json`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for key in TEXT_FORMATS:  # every results.json: nothing a student wrote renders as HTML
        doc.setdefault(key, "text")
    doc = fit_json(doc, RESULTS_MAX_BYTES)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _grade_once(
    root: Path, config: AutograderConfig, seed: int, cases_seed: int, work: Path
) -> tuple[int, str]:
    """Run ``cnnlab grade`` in a child process; returns (exit status, its stderr)."""
    args = [
        sys.executable,
        "-c",
        "import sys; from grader.cli import main; sys.exit(main(prog_name='cnnlab'))",
        "grade",
        str(root / "submission"),
        "--gradescope",
        str(work / "gradescope.json"),
        "--json",
        str(work / "result.json"),
    ]
    for name in config.exercises:
        args += ["-e", name]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNLAB_COURSE_SECRET")}
    env[ASSIGNED_SEED_ENV] = str(seed)  # not on the command line: /proc/PID/cmdline is public
    env[ASSIGNED_CASES_SEED_ENV] = str(cases_seed)
    if _single_use(root):
        from grader.sandbox.filesystem import SINGLE_USE_ENV
        from grader.sandbox.runner import LOCK_EXTRA_ENV

        # Gradescope's container serves this one submission: once the expected outputs are
        # computed, the sandbox may lock the reference, the grader and the wheel away.
        env[SINGLE_USE_ENV] = "1"
        env[LOCK_EXTRA_ENV] = str(root / "source")
    if config.view is not None:  # a course assignment: its points and time limits
        env[VIEW_ENV] = config.view
    try:
        proc = subprocess.run(
            args, capture_output=True, text=True, errors="replace", env=env, timeout=GRADE_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return 3, f"grading took longer than {GRADE_TIMEOUT_S} s"
    sys.stdout.write(proc.stdout[-20000:])
    sys.stderr.write(proc.stderr[-20000:])
    return proc.returncode, proc.stderr.strip()


def _single_use(root: Path) -> bool:
    """Whether this is Gradescope's own single-use container (``/autograder``), never a
    simulated root on a machine that outlives the run (tests, an instructor's laptop)."""
    return root.resolve() == Path("/autograder")


def run_autograder(root: str | Path) -> int:
    """Grade ``root/submission`` and write ``root/results/results.json``.

    Returns:
        0 graded (whatever the score), 2 the submission could not be read (score 0),
        3 the grader failed (no score).
    """
    root = Path(root)
    results = root / "results" / "results.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.unlink(missing_ok=True)  # nothing but our own result may be there at the end
    try:
        config = AutograderConfig.from_json((root / "source" / CONFIG_NAME).read_text())
    except (OSError, ValueError, KeyError, ConfigError) as exc:
        _write_json(results, _failure_results(f"bad autograder configuration ({exc})"))
        return 3
    # The seed is derived in a separate short-lived process, so the grading process (whose
    # sandbox forks the children running student code) never holds the course secret.
    proc = subprocess.run(
        [sys.executable, "-m", "grader.classroom.gradescope", "seed", "--root", str(root)],
        capture_output=True,
        text=True,
    )
    printed = proc.stdout.split()
    if proc.returncode != 0 or len(printed) != 2 or not all(p.isdigit() for p in printed):
        _write_json(results, _failure_results(proc.stderr.strip() or "no seed"))
        return 3
    seed, cases_seed = (int(p) for p in printed)
    from grader.sandbox.layers import filesystem_layer_probe, lockdown_possible

    weak = filesystem_layer_probe()
    if weak and _single_use(root) and lockdown_possible():
        weak = None  # the grade process locks the reference away and runs children as nobody
    if weak and not config.allow_weak_sandbox:
        _write_json(
            results,
            _failure_results(
                f"this grading container has no filesystem sandbox layer ({weak}); the "
                "instructor can run `cnnlab doctor` in it, or export the autograder with "
                "--allow-weak-sandbox to grade anyway"
            ),
        )
        return 3
    message = ""
    for _attempt in range(2):
        with tempfile.TemporaryDirectory(prefix="cnnlab-gs-") as tmp:
            work = Path(tmp)
            code, stderr = _grade_once(root, config, seed, cases_seed, work)
            # The grade process has exited: so has every child that ran student code.
            if code in (0, 1) and (work / "gradescope.json").is_file():
                doc = json.loads((work / "gradescope.json").read_text(encoding="utf-8"))
                if weak:
                    doc.setdefault("extra_data", {})["weak_sandbox"] = weak
                    doc["output"] = f"Note: graded in a weak sandbox ({weak}).\n\n" + str(
                        doc.get("output", "")
                    )
                _write_json(results, doc)
                return 0
            if code == 2:
                _write_json(results, _unreadable_results(_last_line(stderr), root))
                return 2
            message = _last_line(stderr) or f"cnnlab grade exited with status {code}"
            if code == 3 and (work / "result.json").is_file():
                doc = json.loads((work / "result.json").read_text())
                bad = [e["name"] for e in doc["exercises"] if e["status"] == "grader_error"]
                message = f"grader error in {', '.join(bad)}"
    _write_json(results, _failure_results(message + " (after 2 attempts)"))
    return 3


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].removeprefix("Error: ") if lines else ""


def main(argv: list[str] | None = None) -> int:
    """``python -m grader.classroom.gradescope run|seed --root ROOT`` (``run_autograder``)."""
    parser = argparse.ArgumentParser(prog="python -m grader.classroom.gradescope")
    parser.add_argument("step", choices=["run", "seed"])
    parser.add_argument("--root", default=os.environ.get(ROOT_ENV, "/autograder"))
    args = parser.parse_args(argv)
    root = Path(args.root)
    if args.step == "run":
        return run_autograder(root)
    try:
        config = AutograderConfig.from_json((root / "source" / CONFIG_NAME).read_text())
        print(*seed_for_submission(root, config))
    except (OSError, ValueError, KeyError, GraderFailure, ConfigError) as exc:
        print(str(exc), file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
