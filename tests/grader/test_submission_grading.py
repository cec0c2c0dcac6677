"""Submissions as students save them, graded through the real sandbox: an exercise runs only
the modules it needs, a missing function gets a "did you mean" (and does not zero what only
uses it), undecodable files are named, renamed and damaged notebooks are graded by what they
define, and a notebook runs the cells the answers need, never its test cells."""

from __future__ import annotations

import base64
import functools
import json
import shutil
from pathlib import Path

import pytest

from grader import engine, registry
from grader.results import Status
from grader.sandbox import Sandbox
from grader.submission import load_submission

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = ROOT / "solutions"
NOTEBOOKS = SOLUTIONS / "notebooks"
SEED = 4242


@pytest.fixture(scope="module")
def box():
    with Sandbox() as sandbox:
        sandbox.start()  # so that a run's wall time is the run's
        yield sandbox


@functools.cache
def prepared(name: str) -> engine.PreparedExercise:
    return engine.prepare(registry.get(name), SEED)


def grade(box, path: Path, *names: str):
    """``{exercise: Result}`` and the submission's output, through the sandbox."""
    submission = load_submission(path)
    result = engine.grade_prepared(submission, [prepared(n) for n in names], seed=SEED, sandbox=box)
    return {r.name: r for r in result.exercises}


def copy_solutions(dest: Path, *modules: str) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for module in modules:
        shutil.copy(SOLUTIONS / f"{module}.py", dest / f"{module}.py")
    return dest


def notebook(path: Path, cells: list[dict]) -> Path:
    doc = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def code(source: str, *, count: int | None = None, meta: dict | None = None, outputs=None):
    return {
        "cell_type": "code",
        "metadata": meta or {},
        "source": source,
        "outputs": outputs or [],
        "execution_count": count,
    }


# -- an exercise depends only on the modules it needs ---------------------------------------


def test_a_module_that_loops_at_import_costs_only_its_own_exercises(box, tmp_path):
    sub = copy_solutions(tmp_path / "sub", "receptive", "shapes")
    (sub / "pooling.py").write_text(
        (SOLUTIONS / "pooling.py").read_text()
        + "\nwhile True:  # an experiment left running at import\n    pass\n"
    )
    results = grade(box, sub, "receptive_field", "conv_output_size")
    assert results["receptive_field"].status is Status.PASSED, results["receptive_field"]
    assert results["conv_output_size"].status is Status.PASSED
    assert results["receptive_field"].wall_s < 5  # nothing waited for pooling.py's loop
    looping = grade(box, sub, "maxpool2d_forward")["maxpool2d_forward"]
    assert looping.status is Status.TIMEOUT


def test_a_renamed_forward_gets_did_you_mean_and_the_backward_still_counts(box, tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    source = (SOLUTIONS / "pooling.py").read_text()
    assert "def maxpool2d_forward(" in source
    (sub / "pooling.py").write_text(
        source.replace("def maxpool2d_forward(", "def maxpool_forward(")
    )
    results = grade(box, sub, "maxpool2d_forward", "maxpool2d_backward")
    forward, backward = results["maxpool2d_forward"], results["maxpool2d_backward"]
    assert forward.status is Status.ERROR and forward.score == 0
    assert "no function named 'maxpool2d_forward'" in forward.feedback
    assert "did you mean 'maxpool_forward' (in pooling.py)?" in forward.feedback
    assert backward.status is Status.PASSED, backward  # its cache came from maxpool_forward
    assert "maxpool_forward (pooling.py) was used in its place" in backward.output


def test_a_missing_function_with_nothing_alike_lists_the_files(box, tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "pooling.py").write_text("def helper():\n    return 1\n")
    results = grade(box, sub, "maxpool2d_forward", "maxpool2d_backward")
    for result in results.values():
        assert result.status is Status.ERROR
        assert "(your files: pooling.py); define it with exactly this name" in result.feedback
    # the backward needs the forward and gets no stand-in that does not look like it
    assert "no function named 'maxpool2d_forward'" in results["maxpool2d_backward"].feedback


def test_a_utf16_source_file_is_named_and_the_rest_is_graded(box, tmp_path):
    sub = copy_solutions(tmp_path / "sub", "shapes")
    text = (SOLUTIONS / "layers.py").read_text()
    (sub / "layers.py").write_bytes(text.encode("utf-16"))  # with a BOM, as Notepad saves it
    results = grade(box, sub, "conv2d_forward", "conv_output_size")
    assert results["conv_output_size"].status is Status.PASSED
    broken = results["conv2d_forward"]
    assert broken.status is Status.ERROR
    assert "layers.py is saved as UTF-16, which Python cannot import" in broken.feedback
    assert "save it as UTF-8" in broken.feedback


# -- notebooks as students save them -------------------------------------------------------


def test_renamed_notebook_copies_are_graded_by_what_they_define(box, tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    shutil.copy(NOTEBOOKS / "pooling.ipynb", sub / "pooling (1).ipynb")
    shutil.copy(NOTEBOOKS / "shapes.ipynb", sub / "shapes-Copy1.ipynb")
    shutil.copy(NOTEBOOKS / "layers.ipynb", sub / "jdoe_layers.ipynb")
    shutil.copy(NOTEBOOKS / "pooling.ipynb", sub / "pooling.ipynb")  # and the original too
    loaded = load_submission(sub)
    assert sorted(loaded.modules) == ["jdoe_layers", "pooling", "pooling_1", "shapes_Copy1"]
    results = grade(
        box, sub, "maxpool2d_forward", "maxpool2d_backward", "conv_output_size", "conv2d_forward"
    )
    assert all(r.status is Status.PASSED for r in results.values()), results


def test_a_truncated_notebook_of_nine_costs_only_its_own_exercises(box, tmp_path):
    sub = tmp_path / "sub"
    shutil.copytree(NOTEBOOKS, sub)
    assert len(list(sub.glob("*.ipynb"))) == 9
    damaged = sub / "pooling.ipynb"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # cut off
    loaded = load_submission(sub)
    assert len(loaded.modules) == 8
    assert [p[0] for p in loaded.problems] == ["pooling.ipynb"]
    assert any("not graded pooling.ipynb" in line for line in loaded.summary())
    results = grade(box, sub, "conv_output_size", "receptive_field", "maxpool2d_forward")
    assert results["conv_output_size"].status is Status.PASSED
    assert results["receptive_field"].status is Status.PASSED
    lost = results["maxpool2d_forward"]
    assert lost.status is Status.ERROR
    assert "pooling.ipynb could not be read" in lost.feedback
    assert "not a valid notebook" in lost.feedback


def test_a_notebook_with_megabytes_of_plots_is_graded(box, tmp_path):
    nb = json.loads((NOTEBOOKS / "shapes.ipynb").read_text())
    picture = base64.b64encode(b"\x89PNG" + bytes(range(256)) * 24_000).decode()  # ~8 MB
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = [
                {"output_type": "display_data", "data": {"image/png": picture}, "metadata": {}}
            ]
    path = tmp_path / "shapes.ipynb"
    path.write_text(json.dumps(nb))
    assert path.stat().st_size > 6 * 1024 * 1024
    assert grade(box, path, "conv_output_size")["conv_output_size"].status is Status.PASSED


CONV_OUTPUT_SIZE = (
    "def conv_output_size(n_in, kernel_size, stride=1, padding=0, dilation=1):\n"
    "    return span(n_in, kernel_size, padding, dilation) // stride + 1\n"
)
SPAN = (
    "def span(n, k, p, d):\n"
    "    if isinstance(p, str):\n"
    "        p = (d * (k - 1)) // 2 if p == 'same' else 0\n"
    "    return n + 2 * p - d * (k - 1) - 1\n"
)


def test_notebook_runs_the_cells_its_answers_need_and_never_its_tests(box, tmp_path):
    nbgrader_test = {"nbgrader": {"grade": True, "solution": False, "grade_id": "t", "points": 1}}
    path = notebook(
        tmp_path / "hw.ipynb",
        [
            code(CONV_OUTPUT_SIZE, count=9),  # uses a helper defined further down
            code("while True:  # a scratch cell left running\n    pass\n", count=3),
            code("import os\nos._exit(3)\n", meta=nbgrader_test),  # an nbgrader test cell
            code(  # a cnnlab check cell saved without nbgrader's metadata
                "from grader.problemset.nbgrader_bridge import check\nwhile True:\n    pass\n"
            ),
            code(SPAN, count=1),  # the helper, in a cell of its own, run first by the student
        ],
    )
    loaded = load_submission(path)
    assert loaded.cell_numbers["hw"] == (1, 5)  # code cells 3 and 4 are tests: never run
    assert loaded.skipped_cells["hw"] == (2,)  # binds nothing the functions use
    result = grade(box, path, "conv_output_size")["conv_output_size"]
    assert result.status is Status.PASSED, result
    assert result.wall_s < 5


def test_a_notebook_saved_without_nbgrader_metadata_is_graded_by_content(box, tmp_path):
    nb = json.loads((NOTEBOOKS / "pooling.ipynb").read_text())
    for cell in nb["cells"]:
        cell["metadata"] = {}
    path = tmp_path / "pooling.ipynb"
    path.write_text(json.dumps(nb))
    results = grade(box, path, "maxpool2d_forward", "maxpool2d_backward")
    assert all(r.status is Status.PASSED for r in results.values()), results


def test_a_later_cell_that_redefines_a_function_wins_as_in_run_all(box, tmp_path):
    path = notebook(
        tmp_path / "hw.ipynb",
        [
            code(SPAN),
            code(
                "def conv_output_size(n_in, kernel_size, stride=1, padding=0, dilation=1):\n"
                "    return -1  # first try\n"
            ),
            code(
                "def my_size(n_in, kernel_size, stride=1, padding=0, dilation=1):\n"
                "    return span(n_in, kernel_size, padding, dilation) // stride + 1\n"
            ),
            code("conv_output_size = my_size  # the fix, bound to the name\n"),
        ],
    )
    assert grade(box, path, "conv_output_size")["conv_output_size"].status is Status.PASSED


def test_cnnlab_grade_says_what_was_graded(tmp_path):
    from click.testing import CliRunner

    from grader.cli import main

    sub = copy_solutions(tmp_path / "sub", "shapes")
    (sub / "broken.ipynb").write_text('{"cells": [')
    result = CliRunner().invoke(
        main, ["grade", str(sub), "-e", "conv_output_size", "--seed", str(SEED)], env={}
    )
    assert result.exit_code == 0, result.output
    assert "Graded 1 file: shapes.py" in result.output
    assert "not graded broken.ipynb: broken.ipynb is not a valid notebook" in result.output


def test_a_file_named_like_a_standard_module_does_not_shadow_it(box, tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "colorsys.py").write_text("raise RuntimeError('a student file, not the stdlib')\n")
    (sub / "shapes.py").write_text(
        (SOLUTIONS / "shapes.py").read_text()
        + "\nimport colorsys\n\nRED = colorsys.rgb_to_hsv(1.0, 0.0, 0.0)\n"
    )
    result = grade(box, sub, "conv_output_size")["conv_output_size"]
    assert result.status is Status.PASSED, result


def test_a_data_file_beside_a_nested_module_is_in_the_runs_own_copy(box, tmp_path):
    hw = tmp_path / "sub" / "repo-main" / "hw3"
    hw.mkdir(parents=True)
    (hw / "offset.json").write_text('{"offset": 0}')
    (hw / "shapes.py").write_text(
        (SOLUTIONS / "shapes.py").read_text() + "\nimport json as _json\nimport os as _os\n\n"
        "with open(_os.path.join(_os.path.dirname(__file__), 'offset.json')) as _fh:\n"
        "    _OFFSET = _json.load(_fh)['offset']\n"
        "_exact = conv_output_size\n\n\n"
        "def conv_output_size(*args, **kwargs):\n"
        "    return _exact(*args, **kwargs) + _OFFSET\n"
    )
    loaded = load_submission(tmp_path / "sub")
    assert loaded.data == {"repo-main/hw3/offset.json": b'{"offset": 0}'}
    assert grade(box, tmp_path / "sub", "conv_output_size")["conv_output_size"].passed


# -- a stub never hides what the student wrote (usertest F1, F2, F3) ------------------------

EXERCISES = ROOT / "exercises"


def with_stub_notebooks(dest: Path, *topics: str) -> Path:
    """``dest`` laid out as the generated exercises/ folder: notebooks/TOPIC.ipynb stubs."""
    for topic in topics:
        target = dest / "notebooks" / f"{topic}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXERCISES / "notebooks" / f"{topic}.ipynb", target)
    return dest


def break_line(source: str, old: str, new: str) -> str:
    assert source.count(old) >= 1, old
    return source.replace(old, new, 1)


@pytest.mark.parametrize(
    "old, new",
    [
        ("def dense_forward(", "def dense_forward(\n    oops = (\n"),  # the body's SyntaxError
        ("def dense_forward(", "def dense_forward "),  # the def line itself is mangled
    ],
)
def test_a_syntax_error_in_the_students_file_beats_the_notebook_stub(box, tmp_path, old, new):
    sub = with_stub_notebooks(tmp_path / "exercises", "layers")
    text = break_line((SOLUTIONS / "layers.py").read_text(), old, new)
    (sub / "layers.py").write_text(text)
    line = text[: text.index(new) + len(new)].count("\n") + 1
    results = grade(box, sub, "dense_forward", "conv2d_forward")
    for result in results.values():
        assert result.status is Status.ERROR, result
        assert "NotImplementedError" not in result.feedback
        assert "SyntaxError in layers.py, line" in result.feedback, result.feedback
    notes = load_submission(sub).attention_lines()
    assert any(
        n.startswith("cannot run layers.py: SyntaxError in layers.py, line") for n in notes
    ), notes
    assert abs(int(notes[0].split("line ")[1].split(":")[0]) - line) <= 2


def test_a_renamed_function_beats_the_notebook_stub_with_did_you_mean(box, tmp_path):
    sub = with_stub_notebooks(tmp_path / "exercises", "pooling")
    (sub / "pooling.py").write_text(
        (SOLUTIONS / "pooling.py")
        .read_text()
        .replace("def maxpool2d_forward(", "def maxpool2d_fwd(")
        .replace("maxpool2d_forward(", "maxpool2d_fwd(")
    )
    forward = grade(box, sub, "maxpool2d_forward")["maxpool2d_forward"]
    assert forward.status is Status.ERROR, forward
    assert "the only maxpool2d_forward in your submission is the unfilled stub in " in (
        forward.feedback
    )
    assert "notebooks/pooling.ipynb" in forward.feedback
    assert "did you mean 'maxpool2d_fwd' (in pooling.py)?" in forward.feedback
    assert "rename yours to maxpool2d_forward" in forward.feedback
    # with nothing close, the stub still says "not implemented"
    plain = with_stub_notebooks(tmp_path / "plain", "pooling")
    stub = grade(box, plain, "maxpool2d_forward")["maxpool2d_forward"]
    assert stub.status is Status.NOT_IMPLEMENTED, stub


def test_a_failing_cell_of_the_students_notebook_beats_the_py_stub(box, tmp_path):
    sub = tmp_path / "exercises"
    sub.mkdir()
    shutil.copy(EXERCISES / "pooling.py", sub / "pooling.py")  # the unfilled .py stubs
    nb = json.loads((NOTEBOOKS / "pooling.ipynb").read_text())
    broken_cell(nb, "maxpool2d_backward", "return dx\n", "return dx)\n", count=7)
    (sub / "notebooks").mkdir()
    (sub / "notebooks" / "pooling.ipynb").write_text(json.dumps(nb))
    results = grade(box, sub, "maxpool2d_forward", "maxpool2d_backward")
    assert results["maxpool2d_forward"].status is Status.PASSED, results["maxpool2d_forward"]
    backward = results["maxpool2d_backward"]
    assert backward.status is Status.ERROR
    assert backward.feedback.startswith(
        "SyntaxError in pooling.ipynb, the cell defining maxpool2d_backward (code cell 4, "
        "In [7]), line "
    ), backward.feedback


def broken_cell(nb: dict, grade_id: str, old: str, new: str, *, count: int | None = None):
    for cell in nb["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
            source = "".join(cell["source"])
            cell["source"] = break_line(source, old, new)
            cell["execution_count"] = count
            return
    raise AssertionError(grade_id)


@pytest.mark.parametrize(
    "old, new, keep_metadata",
    [
        ("return dx\n", "return dx)\n", True),  # the tester's case
        ("def maxpool2d_backward(", "def maxpool2d_backward ", True),  # grade_id tells
        ("def maxpool2d_backward(", "def maxpool2d_backward ", False),  # the text tells
    ],
)
def test_one_notebook_with_a_cell_that_does_not_parse_fails_that_exercise(
    tmp_path, old, new, keep_metadata
):
    from click.testing import CliRunner

    from grader.cli import main

    nb = json.loads((NOTEBOOKS / "pooling.ipynb").read_text())
    broken_cell(nb, "maxpool2d_backward", old, new, count=7)
    if not keep_metadata:
        for cell in nb["cells"]:
            cell["metadata"] = {}
    path = tmp_path / "pooling.ipynb"
    path.write_text(json.dumps(nb))
    result = CliRunner().invoke(
        main, ["grade", str(path), "--seed", str(SEED), "--json", str(tmp_path / "r.json")]
    )
    assert result.exit_code == 1, result.output
    doc = json.loads((tmp_path / "r.json").read_text())
    status = {e["name"]: e for e in doc["exercises"]}
    assert set(status) == {"maxpool2d_forward", "maxpool2d_backward"}
    assert status["maxpool2d_forward"]["status"] == "passed"
    backward = status["maxpool2d_backward"]
    assert backward["status"] == "error" and backward["score"] == 0
    assert backward["feedback"].startswith("SyntaxError in pooling.ipynb, the cell ")
    assert "(code cell 4, In [7]), line" in backward["feedback"]
    assert "no function named" not in backward["feedback"]
    assert "cannot run pooling.ipynb: SyntaxError in pooling.ipynb" in result.output


# -- exercises nothing in the submission is meant for (usertest F5) -------------------------


def one_topic_folder(tmp_path: Path) -> Path:
    sub = tmp_path / "m"
    sub.mkdir()
    shutil.copy(NOTEBOOKS / "pooling.ipynb", sub / "pooling.ipynb")
    return sub


def test_a_folder_of_one_topic_grades_that_topic_and_says_what_was_left_out(tmp_path):
    sub = one_topic_folder(tmp_path)
    result = engine.grade(sub, seed=SEED)
    assert [r.name for r in result.exercises] == ["maxpool2d_forward", "maxpool2d_backward"]
    assert result.all_passed
    left_out = result.extra["not_submitted"]
    assert len(left_out) == len(registry.all_specs()) - 2 and "conv2d_forward" in left_out
    (note,) = [n for n in result.extra["notes"] if n.startswith("not submitted:")]
    assert f"{len(left_out)} exercise(s)" in note and f"cnnlab grade {sub} -e" in note


def test_a_class_submission_of_one_topic_counts_the_rest_as_not_submitted(tmp_path):
    sub = one_topic_folder(tmp_path)
    result = engine.grade(sub, seed=SEED, complete=True)
    specs = registry.all_specs()
    assert [r.name for r in result.exercises] == [s.name for s in specs]
    assert result.max_score == sum(s.points for s in specs)  # out of the whole problem set
    pooling = ("maxpool2d_forward", "maxpool2d_backward")
    missing = [r for r in result.exercises if r.name not in pooling]
    for r in missing:
        assert r.status is Status.NOT_IMPLEMENTED and r.score == 0 and r.max_score > 0, r
        assert r.feedback.startswith("not submitted: none of your files (pooling.ipynb)")
        assert "did you mean" not in r.feedback and r.wall_s == 0  # never run
    assert result.score == 6


def test_did_you_mean_never_suggests_another_exercises_function(box, tmp_path):
    sub = one_topic_folder(tmp_path)
    conv = grade(box, sub, "conv2d_forward", "dense_forward")
    for r in conv.values():  # asked for explicitly: run, and told what is missing
        assert r.status is Status.ERROR
        assert "maxpool2d" not in r.feedback, r.feedback
        assert "(your files: pooling.ipynb); define it with exactly this name" in r.feedback


# -- an import that fails says where (usertest F9, F13) -------------------------------------


def test_sys_exit_in_a_helper_module_names_the_helper_and_the_import(box, tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    text = (SOLUTIONS / "shapes.py").read_text()
    header = "from __future__ import annotations\n"
    (sub / "shapes.py").write_text(text.replace(header, header + "import helper  # noqa\n", 1))
    line = text[: text.index(header)].count("\n") + 2
    (sub / "helper.py").write_text('import sys\nprint("hello from helper")\nsys.exit(3)\n')
    result = grade(box, sub, "conv_output_size")["conv_output_size"]
    assert result.status is Status.ERROR
    assert result.feedback.startswith(
        f"sys.exit(3) was called while importing shapes.py: at helper.py, line 3, imported "
        f"from shapes.py, line {line}"
    ), result.feedback


def test_a_test_call_left_at_module_level_is_named_as_such(box, tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    text = (SOLUTIONS / "pooling.py").read_text()
    call = "out, cache = maxpool2d_forward(np.arange(16.0).reshape(4, 4), pool_size=2)"
    (sub / "pooling.py").write_text(f"{text}\n# quick test\n{call}\nprint(out)\n")
    line = text.count("\n") + 3
    result = grade(box, sub, "maxpool2d_forward")["maxpool2d_forward"]
    assert result.status is Status.ERROR
    assert result.feedback.startswith(
        f"importing pooling.py failed at pooling.py, line {line} (`{call[:60]}`, a call at "
        "module level): ValueError in "
    ), result.feedback
    assert 'move test code under `if __name__ == "__main__":`' in result.feedback
