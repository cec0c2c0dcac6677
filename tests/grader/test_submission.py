"""grader.submission: reading folders, .py files and notebooks without importing them."""

from __future__ import annotations

import json

import nbformat
import pytest

from grader.errors import NotebookError, SubmissionError
from grader.submission import load_submission, neutralise_magics, notebook_code_cells


def write_notebook(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(c) if kind == "code" else nbformat.v4.new_markdown_cell(c)
        for kind, c in cells
    ]
    path.write_text(nbformat.writes(nb))
    return path


def test_folder_tree_gives_one_module_per_file(tmp_path):
    (tmp_path / "shapes.py").write_text("def conv_output_size(): pass\n")
    (tmp_path / "pooling.py").write_text("X = 1\n")
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "my-notes.py").write_text("def helper():\n    return 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "pooling.py").write_text("Y = 2\n")  # deeper: the plain name is taken
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "junk.py").write_text("")
    sub = load_submission(tmp_path)
    assert sub.kind == "folder"
    assert sub.files == {
        "init": "__init__.py",
        "my_notes": "my-notes.py",
        "pooling": "pooling.py",
        "pooling_2": "sub/pooling.py",
        "shapes": "shapes.py",
    }
    assert sub.modules["pooling"] == "X = 1\n" and sub.modules["pooling_2"] == "Y = 2\n"
    assert sub.symbols["shapes"] == {"conv_output_size": "stub"}
    assert sub.symbols["my_notes"] == {"helper": "def"}
    assert sub.display_name("pooling_2") == "pooling.py"
    assert sub.path == tmp_path.resolve()


def test_single_file_and_its_encoding(tmp_path):
    f = tmp_path / "hw1.py"
    f.write_bytes("# -*- coding: latin-1 -*-\nNAME = 'caf\xe9'\n".encode("latin-1"))
    sub = load_submission(f)
    assert sub.kind == "file" and list(sub.modules) == ["hw1"]
    assert "café" in sub.modules["hw1"]


@pytest.mark.parametrize(
    "name, words",
    [
        ("nothere", "no such folder 'nothere'"),
        ("nothere.py", "no such file"),
        ("nothere.ipynb", "no such notebook"),
    ],
)
def test_missing_path_says_what_to_pass(tmp_path, monkeypatch, name, words):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SubmissionError) as err:
        load_submission(name)
    assert words in str(err.value)
    assert "pass the folder holding your .py files or notebooks, a .py file or an .ipynb" in (
        str(err.value)
    )


def test_empty_folder_and_wrong_kind(tmp_path):
    (tmp_path / "notes.txt").write_text("no code here")
    with pytest.raises(SubmissionError, match="no .py file or notebook in folder"):
        load_submission(tmp_path)
    txt = tmp_path / "answers.txt"
    txt.write_text("42")
    with pytest.raises(SubmissionError, match="cannot grade"):
        load_submission(txt)


def test_notebook_code_cells_in_order_with_magics_neutralised(tmp_path):
    path = write_notebook(
        tmp_path / "hw.ipynb",
        [
            ("markdown", "# Homework"),
            ("code", "%matplotlib inline\nimport numpy as np"),
            ("code", "!pip install torch\nfiles = !ls\nif True:\n    %time x = 1"),
            ("code", "%%bash\necho hi"),
            ("code", "def f():\n    return 1"),
        ],
    )
    sub = load_submission(path)
    assert sub.kind == "notebook" and list(sub.modules) == ["hw"]
    numbered = notebook_code_cells(path.read_bytes(), "hw.ipynb")
    assert [n for n, _ in numbered] == [1, 2, 3, 4]
    cells = [c for _, c in numbered]
    for cell in cells:
        compile(cell, "cell", "exec")  # every cell is plain Python now
    assert "pass  # %matplotlib inline" in cells[0]
    assert "    pass  # %time x = 1" in cells[1]
    assert cells[2].startswith("# %%bash")
    # f uses nothing of the other cells, so only its own cell runs when grading
    assert sub.cells["hw"] == ("def f():\n    return 1",) and sub.cell_numbers["hw"] == (4,)
    assert sub.skipped_cells["hw"] == (1, 2, 3)


def test_cell_magics_that_run_their_body_keep_it():
    """%%time, %%capture and %%prun run the body in the notebook's namespace (what it defines
    stays defined); %%timeit and the other languages do not."""
    kept = neutralise_magics("%%time\ndef f():\n    return 1")
    assert kept == "# %%time\ndef f():\n    return 1"
    assert neutralise_magics("%%capture out\nx = 1") == "# %%capture out\nx = 1"
    assert neutralise_magics("%%timeit\ndef g(): pass").splitlines()[1] == "# def g(): pass"
    assert neutralise_magics("%%bash\necho hi") == "# %%bash\n# echo hi"


def test_an_answer_cell_made_raw_or_markdown_by_accident_is_graded_as_code(tmp_path):
    """Jupyter's `r`/`m` keys turn a cell Raw/Markdown; nbgrader's autograde turns an
    autograded answer cell back into code, so cnnlab grades it as code too (not a plain
    markdown cell, nor a manually graded answer)."""
    answer = {"nbgrader": {"grade_id": "f", "solution": True, "grade": False}}
    manual = {"nbgrader": {"grade_id": "essay", "solution": True, "grade": True, "points": 2}}
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_raw_cell("def f():\n    return 1", metadata=answer),
        nbformat.v4.new_markdown_cell("def g():\n    return 2", metadata=manual),
        nbformat.v4.new_markdown_cell("def h():\n    return 3"),
    ]
    path = tmp_path / "hw.ipynb"
    path.write_text(nbformat.writes(nb))
    sub = load_submission(path)
    assert "f" in sub.symbols["hw"] and "g" not in sub.symbols["hw"]
    assert "h" not in sub.symbols["hw"]


def test_neutralise_leaves_ordinary_code_alone():
    code = "a = b != c\nx = 5 % 3\nprint('%d' % 3)"
    assert neutralise_magics(code) == code


def test_notebook_that_is_not_json(tmp_path):
    bad = tmp_path / "broken.ipynb"
    bad.write_text('{"cells": [')
    with pytest.raises(NotebookError, match="not JSON.*save it again"):
        load_submission(bad)
    not_nb = tmp_path / "other.ipynb"
    not_nb.write_text(json.dumps({"hello": 1}))
    with pytest.raises(NotebookError, match="not a valid notebook"):
        load_submission(not_nb)
    empty = write_notebook(tmp_path / "empty.ipynb", [("markdown", "only text")])
    with pytest.raises(SubmissionError, match="no code cells"):
        load_submission(empty)


def test_huge_source_file_is_refused(tmp_path):
    big = tmp_path / "big.py"
    big.write_bytes(b"#" * (6 * 1024 * 1024))
    with pytest.raises(SubmissionError, match="big.py is 6.0 MiB.*remove the data"):
        load_submission(big)


def test_to_json_carries_everything_the_child_needs(tmp_path):
    path = write_notebook(tmp_path / "nb.ipynb", [("code", "def g(): pass")])
    data = json.loads(load_submission(path).to_json())
    assert data["kind"] == "notebook"
    assert data["cells"] == {"nb": ["def g(): pass"]}
    assert data["cell_numbers"] == {"nb": [1]}
    assert data["files"] == {"nb": "nb.ipynb"}  # relative: the child learns no location
    assert data["symbols"] == {"nb": {"g": "stub"}}
    assert str(tmp_path) not in load_submission(path).to_json()


# -- hostile files (SECURITY 37): refused before a byte is read, the message says what to do --


def _refused(path, match):
    """load_submission must refuse ``path`` quickly (an alarm guards against a hang)."""
    import signal

    def hang(*_):
        raise AssertionError("reading the submission hung")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(10)
    try:
        with pytest.raises(SubmissionError, match=match):
            load_submission(path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_module_linked_to_dev_zero_is_refused_not_read(tmp_path):
    (tmp_path / "shapes.py").write_text("def conv_output_size(): return 1\n")
    (tmp_path / "layers.py").symlink_to("/dev/zero")
    _refused(tmp_path, r"layers.py is a symbolic link to something outside the submission")
    single = tmp_path / "single"
    single.mkdir()
    (single / "layers.py").symlink_to("/dev/zero")
    # given directly, it is not followed either
    _refused(single / "layers.py", r"layers.py is a symbolic link; links are not graded")


def test_a_link_to_the_solutions_is_refused(tmp_path):
    solutions = tmp_path / "course" / "solutions"
    solutions.mkdir(parents=True)
    (solutions / "pooling.py").write_text("def maxpool2d_forward(): return 'the answer'\n")
    sub = tmp_path / "alice"
    sub.mkdir()
    (sub / "pooling.py").symlink_to(solutions / "pooling.py")
    _refused(sub, r"pooling.py is a symbolic link to something outside the submission")
    (sub / "pooling.py").unlink()
    (sub / "answers").symlink_to(solutions, target_is_directory=True)  # a folder link, too
    (sub / "mine.py").write_text("x = 1\n")
    _refused(sub, r"answers is a symbolic link to something outside the submission")


def test_a_link_that_stays_inside_the_submission_is_followed(tmp_path):
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "shapes_v2.py").write_text("def conv_output_size(): return 2\n")
    (tmp_path / "shapes.py").symlink_to(tmp_path / "v2" / "shapes_v2.py")
    sub = load_submission(tmp_path)
    assert sub.modules["shapes"] == "def conv_output_size(): return 2\n"


def test_a_fifo_never_hangs_the_grader(tmp_path):
    import os

    (tmp_path / "shapes.py").write_text("def conv_output_size(): return 1\n")
    os.mkfifo(tmp_path / "layers.py")  # nobody will ever write to it
    _refused(tmp_path, r"layers.py is a named pipe \(FIFO\), not a file")
    _refused(tmp_path / "layers.py", r"named pipe")
    other = tmp_path / "other"
    other.mkdir()
    (other / "shapes.py").write_text("x = 1\n")
    os.mkfifo(other / "notes.txt")  # not even code: a special file has no place in a submission
    _refused(other, r"notes.txt is a named pipe")


def test_size_caps(tmp_path):
    big = tmp_path / "data.py"
    big.write_bytes(b"x = 1\n" + b"#" * (6 * 1024 * 1024))
    _refused(big, r"data.py is 6.0 MiB, more than the 5.0 MiB it may have: remove the data")
    nb = tmp_path / "nb.ipynb"
    nb.write_text(
        json.dumps(
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "source": "def f():\n    return '%s'\n" % ("x" * 6 * 1024 * 1024),
                    }
                ],
                "metadata": {},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )
    _refused(nb, r"nb.ipynb holds 6.0 MiB of code.*outputs do not count")


def test_outputs_do_not_count_towards_a_notebooks_size(tmp_path):
    picture = "A" * (7 * 1024 * 1024)
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "source": "def f():\n    return 1\n",
                "outputs": [{"output_type": "display_data", "data": {"image/png": picture}}],
                "metadata": {},
                "execution_count": 3,
            }
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "plots.ipynb"
    path.write_text(json.dumps(nb))
    sub = load_submission(path)
    assert sub.symbols["plots"] == {"f": "def"}


# -- zips ------------------------------------------------------------------------------------


def _zip(path, members):
    import warnings
    import zipfile

    with zipfile.ZipFile(path, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": a hostile zip on purpose
        for name, text in members:
            zf.writestr(name, text)
    return path


@pytest.mark.parametrize(
    "names",
    [
        ["hw/Pooling.py", "hw/pooling.py"],  # letter case
        ["hw/caf\u00e9.py", "hw/cafe\u0301.py"],  # NFC and NFD
        ["hw//pooling.py", "hw/./pooling.py"],  # path spelling
        ["pooling.py", "pooling.py"],  # the same name twice
        ["hw/pooling.py ", "hw/pooling.py"],  # Windows drops the trailing space
        ["a.py", "A.PY/b.py"],  # a file that is also a folder
    ],
    ids=["case", "unicode", "path", "twice", "trailing-space", "file-and-folder"],
)
def test_zip_members_whose_names_clash_are_refused(tmp_path, names):
    from grader.submission import zip_sources

    archive = _zip(tmp_path / "a.zip", [(n, "x = 1\n") for n in names])
    with pytest.raises(SubmissionError, match="names clash.*rename one, zip the folder again"):
        zip_sources(archive, label="a.zip")
    with pytest.raises(SubmissionError, match="names clash"):
        load_submission(archive)


def test_a_zip_is_read_in_memory_and_graded_like_a_folder(tmp_path):
    archive = _zip(
        tmp_path / "hw.zip",
        [
            ("my-repo-main/hw3/pooling.py", "def maxpool2d_forward():\n    return 1\n"),
            ("my-repo-main/hw3/data.bin", "ignored"),
            ("__MACOSX/._pooling.py", "junk"),
        ],
    )
    sub = load_submission(archive)
    assert sub.files == {"pooling": "my-repo-main/hw3/pooling.py"}
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "utils.py").write_text("def helper():\n    return 2\n")
    _zip(folder / "upload.zip", [("pooling.py", "def maxpool2d_forward():\n    return 1\n")])
    assert sorted(load_submission(folder).files.values()) == ["pooling.py", "utils.py"]


# -- finding and naming the code -------------------------------------------------------------


def test_code_is_found_at_any_depth_and_virtualenvs_are_skipped(tmp_path):
    deep = tmp_path / "repo-main" / "course" / "hw3"
    deep.mkdir(parents=True)
    (deep / "pooling.py").write_text("def maxpool2d_forward():\n    return 1\n")
    venv = tmp_path / "repo-main" / "venv"
    (venv / "lib").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr\n")
    (venv / "lib" / "numpy.py").write_text("x = 1\n")
    (tmp_path / "repo-main" / ".git").mkdir()
    (tmp_path / "repo-main" / ".git" / "hook.py").write_text("x = 1\n")
    sub = load_submission(tmp_path)
    assert sub.files == {"pooling": "repo-main/course/hw3/pooling.py"}
    assert sub.summary() == ["graded repo-main/course/hw3/pooling.py: maxpool2d_forward"]


def test_renamed_notebooks_get_unique_module_names(tmp_path):
    for name in (
        "pooling (1).ipynb",
        "pooling-Copy1.ipynb",
        "jdoe_pooling.ipynb",
        "01 intro.ipynb",
    ):
        write_notebook(tmp_path / name, [("code", "def maxpool2d_forward():\n    return 1\n")])
    (tmp_path / "pooling.py").write_text("def maxpool2d_forward():\n    return 2\n")
    sub = load_submission(tmp_path)
    assert sub.files == {
        "pooling": "pooling.py",
        "m_01_intro": "01 intro.ipynb",
        "jdoe_pooling": "jdoe_pooling.ipynb",
        "pooling_1": "pooling (1).ipynb",
        "pooling_Copy1": "pooling-Copy1.ipynb",
    }
    assert all(sub.symbols[m] == {"maxpool2d_forward": "def"} for m in sub.modules)
    assert sub.owners("maxpool2d_forward", "pooling") == [
        "pooling",  # named after the topic
        "jdoe_pooling",  # file names that mention it, in name order
        "pooling_1",
        "pooling_Copy1",
        "m_01_intro",
    ]


def test_stubs_and_imports_rank_below_implementations(tmp_path):
    (tmp_path / "pooling.py").write_text(
        "def maxpool2d_forward(x):\n    '''doc'''\n    raise NotImplementedError('4.1')\n"
    )
    (tmp_path / "mine.py").write_text(
        "from pooling import maxpool2d_forward as old\n\ndef maxpool2d_forward(x):\n    return x\n"
    )
    (tmp_path / "reexport.py").write_text("from mine import *\n")
    sub = load_submission(tmp_path)
    assert sub.symbols["pooling"]["maxpool2d_forward"] == "stub"
    assert sub.symbols["reexport"]["maxpool2d_forward"] == "import"  # through the star import
    assert sub.owners("maxpool2d_forward") == ["mine", "pooling", "reexport"]


def test_an_undecodable_file_is_named_and_kept_apart(tmp_path):
    (tmp_path / "layers.py").write_bytes("def conv2d_forward():\n    return 1\n".encode("utf-16"))
    (tmp_path / "shapes.py").write_text("def conv_output_size():\n    return 1\n")
    (tmp_path / "nul.py").write_bytes(b"def f():\n    return 1\x00\x00\n")
    sub = load_submission(tmp_path)
    assert sub.symbols["layers"] == {"conv2d_forward": "def"}  # the map still knows
    assert "layers.py is saved as UTF-16, which Python cannot import" in sub.broken["layers"]
    assert "nul.py contains NUL bytes" in sub.broken["nul"]
    assert "shapes" not in sub.broken
    assert any(line.startswith("cannot run layers.py") for line in sub.summary())


def test_one_damaged_notebook_does_not_zero_the_others(tmp_path):
    write_notebook(tmp_path / "a.ipynb", [("code", "def f():\n    return 1\n")])
    (tmp_path / "b.ipynb").write_text('{"cells": [{"cell_type": "code", "sou')  # cut off
    write_notebook(tmp_path / "c.ipynb", [("markdown", "only words")])
    sub = load_submission(tmp_path)
    assert list(sub.modules) == ["a"]
    assert [p[0] for p in sub.problems] == ["b.ipynb", "c.ipynb"]
    assert "not JSON" in sub.problems[0][1] and "no code cells" in sub.problems[1][1]
    (tmp_path / "a.ipynb").unlink()
    with pytest.raises(SubmissionError, match="no file in .* could be graded.*not JSON"):
        load_submission(tmp_path)


# -- which notebook cells run -----------------------------------------------------------------


def test_test_cells_are_recognised_by_metadata_and_by_content():
    from grader.submission import is_test_cell

    def cell(source, nb=None):
        return {"cell_type": "code", "source": source, "metadata": {"nbgrader": nb} if nb else {}}

    assert is_test_cell(cell("assert f() == 1", {"grade": True, "solution": False}))
    assert not is_test_cell(cell("def f(): ...", {"grade": True, "solution": True}))
    assert not is_test_cell(cell("def f(): ...", {"grade": False, "solution": True}))
    today = "if __name__ == '__main__':\n    from grader.problemset.nbgrader_bridge import check\n"
    assert is_test_cell(cell(today))  # today's generated check cell, metadata stripped
    assert is_test_cell(cell("from grader.problemset.nbgrader_bridge import check\ncheck('x')"))
    assert is_test_cell(cell("# cnnlab: check\nanything()"))
    assert not is_test_cell(cell("def check(x):\n    return x\n"))


def test_select_cells_keeps_what_the_functions_need():
    from grader.submission import select_cells

    cells = [
        "import numpy as np\nimport matplotlib.pyplot as plt",  # 0: np is used below
        "SCALE = 2",  # 1: read by f
        "x = np.random.randn(3)\nout = f(x)\nplt.plot(out)",  # 2: scratch: binds nothing used
        "def f(x):\n    return helper(x) * SCALE",  # 3: a function
        "def helper(x):\n    return np.abs(x)",  # 4: its helper, later in the notebook
        "np.random.seed(0)",  # 5: changes np, which the functions use
        "print(f(x))",  # 6: scratch
        "SCALE = 3",  # 7: rebinds what f reads: runs, as in Run All
        "for epoch in range(100):\n    train(model)",  # 8: a training loop on its own
        "exec(open('more.py').read())",  # 9: opaque: always runs
        "def broken(:",  # 10: does not parse: runs, so its error is reported
    ]
    assert select_cells(cells) == [0, 1, 3, 4, 5, 7, 9, 10]


def test_small_data_files_go_with_the_code_and_classmates_files_do_not(tmp_path):
    sub = tmp_path / "alice"
    (sub / "data").mkdir(parents=True)
    (sub / "pooling.py").write_text("TABLE = 'data/table.json'\n")
    (sub / "data" / "table.json").write_text("[1, 2]")
    (sub / "weights.bin").write_bytes(b"\0" * (2 * 1024 * 1024))  # over the 1 MiB cap
    loaded = load_submission(sub)
    assert loaded.data == {"data/table.json": b"[1, 2]"}
    assert any("1 other file(s) (2.0 MiB) are not given to your code" in n for n in loaded.notes)
    # a single file: only the files next to it that its code names (the folder may be a class's)
    klass = tmp_path / "class"
    klass.mkdir()
    (klass / "carol.py").write_text("import json\nTABLE = json.load(open('table.json'))\n")
    (klass / "table.json").write_text("[3]")
    (klass / "bob-notes.txt").write_text("bob's private notes")
    assert load_submission(klass / "carol.py").data == {"table.json": b"[3]"}


def test_what_a_submission_relates_to(tmp_path):
    from dataclasses import replace

    (tmp_path / "pooling.py").write_text(
        "def maxpool2d_forward(x):\n    return x\n\ndef saliency_maps(m, x):\n    return x\n"
    )
    (tmp_path / "notes.py").write_text("def conv2d_backward(\n")  # does not compile
    sub = replace(
        load_submission(tmp_path),
        exercise_functions=("maxpool2d_forward", "conv2d_forward", "conv2d_backward"),
    )
    assert sub.relates_to("maxpool2d_backward", "pooling")  # the topic's file
    assert sub.relates_to("conv2d_backward", "layers")  # a file that does not compile names it
    assert sub.relates_to("saliency_map", "saliency")  # a rename
    assert sub.close_names("saliency_map") == ["saliency_maps"]
    # another exercise's function is never a "did you mean", so nothing relates conv2d_forward
    assert sub.close_names("conv2d_forward") == []
    assert not sub.relates_to("conv2d_forward", "layers")
    assert not sub.relates_to("dense_forward", "layers")
    assert sub.syntax_errors["notes"].startswith("SyntaxError in notes.py, line 1")


def test_a_data_type_is_never_a_misspelt_class_exercise(tmp_path):
    """The layers stub gives students `DenseCache(NamedTuple)`: graded alone, the file must not
    be taken as a DenseBlock submission nor told to rename DenseCache to DenseBlock."""
    from grader.submission import scan_symbols

    source = (
        "from dataclasses import dataclass\nfrom enum import Enum\nimport typing\n"
        "class DenseCache(typing.NamedTuple):\n    x: int\n"
        "@dataclass\nclass DenseSpec:\n    n: int\n"
        "class Mode(Enum):\n    A = 1\n"
        "class DenseBlok:\n    pass\n"
    )
    kinds, _ = scan_symbols(source)
    assert kinds["DenseCache"] == kinds["DenseSpec"] == kinds["Mode"] == "type"
    assert kinds["DenseBlok"] == "class"
    (tmp_path / "layers.py").write_text(source)
    sub = load_submission(tmp_path / "layers.py")
    assert sub.close_names("DenseBlock") == ["DenseBlok"]  # a real typo still is one
    (tmp_path / "layers.py").write_text(source.replace("class DenseBlok:\n    pass\n", ""))
    sub = load_submission(tmp_path / "layers.py")
    assert sub.close_names("DenseBlock") == []
    assert not sub.relates_to("DenseBlock", "architectures")


def test_a_notebook_cell_is_named_as_jupyter_shows_it(tmp_path):
    from grader.submission import NotebookCell, cell_label

    assert cell_label(NotebookCell(5, "import numpy as np\ndef f(x):\n  return x", None, 7)) == (
        "the cell defining f (code cell 5, In [7])"
    )
    scratch = NotebookCell(2, "\n\nx = 1  # a long comment that goes on and on and on")
    assert cell_label(scratch) == (
        "the cell starting `x = 1  # a long comment that goes on an…` (code cell 2)"
    )


def test_a_not_submitted_row_keeps_the_public_status_list_and_says_why_everywhere():
    """DESIGN.md's `--json` statuses are a contract: an exercise nothing in a class submission
    is meant for is `not_implemented` (0 points), its feedback saying "not submitted"."""
    from grader import render
    from grader.classroom.report import OUTCOMES
    from grader.results import Result, Status, SubmissionResult

    contract = {"passed", "failed", "not_implemented", "error", "timeout", "memory", "crashed"}
    assert {s.value for s in Status} <= contract | {"grader_error"}
    grouped = {s for _, statuses, _ in OUTCOMES for s in statuses}
    assert set(Status) <= set(render.STATUS_STYLE) and set(Status) <= grouped
    row = Result("conv2d_forward", 0.0, 3.0, Status.NOT_IMPLEMENTED, "not submitted: none")
    result = SubmissionResult(seed=1, exercises=(row,))
    assert SubmissionResult.from_dict(result.to_dict()).exercises[0].status.value == (
        "not_implemented"
    )
    gs = render.gradescope_results(result)
    assert "not submitted" in gs["tests"][0]["output"]
    assert gs["tests"][0]["max_score"] == 3.0 and gs["tests"][0]["status"] == "failed"
    assert "not submitted" in render.junit_xml(result)
    assert "not submitted" in render.table_text(result)


def test_did_you_mean_ignores_a_shared_ending_and_interface_classes():
    """relu_forward is not a misspelt avgpool2d_forward (only '_forward' is shared), and the
    ReceptiveField type a stub module declares is not a renamed receptive_field."""
    from grader.sandbox.child import close_names

    assert close_names("relu_forward", ["avgpool2d_forward", "relu_forwad"]) == ["relu_forwad"]
    assert close_names("saliency_map", ["saliency_maps"]) == ["saliency_maps"]
    assert close_names("conv2d_forward", ["Conv2d_Forward"]) == ["Conv2d_Forward"]
