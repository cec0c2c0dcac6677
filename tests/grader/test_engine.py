"""The engine: evaluate (pure), retries and grader errors, prepare, public cases, and the proof
that correct submissions (plain loops; the reference wrapped) pass through the real sandbox."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from grading_support import (
    NUMPY_EXERCISES,
    PLAIN_LOOPS,
    build_reference_submission,
    write_stubs,
)

from grader import engine, registry
from grader.errors import ConfigError, GraderFailure, UnknownExerciseError
from grader.problemset import public_cases
from grader.registry import ExerciseSpec, Mistake
from grader.results import Status
from grader.sandbox.runner import CaseOutcome, RunOutcome
from grader.submission import load_submission


def _exercise(n_cases: int = 3, mistakes=None) -> engine.PreparedExercise:
    cases = tuple(
        engine.PreparedCase(
            inputs={"i": i},
            expected={"out": np.array([1.0, 2.0, float(i)])},
            mistakes=mistakes(i) if mistakes else {},
            label=f"label {i}",
        )
        for i in range(n_cases)
    )
    return engine.PreparedExercise(
        name="demo",
        number="9.9",
        title="demo",
        topic="demo",
        points=3.0,
        function="f",
        harness="call",
        module_hint=None,
        rtol=1e-6,
        atol=1e-8,
        timeout_s=5.0,
        mistake_messages={"doubled": "everything doubled"},
        cases=cases,
    )


def _ok(values) -> CaseOutcome:
    return CaseOutcome(status="ok", outputs={"out": np.asarray(values, dtype=float)}, message="")


def _run(*cases) -> RunOutcome:
    return RunOutcome(cases=tuple(cases), output="printed", wall_s=0.1)


def test_all_cases_pass():
    r = engine.evaluate(_exercise(), _run(_ok([1, 2, 0]), _ok([1, 2, 1]), _ok([1, 2, 2])))
    assert r.status is Status.PASSED and r.score == 3.0 and r.output == "printed"


def test_partial_credit_is_the_fraction_of_cases_passed_and_feedback_names_the_case():
    r = engine.evaluate(_exercise(), _run(_ok([1, 2, 0]), _ok([1, 5, 1]), _ok([1, 2, 2])))
    assert r.status is Status.FAILED
    assert r.score == pytest.approx(2.0)
    assert r.feedback.startswith("out[1]: expected 2.0, got 5.0 (1 of 3 values differ)")
    assert "(case 2 of 3: label 1)" in r.feedback and "2 of 3 cases passed" in r.feedback


def test_runtime_status_wins_over_failed_and_keeps_credit_for_earlier_cases():
    timeout = CaseOutcome(status="timeout", outputs=None, message="killed after 5.0 s (time limit)")
    r = engine.evaluate(_exercise(), _run(_ok([1, 2, 0]), _ok([0, 0, 0]), timeout))
    assert r.status is Status.TIMEOUT and r.score == pytest.approx(1.0)


def test_unfilled_stub_is_one_line_not_implemented():
    stub = CaseOutcome(
        status="not_implemented", outputs=None, message="NotImplementedError: Exercise 9.9: f"
    )
    r = engine.evaluate(_exercise(), _run(stub, stub, stub))
    assert r.status is Status.NOT_IMPLEMENTED and r.score == 0
    assert r.feedback == "NotImplementedError: Exercise 9.9: f"


def test_mistake_named_only_when_every_failing_case_matches_it():
    def doubled(i):
        return {"doubled": {"out": 2 * np.array([1.0, 2.0, float(i)])}}

    ex = _exercise(mistakes=doubled)
    r = engine.evaluate(ex, _run(_ok([2, 4, 0]), _ok([2, 4, 2]), _ok([2, 4, 4])))
    assert r.mistake == "doubled" and "Known mistake: everything doubled" in r.feedback
    r = engine.evaluate(ex, _run(_ok([2, 4, 0]), _ok([9, 9, 9]), _ok([2, 4, 4])))
    assert r.mistake is None and "Known mistake" not in r.feedback


def test_mistake_not_named_when_a_passed_case_would_have_shown_it():
    def doubled_where_visible(i):
        # the third case cannot show the mistake (the doubled output equals the right one)
        return {"doubled": {"out": 2 * np.array([1.0, 2.0, float(i)])}} if i < 2 else {}

    ex = _exercise(mistakes=doubled_where_visible)
    r = engine.evaluate(ex, _run(_ok([2, 4, 0]), _ok([2, 4, 2]), _ok([1, 2, 2])))
    assert r.mistake == "doubled" and "Known mistake: everything doubled" in r.feedback
    # the same two failures, but now the passed third case would have shown the mistake
    ex = _exercise(mistakes=lambda i: {"doubled": {"out": 2 * np.array([1.0, 2.0, float(i)])}})
    r = engine.evaluate(ex, _run(_ok([2, 4, 0]), _ok([2, 4, 2]), _ok([1, 2, 2])))
    assert r.mistake is None and "Known mistake" not in r.feedback


def test_mistakes_that_coincide_are_all_named_and_none_as_sure():
    def two(i):
        wrong = {"out": 2 * np.array([1.0, 2.0, float(i)])}
        return {"doubled": wrong, "added": {"out": wrong["out"].copy()}}

    ex = _exercise(mistakes=two)
    ex = engine.PreparedExercise(
        **{
            **ex.__dict__,
            "mistake_messages": {"doubled": "everything doubled", "added": "x added to itself"},
        }
    )
    r = engine.evaluate(ex, _run(_ok([2, 4, 0]), _ok([2, 4, 2]), _ok([2, 4, 4])))
    assert r.mistake is None and r.possible_mistakes == ("doubled", "added")
    assert "Known mistake:" not in r.feedback
    assert "everything doubled" in r.feedback and "x added to itself" in r.feedback
    assert "cannot tell apart" in r.feedback


def test_a_case_that_raised_is_shown_with_its_place_even_after_a_wrong_case():
    error = CaseOutcome(
        status="error",
        outputs=None,
        message="ValueError in f (layers.py, line 12): stride 3 is not supported",
    )
    r = engine.evaluate(_exercise(), _run(_ok([1, 5, 0]), _ok([1, 2, 1]), error))
    assert r.status is Status.ERROR
    assert r.feedback.startswith(
        "ValueError in f (layers.py, line 12): stride 3 is not supported (case 3 of 3: label 2)"
    )
    assert "Also wrong: out[1]: expected 2.0, got 5.0" in r.feedback
    assert "1 of 3 cases passed" in r.feedback


def test_wrong_number_of_case_results_is_a_grader_failure():
    with pytest.raises(GraderFailure):
        engine.evaluate(_exercise(), _run(_ok([1, 2, 0])))


class FlakyRunner:
    def __init__(self, failures: int):
        self.failures, self.calls = failures, 0

    def run(self, submission, **kwargs):
        self.calls += 1
        if self.calls <= self.failures:
            raise GraderFailure("fork server died")
        return _run(*[_ok([1, 2, i]) for i in range(3)])


def test_grader_failure_is_retried_once_then_reported_without_a_score():
    r = engine.run_exercise(FlakyRunner(1), None, _exercise())
    assert r.status is Status.PASSED
    runner = FlakyRunner(5)
    r = engine.run_exercise(runner, None, _exercise())
    assert runner.calls == 2
    assert r.status is Status.GRADER_ERROR and "fork server died" in r.feedback


def test_a_crashing_reference_becomes_grader_error():
    def boom(case):
        raise ZeroDivisionError("reference bug")

    spec = ExerciseSpec(
        name="broken",
        number="0.0",
        topic="x",
        title="t",
        points=1,
        function="f",
        harness="call",
        make_cases=lambda rng: [{"a": 1}],
        reference=boom,
    )
    [item] = engine.prepare_all([spec], 1)
    assert item.status is Status.GRADER_ERROR and "reference bug" in item.feedback
    spec2 = ExerciseSpec(
        name="broken2",
        number="0.0",
        topic="x",
        title="t",
        points=1,
        function="f",
        harness="call",
        make_cases=lambda rng: [{"a": 1}],
        reference=lambda c: {"out": np.asarray(1)},
        mistakes=(Mistake("m", "msg", boom),),
    )
    with pytest.raises(GraderFailure, match="known mistake 'm'"):
        engine.prepare(spec2, 1)


def test_prepare_keeps_inputs_pristine_and_drops_invisible_mistakes():
    spec = registry.get("maxpool2d_backward")
    a, b = engine.prepare(spec, 3), engine.prepare(spec, 3)
    for ca, cb in zip(a.cases, b.cases, strict=True):
        np.testing.assert_array_equal(ca.inputs["x"], cb.inputs["x"])
    # batch-of-one cases cannot show an averaged dw: the mistake is absent there
    conv = engine.prepare(registry.get("conv2d_backward"), 3)
    for case in conv.cases:
        if case.inputs["x"].shape[0] == 1:
            assert "dw_averaged_over_batch" not in case.mistakes


def test_seed_validation():
    with pytest.raises(ConfigError):
        engine.check_seed(-1)
    with pytest.raises(ConfigError):
        engine.check_seed(2**31)
    assert 0 <= engine.fresh_seed() < engine.MAX_SEED


def test_public_cases_round_trip_and_grade_without_the_reference(tmp_path):
    specs = [registry.get(n) for n in ("conv_output_size", "maxpool2d_backward", "receptive_field")]
    prepared = [engine.prepare(s, 77) for s in specs]
    public_cases.save_prepared(tmp_path / "cases", prepared, seed=77)
    seed, loaded = public_cases.load_prepared(tmp_path / "cases")
    assert seed == 77 and [p.name for p in loaded] == [p.name for p in prepared]
    for p, q in zip(prepared, loaded, strict=True):
        assert p.mistake_messages == q.mistake_messages
        for a, b in zip(p.cases, q.cases, strict=True):
            assert a.label == b.label and set(a.mistakes) == set(b.mistakes)
            for k, v in a.inputs.items():
                if isinstance(v, np.ndarray):
                    np.testing.assert_array_equal(v, b.inputs[k])
                else:
                    assert v == b.inputs[k] and type(v) is type(b.inputs[k])
            for k in a.expected:
                np.testing.assert_array_equal(a.expected[k], b.expected[k])
    r = engine.grade(PLAIN_LOOPS, cases_dir=tmp_path / "cases", in_process=True)
    assert r.seed == 77 and r.all_passed and len(r.exercises) == 3
    with pytest.raises(ConfigError, match="seed 77"):
        engine.grade(PLAIN_LOOPS, seed=5, cases_dir=tmp_path / "cases", in_process=True)
    with pytest.raises(UnknownExerciseError, match="Did you mean 'receptive_field'"):
        engine.grade(PLAIN_LOOPS, exercises=["receptive_feld"], cases_dir=tmp_path / "cases")
    with pytest.raises(ConfigError, match="no check cases"):
        public_cases.load_prepared(tmp_path / "nothing")
    (tmp_path / "cases" / "maxpool2d_backward.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="damaged"):
        public_cases.load_prepared(tmp_path / "cases")


def test_unknown_exercise_has_did_you_mean():
    with pytest.raises(UnknownExerciseError, match="Did you mean 'maxpool2d_backward'"):
        engine.grade(PLAIN_LOOPS, exercises=["maxpool2d_backwards"], in_process=True)


@pytest.mark.slow
def test_plain_loops_and_wrapped_reference_pass_everything_in_the_sandbox(tmp_path):
    reference = build_reference_submission(tmp_path)
    for folder in (PLAIN_LOOPS, reference):
        for seed in (0, 2026):
            r = engine.grade(folder, seed=seed, exercises=list(NUMPY_EXERCISES))
            bad = [(x.name, x.status.value, x.feedback) for x in r.exercises if not x.passed]
            assert not bad, (folder.name, seed, bad)
            assert (
                r.score == r.max_score == sum(s.points for s in map(registry.get, NUMPY_EXERCISES))
            )


@pytest.mark.slow
def test_unfilled_stubs_are_not_implemented_in_the_sandbox(tmp_path):
    stubs = write_stubs(tmp_path / "stubs")
    r = engine.grade(stubs, seed=1, exercises=list(NUMPY_EXERCISES))
    for x in r.exercises:
        assert x.status is Status.NOT_IMPLEMENTED and x.score == 0, (x.name, x.feedback)
        assert "\n" not in x.feedback and "Exercise" in x.feedback


def test_in_process_runner_matches_sandbox_contract():
    sub = load_submission(PLAIN_LOOPS)
    with engine.InProcessRunner() as runner:
        out = runner.run(
            sub,
            harness="call",
            function="dense_params",
            cases=[{"in_features": 3, "out_features": 2}],
        )
        missing = runner.run(sub, harness="call", function="nope", cases=[{}])
        with pytest.raises(GraderFailure):
            runner.run(sub, harness="no_such_harness", function="f", cases=[{}])
    assert out.cases[0].status == "ok" and int(out.cases[0].outputs["out"]) == 8
    assert missing.cases[0].status == "error" and "nope" in missing.cases[0].message


def test_a_sandbox_for_numpy_exercises_does_not_preload_torch(monkeypatch):
    """Start-up: the fork server imports torch only when a torch harness will run (about 5 s
    of a `cnnlab grade -e conv_output_size` otherwise)."""
    from grader import registry
    from grader.sandbox import runner

    made = []

    class Recording(runner.Sandbox):
        def __init__(self, *args, **kwargs):
            made.append((kwargs.get("preload_torch", True), kwargs.get("preload_optimizer", True)))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(runner, "Sandbox", Recording)
    submission = load_submission(Path(__file__).resolve().parents[2] / "solutions" / "shapes.py")
    for names, wanted in (
        (["conv_output_size"], (False, False)),
        (["freeze"], (True, False)),
        (["freeze", "discriminative_param_groups"], (True, True)),
    ):
        prepared = engine.prepare_all(registry.select(names), 3)
        engine.grade_prepared(submission, prepared, seed=3)
        assert made[-1] == wanted, names
