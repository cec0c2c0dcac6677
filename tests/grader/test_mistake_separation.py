"""Known mistakes never stand in for each other.

For every exercise and several seeds, a student who makes exactly one known mistake (their
outputs are that mistake's on every case where it shows, the right ones elsewhere) gets that
mistake named, alone: the cases separate every pair of mistakes, so no case lets two of them
coincide while one is named as if it were sure. (When cases cannot separate two mistakes,
the engine names both as possibilities: tests/grader/test_engine.py.)
"""

from __future__ import annotations

import json

import pytest

from grader import engine, registry
from grader.results import Status
from grader.sandbox.harness import text_array
from grader.sandbox.harness_torch import unpack_state
from grader.sandbox.runner import CaseOutcome, RunOutcome

SEEDS = (0, 1, 2026)
WITH_MISTAKES = [s for s in registry.all_specs() if s.mistakes]


def _student_with(prepared: engine.PreparedExercise, slug: str) -> RunOutcome:
    """What a student who makes only mistake ``slug`` returns on every case."""
    outcomes = []
    for case in prepared.cases:
        outputs = dict(case.expected)
        produced = case.mistakes.get(slug)
        if produced is not None:
            error = produced.get("forward_error")
            # a block whose forward pass raised returns its error instead of values
            outputs = dict(produced) if error is not None and error.size else outputs | produced
        if "state" in case.inputs:  # a block reports its entries' names (the reference's here)
            names = [(k, list(v.shape)) for k, v in unpack_state(case.inputs["state"])]
            outputs["state_names"] = text_array(json.dumps(names), 16000)
        outcomes.append(CaseOutcome(status="ok", outputs=outputs, message=""))
    return RunOutcome(cases=tuple(outcomes), output="", wall_s=0.0)


@pytest.fixture(scope="module", params=SEEDS)
def prepared(request) -> dict[str, engine.PreparedExercise]:
    return {s.name: engine.prepare(s, request.param) for s in WITH_MISTAKES}


@pytest.mark.parametrize("spec", WITH_MISTAKES, ids=lambda s: s.name)
def test_each_known_mistake_is_named_alone(spec, prepared):
    item = prepared[spec.name]
    for mistake in spec.mistakes:
        assert any(mistake.name in c.mistakes for c in item.cases), (
            f"{mistake.name} cannot show on any case"
        )
        result = engine.evaluate(item, _student_with(item, mistake.name))
        assert result.status in (Status.FAILED, Status.ERROR)
        assert result.possible_mistakes == (), (
            f"{spec.name}: {mistake.name} coincides with another known mistake on every "
            f"case: {result.possible_mistakes}"
        )
        assert result.mistake == mistake.name, (spec.name, mistake.name, result.feedback)
        others = [m.message for m in spec.mistakes if m.name != mistake.name]
        assert not any(message in result.feedback for message in others)


def test_the_simulated_student_without_mistakes_passes(prepared):
    # the simulation itself can fail: with no mistake it must give full marks
    for spec in WITH_MISTAKES:
        item = prepared[spec.name]
        result = engine.evaluate(item, _student_with(item, "no such mistake"))
        assert result.status is Status.PASSED, (spec.name, result.feedback)
