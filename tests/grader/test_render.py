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
