"""Writing exercises of one's own: the self-check every plugin spec passes, and helpers that
grade a module against a spec (what a plugin's tests call). See ``docs/authoring.md``.

:func:`check_spec` is what :mod:`grader.registry` runs on each spec a plugin provides before
registering it; a spec with problems is reported (``cnnlab list``) and not registered. It
checks that

* the fields are well formed: an identifier name and student function (not a Python builtin),
  an exercise number like ``"4.3"`` that no other exercise has, a topic that can be a module
  name (``<topic>.py`` in ``exercises/``), positive points and time limit, a built-in harness;
* the cases can be drawn: for two seeds, ``make_cases`` gives at least one case, the same
  cases again for the same seed, plain data the sandbox can carry (``caseio.encode_case``),
  and the reference and every known mistake run on them and return named numeric arrays
  (:func:`grader.engine.prepare`);
* every known mistake is recognisable (:func:`mistake_report`): for each seed, a student
  who makes exactly that mistake is told its name, alone, by the engine's own evaluation
  (some case reveals it, and no other mistake gives the same outputs on exactly the cases
  that reveal it: the engine would then name both as possible);
* the stub, the solution and the notebook can be generated from ``reference_function`` (its
  name is the student function, it has a docstring, its helpers can be inlined), and the
  generated modules compile.
"""

from __future__ import annotations

import builtins
import keyword
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from grader.engine import PreparedExercise
    from grader.registry import ExerciseSpec
    from grader.results import SubmissionResult

#: Seeds the self-check draws cases with (the default problem-set seed and one more).
CHECK_SEEDS = (2026, 1)
#: Topics a plugin may not use: ``questions`` is rendered from question texts, not code.
RESERVED_TOPICS = frozenset({"questions"})
#: Module names a topic may not take: a student's ``<topic>.py`` would shadow them.
SHADOWED_MODULES = frozenset(
    {"numpy", "torch", "torchvision", "grader", "cnnref", "solutions", "exercises", "scipy"}
)
_NUMBER = re.compile(r"^\d+(\.\d+)*$")
_SLUG = re.compile(r"^[a-z][a-z0-9_]*$")


def topic_problem(topic: object) -> str | None:
    """Why ``topic`` cannot be an exercise topic, or ``None`` when it can."""
    if not isinstance(topic, str) or not topic.isidentifier() or keyword.iskeyword(topic):
        return f"topic {topic!r} must be a Python identifier (it names the module <topic>.py)"
    if topic != topic.lower():
        return f"topic {topic!r} must be lower case (it names the module {topic.lower()}.py)"
    if topic in RESERVED_TOPICS:
        return f"topic {topic!r} is reserved for the built-in numeric questions"
    if topic in SHADOWED_MODULES or topic in sys.stdlib_module_names:
        return (
            f"topic {topic!r} would make a student module {topic}.py that hides the module "
            f"{topic!r}: choose another topic"
        )
    return None


def function_name_problem(name: object, what: str = "function") -> str | None:
    """Why ``name`` cannot be a student function (or exercise) name, or ``None``."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        return f"{what} {name!r} is not a Python identifier"
    if name in dir(builtins):
        return f"{what} {name!r} would hide Python's builtin {name!r}: choose another name"
    return None


def _positive(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _field_problems(spec: ExerciseSpec, others: Sequence[ExerciseSpec]) -> list[str]:
    from grader.compare import EXPLAIN, POSTPROCESS
    from grader.sandbox.harness import HARNESSES, forward_name, import_harness_modules

    problems = [
        p
        for p in (
            function_name_problem(spec.name, "exercise name"),
            function_name_problem(spec.function, "student function"),
            topic_problem(spec.topic),
        )
        if p
    ]
    if not isinstance(spec.number, str) or not _NUMBER.match(spec.number):
        problems.append(f"number {spec.number!r} must look like '4.3' (digits and dots)")
    else:
        taken = next((o.name for o in others if o.number == spec.number), None)
        if taken:
            problems.append(
                f"number {spec.number} is already exercise {taken!r}: choose a free number "
                "(`cnnlab list` shows the numbers in use)"
            )
    if not isinstance(spec.title, str) or not spec.title.strip():
        problems.append("title must be a non-empty string")
    if not _positive(spec.points):
        problems.append(f"points must be a positive number, got {spec.points!r}")
    if not _positive(spec.timeout_s):
        problems.append(f"timeout_s must be a positive number of seconds, got {spec.timeout_s!r}")
    for tol in ("rtol", "atol"):
        value = getattr(spec, tol)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            problems.append(f"{tol} must be a number >= 0, got {value!r}")
    if not HARNESSES:
        import_harness_modules()
    if spec.harness == "question":
        problems.append(
            "harness 'question' is for the built-in numeric questions; use 'call' for a "
            "function that returns a number"
        )
    elif spec.harness not in HARNESSES:
        problems.append(
            f"harness {spec.harness!r} does not exist; plugins use the built-in harnesses: "
            + ", ".join(sorted(h for h in HARNESSES if h != "question"))
        )
    elif spec.harness in ("backward", "backward_dx"):
        forward = forward_name(spec.function)
        if not any(o.function == forward for o in others):
            problems.append(
                f"harness {spec.harness!r} makes the cache with the student's {forward}, but "
                f"no exercise asks for {forward}: add an exercise for it (harness 'forward')"
            )
    if spec.postprocess is not None and spec.postprocess not in POSTPROCESS:
        problems.append(
            f"postprocess {spec.postprocess!r} does not exist (known: {', '.join(POSTPROCESS)})"
        )
    explain = getattr(spec, "explain", None)
    if explain is not None and explain not in EXPLAIN:
        problems.append(f"explain {explain!r} does not exist (known: {', '.join(EXPLAIN)})")
    slugs = [m.name for m in spec.mistakes]
    for m in spec.mistakes:
        if not isinstance(m.name, str) or not _SLUG.match(m.name):
            problems.append(
                f"mistake name {m.name!r} must be a lower-case slug like 'bias_forgotten'"
            )
        if not isinstance(m.message, str) or not m.message.strip():
            problems.append(f"mistake {m.name!r} needs a message saying what went wrong")
        if not callable(m.produce):
            problems.append(f"mistake {m.name!r}: produce must be a function of a case")
    dupes = sorted({s for s in slugs if slugs.count(s) > 1})
    if dupes:
        problems.append(f"mistake names used twice: {', '.join(map(str, dupes))}")
    return problems


def _generation_problems(spec: ExerciseSpec) -> list[str]:
    import inspect

    from grader.errors import GraderFailure
    from grader.problemset import generate

    fn = spec.reference_function
    if fn is None:
        return [
            "reference_function is missing: stubs, solutions and notebooks are generated from "
            "the reference's source (its signature and docstring)"
        ]
    try:
        fn = inspect.unwrap(fn)
        name = getattr(fn, "__name__", None)
    except Exception as exc:
        return [f"reference_function cannot be inspected: {exc}"]
    if name != spec.function:
        return [
            f"reference_function is {name!r} but the student function is {spec.function!r}: "
            "the stub defines the reference's name, so they must be the same"
        ]
    try:
        for solution in (False, True):
            text = generate.render_topic(spec.topic, [spec], seed=CHECK_SEEDS[0], solution=solution)
            compile(text, f"{spec.topic}.py", "exec")
        generate.notebook_code([spec])
    except GraderFailure as exc:
        return [f"the stub or solution cannot be generated: {exc}"]
    except SyntaxError as exc:
        return [f"the generated module does not compile: {exc}"]
    except Exception as exc:
        return [f"the stub or solution cannot be generated: {type(exc).__name__}: {exc}"]
    return []


@dataclass(frozen=True)
class MistakeReport:
    """How recognisable one known mistake is on the cases of the check seeds.

    Attributes:
        name: the mistake's slug.
        revealed: cases (over all seeds) on which its outputs differ from the reference's.
        cases: cases drawn in all.
        confused_with: other known mistakes the engine names as well (as equally possible)
            for a student who makes exactly this one, on some seed: the cases cannot tell
            them apart.
        named: seeds (of those checked) on which that student gets this mistake named, alone.
        seeds: seeds checked.
    """

    name: str
    revealed: int
    cases: int
    confused_with: tuple[str, ...]
    named: int
    seeds: int

    @property
    def recognisable(self) -> bool:
        """Named alone, on every seed checked."""
        return self.revealed > 0 and not self.confused_with and self.named == self.seeds


def mistake_report(spec: ExerciseSpec, seeds: Iterable[int] = CHECK_SEEDS) -> list[MistakeReport]:
    """For each known mistake of ``spec``: on how many cases it shows, and what the engine
    tells a student who makes exactly that mistake (their outputs are the mistake's wherever
    it shows, the reference's elsewhere) — the mistake's name alone, or several names.

    Raises:
        GraderFailure: drawing the cases, the reference or a mistake failed.
    """
    from grader.engine import prepare

    prepared = [prepare(spec, seed) for seed in seeds]
    return _mistake_report(spec, prepared)


def _student_with(prepared: PreparedExercise, slug: str) -> Any:
    """The run of a student who makes only mistake ``slug``."""
    from grader.sandbox.runner import CaseOutcome, RunOutcome

    outcomes = []
    for case in prepared.cases:
        outputs = {**case.expected, **case.mistakes.get(slug, {})}
        outcomes.append(CaseOutcome(status="ok", outputs=outputs, message=""))
    return RunOutcome(cases=tuple(outcomes), output="", wall_s=0.0)


def _mistake_report(
    spec: ExerciseSpec, prepared: Sequence[PreparedExercise]
) -> list[MistakeReport]:
    from grader.engine import evaluate

    reports = []
    for mistake in spec.mistakes:
        name = mistake.name
        revealed = sum(name in c.mistakes for p in prepared for c in p.cases)
        confused: list[str] = []
        named = 0
        for p in prepared:
            if not any(name in c.mistakes for c in p.cases):
                continue  # nothing to name on this seed
            result = evaluate(p, _student_with(p, name))
            if result.mistake == name and not result.possible_mistakes:
                named += 1
            confused += [m for m in result.possible_mistakes if m != name and m not in confused]
            if result.mistake not in (None, name) and result.mistake not in confused:
                confused.append(result.mistake)
        total = sum(len(p.cases) for p in prepared)
        reports.append(MistakeReport(name, revealed, total, tuple(confused), named, len(prepared)))
    return reports


def _same_inputs(a: PreparedExercise, b: PreparedExercise) -> bool:
    from grader.sandbox.caseio import encode_case

    if len(a.cases) != len(b.cases):
        return False
    for x, y in zip(a.cases, b.cases, strict=True):
        ex, ey = encode_case(x.inputs), encode_case(y.inputs)
        if ex.keys() != ey.keys() or not all(np.array_equal(ex[k], ey[k]) for k in ex):
            return False
    return True


def _case_problems(spec: ExerciseSpec) -> list[str]:
    from grader.engine import prepare
    from grader.errors import GraderFailure
    from grader.sandbox.caseio import CaseEncodingError, encode_case

    problems: list[str] = []
    try:
        prepared = [prepare(spec, seed) for seed in CHECK_SEEDS]
        again = prepare(spec, CHECK_SEEDS[0])
    except GraderFailure as exc:
        return [f"{exc}"]
    except Exception as exc:  # a spec that is not what prepare expects at all
        return [f"its cases cannot be drawn: {type(exc).__name__}: {exc}"]
    for p in prepared:
        for index, case in enumerate(p.cases):
            try:
                encode_case(case.inputs)
            except CaseEncodingError as exc:
                problems.append(
                    f"case {index + 1} cannot go to the sandbox ({exc}); cases hold arrays, "
                    "numbers, strings and tuples of those, never live objects"
                )
                return problems
    if not _same_inputs(prepared[0], again):
        problems.append(
            "make_cases drew different cases for the same seed: draw every random number "
            "from the generator it is given (never np.random.* or the clock)"
        )
    for report in _mistake_report(spec, prepared):
        if report.revealed == 0:
            problems.append(
                f"known mistake {report.name!r} gives the reference's outputs on all "
                f"{report.cases} cases, so it can never be recognised: add a case on which "
                "it differs"
            )
        elif report.confused_with:
            problems.append(
                f"known mistake {report.name!r} cannot be told apart from "
                f"{', '.join(map(repr, report.confused_with))}: a student who makes it is "
                "told it may be either (add a case on which they differ, or merge them)"
            )
        elif report.named < report.seeds:
            problems.append(
                f"known mistake {report.name!r} is not named for a student who makes it on "
                f"{report.seeds - report.named} of {report.seeds} seeds (some seeds draw no "
                "case that shows it): make every seed draw a case that reveals it"
            )
    return problems


def check_spec(spec: Any, others: Sequence[ExerciseSpec] = ()) -> list[str]:
    """The problems of a spec, empty when it can be registered (see the module docstring).

    Args:
        spec: what a plugin provided.
        others: the exercises already registered plus the plugin's other specs (for numbers
            and the forward a backward harness needs).

    Returns:
        One message per problem, each saying what to change.
    """
    from grader.registry import ExerciseSpec

    if not isinstance(spec, ExerciseSpec):
        return [f"{type(spec).__name__} is not an ExerciseSpec (import it from grader.registry)"]
    others = [o for o in others if o is not spec and o.name != spec.name]
    try:
        problems = _field_problems(spec, others)
    except Exception as exc:
        return [f"its fields cannot be checked: {type(exc).__name__}: {exc}"]
    if problems:
        return problems  # the cases and the generation need well-formed fields
    problems += _case_problems(spec)
    problems += _generation_problems(spec)
    return problems


# --------------------------------------------------------------------------- helpers for authors


def case(label: str, **kwargs: Any) -> dict[str, Any]:
    """One check case: the keyword arguments of the student call, plus a label saying what
    makes the case hard (feedback shows it: "case 2 of 5: pool 3x3, stride 1 — overlap")."""
    from grader.engine import CASE_LABEL

    return {CASE_LABEL: label, **kwargs}


def render_module(
    specs: Sequence[ExerciseSpec], *, solution: bool, seed: int = CHECK_SEEDS[0]
) -> str:
    """The generated stub (``solution=False``) or solution module of ``specs`` (one topic)."""
    from grader.problemset.generate import render_topic

    topics = {s.topic for s in specs}
    if len(topics) != 1:
        raise ValueError(f"render_module needs specs of one topic, got {sorted(topics)}")
    return render_topic(topics.pop(), list(specs), seed=seed, solution=solution)


def needs_torch(specs: Sequence[ExerciseSpec]) -> bool:
    """Whether grading ``specs`` runs a torch harness (the sandbox then preloads torch)."""
    from grader.sandbox.harness import needs_torch as harnesses_need_torch

    return harnesses_need_torch(s.harness for s in specs)


def grade_submission(
    path: str | Path,
    specs: Sequence[ExerciseSpec],
    *,
    seed: int = CHECK_SEEDS[0],
    sandbox: Any = None,
) -> SubmissionResult:
    """Grade the submission at ``path`` on ``specs`` in the sandbox, as ``cnnlab grade``
    does, without the specs being registered (a plugin's own tests call this).

    Args:
        path: a ``.py`` file, a folder of modules or a notebook.
        specs: the exercises to grade.
        seed: the seed of the check cases.
        sandbox: a running :class:`grader.sandbox.runner.Sandbox` to reuse; by default one is
            started for this call (preloading torch only when a torch harness needs it).
    """
    from grader import engine
    from grader.sandbox.runner import Sandbox
    from grader.submission import load_submission

    submission = load_submission(path)
    prepared = engine.prepare_all(list(specs), engine.check_seed(seed))
    if sandbox is not None:
        return engine.grade_prepared(submission, prepared, seed=seed, sandbox=sandbox)
    with Sandbox(preload_torch=needs_torch(specs)) as box:
        return engine.grade_prepared(submission, prepared, seed=seed, sandbox=box)
