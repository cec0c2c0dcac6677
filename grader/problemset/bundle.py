"""The student bundle (`cnnlab release`): what students receive.

A bundle folder holds::

    README.md              how to install, fill, check and submit (templates/student_readme.md.j2)
    pyproject.toml         `pip install -e .` here gives the `cnnlab` command (grading cases/)
    cnnlab-bundle.json     the release: public seed and how it was drawn, exercises, points
    exercises/<topic>.py   the stubs
    <topic>.ipynb          the same exercises as notebooks (next to grader/, so that the
                           notebook's check cells can import it)
    grader/                the grading runtime: only the modules `cnnlab grade` needs
    cases/                 public check cases for the release's public seed (public_cases.py)

and nothing else: no ``cnnref``, no solutions, no exercise specs, no course secret, no
problem (hidden) seed. The runtime is found by following the ``grader`` imports of the grading
entry points (:data:`RUNTIME_ROOTS`), minus :data:`NEVER_SHIPPED`; the bundle's
``grader/cli.py`` registers only the shipped commands, and ``grader/__main__.py`` (bundle
only) is both ``python -m grader`` and the ``cnnlab`` console script, grading against ``cases/``.

The public seed is drawn from a CSPRNG (:func:`secrets.randbelow`) once per release run and
recorded in ``cnnlab-bundle.json`` and ``cases/manifest.json``: two releases never share it
except by a 1 in 2**31 chance, and it says nothing about the problem seed (a seed derived from
the problem seed by a public function could be searched for). Hidden grading uses the
student's seed (``cnnlab grade --student ID``) or the problem seed, never the public one, so a
submission that looks its answers up in ``cases/`` fails it. The numeric questions have no
public cases (they would give the answers away): ``cases/answers.json`` holds salted slow
hashes of each student's answers instead (``public_cases.save_answer_checks``), written
per bundle because the numbers are the student's.
"""

from __future__ import annotations

import ast
import datetime
import importlib.util
import json
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.errors import ConfigError, GraderFailure
from grader.registry import ExerciseSpec

#: Modules the bundle's `cnnlab grade` needs, directly (the rest follows from their imports).
RUNTIME_ROOTS = (
    "grader",
    "grader.cli",
    "grader.commands",
    "grader.commands.grade",
    "grader.engine",
    "grader.problemset.public_cases",
    "grader.sandbox.runner",
    "grader.sandbox.child",
    "grader.sandbox.forkserver",
    "grader.submission",
    "grader.sandbox.harness",
    "grader.problemset.nbgrader_bridge",
    "grader.problemset.check_service",
)
#: Modules that hold or reach the reference, secrets or instructor tooling: never shipped,
#: even when a shipped module imports them lazily on a path the bundle does not take.
NEVER_SHIPPED = (
    "grader.exercises",
    "grader.registry",
    "grader.problemset.generate",
    "grader.problemset.bundle",
    "grader.problemset.nbgrader_autograde",
    "grader.problemset.nbgrader_gradebook",
    "grader.classroom",
    "grader.templates",
)
#: Commands the bundle's command line registers.
BUNDLE_COMMANDS = ("grader.commands.grade",)
CASES_DIR = "cases"
#: Seeds are in [0, MAX_SEED) (as everywhere in cnnlab).
MAX_SEED = 2**31 - 1

#: The bundle's manifest (see :func:`bundle_manifest`).
BUNDLE_MANIFEST = "cnnlab-bundle.json"
BUNDLE_FORMAT = "cnnlab-bundle/1"
#: Third-party distributions the shipped runtime imports (a test checks the list).
BUNDLE_DEPENDENCIES = (
    "numpy>=1.24",
    "torch>=2.1",
    "click>=8.1",
    "rich>=13",
    "nbformat>=5.7",
    "matplotlib>=3.7",
    "pyseccomp>=0.1.2",
    "tomli>=1.1; python_version < '3.11'",  # the course file reader (tomllib from 3.11)
)

_MAIN = '''"""`cnnlab` and `python -m grader` in a student bundle: grade against its cases/."""

import os
import sys
from pathlib import Path

CASES = Path(__file__).resolve().parent.parent / "cases"


def main() -> None:
    """The bundle's command line; its checks use the public cases next to grader/."""
    if not os.environ.get("CNNLAB_CASES_DIR"):
        if not (CASES / "manifest.json").is_file():
            sys.stderr.write(
                f"cnnlab: no check cases at {CASES}. Install the bundle from its folder with "
                "`pip install -e .` (the checks read cases/ next to grader/), or run "
                "`python -m grader grade exercises/` inside the bundle folder.\\n"
            )
            raise SystemExit(2)
        os.environ["CNNLAB_CASES_DIR"] = str(CASES)
    from grader.cli import main as cli

    cli(prog_name="cnnlab")


if __name__ == "__main__":
    main()
'''

_PYPROJECT = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "cnnlab-student"
version = "{version}"
description = "cnnlab's checks for students: grade your CNN exercises against public cases"
requires-python = ">=3.10"
dependencies = [{dependencies}]

[project.scripts]
cnnlab = "grader.__main__:main"

[tool.setuptools.packages.find]
include = ["grader", "grader.*"]
"""


def _is_excluded(module: str) -> bool:
    return any(module == x or module.startswith(x + ".") for x in NEVER_SHIPPED)


def _module_file(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise GraderFailure(f"cannot find the source of {module}")
    return Path(spec.origin)


def _grader_imports(path: Path, module: str) -> set[str]:
    """Every ``grader...`` module that ``path`` imports anywhere (also inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "grader")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != "grader":
                continue
            found.add(target)
            for alias in node.names:  # `from grader import engine` names a module
                candidate = f"{target}.{alias.name}"
                if importlib.util.find_spec(target) and _is_submodule(candidate):
                    found.add(candidate)
    return found


def _is_submodule(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def runtime_modules() -> list[str]:
    """The grader modules a bundle ships, sorted: the closure of :data:`RUNTIME_ROOTS` under
    ``grader`` imports, without :data:`NEVER_SHIPPED`, plus every
    ``grader/sandbox/harness_*.py``."""
    harness_dir = _module_file("grader.sandbox").parent
    roots = list(RUNTIME_ROOTS) + [
        f"grader.sandbox.{p.stem}" for p in harness_dir.glob("harness_*.py")
    ]
    seen: set[str] = set()
    todo = [r for r in roots if not _is_excluded(r)]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for dep in _grader_imports(_module_file(module), module):
            if (
                module == "grader.cli"
                and dep.startswith("grader.commands.")
                and (dep not in BUNDLE_COMMANDS)
            ):
                continue  # the bundle's cli registers only BUNDLE_COMMANDS
            parts = dep.split(".")
            for i in range(1, len(parts) + 1):  # a module's packages ship too
                parent = ".".join(parts[:i])
                if parent not in seen and not _is_excluded(parent) and _is_submodule(parent):
                    todo.append(parent)
    return sorted(seen)


def bundle_cli(source: str, shipped: set[str]) -> str:
    """``grader/cli.py`` with only the shipped commands (each command is registered by
    exactly two lines: its import and ``main.add_command``)."""
    keep_names: set[str] = set()
    drop_names: set[str] = set()
    lines = []
    for line in source.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("from grader.commands.") and " import " in stripped:
            module, _, names = stripped[len("from ") :].partition(" import ")
            bound = {n.strip().split(" as ")[-1] for n in names.split(",")}
            if module in shipped and module in BUNDLE_COMMANDS:
                keep_names |= bound
            else:
                drop_names |= bound
                continue
        if stripped.startswith("main.add_command("):
            name = stripped[len("main.add_command(") :].rstrip(")").split(",")[0].strip()
            if name in drop_names or name not in keep_names:
                continue
        lines.append(line)
    return "".join(lines)


def fresh_public_seed(avoid: Iterable[int] = ()) -> int:
    """A public seed from a CSPRNG (:func:`secrets.randbelow`), never one of ``avoid`` (the
    problem seeds of the release): unrelated to any problem seed, so it reveals none."""
    avoid = {int(a) for a in avoid}
    while True:
        seed = secrets.randbelow(MAX_SEED)
        if seed not in avoid:
            return seed


@dataclass(frozen=True)
class Bundle:
    """What :func:`write_bundle` wrote.

    Attributes:
        out: the bundle folder.
        files: every file written, relative to ``out``.
        public_seed: seed of the public check cases in ``cases/``.
        student: the student whose variant it is, if any.
    """

    out: Path
    files: tuple[str, ...]
    public_seed: int
    student: str | None = None


@dataclass
class Release:
    """What every bundle of one release run shares (made once by :func:`prepare_release`).

    Attributes:
        specs: the exercises.
        public_seed: the public cases' seed (CSPRNG, one per release run).
        runtime: relative path -> text of the grading runtime (``grader/``), ``pyproject.toml``.
        cases: a folder holding the public cases, copied into each bundle.
        not_checked: the exercises without public cases (the numeric questions).
    """

    specs: list[ExerciseSpec]
    public_seed: int
    runtime: dict[str, str]
    cases: Path
    not_checked: list[dict[str, Any]]

    def close(self) -> None:
        shutil.rmtree(self.cases.parent, ignore_errors=True)

    def __enter__(self) -> Release:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def runtime_files() -> dict[str, str]:
    """The bundle's ``grader/`` (the runtime, its own ``cli.py`` and ``__main__.py``) and its
    ``pyproject.toml``, as text keyed by relative path."""
    from grader import __version__

    modules = runtime_modules()
    package_root = _module_file("grader").parent.parent
    files: dict[str, str] = {}
    for module in modules:
        source = _module_file(module)
        rel = source.relative_to(package_root).as_posix()
        text = source.read_text(encoding="utf-8")
        if module == "grader.cli":
            text = bundle_cli(text, set(modules))
        files[rel] = text
    files["grader/__main__.py"] = _MAIN
    version = re.sub(r"[^0-9A-Za-z.+-]", "", __version__) or "0.0.0"
    deps = ", ".join(json.dumps(d) for d in BUNDLE_DEPENDENCIES)
    files["pyproject.toml"] = _PYPROJECT.format(version=version, dependencies=deps)
    return files


def prepare_release(
    specs: Sequence[ExerciseSpec] | None = None,
    *,
    public_seed: int | None = None,
    avoid_seeds: Iterable[int] = (),
    workdir: Path | None = None,
) -> Release:
    """Draw the public seed, compute the public cases and collect the runtime, once.

    Raises:
        GraderFailure: the reference failed while making the public cases.
    """
    from grader import engine, registry
    from grader.problemset import public_cases

    specs = list(specs) if specs is not None else registry.all_specs()
    shown = fresh_public_seed(avoid_seeds) if public_seed is None else int(public_seed)
    checked = [s for s in specs if "question" not in s.tags]
    # every exercise is checked in the bundle: the questions through answers.json (per student)
    not_checked: list[dict[str, Any]] = []
    prepared = engine.prepare_all(checked, shown)
    failed = [p for p in prepared if not isinstance(p, engine.PreparedExercise)]
    if failed:
        raise GraderFailure(
            "the reference failed while making the public check cases: "
            + "; ".join(f"{r.name}: {r.feedback}" for r in failed)
        )
    tmp = Path(tempfile.mkdtemp(prefix="cnnlab-release-", dir=workdir))
    cases = tmp / CASES_DIR
    public_cases.save_prepared(cases, prepared, seed=shown, not_checked=not_checked)  # type: ignore[arg-type]
    return Release(specs, shown, runtime_files(), cases, not_checked)


def bundle_manifest(release: Release, student: str | None) -> dict[str, Any]:
    """``cnnlab-bundle.json``: which release, its public seed and how it was drawn, and every
    exercise with its points and whether the public cases check it. Never the problem seed."""
    from grader import __version__

    unchecked = {e["name"] for e in release.not_checked}
    exercises = [
        {
            "name": s.name,
            "topic": s.topic,
            "points": float(s.points),
            "checked": s.name not in unchecked,
        }
        for s in release.specs
    ]
    return {
        "format": BUNDLE_FORMAT,
        "cnnlab_version": __version__,
        "student": student,
        "released_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "public_seed": release.public_seed,
        "public_seed_source": "secrets.randbelow (a CSPRNG), drawn once for this release run; "
        "not derived from the problem seed",
        "total_points": sum(e["points"] for e in exercises),
        "checked_points": sum(e["points"] for e in exercises if e["checked"]),
        "exercises": exercises,
    }


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; pass a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise ConfigError(
            f"{str(out)!r} is not empty; pass another --out, or --force to replace it"
        )


def write_bundle(
    out: Path | str,
    *,
    seed: int,
    student: str | None = None,
    specs: Sequence[ExerciseSpec] | None = None,
    force: bool = False,
    public_seed: int | None = None,
    release: Release | None = None,
) -> Bundle:
    """Write the student bundle for problem seed ``seed`` into ``out``.

    The bundle is assembled in a temporary folder next to ``out`` and moved into place at the
    end, so a failure never leaves half a bundle; an existing non-empty ``out`` is replaced
    only with ``force``. ``release`` (from :func:`prepare_release`) shares the public cases and
    the runtime between the bundles of one run; without it one is prepared for this bundle
    (``public_seed``: a fixed public seed, for tests; default a fresh CSPRNG draw).

    Raises:
        ConfigError: ``out`` exists and is not empty (without ``force``), or is a file.
        GraderFailure: the reference failed while making the public cases.
    """
    from grader import engine
    from grader.problemset import public_cases
    from grader.problemset.generate import current_umask, render_problem_set, render_readme

    out = Path(out)
    _check_out(out, force)
    own = release is None
    if release is None:
        release = prepare_release(specs, public_seed=public_seed, avoid_seeds=[seed])
    try:
        specs = release.specs
        files = render_problem_set(specs, seed=seed, student=student, command="release")
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            written: list[str] = []

            def put(rel: str, text: str) -> None:
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
                written.append(rel)

            for rel, text in files.items():
                if rel.startswith("exercises/") and rel.endswith(".py"):
                    put(rel, text)
                elif rel.startswith("exercises/notebooks/"):
                    put(Path(rel).name, text)
            checked = sum(
                s.points for s in specs if s.name not in {e["name"] for e in release.not_checked}
            )
            readme = render_readme(
                specs,
                seed=seed,
                student=student,
                bundle=True,
                command="release",
                checked_points=checked,
            )
            put("README.md", readme)
            for rel, text in release.runtime.items():
                put(rel, text)
            put(BUNDLE_MANIFEST, json.dumps(bundle_manifest(release, student), indent=1) + "\n")
            shutil.copytree(release.cases, staging / CASES_DIR)
            asked = engine.prepare_all([s for s in specs if "question" in s.tags], seed)
            public_cases.save_answer_checks(
                staging / CASES_DIR,
                [q for q in asked if isinstance(q, engine.PreparedExercise)],
            )
            written += sorted(
                p.relative_to(staging).as_posix() for p in (staging / CASES_DIR).rglob("*")
            )
            # mkdtemp made the staging folder 0700; the bundle gets a folder's usual mode
            staging.chmod(0o777 & ~current_umask())
            if out.exists():
                shutil.rmtree(out)
            staging.rename(out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    finally:
        if own:
            release.close()
    return Bundle(out, tuple(sorted(written)), release.public_seed, student)
