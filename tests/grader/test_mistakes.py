"""Known mistakes: each is detectable on the seed's cases, and a submission that makes it
gets its message (in-process for every seed below, and once through the real sandbox)."""

from __future__ import annotations

import pytest
from grading_support import (
    NUMPY_EXERCISES,
    PLAIN_LOOPS,
    build_mistake_submission,
    mistake_snippets,
    numpy_specs,
)

from grader import engine, registry
from grader.compare import outputs_match
from grader.results import Status

SEEDS = (0, 1, 2026, 31337)
SNIPPETS = mistake_snippets()


def test_every_known_mistake_has_a_fixture_submission():
    declared = {(s.name, m.name) for s in numpy_specs() for m in s.mistakes}
    fixtures = {(exercise, slug) for exercise, slug, _ in SNIPPETS}
    assert declared == fixtures


def test_at_least_two_mistakes_per_exercise_and_the_issue_list_is_covered():
    for spec in numpy_specs():
        assert len(spec.mistakes) >= 2, spec.name
    slugs = {(s.name, m.name) for s in numpy_specs() for m in s.mistakes}
    for wanted in [
        ("conv2d_forward", "bias_forgotten"),
        ("conv2d_params", "input_channels_forgotten"),
        ("conv_output_size", "ceil_instead_of_floor"),
        ("conv_output_size", "dilation_ignored"),
        ("conv_output_size", "padding_counted_once"),
        ("maxpool2d_backward", "gradient_to_every_element"),
        ("maxpool2d_backward", "overlap_overwritten"),
        ("maxpool2d_backward", "ties_to_last_maximum"),
        ("maxpool2d_backward", "ties_to_all_maxima"),
        ("conv2d_backward", "dw_not_summed_over_batch"),
        ("dense_backward", "db_forgotten"),
        ("dense_backward", "weight_transposed"),
        ("receptive_field", "jump_ignored"),
    ]:
        assert wanted in slugs


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("spec", numpy_specs(), ids=lambda s: s.name)
def test_each_mistake_differs_from_the_reference_on_some_case(spec, seed):
    prepared = engine.prepare(spec, seed)
    for mistake in spec.mistakes:
        visible = [c for c in prepared.cases if mistake.name in c.mistakes]
        assert visible, f"{mistake.name} cannot be told apart from the reference at seed {seed}"
        for case in visible:
            subset = {k: case.expected[k] for k in case.mistakes[mistake.name]}
            assert not outputs_match(
                subset, case.mistakes[mistake.name], rtol=spec.rtol, atol=spec.atol
            )


def test_correct_submission_matches_no_mistake(tmp_path):
    result = engine.grade(PLAIN_LOOPS, seed=4, exercises=list(NUMPY_EXERCISES), in_process=True)
    assert all(r.passed and r.mistake is None for r in result.exercises)


@pytest.mark.parametrize("seed", SEEDS[:2])
@pytest.mark.parametrize(
    "exercise,slug,snippet", SNIPPETS, ids=[f"{e}-{s}" for e, s, _ in SNIPPETS]
)
def test_a_submission_making_the_mistake_gets_its_message(tmp_path, exercise, slug, snippet, seed):
    folder = build_mistake_submission(tmp_path, exercise, snippet)
    result = engine.grade(folder, seed=seed, exercises=[exercise], in_process=True).exercises[0]
    message = registry.get(exercise)
    message = {m.name: m.message for m in message.mistakes}[slug]
    assert result.mistake == slug, result.feedback
    assert message in result.feedback
    assert result.status in (Status.FAILED, Status.ERROR)  # ERROR: a shape error on other cases
    assert result.score < result.max_score


@pytest.mark.slow
def test_mistake_messages_through_the_real_sandbox(tmp_path):
    from grader.sandbox.runner import Sandbox
    from grader.submission import load_submission

    with Sandbox() as sandbox:
        for exercise, slug, snippet in SNIPPETS:
            folder = build_mistake_submission(tmp_path, exercise, snippet)
            prepared = [engine.prepare(registry.get(exercise), 2026)]
            result = engine.grade_prepared(
                load_submission(folder), prepared, seed=2026, sandbox=sandbox
            ).exercises[0]
            assert result.mistake == slug, (exercise, slug, result.status, result.feedback)
