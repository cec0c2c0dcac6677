"""Renderers: table, JSON, Gradescope results.json, JUnit XML, atomic report writing."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from grader import render
from grader.errors import ConfigError
from grader.results import Result, Status, SubmissionResult

RESULT = SubmissionResult(
    seed=4242,
    source="exercises/",
    exercises=(
        Result("conv_output_size", 2.0, 2.0, Status.PASSED, "all 6 cases passed"),
        Result(
            "maxpool2d_backward",
            2.4,
            4.0,
            Status.FAILED,
            "dx[0, 0, 1, 0]: expected 2.0, got 1.0 (case 1 of 5: overlapping windows). Known "
            "mistake: overlapping windows overwritten instead of accumulated",
            mistake="overlap_overwritten",
            output="debug print\n",
            wall_s=0.2,
        ),
        Result("conv2d_forward", 0.0, 3.0, Status.NOT_IMPLEMENTED, "NotImplementedError: 3.1"),
        Result("dense_forward", 0.0, 2.0, Status.TIMEOUT, "killed after 10.0 s (time limit)"),
        Result("receptive_field", 0.0, 3.0, Status.GRADER_ERROR, "the grader failed"),
    ),
)


def test_table_shows_rows_total_and_how_to_repeat():
    text = render.table_text(RESULT, width=200)
    for r in RESULT.exercises:
        assert r.name in text
    assert "not implemented" in text and "grader error" in text
    assert "4.4 / 14" in text  # total
    assert "— / 3" in text  # no score for a grader error
    assert "repeat with: cnnlab grade exercises/ --seed 4242" in text
    assert "the grader failed on 1" in text


def test_json_report_has_the_design_fields():
    doc = json.loads(render.json_report(RESULT))
    assert {"score", "max_score", "seed", "exercises"} <= set(doc)
    assert doc["seed"] == 4242 and doc["score"] == pytest.approx(4.4)
    statuses = [e["status"] for e in doc["exercises"]]
    assert statuses == ["passed", "failed", "not_implemented", "timeout", "grader_error"]
    assert all(
        {"name", "score", "max_score", "status", "feedback"} <= set(e) for e in doc["exercises"]
    )


def test_gradescope_schema():
    doc = render.gradescope_results(RESULT)
    assert doc["score"] == pytest.approx(4.4)
    assert len(doc["tests"]) == 5
    for t in doc["tests"]:
        assert set(t) >= {"name", "score", "max_score", "status", "output", "visibility"}
        assert t["status"] in ("passed", "failed")
    assert doc["tests"][0]["status"] == "passed"
    assert doc["tests"][1]["status"] == "failed" and "debug print" in doc["tests"][1]["output"]
    assert "[grader error]" in doc["tests"][4]["output"]


def test_junit_has_one_testcase_per_exercise_with_failure_or_error():
    root = ET.fromstring(render.junit_xml(RESULT).split("\n", 1)[1])
    suite = root.find("testsuite")
    assert suite.get("tests") == "5" and suite.get("failures") == "2" and suite.get("errors") == "2"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == [r.name for r in RESULT.exercises]
    assert cases["conv_output_size"].find("failure") is None
    assert cases["maxpool2d_backward"].find("failure").get("type") == "failed"
    assert cases["maxpool2d_backward"].find("system-out").text == "debug print\n"
    assert cases["dense_forward"].find("error").get("type") == "timeout"
    assert cases["receptive_field"].find("error").get("type") == "grader_error"


def test_write_report_creates_parents_and_replaces_atomically(tmp_path):
    target = tmp_path / "a" / "b" / "results.json"
    render.write_report(target, "one")
    assert target.read_text() == "one"
    render.write_report(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["results.json"]  # no temp left


def test_bad_report_paths_are_refused_and_nothing_is_clobbered(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep me")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        render.check_report_path(blocker / "out.json", "--json")
    with pytest.raises(ConfigError, match="is a folder"):
        render.check_report_path(tmp_path, "--json")
    with pytest.raises(ConfigError, match="cannot write"):
        render.write_report(blocker / "out.json", "x")
    assert blocker.read_text() == "keep me"


# ----------------------------------------------------------------------------- pictures


def _picture_result(name: str = "maxpool2d_backward") -> Result:
    from grader.results import Picture

    expected = ((0, 0, 4, 0, 0), (2, 0, 0, 0, 0), (0, 0, 6, 0, 0), (0, 0, 0, 0, 0), (0, 8, 0, 0, 1))
    received = ((0, 0, 1, 0, 0), (1, 0, 0, 0, 0), (0, 0, 2, 0, 0), (0, 0, 0, 0, 0), (0, 2, 0, 0, 1))
    differs = tuple(
        tuple(e != r for e, r in zip(er, rr, strict=True))
        for er, rr in zip(expected, received, strict=True)
    )
    picture = Picture(
        output="dx",
        index=(0, 0),
        case=1,
        label="the lecture's 5x5 example",
        expected=tuple(tuple(float(v) for v in row) for row in expected),
        received=tuple(tuple(float(v) for v in row) for row in received),
        differs=differs,
    )
    return Result(
        name, 2.4, 4.0, Status.FAILED, "dx[0, 0, 4, 1]: expected 8.0", pictures=(picture,)
    )


def test_pictures_survive_json_and_are_drawn_after_the_table():
    result = _picture_result()
    again = Result.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result
    text = render.table_text(SubmissionResult(seed=1, exercises=(result,)), width=120)
    table_end = text.index("└")
    drawn = text[table_end:]
    assert "dx[0, 0], case 1: the lecture's 5x5 example (cells in [ ] differ)" in drawn
    rows = [line for line in drawn.splitlines() if "│" in line]
    assert rows[0].split("│")[0].split() == ["0", "0", "[4]", "0", "0"]
    assert rows[0].split("│")[1].split() == ["0", "0", "[1]", "0", "0"]
    assert rows[4].split("│")[1].split() == ["0", "[2]", "0", "0", "1"]  # 1 is right: no mark


def test_pictures_in_markdown_mark_the_differing_cells_in_bold():
    lines = render.pictures_markdown(_picture_result(), image="alice/x.png")
    table = [line for line in lines if line.startswith("| ")]
    assert table[1] == "| 0 | 0 | **4** | 0 | 0 |  | 0 | 0 | **1** | 0 | 0 |"
    assert "![maxpool2d_backward: expected and yours, side by side](alice/x.png)" in lines


def test_float_cells_show_enough_digits_to_differ():
    from grader.results import Picture

    picture = Picture(
        "out", (), 2, "", ((0.12345678, 1.0),), ((0.12349999, 1.0),), ((True, False),)
    )
    (row,) = [line for line in render.picture_lines(picture, color=False) if "│" in line]
    left, right = (side.split() for side in str(row).split("│"))
    assert left[0] != right[0] and left[0].startswith("[0.1234") and right[0].startswith("[0.1235")


def test_saliency_pictures_become_a_png_in_the_feedback_folder(tmp_path):
    result = _picture_result("saliency_map")
    written = render.write_picture_files(tmp_path / "alice", [result, _picture_result()])
    assert written == {"saliency_map": "alice/saliency_map.png"}  # only image exercises
    data = (tmp_path / "alice" / "saliency_map.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    assert render.picture_png(Result("x", 0, 1, Status.FAILED, "no pictures")) is None


def test_the_per_student_feedback_file_shows_pictures_and_links_the_saliency_png(tmp_path):
    from grader.classroom.batch import feedback_path, write_feedback
    from grader.classroom.gradebook import GRADED, GradedSubmission

    row = GradedSubmission(
        student="alice",
        assignment="hw1",
        status=GRADED,
        score=4.8,
        max_score=8.0,
        seed=3,
        source="alice/",
        content_hash="h",
        config_hash="c",
        attempts=1,
        wall_s=1.0,
        message="",
        graded_at="2026-01-01T00:00:00+00:00",
        results=(_picture_result(), _picture_result("saliency_map")),
    )
    written = write_feedback(tmp_path, row)
    assert written == feedback_path(tmp_path, row)
    text = written.read_text()
    assert "| 0 | 0 | **4** | 0 | 0 |  | 0 | 0 | **1** | 0 | 0 |" in text
    assert "](alice/saliency_map.png)" in text
    assert (written.parent / "alice" / "saliency_map.png").read_bytes()[:4] == b"\x89PNG"
