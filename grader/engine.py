"""The grading engine: reference outputs in the parent, student code in a sandboxed child.

The steps, each a small function:

1. :func:`prepare` (parent, the only place reference code runs): draw an exercise's cases
   from its own generator ``np.random.default_rng([seed, stable_hash(name)])`` (so adding or
   selecting exercises never changes another one's numbers), compute the expected outputs with
   ``cnnref`` and every known mistake's outputs on pristine copies of the inputs.
2. The runner (:class:`grader.sandbox.runner.Sandbox`) runs the student's function on every case of
   one exercise in one fresh child and hands back plain arrays.
3. :func:`evaluate` (parent, pure): compare, recognise a known mistake, score.

Scoring: an exercise's score is ``points * (cases passed) / (cases)``, so partial work earns
partial credit; its status is ``passed`` only when every case passes. When a case did not
return (``error``, ``timeout``, ``memory``, ``crashed``, ``not_implemented``), the status is
the first such status in case order; otherwise it is ``failed``.

Feedback: when a case raised, its exception comes first, with the file and line the child
found in the student's code, and its case; then the first wrong output, its case and what
makes that case hard (put in words by the exercise's explainer, ``ExerciseSpec.explain``,
where it has one). A known mistake is named when it explains every compared case: its
outputs equal the student's on each failing case, and it would not have shown on any case
that passed. When several known mistakes explain the output equally well, all of them are
named as possibilities, never one of them as if it were sure. Small maps of the first
failing case are kept in the result (:class:`grader.results.Picture`) for the renderers.

A failure of the grader (the sandbox, the reference) is retried once and then reported as
``grader_error`` with score 0, which the renderers and exit codes never treat as a grade.

This module must not import ``cnnref`` or ``grader.exercises`` at module level: in a student
bundle there is no reference, and grading runs from saved public cases (``cases_dir``).
"""

from __future__ import annotations

import copy
import hashlib
import sys
import time
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from grader import seeds as seeds_mod
from grader.compare import (
    EXPLAIN,
    POSTPROCESS,
    RuntimeProblem,
    check_outputs,
    failing_output,
    outputs_match,
    pictures,
)
from grader.errors import (
    ConfigError,
    GraderFailure,
    UnknownExerciseError,
    exercise_hint,
)
from grader.results import Result, Status, SubmissionResult

if TYPE_CHECKING:  # pragma: no cover
    from grader.registry import ExerciseSpec
    from grader.sandbox.runner import RunOutcome, Sandbox
    from grader.submission import Submission

__all__ = [
    "CASE_LABEL",
    "InProcessRunner",
    "PreparedCase",
    "PreparedExercise",
    "evaluate",
    "exercise_rng",
    "fresh_seed",
    "grade",
    "grade_prepared",
    "prepare",
    "prepare_all",
    "stable_hash",
]

#: Key of a case's human label (what makes the case hard); removed before anything runs it.
CASE_LABEL = "_label"
MAX_SEED = seeds_mod.MAX_SEED
_STATUS_OF_CASE = {
    "not_implemented": Status.NOT_IMPLEMENTED,
    "error": Status.ERROR,
    "timeout": Status.TIMEOUT,
    "memory": Status.MEMORY,
    "crashed": Status.CRASHED,
}


@dataclass(frozen=True)
class PreparedCase:
    """One check case, ready to grade without the reference.

    Attributes:
        inputs: keyword arguments of the student call (arrays, ints, floats, strs, int tuples).
        expected: the reference outputs, by name (``"out"``, ``"dx"``, ...).
        mistakes: known-mistake slug -> that mistake's outputs on this case (only the mistakes
            whose outputs differ from ``expected`` here, i.e. that this case can reveal; a
            mistake may give a subset of the outputs, e.g. only ``"rf"``).
        label: what makes the case hard, shown in feedback.
        hidden: case data that never goes to the child (``ExerciseSpec.hidden``, plus what
            ``ExerciseSpec.context`` computed), read by the exercise's parent-side
            ``postprocess`` and ``explain``.
    """

    inputs: dict[str, Any]
    expected: dict[str, np.ndarray]
    mistakes: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    label: str = ""
    hidden: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedExercise:
    """An exercise with its cases drawn and its expected outputs computed (see :func:`prepare`)."""

    name: str
    number: str
    title: str
    topic: str
    points: float
    function: str
    harness: str
    module_hint: str | None
    rtol: float
    atol: float
    timeout_s: float
    mistake_messages: dict[str, str]
    cases: tuple[PreparedCase, ...]
    postprocess: str | None = None
    explain: str | None = None
    #: Feedback never shows an expected value (numeric questions graded with a hidden
    #: problem seed: the student's own answers, which a resubmission could copy).
    conceal_expected: bool = False


# ----------------------------------------------------------------------------- seeds


def stable_hash(name: str) -> int:
    """A 32-bit hash of ``name`` that is the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def exercise_rng(seed: int, name: str) -> np.random.Generator:
    """The generator of exercise ``name`` under ``seed``; independent of every other exercise."""
    return np.random.default_rng([int(seed), stable_hash(name)])


def fresh_seed() -> int:
    """A new random seed for a run without ``--seed`` (printed so the run can be repeated)."""
    return seeds_mod.fresh_seed()


def check_seed(seed: object) -> int:
    """``seed`` as an int in ``[0, 2**31 - 1)``, or a :class:`ConfigError` saying so."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"the seed must be a whole number, got {seed!r}")
    if not 0 <= int(seed) < MAX_SEED:
        raise ConfigError(f"the seed must be between 0 and {MAX_SEED - 1}, got {seed}")
    return int(seed)


# ----------------------------------------------------------------------------- prepare


def _as_outputs(value: object, what: str) -> dict[str, np.ndarray]:
    if not isinstance(value, Mapping) or not value:
        raise GraderFailure(
            f"{what} must be a non-empty dict of arrays, got {type(value).__name__}"
        )
    outputs = {}
    for key, v in value.items():
        arr = np.array(v, order="C")  # a copy; unlike ascontiguousarray, 0-d stays 0-d
        if arr.dtype.kind not in "biuf":
            raise GraderFailure(f"{what}[{key!r}] has dtype {arr.dtype}, not a number type")
        outputs[str(key)] = arr
    return outputs


def prepare(spec: ExerciseSpec, seed: int) -> PreparedExercise:
    """Draw ``spec``'s cases for ``seed`` and compute the reference and mistake outputs.

    Raises:
        GraderFailure: the case generator, the reference or a mistake crashed, or returned
            something that is not named numeric arrays.
    """
    seed = check_seed(seed)
    rng = exercise_rng(seed, spec.name)
    try:
        raw_cases = list(spec.make_cases(rng))
    except Exception as exc:
        raise GraderFailure(
            f"drawing the cases of {spec.name} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not raw_cases:
        raise GraderFailure(f"{spec.name} has no check cases")
    cases = []
    for index, raw in enumerate(raw_cases):
        raw = dict(raw)
        label = str(raw.pop(CASE_LABEL, ""))
        inputs = copy.deepcopy(raw)
        where = f"{spec.name}, case {index + 1}"
        try:
            expected = _as_outputs(spec.reference(copy.deepcopy(inputs)), f"reference of {where}")
        except GraderFailure:
            raise
        except Exception as exc:
            raise GraderFailure(
                f"the reference failed on {where}: {type(exc).__name__}: {exc}"
            ) from exc
        mistakes: dict[str, dict[str, np.ndarray]] = {}
        for mistake in spec.mistakes:
            try:
                produced = mistake.produce(copy.deepcopy(inputs))
            except Exception as exc:
                raise GraderFailure(
                    f"known mistake {mistake.name!r} failed on {where}: {type(exc).__name__}: {exc}"
                ) from exc
            if produced is None:
                continue  # this mistake cannot show on this case
            outputs = _as_outputs(produced, f"mistake {mistake.name!r} of {where}")
            unknown = set(outputs) - set(expected)
            if unknown:
                raise GraderFailure(
                    f"mistake {mistake.name!r} of {where} names outputs {sorted(unknown)} "
                    f"that the exercise does not have ({sorted(expected)})"
                )
            subset = {k: expected[k] for k in outputs}
            if outputs_match(subset, outputs, rtol=spec.rtol, atol=spec.atol):
                continue  # indistinguishable from the right answer on this case
            mistakes[mistake.name] = outputs
        missing = [k for k in spec.hidden if k not in inputs]
        if missing:
            raise GraderFailure(f"{where} has no hidden key(s) {missing}")
        context: dict[str, Any] = {}
        if spec.context is not None:
            try:
                context = dict(spec.context(copy.deepcopy(inputs)))
            except Exception as exc:
                raise GraderFailure(
                    f"the context of {where} failed: {type(exc).__name__}: {exc}"
                ) from exc
        hidden = {k: inputs.pop(k) for k in spec.hidden}
        clash = set(context) & set(hidden)
        if clash:
            raise GraderFailure(f"{where}: context keys {sorted(clash)} clash with hidden keys")
        hidden.update(context)
        cases.append(
            PreparedCase(
                inputs=inputs, expected=expected, mistakes=mistakes, label=label, hidden=hidden
            )
        )
    return PreparedExercise(
        name=spec.name,
        number=spec.number,
        title=spec.title,
        topic=spec.topic,
        points=float(spec.points),
        function=spec.function,
        harness=spec.harness,
        module_hint=spec.topic,
        rtol=spec.rtol,
        atol=spec.atol,
        timeout_s=spec.timeout_s,
        mistake_messages={m.name: m.message for m in spec.mistakes},
        cases=tuple(cases),
        postprocess=spec.postprocess,
        explain=spec.explain,
    )


def grader_error(name: str, points: float, reason: str, *, wall_s: float = 0.0) -> Result:
    """The record of an exercise the grader could not grade (never a score)."""
    return Result(
        name=name,
        score=0.0,
        max_score=float(points),
        status=Status.GRADER_ERROR,
        feedback=(
            f"the grader failed on this exercise (not your code), even after a retry: {reason}"
        ),
        wall_s=wall_s,
    )


def prepare_all(
    specs: Sequence[ExerciseSpec], seed: int, *, problem_seed: int | None = None
) -> list[PreparedExercise | Result]:
    """:func:`prepare` each spec (retrying once); a spec that still fails becomes a
    ``grader_error`` :class:`Result` in its place. The numeric questions (tag ``"question"``)
    draw their numbers from ``problem_seed`` (the problem set's seed) when it is given."""
    prepared: list[PreparedExercise | Result] = []
    for spec in specs:
        use = problem_seed if problem_seed is not None and "question" in spec.tags else seed
        try:
            prepared.append(prepare(spec, use))
        except GraderFailure:
            try:
                prepared.append(prepare(spec, use))
            except GraderFailure as exc:
                prepared.append(grader_error(spec.name, spec.points, str(exc)))
    return prepared


# ----------------------------------------------------------------------------- evaluate


def _case_where(index: int, total: int, label: str) -> str:
    return f"case {index + 1} of {total}" + (f": {label}" if label else "")


@dataclass(frozen=True)
class _Failure:
    """A compared case whose outputs are wrong."""

    index: int
    case: PreparedCase
    received: Mapping[str, Any]
    problem: str
    runtime: bool  # the student's code raised inside the harness (a scorer said so)


def evaluate(prepared: PreparedExercise, outcome: RunOutcome) -> Result:
    """Grade one exercise from what the child returned (a pure function of its arguments).

    Args:
        prepared: the exercise, its cases and expected outputs.
        outcome: the run of the student's code, one case outcome per prepared case.

    Returns:
        The exercise's :class:`Result` (see the module docstring for the score, the status
        and what the feedback says).

    Raises:
        GraderFailure: the outcome does not have one result per case.
    """
    cases, outcomes = prepared.cases, tuple(outcome.cases)
    if len(outcomes) != len(cases):
        raise GraderFailure(
            f"the sandbox returned {len(outcomes)} results "
            f"for {len(cases)} cases of {prepared.name}"
        )
    total = len(cases)
    passed_cases: list[PreparedCase] = []
    failures: list[_Failure] = []
    raised: list[tuple[int, Status, str]] = []  # (case index, status, message)
    for index, (case, result) in enumerate(zip(cases, outcomes, strict=True)):
        if result.status == "ok":
            received, problem = _postprocess(prepared, case, result.outputs or {})
            runtime = isinstance(problem, RuntimeProblem)
            problem = problem or check_outputs(
                case.expected,
                received,
                rtol=prepared.rtol,
                atol=prepared.atol,
                conceal=prepared.conceal_expected,
            )
            if problem is None:
                passed_cases.append(case)
                continue
            if not runtime and not prepared.conceal_expected:
                problem = _explain(prepared, case, received, problem)
            failures.append(_Failure(index, case, received, str(problem), runtime))
            continue
        status = _STATUS_OF_CASE.get(result.status)
        if status is None:
            raise GraderFailure(f"unknown case status {result.status!r} from the sandbox")
        raised.append((index, status, (result.message or status.value).strip()))

    passed = len(passed_cases)
    score = round(prepared.points * passed / total, 4)
    common = dict(
        name=prepared.name,
        max_score=float(prepared.points),
        output=outcome.output,
        wall_s=outcome.wall_s,
    )
    messages = {(r.status, (r.message or "").strip()) for r in outcomes}
    if passed == 0 and not failures and len(messages) == 1:
        # the same runtime problem on every case (a missing function, an unfilled stub):
        # say it once, without a case
        status_name, message = messages.pop()
        return Result(
            score=0.0,
            status=_STATUS_OF_CASE[status_name],
            feedback=message or status_name,
            **common,
        )
    if passed == total:
        return Result(
            score=float(prepared.points),
            status=Status.PASSED,
            feedback=f"all {total} cases passed" if total > 1 else "the check passed",
            **common,
        )

    parts: list[str] = []
    runtime_status: Status | None = None
    if raised:
        index, runtime_status, message = raised[0]
        if runtime_status is Status.NOT_IMPLEMENTED:
            parts.append(message)
        else:
            parts.append(f"{message} ({_case_where(index, total, cases[index].label)})")
        others = {m for _, _, m in raised[1:]} - {message}
        if others:
            parts.append(f"{len(raised) - 1} other case(s) stopped too, e.g. {sorted(others)[0]}")
    if failures:
        first = failures[0]
        where = _case_where(first.index, total, first.case.label)
        lead = "Also wrong: " if raised else ""
        parts.append(f"{lead}{first.problem} ({where})")
        if first.runtime and runtime_status is None:
            runtime_status = Status.ERROR
    candidates = _matching_mistakes(prepared, passed_cases, failures)
    mistake: str | None = None
    if len(candidates) == 1:
        mistake = candidates[0]
        parts.append(f"Known mistake: {prepared.mistake_messages[mistake]}")
    elif candidates:
        listed = "; ".join(
            f"({i}) {prepared.mistake_messages[slug]}" for i, slug in enumerate(candidates, 1)
        )
        parts.append(
            f"This output fits {len(candidates)} known mistakes that these cases cannot tell "
            f"apart, so it is one of them: {listed}"
        )
    if not (runtime_status is Status.NOT_IMPLEMENTED and passed == 0):
        parts.append(f"{passed} of {total} cases passed")
    return Result(
        score=score,
        status=runtime_status or Status.FAILED,
        feedback=". ".join(p.rstrip(". ") for p in parts),
        mistake=mistake,
        possible_mistakes=tuple(candidates) if len(candidates) > 1 else (),
        pictures=() if prepared.conceal_expected else _pictures(prepared, failures),
        **common,
    )


def _postprocess(
    prepared: PreparedExercise, case: PreparedCase, outputs: Mapping[str, Any]
) -> tuple[Mapping[str, Any], str | None]:
    """Apply the exercise's parent-side scorer, if it has one, to what the child returned."""
    if prepared.postprocess is None:
        return outputs, None
    scorer = POSTPROCESS.get(prepared.postprocess)
    if scorer is None:
        raise GraderFailure(f"{prepared.name}: no parent-side scorer {prepared.postprocess!r}")
    return scorer(outputs, case)


def _explain(
    prepared: PreparedExercise, case: PreparedCase, received: Mapping[str, Any], problem: str
) -> str:
    """The problem in words, by the exercise's explainer (``problem`` itself without one)."""
    if prepared.explain is None:
        return problem
    explainer = EXPLAIN.get(prepared.explain)
    if explainer is None:
        raise GraderFailure(f"{prepared.name}: no parent-side explainer {prepared.explain!r}")
    name = failing_output(case.expected, received, rtol=prepared.rtol, atol=prepared.atol)
    return explainer(
        problem,
        failing=name,
        case=case,
        received=received,
        function=prepared.function,
        rtol=prepared.rtol,
        atol=prepared.atol,
    )


def _matching_mistakes(
    prepared: PreparedExercise,
    passed: Sequence[PreparedCase],
    failures: Sequence[_Failure],
) -> list[str]:
    """Every known mistake that explains all compared cases, in declaration order.

    A mistake explains them when its outputs equal the student's on every failing case and it
    would not have shown on any case that passed (it gives the right answer there, or cannot
    show there). Cases that raised are not compared.
    """
    if not failures:
        return []
    found = []
    for slug in prepared.mistake_messages:
        if any(slug in case.mistakes for case in passed):
            continue
        if all(
            slug in f.case.mistakes
            and outputs_match(
                f.case.mistakes[slug], f.received, rtol=prepared.rtol, atol=prepared.atol
            )
            for f in failures
        ):
            found.append(slug)
    return found


def _pictures(prepared: PreparedExercise, failures: Sequence[_Failure]) -> tuple:
    """Pictures of the first failing case's first wrong output (see :func:`compare.pictures`)."""
    for f in failures:
        if f.runtime:
            continue
        name = failing_output(f.case.expected, f.received, rtol=prepared.rtol, atol=prepared.atol)
        if name is None or name not in f.received:
            continue
        return pictures(
            name,
            f.case.expected[name],
            f.received[name],
            rtol=prepared.rtol,
            atol=prepared.atol,
            case=f.index + 1,
            label=f.case.label,
        )
    return ()


# ----------------------------------------------------------------------------- running


def output_bound(prepared: PreparedExercise) -> int:
    """The most bytes of arrays the child may return for one case: generous room around the
    expected outputs' size (a wrong shape or dtype must still be read back to be explained),
    and a hard bound before the parent decompresses anything (SECURITY 36)."""
    largest = max(
        (sum(np.asarray(v).nbytes for v in c.expected.values()) for c in prepared.cases),
        default=0,
    )
    return 16 * largest + (1 << 20)


def run_exercise(runner: Any, submission: Submission, prepared: PreparedExercise) -> Result:
    """Run and evaluate one exercise; a grader failure is retried once, then ``grader_error``."""
    reason = ""
    started = time.perf_counter()
    for _attempt in range(2):
        try:
            outcome = runner.run(
                submission,
                harness=prepared.harness,
                function=prepared.function,
                cases=[copy.deepcopy(c.inputs) for c in prepared.cases],
                module_hint=prepared.module_hint,
                timeout_s=prepared.timeout_s,
                max_output_bytes=output_bound(prepared),
            )
            return evaluate(prepared, outcome)
        except GraderFailure as exc:
            reason = str(exc)
        except Exception as exc:  # a bug of the grader, never the student's fault
            reason = f"{type(exc).__name__}: {exc}"
    return grader_error(
        prepared.name, prepared.points, reason, wall_s=time.perf_counter() - started
    )


def exercise_functions(prepared: Iterable[Any] = ()) -> tuple[str, ...]:
    """The function of every registered exercise (and of ``prepared``): "did you mean" never
    suggests renaming a student's function to one of these (it is another exercise)."""
    names = [getattr(p, "function", None) for p in prepared]
    try:
        from grader import registry

        names += [s.function for s in registry.all_registered()]
    except Exception:  # noqa: BLE001 - a bundle without the reference: the prepared ones
        pass
    return tuple(sorted({n for n in names if isinstance(n, str)}))


def not_submitted(submission: Submission, prepared: PreparedExercise) -> Result:
    """The result of an exercise nothing in ``submission`` is meant for
    (:meth:`grader.submission.Submission.relates_to`): 0 of its points, status
    ``not_submitted``, without running anything."""
    files = sorted(PurePosixPath(f).name for f in submission.files.values())
    shown = ", ".join(files[:6]) + (", ..." if len(files) > 6 else "")
    return Result(
        name=prepared.name,
        score=0.0,
        max_score=float(prepared.points),
        status=Status.NOT_IMPLEMENTED,  # the public status list (DESIGN.md); the feedback says why
        feedback=(
            f"not submitted: none of your files ({shown}) defines {prepared.function} or is "
            f"named after its topic ({prepared.topic}); define {prepared.function} with "
            "exactly this name to have it graded"
        ),
    )


def grade_prepared(
    submission: Submission,
    prepared: Sequence[PreparedExercise | Result],
    *,
    seed: int,
    sandbox: Sandbox | None = None,
    student: str | None = None,
    in_process: bool = False,
    label_not_submitted: bool = False,
) -> SubmissionResult:
    """Grade ``submission`` on already prepared exercises (no reference needed).

    Args:
        submission: the loaded student code (:func:`grader.submission.load_submission`).
        prepared: the exercises, in order; a :class:`Result` in the list (an exercise that
            could not be prepared) is passed through as it is.
        seed: the seed the exercises were prepared with (recorded in the result).
        sandbox: a running sandbox to reuse (a batch reuses one); ``None`` starts one and
            closes it afterwards.
        student: the student id, when known.
        in_process: UNSAFE, for the benchmark only: import the student's code into this
            process instead of a sandboxed child (:class:`InProcessRunner`).
        label_not_submitted: a class submission (batch, Gradescope): an exercise nothing in
            the submission is meant for is not run but scored 0 of its points as
            ``not_submitted`` (:func:`not_submitted`), so the total stays out of the whole
            problem set while the feedback says what is missing.
    """
    import dataclasses

    if dataclasses.is_dataclass(submission):
        functions = exercise_functions(prepared)
        submission = dataclasses.replace(submission, exercise_functions=functions)
    if label_not_submitted:
        prepared = [
            not_submitted(submission, p)
            if isinstance(p, PreparedExercise) and not submission.relates_to(p.function, p.topic)
            else p
            for p in prepared
        ]
    own = sandbox is None
    if own:
        if in_process:
            runner: Any = InProcessRunner()
        else:
            from grader.sandbox.harness import needs_optimizer, needs_torch
            from grader.sandbox.runner import Sandbox

            harnesses = [p.harness for p in prepared if isinstance(p, PreparedExercise)]
            runner = Sandbox(
                preload_torch=needs_torch(harnesses), preload_optimizer=needs_optimizer(harnesses)
            )
    else:
        runner = sandbox
    try:
        results = [
            item if isinstance(item, Result) else run_exercise(runner, submission, item)
            for item in prepared
        ]
    finally:
        if own:
            runner.close()
    return SubmissionResult(
        seed=int(seed), exercises=tuple(results), source=str(submission.path), student=student
    )


def _select_saved(
    prepared: list[PreparedExercise],
    requested: Iterable[str] | None,
    not_checked: Mapping[str, Any] | None = None,
) -> list[PreparedExercise]:
    requested = list(requested or [])
    if not requested:
        return prepared

    by_name = {p.name: p for p in prepared}
    for name in requested:
        if name in (not_checked or {}):
            from grader.problemset.public_cases import not_checked_message

            raise UnknownExerciseError(not_checked_message(name, not_checked[name]) + ".")
        if name not in by_name:
            hint = exercise_hint(name, list(by_name.values()))
            raise UnknownExerciseError(
                f"unknown exercise {name!r}.{hint} The check cases hold: {', '.join(by_name)}."
            )
    wanted = set(requested)
    return [p for p in prepared if p.name in wanted]


def _related(submission: Submission, exercises: list[Any]) -> tuple[list[Any], list[Any]]:
    """``(related, unrelated)``: the exercises something in the submission is meant for
    (:meth:`grader.submission.Submission.relates_to`: it defines the function, even as a stub
    or in a file or cell that does not compile, it is named after the topic, or it has a
    renamed function), and the others. ``cnnlab grade exercises/pooling.py``, or a folder
    holding only it, grades pooling's exercises, not a row per exercise of every other
    topic. When nothing relates, every exercise is related (the feedback then says which
    function is missing, naming the files)."""
    related = [e for e in exercises if submission.relates_to(e.function, e.topic)]
    if not related:
        return exercises, []
    names = {e.name for e in related}
    return related, [e for e in exercises if e.name not in names]


def _not_submitted_note(unrelated: list[Any], path: str | Path) -> str:
    shown = ", ".join(e.name for e in unrelated[:4]) + (
        f" and {len(unrelated) - 4} more" if len(unrelated) > 4 else ""
    )
    return (
        f"not submitted: {len(unrelated)} exercise(s) nothing in your submission is meant for "
        f"were left out ({shown}); write them, or grade one anyway with "
        f"`cnnlab grade {path} -e {unrelated[0].name}`"
    )


def grade(
    path: str | Path,
    *,
    seed: int | None = None,
    exercises: list[str] | None = None,
    student: str | None = None,
    sandbox: Sandbox | None = None,
    cases_dir: Path | None = None,
    in_process: bool = False,
    problem_seed: int | None = None,
    sources: seeds_mod.SeedSources | None = None,
    complete: bool = False,
) -> SubmissionResult:
    """Grade the submission at ``path`` (a folder of modules, a ``.py`` or an ``.ipynb``).

    Which seeds grade it is decided by :func:`grader.seeds.resolve` from ``sources`` plus
    ``seed``, ``problem_seed`` and the submission's generated header (a hint only): the
    numeric questions are graded against the problem set the student received, and are left
    out, with a note saying why, when nothing names it. ``result.extra`` records
    ``seed_source``, ``problem_seed_source``, ``seed_hidden`` (never show the seed to the
    student), ``notes`` (what the person grading must be told) and ``not_graded``.

    Args:
        path: the submission.
        seed: an explicit seed of the check cases (``--seed``); ``None``: from ``sources``,
            else a fresh one (recorded in the result). It also names the problem set when no
            stronger source does.
        exercises: exercise names to grade; ``None`` or empty grades all of them.
        student: the student id, when known (a label of the result).
        sandbox: a running sandbox to reuse.
        cases_dir: grade against saved public cases (:mod:`grader.problemset.public_cases`)
            instead of the reference; what a student bundle without ``cnnref`` does.
        in_process: UNSAFE, for the benchmark only (see :func:`grade_prepared`).
        problem_seed: an explicit seed of the student's problem set (``--problem-seed``).
        sources: every other source of seeds (student, assigned, course, recorded).
        complete: a class submission (the autograder, ``--student``): every exercise gets a
            row and counts in the total, one nothing in the submission is meant for as
            ``not_submitted`` with 0 points. Otherwise (a student checking their work) those
            exercises are left out with one note saying so, unless named with ``exercises``.

    Raises:
        SubmissionError: the path is missing or not a submission.
        UnknownExerciseError: an exercise name is unknown (with a "did you mean").
        ConfigError: a bad seed, a seed that the saved cases were not made with, or only
            numeric questions selected while nothing names the problem set.
    """
    from dataclasses import replace

    from grader.submission import load_submission

    submission = load_submission(path)
    submission = replace(submission, exercise_functions=exercise_functions())
    unrelated: list[Any] = []
    sources = sources or seeds_mod.SeedSources()
    if seed is not None:
        sources = replace(sources, seed=check_seed(seed))
    if problem_seed is not None:
        sources = replace(sources, problem=check_seed(problem_seed))
    extra: dict[str, Any] = {}
    if cases_dir is not None:
        from grader.problemset.public_cases import load_not_checked, load_prepared

        saved_seed, saved = load_prepared(cases_dir)
        if sources.seed is not None and sources.seed != saved_seed:
            raise ConfigError(
                f"the check cases in {str(cases_dir)!r} were made with seed {saved_seed}; "
                f"drop --seed or pass --seed {saved_seed}"
            )
        seed = saved_seed
        if not exercises and not complete:
            saved, unrelated = _related(submission, saved)
        prepared: list[PreparedExercise | Result] = list(
            _select_saved(saved, exercises, load_not_checked(cases_dir))
        )
        extra.update(seed_source="cases", seed_hidden=False, notes=[])
    else:
        from grader import registry

        specs = registry.select(exercises)
        if not exercises and not complete:
            specs, unrelated = _related(submission, specs)
        chosen = seeds_mod.resolve(sources.with_header(submission.modules))
        seed, problem = chosen.grading, chosen.problem
        notes = [problem.note] if problem.note else []
        questions = [s for s in specs if "question" in s.tags]
        if problem.seed is None and questions:
            if len(questions) == len(specs):
                raise ConfigError(problem.note)
            specs = [s for s in specs if "question" not in s.tags]
            extra["not_graded"] = {s.name: "the problem set is unknown" for s in questions}
        elif not questions:
            notes = []  # nothing was graded against the problem seed: nothing to say
        extra.update(
            seed_source=chosen.grading_source,
            problem_seed_source=problem.source if questions else None,
            problem_seed=problem.seed if questions and not problem.hidden else None,
            seed_hidden=chosen.hidden,
            notes=notes,
        )
        prepared = prepare_all(specs, seed, problem_seed=problem.seed)
        if problem.hidden:  # the answers are the student's own: feedback must not give them
            prepared = [
                replace(p, conceal_expected=True)
                if isinstance(p, PreparedExercise) and p.name in {q.name for q in questions}
                else p
                for p in prepared
            ]
    result = grade_prepared(
        submission,
        prepared,
        seed=seed,
        sandbox=sandbox,
        student=student,
        in_process=in_process,
        label_not_submitted=complete,
    )
    # What was graded (the files found, any not read, notebook cells not run): shown with
    # the notes in the terminal, the JSON report and Gradescope's output.
    extra["notes"] = [*extra.get("notes", []), *submission.brief()]
    if unrelated:
        extra["notes"].append(_not_submitted_note(unrelated, path))
        extra["not_submitted"] = [e.name for e in unrelated]
    return SubmissionResult(
        seed=result.seed,
        exercises=result.exercises,
        source=result.source,
        student=result.student,
        extra={**result.extra, **extra},
    )


# ----------------------------------------------------------------------------- in-process


class InProcessRunner:
    """UNSAFE: runs student code inside *this* process. For the benchmark only.

    It imports the submission's modules into the grader's own interpreter, so student code
    could read the reference, patch the comparison or hang the grader: it exists to measure
    what the sandbox's isolation costs (``bench/bench_grader.py``), and no command uses it.
    Same interface as :class:`grader.sandbox.runner.Sandbox`: ``run(...)`` returns a ``RunOutcome``.
    """

    def __enter__(self) -> InProcessRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release."""

    @staticmethod
    def _load(submission: Submission, module_hint: str | None) -> list[types.ModuleType]:
        names = sorted(submission.modules, key=lambda n: (n != module_hint, n))
        saved = {n: sys.modules.get(n) for n in names}
        loaded = {n: types.ModuleType(n) for n in names}
        try:
            for name, module in loaded.items():
                module.__file__ = f"{name}.py"
                sys.modules[name] = module
            good = []
            for name in names:
                try:
                    code = compile(submission.modules[name], f"{name}.py", "exec")
                    exec(code, loaded[name].__dict__)
                    good.append(loaded[name])
                except Exception:
                    continue  # as in the child: a broken module only hides its own functions
            return good
        finally:
            for name, previous in saved.items():
                if previous is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = previous

    def run(
        self,
        submission: Submission,
        *,
        harness: str,
        function: str,
        cases: list[dict],
        module_hint: str | None = None,
        timeout_s: float | None = None,
        max_output_bytes: int | None = None,
    ) -> RunOutcome:
        """Run ``harness`` on every case in this process (no limits, no isolation)."""
        from grader.sandbox.harness import (
            HARNESSES,
            MissingFunction,
            describe_error,
            import_harness_modules,
        )
        from grader.sandbox.runner import CaseOutcome, RunOutcome

        if harness not in HARNESSES:
            import_harness_modules()
        if harness not in HARNESSES:
            raise GraderFailure(f"no harness named {harness!r}")
        started = time.perf_counter()
        modules = self._load(submission, module_hint)

        def get(name: str) -> Any:
            for module in modules:
                if name in module.__dict__:
                    return module.__dict__[name]
            raise MissingFunction(f"no function named {name!r} in your submission")

        outcomes = []
        for case in cases:
            try:
                outputs = HARNESSES[harness](get, function, copy.deepcopy(case))
                outcomes.append(CaseOutcome(status="ok", outputs=outputs, message=""))
            except NotImplementedError as exc:
                outcomes.append(
                    CaseOutcome(
                        status="not_implemented",
                        outputs=None,
                        message=f"NotImplementedError: {exc}",
                    )
                )
            except Exception as exc:
                what, at = describe_error(exc)  # where in the student's code, as the child does
                kind, _, text = what.partition(": ")
                message = f"{kind} in {at}: {text}" if at else what
                outcomes.append(CaseOutcome(status="error", outputs=None, message=message))
        return RunOutcome(cases=tuple(outcomes), output="", wall_s=time.perf_counter() - started)
