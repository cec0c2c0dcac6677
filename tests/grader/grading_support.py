"""Helpers shared by the grading tests: fixture submissions and the numeric exercises."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

from grader import registry

SUBMISSIONS = Path(__file__).resolve().parents[1] / "fixtures" / "submissions"
PLAIN_LOOPS = SUBMISSIONS / "plain_loops"
MISTAKES = SUBMISSIONS / "mistakes"

#: The numpy exercises of issue 4 (the numeric questions and torch exercises have their own tests).
NUMPY_EXERCISES = (
    "conv_output_size",
    "conv2d_params",
    "dense_params",
    "depthwise_separable_params",
    "depthwise_separable_macs",
    "conv2d_forward",
    "conv2d_backward",
    "dense_forward",
    "dense_backward",
    "maxpool2d_forward",
    "maxpool2d_backward",
    "receptive_field",
)


def numpy_specs() -> list[registry.ExerciseSpec]:
    return [registry.get(name) for name in NUMPY_EXERCISES]


def mistake_snippets() -> list[tuple[str, str, Path]]:
    """``(exercise, slug, path)`` of every known-mistake fixture."""
    out = []
    for path in sorted(MISTAKES.glob("*__*.py")):
        exercise, slug = path.stem.split("__")
        out.append((exercise, slug, path))
    return out


def build_mistake_submission(tmp: Path, exercise: str, snippet: Path) -> Path:
    """A copy of the plain-loops submission whose topic module ends with the mistake."""
    folder = tmp / f"{exercise}__{snippet.stem}"
    shutil.copytree(PLAIN_LOOPS, folder)
    module = folder / f"{registry.get(exercise).topic}.py"
    module.write_text(module.read_text() + "\n\n" + snippet.read_text())
    return folder


def build_reference_submission(tmp: Path) -> Path:
    """The reference wrapped as a submission: for every numpy exercise, the source of its
    ``cnnref`` module (the function and its same-module helpers) as the topic module."""
    folder = tmp / "reference"
    folder.mkdir()
    for spec in numpy_specs():
        module = inspect.getmodule(spec.reference_function)
        target = folder / f"{spec.topic}.py"
        if not target.exists():
            target.write_text(inspect.getsource(module))
    return folder


def write_stubs(folder: Path) -> Path:
    """Unfilled stubs: every numpy exercise raises NotImplementedError, as generated stubs do."""
    folder.mkdir(parents=True, exist_ok=True)
    by_topic: dict[str, list[str]] = {}
    for spec in numpy_specs():
        params = inspect.signature(spec.reference_function)
        by_topic.setdefault(spec.topic, []).append(
            f"def {spec.function}{params}:\n"
            f"    raise NotImplementedError('Exercise {spec.number}: {spec.function}')\n"
        )
    for topic, functions in by_topic.items():
        (folder / f"{topic}.py").write_text(
            "from __future__ import annotations\n\n\n" + "\n\n".join(functions)
        )
    return folder
