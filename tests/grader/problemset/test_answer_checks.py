"""Numeric questions checked in the student bundle without shipping their answers: salted
scrypt digests (grader.answers), saved by public_cases.save_answer_checks and graded by the
``answer_check`` scorer; float answers keep a tolerance through a canonical rounded form."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from grader import answers, engine, registry
from grader.compare import answer_check
from grader.problemset import public_cases
from grader.problemset.generate import render_problem_set
from grader.results import Status
from grader.submission import load_submission

SEED = 2026
CHEAP = {"n": 2**10, "r": 8, "p": 1}  # the same code path, fast enough for many checks
QUESTIONS = [s for s in registry.all_specs() if "question" in s.tags]


@pytest.fixture(scope="module")
def checks(tmp_path_factory) -> tuple[Path, list[engine.PreparedExercise]]:
    folder = tmp_path_factory.mktemp("cases")
    asked = [engine.prepare(s, SEED) for s in QUESTIONS]
    public_cases.save_answer_checks(folder, asked, cost=CHEAP)
    return folder, asked


def _answers_module(tmp: Path, values: dict[str, object]) -> Path:
    folder = tmp / "sub"
    folder.mkdir()
    body = "".join(f"def {name}():\n    return {value!r}\n\n\n" for name, value in values.items())
    (folder / "questions.py").write_text(body)
    return folder


def test_the_default_cost_is_slow_on_purpose():
    assert answers.DEFAULT_COST["n"] >= 2**15 and answers.DEFAULT_COST["r"] >= 8
    started = time.perf_counter()
    answers.digest("3216", b"0123456789abcdef")
    assert time.perf_counter() - started > 0.01  # a real KDF, not a plain hash


def test_the_file_holds_digests_and_never_an_answer(checks):
    folder, asked = checks
    document = json.loads((folder / public_cases.ANSWERS).read_text())
    assert document["kdf"] == "scrypt" and document["cost"] == CHEAP

    def numbers(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key not in ("cost", "points", "rtol", "atol", "timeout_s"):
                    yield from numbers(value)
        elif isinstance(node, list):
            for value in node:
                yield from numbers(value)
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            yield node

    shipped = set(numbers(document["questions"]))
    for q in asked:
        (case,) = q.cases
        assert int(case.expected["answer"]) not in shipped, q.name
        for outputs in case.mistakes.values():
            assert int(outputs["answer"]) not in shipped
    salts = [e["salt"] for e in document["questions"]]
    assert len(set(salts)) == len(salts)  # one salt per question


def test_right_answers_pass_and_known_mistakes_are_named(checks, tmp_path):
    folder, asked = checks
    loaded = public_cases.load_answer_checks(folder)
    right = {q.name: int(q.cases[0].expected["answer"]) for q in asked}
    mistaken = {}
    for q in asked:
        slug, outputs = next(iter(q.cases[0].mistakes.items()))
        mistaken[q.name] = (slug, int(outputs["answer"]))
    values = dict(right)
    values["q1_conv_layer_params"] = float(right["q1_conv_layer_params"])  # 3216.0 is fine
    values["q2_output_size"] = mistaken["q2_output_size"][1]
    values["q7_dense_params"] = right["q7_dense_params"] + 1  # wrong, no known mistake
    values["q5_separable_macs"] = right["q5_separable_macs"] + 0.5  # not a whole number
    sub = load_submission(_answers_module(tmp_path, values))
    result = engine.grade_prepared(sub, loaded, seed=SEED, in_process=True)
    by_name = {r.name: r for r in result.exercises}
    for name in right:
        if name not in ("q2_output_size", "q7_dense_params", "q5_separable_macs"):
            assert by_name[name].status is Status.PASSED, (name, by_name[name].feedback)
    q2 = by_name["q2_output_size"]
    slug = mistaken["q2_output_size"][0]
    assert q2.status is Status.FAILED and q2.mistake == slug
    (q2_prepared,) = [q for q in asked if q.name == "q2_output_size"]
    assert q2_prepared.mistake_messages[slug] in q2.feedback
    q7 = by_name["q7_dense_params"]
    assert q7.status is Status.FAILED and q7.mistake is None
    assert "not the answer" in q7.feedback and str(right["q7_dense_params"]) not in q7.feedback
    q5 = by_name["q5_separable_macs"]
    assert q5.status is Status.FAILED and "integer" in q5.feedback


def test_a_mistake_named_from_its_digest_gets_its_own_message(checks, tmp_path):
    folder, asked = checks
    (q,) = [q for q in asked if q.name == "q2_output_size"]
    loaded = [p for p in public_cases.load_answer_checks(folder) if p.name == q.name]
    for slug, outputs in q.cases[0].mistakes.items():
        sub_dir = tmp_path / slug
        sub_dir.mkdir()
        sub = load_submission(_answers_module(sub_dir, {q.name: int(outputs["answer"])}))
        (result,) = engine.grade_prepared(sub, loaded, seed=SEED, in_process=True).exercises
        assert result.mistake == slug
        assert q.mistake_messages[slug] in result.feedback


class _Case:
    def __init__(self, hidden):
        self.hidden = hidden


def _float_case(answer: float) -> _Case:
    quantum = answers.float_quantum(answer)
    salt = b"salt-of-a-float-question"
    return _Case(
        {
            "integer": False,
            "quantum": quantum,
            "salt": salt.hex(),
            "digest": answers.digest(answers.reference_text(answer, quantum), salt, CHEAP),
            "mistakes": [
                ("halved", answers.digest(answers.reference_text(answer / 2, quantum), salt, CHEAP))
            ],
            "cost": CHEAP,
        }
    )


@pytest.mark.parametrize("answer", [0.7853981633974483, 123.456789, -2.5e-7, 6.0])
def test_float_answers_keep_a_tolerance_of_about_one_unit_of_the_fourth_digit(answer):
    case = _float_case(answer)
    q = answers.float_quantum(answer)

    def code(x):
        outputs, _ = answer_check({"answer": np.asarray(x, dtype=np.float64)}, case)
        return int(outputs["answer"])

    for x in (answer, answer + 0.49 * q, answer - 0.49 * q, np.float32(answer)):
        assert code(float(x)) == 0, x
    for x in (answer + 1.6 * q, answer - 1.6 * q, answer * 1.01 + q):
        assert code(x) != 0, x
    assert code(answer / 2) == 1  # a known mistake of a float question is still named


def test_public_cases_of_the_bundle_grade_the_generated_solutions(checks, tmp_path):
    folder, asked = checks
    files = render_problem_set(QUESTIONS, seed=SEED, notebooks=False)
    sub_dir = tmp_path / "solutions"
    sub_dir.mkdir()
    (sub_dir / "questions.py").write_text(files["solutions/questions.py"])
    loaded = public_cases.load_answer_checks(folder)
    result = engine.grade_prepared(load_submission(sub_dir), loaded, seed=SEED, in_process=True)
    assert result.all_passed, [r.feedback for r in result.exercises]
