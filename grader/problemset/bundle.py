"""The student bundle (`cnnlab release`): what students receive.

A bundle folder holds::

    README.md              how to fill, check and submit (templates/student_readme.md.j2)
    exercises/<topic>.py   the stubs
    <topic>.ipynb          the same exercises as notebooks (next to grader/, so that the
                           notebook's check cells can import it)
    grader/                the grading runtime: only the modules `cnnlab grade` needs
    cases/                 public check cases for a fresh public seed (public_cases.py)

and nothing else: no ``cnnref``, no solutions, no exercise specs, no course secret, no
hidden seed. The runtime is found by following the ``grader`` imports of the grading entry
points (:data:`RUNTIME_ROOTS`), minus :data:`NEVER_SHIPPED`; the bundle's ``grader/cli.py``
registers only the shipped commands, and ``grader/__main__.py`` (bundle only) makes
``python -m grader grade exercises/`` grade against ``cases/``.

Hidden grading uses the student's seed (``cnnlab grade --student ID``) or another seed, never
the public one, so a submission that looks its answers up in ``cases/`` fails it. The numeric
questions have no public cases (they would give the answers away): ``cases/answers.json``
holds salted slow hashes of their answers instead (``public_cases.save_answer_checks``).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
)
#: Modules that hold or reach the reference, secrets or instructor tooling: never shipped,
#: even when a shipped module imports them lazily on a path the bundle does not take.
NEVER_SHIPPED = (
    "grader.exercises",
    "grader.registry",
    "grader.problemset.generate",
    "grader.problemset.bundle",
    "grader.classroom",
    "grader.templates",
)
#: Commands the bundle's command line registers.
BUNDLE_COMMANDS = ("grader.commands.grade",)
CASES_DIR = "cases"

_MAIN = '''"""`python -m grader`: the student bundle's command line, grading against cases/."""

import os
from pathlib import Path

os.environ.setdefault("CNNLAB_CASES_DIR", str(Path(__file__).resolve().parent.parent / "cases"))

from grader.cli import main  # noqa: E402

main(prog_name="cnnlab")
'''


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


def public_seed(problem_seed: int, index: int = 0) -> int:
    """A public seed that is never the problem (hidden) seed, reproducible from it."""
    digest = hashlib.sha256(f"cnnlab-public\0{problem_seed}\0{index}".encode()).digest()
    seed = int.from_bytes(digest[:8], "big") % (2**31 - 1)
    return seed if seed != problem_seed else (seed + 1) % (2**31 - 1)


@dataclass(frozen=True)
class Bundle:
    """What :func:`write_bundle` wrote.

    Attributes:
        out: the bundle folder.
        files: every file written, relative to ``out``.
        public_seed: seed of the public check cases in ``cases/``.
    """

    out: Path
    files: tuple[str, ...]
    public_seed: int


def write_bundle(
    out: Path | str,
    *,
    seed: int,
    student: str | None = None,
    specs: Sequence[ExerciseSpec] | None = None,
    force: bool = False,
) -> Bundle:
    """Write the student bundle for problem seed ``seed`` into ``out``.

    The bundle is assembled in a temporary folder next to ``out`` and moved into place at the
    end, so a failure never leaves half a bundle; an existing non-empty ``out`` is replaced
    only with ``force``.

    Raises:
        ConfigError: ``out`` exists and is not empty (without ``force``), or is a file.
        GraderFailure: the reference failed while making the public cases.
    """
    from grader import engine, registry
    from grader.problemset import public_cases
    from grader.problemset.generate import render_problem_set, render_readme

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; pass a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise ConfigError(
            f"{str(out)!r} is not empty; pass another --out, or --force to replace it"
        )
    specs = list(specs) if specs is not None else registry.all_specs()
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
        readme = render_readme(specs, seed=seed, student=student, bundle=True, command="release")
        put("README.md", readme)
        modules = runtime_modules()
        package_root = _module_file("grader").parent.parent
        for module in modules:
            source = _module_file(module)
            rel = source.relative_to(package_root).as_posix()
            text = source.read_text(encoding="utf-8")
            if module == "grader.cli":
                text = bundle_cli(text, set(modules))
            put(rel, text)
        put("grader/__main__.py", _MAIN)
        shown = public_seed(seed)
        checked = [s for s in specs if "question" not in s.tags]
        prepared = engine.prepare_all(checked, shown)
        failed = [p for p in prepared if not isinstance(p, engine.PreparedExercise)]
        if failed:
            raise GraderFailure(
                "the reference failed while making the public check cases: "
                + "; ".join(f"{r.name}: {r.feedback}" for r in failed)
            )
        public_cases.save_prepared(staging / CASES_DIR, prepared, seed=shown)
        asked = engine.prepare_all([s for s in specs if "question" in s.tags], seed)
        public_cases.save_answer_checks(
            staging / CASES_DIR,
            [q for q in asked if isinstance(q, engine.PreparedExercise)],
            problem_seed=seed,
        )
        written += sorted(
            p.relative_to(staging).as_posix() for p in (staging / CASES_DIR).rglob("*")
        )
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Bundle(out, tuple(sorted(written)), shown)
