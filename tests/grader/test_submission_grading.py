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
