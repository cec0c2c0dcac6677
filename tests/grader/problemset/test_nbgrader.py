"""nbgrader and cnnlab's check cells: the outputs nbgrader scores, the kernel-side check, the
sandboxed autograde (ExecuteInSandbox), grades written into nbgrader's gradebook by cnnlab batch,
and the exchange sequence. The pipelines run the real nbgrader, offline, on the generated
pooling notebook (2 exercises, one of which gets partial credit); they share one course."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from grader import engine, registry
from grader.cli import main
from grader.problemset import nbgrader_bridge
from grader.problemset.generate import render_notebook
from grader.seeds import DEFAULT_SEED

nbgrader = pytest.importorskip("nbgrader")

TOPIC = "pooling"
ASSIGNMENT = "cnn"
PARTIAL = (
    "\n\n_honest = maxpool2d_backward\n\n\n"
    "def maxpool2d_backward(dout, cache):\n"
    "    dx = _honest(dout, cache)\n"
    "    if dx.shape[0] > 1:\n"
    "        dx[1:] = 0  # forgets every image but the first\n"
    "    return dx\n"
)
# a student who redefines the check machinery in their own cell (and left forward unfinished)
CHEAT = (
    "\n\ndef check(*args, **kwargs):\n"
    "    print('maxpool2d_forward: passed, 2 of 2 points.')\n"
    "    return 2.0\n"
)


# --------------------------------------------------------------------------- helpers


def _env(course: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNLAB_")}
    env["JUPYTER_CONFIG_DIR"] = str(course / ".jupyter")  # no user config leaks in
    # in a virtualenv, nbconvert's templates may sit under the base interpreter's prefix
    shared = [env.get("JUPYTER_PATH", ""), str(Path(sys.base_prefix) / "share" / "jupyter")]
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in shared if p)
    return env


def _nbgrader(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env or _env(cwd),
        timeout=900,
    )
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _strip_markers(source: str) -> str:
    return "\n".join(line for line in source.split("\n") if "### " not in line)


def _source_notebook() -> str:
    specs = [s for s in registry.all_specs() if s.topic == TOPIC]
    return render_notebook(TOPIC, specs, seed=DEFAULT_SEED, solution=True)


def _student_copy(released: dict, source: dict, kind: str) -> dict:
    """The released notebook with the answer cells filled the way a student of ``kind`` would."""
    answers = {
        c["metadata"]["nbgrader"]["grade_id"]: _strip_markers(c["source"])
        for c in source["cells"]
        if c["metadata"].get("nbgrader", {}).get("solution")
    }
    copy = json.loads(json.dumps(released))
    if kind == "blank":
        return copy
    if kind == "bare":  # solved, then re-saved by an editor that drops nbgrader's metadata
        copy = _student_copy(released, source, "solved")
        for cell in copy["cells"]:
            cell["metadata"] = {}
        return copy
    if kind in ("copier", "paster", "typer"):
        copy = _student_copy(released, source, "solved")
        cells = copy["cells"]
        ids = [c["metadata"].get("nbgrader", {}).get("grade_id") for c in cells]
        if kind == "copier":  # Jupyter's copy/paste keeps the metadata (nbgrader #1083)
            cells.insert(
                ids.index("maxpool2d_forward"),
                json.loads(json.dumps(cells[ids.index("maxpool2d_forward")])),
            )
            cells.append(json.loads(json.dumps(cells[ids.index("test_maxpool2d_backward")])))
        elif kind == "paster":  # a check cell pasted from another notebook, metadata and all
            foreign = json.loads(json.dumps(cells[ids.index("test_maxpool2d_forward")]))
            foreign["source"] = (
                "".join(foreign["source"])
                .replace("maxpool2d_forward", "conv2d_forward")
                .replace(f"{TOPIC}.ipynb", "layers.ipynb")
            )
            foreign["metadata"]["nbgrader"]["grade_id"] = "test_conv2d_forward"
            cells.append(foreign)
        else:  # the `r` and `m` keys: an answer made Raw, a check cell made Markdown; %%time
            cells[ids.index("maxpool2d_forward")]["cell_type"] = "raw"
            cells[ids.index("maxpool2d_forward")].pop("outputs", None)
            cells[ids.index("maxpool2d_forward")].pop("execution_count", None)
            check = cells[ids.index("test_maxpool2d_backward")]
            check["cell_type"] = "markdown"
            check.pop("outputs", None)
            check.pop("execution_count", None)
            answer = cells[ids.index("maxpool2d_backward")]
            answer["source"] = "%%time\n" + answer["source"]
        return copy
    if kind == "deleter":  # solved; fakes the forward's check cell, deletes the backward's
        copy = _student_copy(released, source, "solved")
        for cell in copy["cells"]:
            if cell["metadata"].get("nbgrader", {}).get("grade_id") == "test_maxpool2d_forward":
                cell["source"] = "print('PASSED')\n2"
        copy["cells"] = [
            c
            for c in copy["cells"]
            if c["metadata"].get("nbgrader", {}).get("grade_id") != "test_maxpool2d_backward"
        ]
        return copy
    for cell in copy["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if not cell["metadata"].get("nbgrader", {}).get("solution"):
            continue
        if kind == "cheater" and grade_id == "maxpool2d_forward":
            cell["source"] += CHEAT  # the stub stays: not implemented
            continue
        cell["source"] = answers[grade_id]
        if kind == "partial" and grade_id == "maxpool2d_backward":
            cell["source"] += PARTIAL
    return copy


def _make_course(root: Path, config: str) -> Path:
    course = root
    (course / "source" / ASSIGNMENT).mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        f"c.CourseDirectory.course_id = {ASSIGNMENT!r}\n"
        "c.Execute.timeout = 600\n" + config
    )
    (course / "source" / ASSIGNMENT / f"{TOPIC}.ipynb").write_text(_source_notebook())
    _nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    return course


def _submit(course: Path, kinds: dict[str, str]) -> None:
    source = json.loads((course / "source" / ASSIGNMENT / f"{TOPIC}.ipynb").read_text())
    released = json.loads((course / "release" / ASSIGNMENT / f"{TOPIC}.ipynb").read_text())
    for student, kind in kinds.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / f"{TOPIC}.ipynb").write_text(json.dumps(_student_copy(released, source, kind)))
        (folder / "timestamp.txt").write_text("2026-01-01 10:00:00.000000 UTC")


def _cnnlab_scores(notebooks: dict[str, Path]) -> dict[str, dict[str, float]]:
    """What `cnnlab grade <notebook> --seed DEFAULT_SEED` gives each exercise, per student."""
    from grader.sandbox.runner import Sandbox

    out = {}
    with Sandbox() as box:
        for student, notebook in notebooks.items():
            result = engine.grade(notebook, seed=DEFAULT_SEED, sandbox=box)
            out[student] = {r.name: r.score for r in result.exercises}
    return out


KINDS = {
    "alice": "solved",
    "bob": "blank",
    "carol": "partial",
    "mallory": "cheater",
    "dora": "bare",
    "dave": "deleter",
    "cora": "copier",
    "pat": "paster",
    "tyra": "typer",
}


@pytest.fixture(scope="module")
def autograded(tmp_path_factory) -> tuple[Path, str]:
    """A course graded by `nbgrader autograde` with configure_autograde (no kernel)."""
    course = _make_course(
        tmp_path_factory.mktemp("nb") / "course",
        "from grader.problemset.nbgrader_autograde import configure_autograde\n"
        f"configure_autograde(c, seed={DEFAULT_SEED})\n",
    )
    _submit(course, KINDS)
    log = _nbgrader(course, "autograde", ASSIGNMENT, "--create", "--force")
    return course, log


def _manual_grades(course: Path) -> list[tuple[str, str]]:
    """(student, grade cell) of every grade nbgrader asks a person for."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return [
            (sub.student.id, g.name)
            for sub in gb.assignment_submissions(ASSIGNMENT)
            for nb in sub.notebooks
            for g in nb.grades
            if g.needs_manual_grade
        ]


def _gradebook_scores(course: Path) -> dict[str, dict[str, float | None]]:
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for sub in gb.assignment_submissions(ASSIGNMENT):
            out[sub.student.id] = {
                g.name.removeprefix("test_"): g.auto_score
                for nb in sub.notebooks
                for g in nb.grades
            }
    return out


# --------------------------------------------------------------------------- fast: the rules


RECORDS = [
    {"name": "e", "score": 4.0, "max_score": 4.0, "status": "passed", "feedback": "all passed"},
    {"name": "e", "score": 1.6, "max_score": 4.0, "status": "failed", "feedback": "dx differs"},
    {"name": "e", "score": 0.0, "max_score": 4.0, "status": "failed", "feedback": "all wrong"},
    {"name": "e", "score": 0.0, "max_score": 4.0, "status": "not_implemented", "feedback": "NIE"},
    {"name": "e", "score": 0.8, "max_score": 4.0, "status": "error", "feedback": "TypeError"},
    {"name": "e", "score": 2.4, "max_score": 4.0, "status": "timeout", "feedback": "took 10 s"},
    {"name": "e", "score": 0.0, "max_score": 4.0, "status": "memory", "feedback": "over 1 GiB"},
    {"name": "e", "score": 3.2, "max_score": 4.0, "status": "crashed", "feedback": "SIGSEGV"},
    {"name": "e", "score": 0.0, "max_score": 4.0, "status": "grader_error", "feedback": "bug"},
]


@pytest.mark.parametrize("record", RECORDS, ids=[r["status"] + str(r["score"]) for r in RECORDS])
@pytest.mark.parametrize("points", [4.0, 2.0])
def test_nbgrader_scores_a_check_cell_as_cnnlab_does(record, points):
    """nbgrader's own rule (nbgrader.utils.determine_grade) on the outputs a check cell gets
    gives cnnlab's score (on the cell's points) for every status; a grader failure is an error
    (0, and FlagGraderErrors sends it to manual grading)."""
    from nbformat.notebooknode import from_dict
    from nbgrader.utils import determine_grade

    cell = from_dict(
        {
            "cell_type": "code",
            "metadata": {"nbgrader": {"grade": True, "solution": False, "points": points}},
            "source": "check('e', notebook='x.ipynb')",
            "outputs": nbgrader_bridge.check_outputs(record, points, 1),
        }
    )
    score, max_score = determine_grade(cell)
    assert max_score == points
    expected = 0.0 if record["status"] == "grader_error" else record["score"] * points / 4.0
    assert score == pytest.approx(expected)
    text = "".join(o.get("text", "") + o.get("evalue", "") for o in cell.outputs)
    assert record["feedback"] in text
    if record["status"] != "grader_error":
        assert f"{record['status']}, {expected:g} of {points:g} points" in text
    assert not any(o.get("name") == "stderr" for o in cell.outputs)


def test_scaled_score_is_a_plain_float_within_the_points():
    record = {"name": "e", "score": 5.0, "max_score": 4.0, "status": "failed"}
    assert nbgrader_bridge.scaled_score(record, 4.0) == 4.0  # never above: nbgrader would abort
    value = nbgrader_bridge.scaled_score({**record, "score": 1.0}, 3.0)
    assert type(value) is float and value == 0.75


def test_check_cells_of_the_generated_notebooks_end_in_the_check():
    """The last statement of a check cell is the call, so its value is the cell's result."""
    import ast

    doc = json.loads(_source_notebook())
    checks = nbgrader_bridge.notebook_checks(doc)
    assert [name for _, name in checks] == ["maxpool2d_forward", "maxpool2d_backward"]
    for index, name in checks:
        cell = doc["cells"][index]
        assert cell["metadata"]["nbgrader"]["grade_id"] == f"test_{name}"
        last = ast.parse(cell["source"]).body[-1]
        assert isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
        assert nbgrader_bridge.CHECK_IMPORT in cell["source"]


def test_check_does_nothing_when_cnnlab_runs_the_cell_as_part_of_a_module(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "pooling"}
    exec("from grader.problemset.nbgrader_bridge import check\n"
         "value = check('maxpool2d_forward', notebook='missing.ipynb')", namespace)  # fmt: skip
    assert namespace["value"] is None and nbgrader_bridge._SERVICE is None


def _run_as_notebook_cell(code: str) -> dict:
    namespace = {"__name__": "__main__"}
    exec(code, namespace)
    return namespace


def test_check_without_the_notebook_file_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(nbgrader_bridge.CheckError, match="save the notebook"):
        _run_as_notebook_cell(
            "from grader.problemset.nbgrader_bridge import check\n"
            "check('conv2d_params', notebook='params.ipynb')"
        )


def test_check_under_autograde_without_a_seed_refuses(tmp_path, monkeypatch):
    """A fresh seed would grade the questions against other numbers than the notebook's."""
    (tmp_path / f"{TOPIC}.ipynb").write_text(_source_notebook())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    monkeypatch.delenv(nbgrader_bridge.SEED_ENV, raising=False)
    monkeypatch.delenv(nbgrader_bridge.CASES_ENV, raising=False)
    with pytest.raises(nbgrader_bridge.CheckError, match=nbgrader_bridge.SEED_ENV):
        _run_as_notebook_cell(
            "from grader.problemset.nbgrader_bridge import check\n"
            f"check('maxpool2d_forward', notebook='{TOPIC}.ipynb')"
        )


def test_configure_autograde_replaces_execute_and_flags_grader_errors(monkeypatch):
    from nbgrader.preprocessors import Execute, OverwriteCells, SaveAutoGrades
    from traitlets.config import Config

    from grader.problemset import nbgrader_autograde as nba

    monkeypatch.delenv(nbgrader_bridge.SEED_ENV, raising=False)
    c = Config()
    nba.configure_autograde(c, seed=7)
    chain = list(c.Autograde.autograde_preprocessors)
    assert Execute not in chain and nba.ExecuteInSandbox in chain
    assert chain.index(nba.FlagGraderErrors) == chain.index(SaveAutoGrades) + 1
    assert c.ExecuteInSandbox.seed == 7 and os.environ[nbgrader_bridge.SEED_ENV] == "7"
    assert c.Execute.skip_cells_with_tag.startswith("cnnlab-never-skip-")  # not "skip-execution"
    with pytest.raises(ValueError, match="configure_autograde"):
        monkeypatch.delenv(nbgrader_bridge.SEED_ENV)
        nba.resolve_seed(None)
    chain = list(c.Autograde.sanitize_preprocessors)
    assert chain.index(nba.RestoreCheckCells) + 1 == chain.index(OverwriteCells)
    # the check cases are drawn from the seed: cnnlab's public default is flagged
    monkeypatch.setattr(nba, "_WARNED", False)
    with pytest.warns(UserWarning, match="public default"):
        nba.configure_autograde(Config(), seed=DEFAULT_SEED)
    from grader.errors import ConfigError

    for bad in (-1, 2**31, "x"):  # refused when nbgrader reads its config, not per check
        with pytest.raises(ConfigError, match="seed"):
            nba.configure_autograde(Config(), seed=bad)


def _stdout(outputs: list) -> str:
    return "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")


def test_unsaved_definitions_compare_what_the_kernel_ran_with_the_saved_file():
    saved = {
        "cells": [
            {"cell_type": "code", "source": "import numpy as np\ndef f(x):\n    return x\n"},
            {"cell_type": "code", "source": ["def helper():\n", "    return 2"]},
            {
                "cell_type": "code",
                "source": f"{nbgrader_bridge.CHECK_IMPORT}\ncheck('f', notebook='n')",
            },
        ]
    }
    same = ["import numpy as np\ndef f(x):\n    return x   \n\n", "def helper():\n    return 2"]
    assert nbgrader_bridge.unsaved_definitions(saved, same) == []
    edited = [*same, "def f(x):\n    return 2 * x"]  # run after an edit, not saved
    assert nbgrader_bridge.unsaved_definitions(saved, edited) == ["f"]
    assert nbgrader_bridge.unsaved_definitions(saved, [*edited, same[0]]) == []  # ran again
    assert nbgrader_bridge.unsaved_definitions(saved, ["def other(): pass"]) == []
    assert nbgrader_bridge.unsaved_definitions(saved, None) == []  # not in IPython
    note = nbgrader_bridge.unsaved_note(["f"], "hw.ipynb")
    assert note.startswith("Note: the saved hw.ipynb defines f differently") and "Ctrl-S" in note
    assert nbgrader_bridge.unsaved_note([], "hw.ipynb") == ""


# --------------------------------------------------------------------------- slow: pipelines


@pytest.mark.slow
def test_autograde_in_the_sandbox_records_cnnlabs_scores(autograded):
    """nbgrader autograde with configure_autograde: every check cell's grade is cnnlab's score
    of the submitted notebook (partial credit included), a redefined `check` changes nothing,
    and no checksum warning is printed for unchanged test cells."""
    course, log = autograded
    recorded = _gradebook_scores(course)
    expected = _cnnlab_scores(
        {s: course / "submitted" / s / ASSIGNMENT / f"{TOPIC}.ipynb" for s in KINDS}
    )
    for student in KINDS:
        assert recorded[student] == pytest.approx(expected[student]), student
    assert recorded["alice"] == {"maxpool2d_forward": 2.0, "maxpool2d_backward": 4.0}
    assert recorded["bob"] == {"maxpool2d_forward": 0.0, "maxpool2d_backward": 0.0}
    assert 0.0 < recorded["carol"]["maxpool2d_backward"] < 4.0  # partial credit
    assert recorded["mallory"]["maxpool2d_forward"] == 0.0  # the fake check never ran
    # re-saved without metadata, or with a check cell faked and one deleted: cnnlab's scores
    # are recorded all the same (RestoreCheckCells), none is left for a manual grade
    assert recorded["dora"] == recorded["dave"] == recorded["alice"]
    # a copied cell (nbgrader #1083 stopped the whole autograde), a check cell pasted from
    # another notebook (a traceback), an answer made Raw, a check made Markdown, %%time
    assert recorded["cora"] == recorded["pat"] == recorded["tyra"] == recorded["alice"]
    assert "Traceback" not in log and "old version" not in log
    assert _manual_grades(course) == []
    assert "test_maxpool2d_backward: deleted check cell put back as released" in log
    # nbgrader's own warnings: dave's edit of a locked check cell, tyra's cell types (it
    # restores them); none for anyone else
    assert log.count("Attribute 'checksum'") == 1 and "test_maxpool2d_forward has changed" in log
    assert "Attribute 'cell_type' for cell test_maxpool2d_backward has changed" in log
    assert "Kernel" not in log  # no kernel was started


@pytest.mark.slow
def test_autograded_feedback_shows_cnnlabs_message(autograded):
    course, _ = autograded
    _nbgrader(course, "generate_feedback", ASSIGNMENT, "--force")
    html = (course / "feedback" / "carol" / ASSIGNMENT / f"{TOPIC}.html").read_text()
    score = _gradebook_scores(course)["carol"]["maxpool2d_backward"]
    assert f"maxpool2d_backward: failed, {score:g} of 4 points" in html
    blank = (course / "feedback" / "bob" / ASSIGNMENT / f"{TOPIC}.html").read_text()
    assert "not_implemented" in blank


@pytest.mark.slow
def test_batch_writes_grades_into_nbgraders_gradebook(autograded, tmp_path):
    """cnnlab batch --nbgrader-gradebook: the same scores as autograde, read back with
    nbgrader's API and `nbgrader export`, feedback as the answer cells' comments, and the
    autograded notebooks formgrader lists; autograde never ran on this course."""
    from nbgrader.api import Gradebook

    graded, _ = autograded
    course = tmp_path / "course"
    shutil.copytree(
        graded, course, ignore=shutil.ignore_patterns("gradebook.db", "autograded", "feedback")
    )
    config = (course / "nbgrader_config.py").read_text().replace(str(graded), str(course))
    (course / "nbgrader_config.py").write_text(config)
    _nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    args = ["batch", str(course), "--seed", str(DEFAULT_SEED), "--nbgrader-gradebook"]
    args += ["--out", str(tmp_path / "out"), "-e", "maxpool2d_forward", "-e", "maxpool2d_backward"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert _gradebook_scores(course) == _gradebook_scores(graded)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        comment = gb.find_comment("maxpool2d_backward", TOPIC, ASSIGNMENT, "carol")
        assert comment.auto_comment.startswith("maxpool2d_backward: failed, ")
        submission = gb.find_submission(ASSIGNMENT, "carol")
        assert submission.timestamp.year == 2026 and not submission.needs_manual_grade
    _nbgrader(course, "export", "--to", str(tmp_path / "grades.csv"))
    rows = {r["student_id"]: r for r in csv.DictReader((tmp_path / "grades.csv").open())}
    assert float(rows["alice"]["score"]) == 6.0 and float(rows["bob"]["score"]) == 0.0
    assert 2.0 < float(rows["carol"]["score"]) < 6.0
    autograded_nb = json.loads(
        (course / "autograded" / "carol" / ASSIGNMENT / f"{TOPIC}.ipynb").read_text()
    )
    values = [
        o["data"]["text/plain"]
        for c in autograded_nb["cells"]
        for o in c.get("outputs", [])
        if o["output_type"] == "execute_result"
    ]
    assert values == ["2.0", repr(_gradebook_scores(course)["carol"]["maxpool2d_backward"])]
    # formgrader shows the released check cells with cnnlab's outputs, never a student's
    # edit of one, and a deleted one is back (as nbgrader autograde does)
    for student in ("dave", "dora", "tyra", "pat"):
        document = json.loads(
            (course / "autograded" / student / ASSIGNMENT / f"{TOPIC}.ipynb").read_text()
        )
        checks = [c for c in document["cells"] if nbgrader_bridge.is_check_cell(c)]
        if student == "pat":  # the pasted cell is nobody's grade cell: no outputs, as autograde
            pasted = checks.pop()
            assert pasted["outputs"] == [] and "nbgrader" not in pasted["metadata"]
        assert [nbgrader_bridge.checked_exercise(c) for c in checks] == [
            "maxpool2d_forward",
            "maxpool2d_backward",
        ], student
        assert [c["metadata"]["nbgrader"]["grade_id"] for c in checks] == [
            "test_maxpool2d_forward",
            "test_maxpool2d_backward",
        ]
        assert all(c["outputs"][-1]["data"]["text/plain"] in ("2.0", "4.0") for c in checks)
        assert not any("PASSED" in "".join(c["source"]) for c in document["cells"])


def test_nbgrader_gradebook_needs_an_nbgrader_course(tmp_path):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "pooling.py").write_text("x = 1\n")
    args = [
        "batch",
        str(tmp_path),
        "--seed",
        "1",
        "--nbgrader-gradebook",
        "--out",
        str(tmp_path / "o"),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "submitted/" in result.output


def test_nbgrader_gradebook_refuses_an_unknown_assignment_before_grading(tmp_path):
    from nbgrader.api import Gradebook

    course = tmp_path / "course"
    (course / "submitted" / "alice" / "hw9").mkdir(parents=True)
    (course / "submitted" / "alice" / "hw9" / "pooling.ipynb").write_text(_source_notebook())
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}"):
        pass  # an empty gradebook
    args = [
        "batch",
        str(course),
        "--seed",
        "1",
        "--nbgrader-gradebook",
        "--out",
        str(tmp_path / "o"),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "nbgrader generate_assignment hw9" in result.output
    assert not (tmp_path / "o" / "gradebook.sqlite").exists()  # nothing was graded


@pytest.mark.slow
def test_exchange_release_fetch_submit_collect(tmp_path):
    """docs/instructors.md's course-local exchange: release_assignment, fetch_assignment,
    submit and collect all succeed, and collect puts the student's notebook where autograde
    and cnnlab batch read it (nbgrader's default exchange made collect exit 1)."""
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    exchange.chmod(0o1777)
    course = _make_course(
        tmp_path / "course",
        f"c.Exchange.root = {str(exchange)!r}\nc.ExchangeCollect.check_owner = False\n",
    )
    _nbgrader(course, "release_assignment", ASSIGNMENT)
    student = tmp_path / "alice"
    student.mkdir()
    (student / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.course_id = {ASSIGNMENT!r}\n"
        f"c.Exchange.root = {str(exchange)!r}\n"
        f"c.Exchange.cache = {str(student / '.cache')!r}\n"
    )
    env = _env(student)
    _nbgrader(student, "fetch_assignment", ASSIGNMENT, env=env)
    fetched = student / ASSIGNMENT / f"{TOPIC}.ipynb"
    source = json.loads((course / "source" / ASSIGNMENT / f"{TOPIC}.ipynb").read_text())
    solved = _student_copy(json.loads(fetched.read_text()), source, "solved")
    fetched.write_text(json.dumps(solved))
    _nbgrader(student, "submit", ASSIGNMENT, "--student", "alice", env=env)
    collected_log = _nbgrader(course, "collect", ASSIGNMENT)
    assert "cheating attempt" not in collected_log  # one OS user submitted as alice
    collected = course / "submitted" / "alice" / ASSIGNMENT
    assert json.loads((collected / f"{TOPIC}.ipynb").read_text()) == solved
    assert (collected / "timestamp.txt").is_file()


@pytest.mark.slow
def test_check_in_a_real_kernel_answers_within_a_second_after_the_first(tmp_path, monkeypatch):
    """A Jupyter kernel (nbclient): the first check starts the grading service and grades the
    whole notebook; the next check of unchanged code is answered from that result; after an
    edit is saved, a check grades in the same warm service, well under the first check's time."""
    import nbformat
    from nbclient import NotebookClient

    source = json.loads(_source_notebook())
    doc = _student_copy(json.loads(json.dumps(source)), source, "solved")
    for cell in doc["cells"]:
        cell["source"] = _strip_markers(cell["source"])
    path = tmp_path / f"{TOPIC}.ipynb"
    path.write_text(json.dumps(doc))
    monkeypatch.setenv(nbgrader_bridge.SEED_ENV, str(DEFAULT_SEED))  # the kernel inherits it
    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(tmp_path)}})
    checks = dict((name, index) for index, name in nbgrader_bridge.notebook_checks(doc))

    def run(index: int) -> tuple[float, list]:
        started = time.perf_counter()
        client.execute_cell(nb.cells[index], index)
        return time.perf_counter() - started, nb.cells[index].outputs

    def value(outputs: list) -> str:
        (result,) = [o for o in outputs if o.output_type == "execute_result"]
        return result["data"]["text/plain"]

    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and index not in checks.values():
                run(index)
        cold, outputs = run(checks["maxpool2d_forward"])
        assert value(outputs) == "2.0"
        cached, outputs = run(checks["maxpool2d_backward"])
        assert value(outputs) == "4.0"
        pid_cell = nbformat.v4.new_code_cell(
            "from grader.problemset import nbgrader_bridge as _b\n_b._SERVICE.proc.pid"
        )
        nb.cells.append(pid_cell)
        client.execute_cell(pid_cell, len(nb.cells) - 1)
        pid = value(pid_cell.outputs)
        # the student edits the backward answer, saves, runs its check
        answer = checks["maxpool2d_backward"] - 1
        doc["cells"][answer]["source"] += PARTIAL
        path.write_text(json.dumps(doc))
        warm, outputs = run(checks["maxpool2d_backward"])
        assert 0.0 < float(value(outputs)) < 4.0
        client.execute_cell(pid_cell, len(nb.cells) - 1)
        assert value(pid_cell.outputs) == pid  # the same service
        # saved but not run: the check graded the file and says the kernel ran another version
        note = f"Note: the saved {TOPIC}.ipynb defines maxpool2d_backward differently"
        assert note in _stdout(outputs)
        nb.cells[answer].source = doc["cells"][answer]["source"]
        run(answer)  # now run as saved: no note
        _, outputs = run(checks["maxpool2d_backward"])
        assert note not in _stdout(outputs)
        nb.cells[answer].source += "\n_debug = 1\n"  # edited and run, not saved
        run(answer)
        _, outputs = run(checks["maxpool2d_backward"])
        assert note in _stdout(outputs) and "save the notebook (Ctrl-S)" in _stdout(outputs)
    assert cached < 0.5, cached
    assert warm < max(1.0, cold / 3), (warm, cold)  # BENCHMARKS.md has the measured numbers
