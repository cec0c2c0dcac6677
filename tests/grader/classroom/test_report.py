"""The class report: counts behind the panels, and a PNG that renders for any class."""

from __future__ import annotations

import math
import struct
from types import SimpleNamespace

import pytest

from grader.classroom.gradebook import GRADED, GRADER_ERROR, GradedSubmission
from grader.classroom.report import exercise_stats, mistake_counts, write_report
from grader.registry import Mistake
from grader.results import Result, Status

SPECS = [
    SimpleNamespace(
        name="conv_output_size",
        number="1.1",
        points=2.0,
        mistakes=(Mistake("ceil_instead_of_floor", "used ceil instead of floor", None),),
    ),
    SimpleNamespace(
        name="maxpool2d_backward",
        number="4.2",
        points=4.0,
        mistakes=(Mistake("grad_to_all", "gradient sent to every element", None),),
    ),
]


def _row(student, outcomes, *, status=GRADED):
    results = []
    for spec, (st, mistake) in zip(SPECS, outcomes, strict=True):
        score = spec.points if st is Status.PASSED else 0.0
        results.append(Result(spec.name, score, spec.points, st, "fb", mistake))
    score = None if status == GRADER_ERROR else sum(r.score for r in results)
    return GradedSubmission(
        student=student,
        assignment="cnn",
        status=status,
        score=score,
        max_score=6.0,
        seed=1,
        source="",
        content_hash="",
        config_hash="",
        attempts=1,
        wall_s=0.0,
        message="",
        graded_at="",
        results=tuple(results),
    )


P, F, T, G = Status.PASSED, Status.FAILED, Status.TIMEOUT, Status.GRADER_ERROR
ROWS = [
    _row("a", [(P, None), (P, None)]),
    _row("b", [(F, "ceil_instead_of_floor"), (P, None)]),
    _row("c", [(F, "ceil_instead_of_floor"), (F, "grad_to_all")]),
    _row("d", [(T, None), (G, None)], status=GRADER_ERROR),
]


def test_exercise_stats_counts_outcomes_and_means_without_grader_errors():
    stats = {s.name: s for s in exercise_stats(ROWS, SPECS)}
    conv = stats["conv_output_size"]
    assert conv.label == "1.1 conv_output_size"
    assert conv.counts == {"passed": 1, "failed": 2, "timeout / memory / crash": 1}
    assert conv.mean_fraction == pytest.approx(1 / 4)
    pool = stats["maxpool2d_backward"]
    assert pool.counts == {"passed": 2, "failed": 1, "grader error": 1}
    assert pool.mean_fraction == pytest.approx(2 / 3)  # the grader error is not a 0


def test_mistake_counts_most_frequent_first_with_registry_messages():
    assert mistake_counts(ROWS, SPECS) == [
        ("conv_output_size", "ceil_instead_of_floor", 2, "used ceil instead of floor"),
        ("maxpool2d_backward", "grad_to_all", 1, "gradient sent to every element"),
    ]
    # unknown to the registry: the slug stands in for the message
    assert mistake_counts(ROWS)[0][3] == "ceil_instead_of_floor"


def test_exercise_without_results_has_no_mean():
    (only,) = exercise_stats([], SPECS[:1])
    assert only.counts == {} and math.isnan(only.mean_fraction)


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("rows", [ROWS, ROWS[:1], []], ids=["class", "no-mistakes", "empty"])
def test_write_report_renders_a_png(tmp_path, rows):
    out = write_report(tmp_path / "r" / "report.png", rows, exercises=SPECS, title="cnn")
    width, height = _png_size(out)
    assert width > 800 and height > 500
    assert [p.name for p in out.parent.iterdir()] == ["report.png"]  # no temp file left


def test_report_grows_with_the_number_of_exercises(tmp_path):
    many = [
        SimpleNamespace(name=f"e{i}", number=str(i), points=1.0, mistakes=()) for i in range(30)
    ]
    small = _png_size(write_report(tmp_path / "a.png", ROWS, exercises=SPECS))
    large = _png_size(write_report(tmp_path / "b.png", ROWS, exercises=SPECS + many))
    assert large[1] > small[1]
