"""`cnnlab new-exercise`: a new plugin package with one working exercise to edit.

The package (``docs/authoring.md`` explains every part)::

    cnnlab-<name>/
        pyproject.toml            the entry point: [project.entry-points."cnnlab.exercises"]
        README.md                 install, test, what to edit
        conftest.py               lets `pytest` import the package before it is installed
        cnnlab_<name>/__init__.py
        cnnlab_<name>/reference.py  the reference function (stubs and solutions come from it)
        cnnlab_<name>/spec.py       the ExerciseSpec: one case, the reference, one known mistake
        tests/test_<name>.py        self-check, and grading through the sandbox: the generated
                                    solution passes, the known mistake is named, the stub is
                                    not implemented

The placeholder exercise is ReLU (``max(x, 0)``), with the mistake "negatives kept"; it passes
its own tests as generated, so every change the instructor makes can be tested at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from grader.errors import ConfigError


@dataclass(frozen=True)
class Scaffold:
    """What :func:`new_exercise` wrote.

    Attributes:
        out: the package folder.
        distribution: its distribution name (``pip install`` / ``pip uninstall`` it).
        package: its import package.
        number: the exercise number it was given.
        files: the files written, relative to ``out``.
    """

    out: Path
    distribution: str
    package: str
    number: str
    files: tuple[str, ...]


def _next_number(topic: str) -> str:
    """The next free exercise number in ``topic`` (``4.3`` after 4.1 and 4.2), or the first
    number of a new chapter for a new topic."""
    from grader import registry

    specs = registry.all_registered()
    majors: list[int] = []
    for spec in specs:
        head = spec.number.split(".")[0]
        if head.isdigit():
            majors.append(int(head))
    in_topic = [s.number for s in specs if s.topic == topic]
    if in_topic:
        major = in_topic[0].split(".")[0]
        minors = [
            int(n.split(".")[1])
            for s in specs
            for n in [s.number]
            if n.split(".")[0] == major and len(n.split(".")) > 1 and n.split(".")[1].isdigit()
        ]
        return f"{major}.{max(minors, default=0) + 1}"
    return f"{max(majors, default=0) + 1}.1"


def check_name(name: str, topic: str) -> list[str]:
    """Problems with a new exercise's ``name`` and ``topic`` (empty: fine)."""
    from grader import registry
    from grader.authoring import function_name_problem, topic_problem

    problems = [
        p for p in (function_name_problem(name, "exercise name"), topic_problem(topic)) if p
    ]
    if problems:
        return problems
    for spec in registry.all_registered():
        if name in (spec.name, spec.function):
            source = registry.origin(spec.name)
            by = f"of {source.describe()}" if source else "built in"
            problems.append(
                f"{name!r} is already exercise {spec.number} {spec.name!r} ({by}): choose "
                "another name"
            )
            break
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        problems.append(f"exercise name {name!r} must be lower case (snake_case), like a function")
    return problems


def new_exercise(name: str, topic: str, out: str | Path | None = None) -> Scaffold:
    """Write a plugin package for exercise ``name`` of ``topic`` into ``out``.

    Raises:
        ConfigError: a bad or taken name, a bad topic, or an ``out`` that exists and is not an
            empty folder (nothing is written then).
    """
    problems = check_name(name, topic)
    if problems:
        raise ConfigError("; ".join(problems))
    distribution = "cnnlab-" + name.replace("_", "-")
    package = f"cnnlab_{name}"
    target = Path(out) if out is not None else Path(distribution)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(
            f"{str(target)!r} exists and is not an empty folder; pass --out to write the "
            "package somewhere else"
        )
    number = _next_number(topic)
    title = f"{name.replace('_', ' ').capitalize()} (replace this title)"
    files = {
        "pyproject.toml": PYPROJECT.format(
            name=name, distribution=distribution, package=package, number=number
        ),
        "README.md": README.format(
            name=name, distribution=distribution, package=package, topic=topic, number=number
        ),
        "conftest.py": CONFTEST,
        f"{package}/__init__.py": INIT.format(name=name),
        f"{package}/reference.py": REFERENCE.format(name=name),
        f"{package}/spec.py": SPEC.format(
            name=name, package=package, topic=topic, number=number, title=title
        ),
        f"tests/test_{name}.py": TEST.format(name=name, package=package),
    }
    target.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return Scaffold(target, distribution, package, number, tuple(files))


PYPROJECT = """\
# A cnnlab exercise of your own: `pip install -e .` next to cnnlab, then `cnnlab list`.
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{distribution}"
version = "0.1.0"
description = "cnnlab exercise {number}: {name}"
requires-python = ">=3.10"
dependencies = ["cnnlab", "numpy>=1.24"]

[project.optional-dependencies]
test = ["pytest>=7.4"]

# This registers the exercise with cnnlab (an ExerciseSpec, or a list of them).
[project.entry-points."cnnlab.exercises"]
{name} = "{package}.spec:SPEC"

[tool.setuptools]
packages = ["{package}"]
"""

README = """\
# {distribution}: cnnlab exercise {number}, `{name}`

An exercise of your own for cnnlab (topic `{topic}`), made by `cnnlab new-exercise`. As
generated it is a working placeholder (ReLU, with one known mistake); edit it into yours.

```bash
pip install -e .            # next to cnnlab: the exercise appears in `cnnlab list`
python -m pytest tests/     # self-check, then grading through cnnlab's sandbox
cnnlab generate && cnnlab grade solutions/ -e {name}
```

What to edit (cnnlab's docs/authoring.md walks through a full example):

- `{package}/reference.py`: the reference function. Students get its signature and
  docstring as the stub, the solution is its body: write the docstring for them (shapes!).
- `{package}/spec.py`: the cases (draw every random number from the `rng` you are given;
  label what makes each case hard), the reference outputs, and the known mistakes (each must
  differ from the reference on some case: `cnnlab list` reports one that never does).
- `tests/test_{name}.py`: add a submission for each known mistake.

Students never receive this package: `cnnlab release` ships only the generated stub and
public check cases, and the grading sandbox cannot read it.
"""

CONFTEST = """\
# Lets `python -m pytest tests/` import the package before it is installed.
"""

INIT = '''\
"""cnnlab exercise `{name}`: the reference (reference.py) and its ExerciseSpec (spec.py)."""
'''

REFERENCE = '''\
"""The reference implementation: stubs and solutions are generated from this source."""

from __future__ import annotations

import numpy as np


def {name}(x: np.ndarray) -> np.ndarray:
    """Rectified linear unit: ``max(x, 0)``, element by element (a placeholder: replace it
    with your exercise, and say here what it computes, with the shapes).

    Args:
        x: input, shape (N, D) or any shape.

    Returns:
        out: ``x`` with its negative entries set to 0, the same shape as ``x``.
    """
    return np.maximum(x, 0.0)
'''

SPEC = '''\
"""The ExerciseSpec of `{name}`: cases, reference outputs, known mistakes."""

from __future__ import annotations

import numpy as np

from {package} import reference
from grader.authoring import case
from grader.registry import Case, ExerciseSpec, Mistake, Outputs


def make_cases(rng: np.random.Generator) -> list[Case]:
    """The check cases. Draw every random number from ``rng`` (same seed, same cases), and
    label each case with what makes it hard (feedback shows the label)."""
    return [
        case("a batch of 3 with positive and negative entries", x=rng.standard_normal((3, 4))),
    ]


def expected(c: Case) -> Outputs:
    """The reference outputs of one case, by name (the ``call`` harness returns ``out``)."""
    return {{"out": reference.{name}(c["x"])}}


def negatives_kept(c: Case) -> Outputs:
    """What a student who forgot to clip the negatives returns."""
    return {{"out": c["x"].copy()}}


SPEC = ExerciseSpec(
    name="{name}",
    number="{number}",
    topic="{topic}",
    title="{title}",
    points=1,
    function="{name}",
    harness="call",
    make_cases=make_cases,
    reference=expected,
    reference_function=reference.{name},
    mistakes=(
        Mistake(
            "negatives_kept",
            "negative entries kept: max(x, 0) sets every negative entry to 0",
            negatives_kept,
        ),
    ),
)
'''

TEST = '''\
"""`{name}` through cnnlab: its self-check, and grading in the sandbox as `cnnlab grade` does."""

from __future__ import annotations

from grader import registry
from grader.authoring import check_spec, grade_submission, mistake_report, render_module
from {package}.spec import SPEC

#: A submission with the known mistake "negatives_kept".
MISTAKE = """
import numpy as np


def {name}(x):
    return np.array(x, copy=True)
"""


def _grade(tmp_path, source):
    module = tmp_path / f"{{SPEC.topic}}.py"
    module.write_text(source)
    (result,) = grade_submission(module, [SPEC]).exercises
    return result


def test_the_spec_passes_its_self_check():
    assert check_spec(SPEC, registry.all_registered()) == []
    assert all(report.recognisable for report in mistake_report(SPEC))


def test_the_generated_solution_gets_full_marks(tmp_path):
    result = _grade(tmp_path, render_module([SPEC], solution=True))
    assert (result.status.value, result.score) == ("passed", SPEC.points), result.feedback


def test_the_known_mistake_is_named(tmp_path):
    result = _grade(tmp_path, MISTAKE)
    assert (result.status.value, result.mistake) == ("failed", "negatives_kept"), result.feedback


def test_the_unfilled_stub_is_not_implemented(tmp_path):
    result = _grade(tmp_path, render_module([SPEC], solution=False))
    assert result.status.value == "not_implemented", result.feedback
'''
