"""Report hygiene (SECURITY.md case 38, issue 10.4/10.12): student output with NUL, CR LF,
ANSI escapes, C1 controls and lone surrogates, or a flood of it, never breaks a report.

Layer that stops it: grader.sanitize, applied by every renderer (grader.render) and by the
class reports (grader.classroom)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
import xml.parsers.expat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grader import render
from grader.results import Result, Status, SubmissionResult
from grader.sanitize import (
    CUT_MARKER,
    clean_text,
    csv_cell,
    fit_json,
    md_code_block,
    md_text,
    truncate,
)

NASTY = (
    "ok\x00nul\r\nwindows\rold-mac\x1b[31mred\x1b[0m\x1b]52;c;cGF3bmVk\x07clip"
    "\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\\x9bmC1\x85nel\ud800lone\ufffeend\x07bell"
    "\x7fdel\x1bPdcs\x1b\\[red]markup[/red]"
)
ANY_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=200)


def _result(output: str, feedback: str = "boom", student: str | None = None) -> SubmissionResult:
    return SubmissionResult(
        seed=3,
        source="sub/",
        student=student,
        exercises=(
            Result("conv_output_size", 0.0, 2.0, Status.ERROR, feedback, output=output),
            Result("dense_params", 1.0, 1.0, Status.PASSED, "all passed", output=output),
        ),
    )


def _no_controls(text: str) -> None:
    assert not any(ord(c) < 0x20 and c not in "\t\n" for c in text), repr(text)
    assert "\x7f" not in text and "\ufffe" not in text
    assert not any(0x80 <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF for c in text)


def test_clean_text_removes_escapes_and_shows_controls():
    text = clean_text(NASTY)
    _no_controls(text)
    assert "\x1b" not in text and "cGF3bmVk" not in text  # the OSC 52 clipboard write is gone
    assert "ok␀nul\nwindows\nold-mac" in text and "red" in text and "bell" in text
    assert "[red]markup[/red]" in text  # plain text: left for the renderer to not interpret
    assert clean_text(b"bytes\xff\x00") == "bytes\ufffd␀"


def test_clean_text_shows_bidi_overrides_and_zero_width_spaces():
    """Trojan Source (CVE-2021-42574): an id ``x<RLO>yxz.gpj`` shows as ``xjpg.zxy``."""
    assert clean_text("x\u202eyxz.gpj") == "x<U+202E>yxz.gpj"
    assert clean_text("a\u2066b\u2069c\u200bd\ufeff") == "a<U+2066>b<U+2069>c<U+200B>d<U+FEFF>"
    assert csv_cell("\u200f=1+1") == "<U+200F>=1+1"
    assert clean_text("می\u200cخواهم") == "می\u200cخواهم"  # Persian needs the ZWNJ


@given(ANY_TEXT)
def test_clean_text_is_always_valid_xml_and_strict_json(text):
    cleaned = clean_text(text)
    cleaned.encode("utf-8")  # no lone surrogates
    element = ET.Element("e", {"a": cleaned})
    element.text = cleaned
    parsed = ET.fromstring(ET.tostring(element, encoding="unicode"))
    assert parsed.text in (cleaned, None if cleaned == "" else cleaned)
    assert json.loads(json.dumps(cleaned, ensure_ascii=False)) == cleaned


def test_truncate_keeps_both_ends_and_says_how_much_was_cut():
    text = "A" * 5000 + "TAIL"
    cut = truncate(text, 1000)
    assert len(cut) <= 1000 and cut.startswith("AAAA") and cut.endswith("TAIL")
    assert "characters cut" in cut
    emoji = "😀" * 1000
    cut = truncate(emoji, 401, unit="bytes")
    assert len(cut.encode("utf-8")) <= 401 and "bytes cut" in cut
    assert truncate("short", 10) == "short"


def test_fit_json_shrinks_the_longest_strings_and_stays_valid():
    doc = {"a": "x" * 200_000, "b": ["y" * 50_000, 3], "c": 1.5}
    fitted = fit_json(doc, 20_000)
    text = json.dumps(fitted, indent=2, ensure_ascii=False)
    assert len(text.encode()) <= 20_000
    assert fitted["b"][1] == 3 and fitted["c"] == 1.5
    assert CUT_MARKER.split("{")[0].strip() in fitted["a"]


def test_gradescope_results_clean_and_within_budget():
    flood = NASTY + "spam line\n" * 500_000  # 5 MB of printed output
    result = _result(flood, feedback="ValueError: \x1b[2J<script>x</script>")
    text = render.gradescope_json(result)
    assert len(text.encode("utf-8")) <= render.GRADESCOPE_MAX_BYTES
    doc = json.loads(text)
    for test in doc["tests"]:
        _no_controls(test["output"])
        assert test["output_format"] == "text" and "characters cut" in test["output"]
    assert doc["output_format"] == doc["test_output_format"] == "text"
    assert "seed" not in text.lower()  # students see this file
    small = json.loads(render.gradescope_json(result, max_bytes=30_000))
    assert len(json.dumps(small, indent=2, ensure_ascii=False).encode()) <= 30_000
    assert small["tests"][0]["score"] == 0.0 and small["tests"][1]["score"] == 1.0


def test_junit_xml_is_valid_xml_1_0_with_student_controls():
    xml_text = render.junit_xml(_result(NASTY, feedback=NASTY, student="s\x00\x1b[1m1"))
    parser = xml.parsers.expat.ParserCreate()
    parser.Parse(xml_text.encode("utf-8"), True)  # raises on any character XML 1.0 forbids
    suite = ET.fromstring(xml_text).find("testsuite")
    assert suite is not None and "\x00" not in suite.get("name")
    assert "ok␀nul" in suite.find("testcase").find("system-out").text


def test_json_report_is_strict_json_without_controls():
    text = render.json_report(_result(NASTY, feedback=NASTY))
    text.encode("utf-8")
    doc = json.loads(text)
    _no_controls(doc["exercises"][0]["output"])
    _no_controls(doc["exercises"][0]["feedback"])


def test_terminal_table_shows_markup_and_escapes_as_text():
    text = render.table_text(_result("", feedback="[bold red]FAKE PASS[/bold red]\x1b[2J"))
    assert "\x1b" not in text
    assert "[bold red]" in text  # printed literally, not interpreted as rich markup


@pytest.mark.parametrize(
    "value,expected",
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\r=1", "'\n=1"),
        ("\n=1", "'\n=1"),
        ("＝1+1", "'＝1+1"),
        ("'quoted", "''quoted"),
        ("alice", "alice"),
        (3.5, 3.5),
        (None, None),
    ],
)
def test_csv_cell_escapes_formulas_as_owasp_advises(value, expected):
    assert csv_cell(value) == expected


def test_markdown_helpers_cannot_be_broken_out_of():
    block = md_code_block("``` \n[click](http://evil)\n````\n<img src=x>")
    fence = block.splitlines()[0].removesuffix("text")
    assert set(fence) == {"`"} and len(fence) == 5
    assert block.endswith("\n" + fence)
    escaped = md_text("# Title [x](http://evil) <b>*hi*</b>\x00")
    assert escaped.startswith("\\# Title \\[x\\]\\(http") and "\\<b\\>\\*hi\\*" in escaped
    assert "␀" in escaped
