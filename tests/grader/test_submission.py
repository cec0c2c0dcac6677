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
