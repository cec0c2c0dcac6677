"""`cnnlab export gradescope`: the zip's contents, and run_autograder against a simulated
/autograder folder (AUTOGRADER_ROOT) for a correct, a wrong, a hostile, an unreadable
submission and a grader failure. The installed cnnlab stands in for setup.sh's pip."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import unicodedata
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from grader import seeds
from grader.classroom.gradescope import CONFIG_NAME, SECRET_NAME, AutograderConfig, student_id
from grader.cli import main
from grader.errors import GraderFailure

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "submissions"
CORRECT = FIXTURES / "plain_loops"
EXERCISES = ["conv_output_size", "maxpool2d_forward"]
SECRET = "test-course-secret-0123456789"


@pytest.fixture()
def fake_wheel(tmp_path):
    wheel = tmp_path / "cnnlab-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"stand-in: the test uses the installed cnnlab")
    return wheel


def _export(tmp_path, fake_wheel, *extra, env=None):
    out = tmp_path / "autograder.zip"
    args = ["export", "gradescope", "--out", str(out), "--wheel", str(fake_wheel)]
    for name in EXERCISES:
        args += ["-e", name]
    result = CliRunner().invoke(main, [*args, *extra], env=env or {})
    return out, result


def test_zip_holds_setup_runner_config_and_wheel(tmp_path, fake_wheel):
    out, result = _export(tmp_path, fake_wheel, "--seed", "11")
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        assert {"setup.sh", "run_autograder", CONFIG_NAME, f"dist/{fake_wheel.name}"} <= names
        assert SECRET_NAME not in names  # one seed for everyone: no secret shipped
        for script in ("setup.sh", "run_autograder"):
            assert stat.S_IMODE(zf.getinfo(script).external_attr >> 16) & 0o111
        setup = zf.read("setup.sh").decode()
        config = AutograderConfig.from_json(zf.read(CONFIG_NAME).decode())
    torch_at = setup.index("torch==2.13.0")
    assert torch_at < setup.index("dist/*.whl")  # torch first, then cnnlab from the zip
    assert config.seed == 11 and list(config.exercises) == EXERCISES


def test_per_student_seeds_ship_the_secret(tmp_path, fake_wheel):
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET + "\n")
    out, result = _export(tmp_path, fake_wheel, "--secret-file", str(secret_file))
    assert result.exit_code == 0, result.output
    assert "never share it" in result.output
    with zipfile.ZipFile(out) as zf:
        assert zf.read(SECRET_NAME).decode() == SECRET
        assert AutograderConfig.from_json(zf.read(CONFIG_NAME).decode()).seed is None


@pytest.mark.parametrize(
    "args,match",
    [
        ([], "no course secret"),
        (["--seed", "1", "--secret-file", "x"], "not both"),
        (["--seed", "1", "-e", "maxpool2d_backwrd"], "Did you mean"),
        (["--seed", "1", "--wheel", "missing.whl"], "is not a .whl"),
    ],
)
def test_bad_export_input_is_a_clear_error(tmp_path, fake_wheel, args, match):
    result = CliRunner().invoke(
        main, ["export", "gradescope", "--out", str(tmp_path / "a.zip"), *args], env={}
    )
    assert result.exit_code == 2
    assert match in result.output and "Traceback" not in result.output
    assert not (tmp_path / "a.zip").exists()


def _meta(tmp_path, users):
    meta = tmp_path / "m.json"
    meta.write_text(json.dumps({"id": 1, "users": users}), encoding="utf-8")
    return meta


def test_student_id_from_metadata_reads_the_chosen_field_only(tmp_path):
    # Gradescope's documented metadata: email, id, name (no sid)
    documented = _meta(tmp_path, [{"email": " Alice@Uni.EDU ", "id": 1234, "name": "Alice A"}])
    assert student_id(documented) == "alice@uni.edu"
    with pytest.raises(GraderFailure, match="--id-field email"):
        student_id(documented, "sid")  # never falls back to another field's seed
    group = _meta(tmp_path, [{"email": "b@x", "sid": "S2"}, {"email": "a@x", "sid": "S1"}])
    assert student_id(group) == "a@x+b@x" and student_id(group, "sid") == "S1+S2"
    nameless = _meta(tmp_path, [{"email": "", "sid": "123", "name": "Bo"}])
    with pytest.raises(GraderFailure, match="'Bo' has no 'email'"):
        student_id(nameless)


def test_batch_and_gradescope_give_one_student_one_seed(tmp_path):
    from grader.classroom.batch import SeedPolicy

    policy = SeedPolicy(secret=SECRET.encode())
    folder_name = unicodedata.normalize("NFD", "josé.müller@uni.edu")  # a macOS download
    meta = _meta(tmp_path, [{"email": "José.Müller@uni.edu", "id": 7, "name": "José"}])
    from_gradescope = seeds.derive_seed(SECRET, student_id(meta), "hw1")
    assert policy.seed_for(folder_name, "hw1") == from_gradescope
    assert seeds.derive_seed(SECRET, "José.Müller@uni.edu", "hw1") == from_gradescope


def test_check_cases_are_fresh_per_submission_and_the_problem_set_is_the_students(tmp_path):
    """Red-team F4: with the check cases fixed per student, a table of the expected values
    that feedback names, resubmitted, earned the points. The problem seed (the questions'
    numbers) stays the student's; the cases' seed changes with Gradescope's submission id and
    stays for a regrade of the same submission."""
    from grader.classroom.gradescope import seed_for_submission

    config = AutograderConfig(exercises=(), assignment="hw1", seed=None)

    def seeds_of(submission_id):
        root = tmp_path / f"run{submission_id}"
        (root / "source").mkdir(parents=True)
        (root / "source" / SECRET_NAME).write_text(SECRET)
        user = {"email": "alice@uni.edu", "id": 9, "name": "Alice"}
        meta = {"id": submission_id, "users": [user]}
        (root / "submission_metadata.json").write_text(json.dumps(meta))
        got = seed_for_submission(root, config)
        assert not (root / "source" / SECRET_NAME).exists()  # read and deleted
        shutil.rmtree(root)
        return got

    first, second, again = seeds_of(101), seeds_of(102), seeds_of(101)
    problem = seeds.derive_seed(SECRET, "alice@uni.edu", "hw1")
    assert first[0] == second[0] == problem  # the student's own problem set, as in batch
    assert first[1] != second[1] and first[1] != problem  # fresh cases per submission
    assert again == first  # a regrade draws the same cases


# -- run_autograder against a simulated /autograder ----------------------------------------


def _autograder(tmp_path: Path, zip_path: Path, submission: Path | None, meta=None) -> Path:
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root / "source")
    if submission is not None:
        shutil.copytree(submission, root / "submission")
    else:
        (root / "submission").mkdir()
    if meta is not None:
        (root / "submission_metadata.json").write_text(json.dumps(meta))
    return root


def _run(root: Path) -> tuple[subprocess.CompletedProcess, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNLAB_COURSE_SECRET")}
    env |= {"AUTOGRADER_ROOT": str(root), "CNNLAB_PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(root / "source" / "run_autograder")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    results = root / "results" / "results.json"
    assert results.is_file(), proc.stdout + proc.stderr
    return proc, json.loads(results.read_text())


def _wrong(tmp_path: Path) -> Path:
    sub = tmp_path / "wrong_src"
    shutil.copytree(CORRECT, sub)
    snippet = (FIXTURES / "mistakes" / "conv_output_size__ceil_instead_of_floor.py").read_text()
    with (sub / "shapes.py").open("a") as fh:
        fh.write("\n\n" + snippet)
    return sub


def _hostile(tmp_path: Path, root: Path) -> Path:
    sub = tmp_path / "hostile_src"
    sub.mkdir()
    results = root / "results" / "results.json"
    secret = root / "source" / SECRET_NAME
    (sub / "shapes.py").write_text(
        "import json, os\n"
        f"for target in ({str(results)!r},):\n"
        "    try:\n"
        "        os.makedirs(os.path.dirname(target), exist_ok=True)\n"
        "        with open(target, 'w') as fh:\n"
        "            json.dump({'score': 100.0, 'tests': []}, fh)\n"
        "    except Exception as exc:\n"
        "        print('could not forge', exc)\n"
        "try:\n"
        f"    print('SECRET:', open({str(secret)!r}).read())\n"
        "except Exception as exc:\n"
        "    print('no secret', exc)\n"
        "print('PASSED', json.dumps({'score': 100.0}))\n"
        "def conv_output_size(n_in, kernel_size, stride=1, padding=0, dilation=1):\n"
        "    while True:\n"
        "        pass\n"
    )
    (sub / "pooling.py").write_text(
        "import os\ndef maxpool2d_forward(x, *, pool_size, stride=None):\n    os._exit(0)\n"
    )
    return sub


@pytest.mark.slow
def test_run_autograder_correct_wrong_hostile(tmp_path, fake_wheel):
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    zip_path, result = _export(tmp_path, fake_wheel, "--secret-file", str(secret_file))
    assert result.exit_code == 0, result.output
    meta = {"users": [{"email": "alice@uni.edu", "sid": "s123", "id": 9}], "id": 1}
    expected_seed = seeds.derive_seed(SECRET, "alice@uni.edu", seeds.DEFAULT_ASSIGNMENT)

    root = _autograder(tmp_path / "ok", zip_path, CORRECT, meta)
    proc, doc = _run(root)
    assert proc.returncode == 0, proc.stderr
    assert [t["name"] for t in doc["tests"]] == EXERCISES
    assert doc["score"] == sum(t["max_score"] for t in doc["tests"]) > 0
    assert str(expected_seed) not in json.dumps(doc) + proc.stdout  # students see these
    assert not (root / "source" / SECRET_NAME).exists()  # deleted before student code ran

    root = _autograder(tmp_path / "wrong", zip_path, _wrong(tmp_path), meta)
    proc, doc = _run(root)
    assert proc.returncode == 0, proc.stderr
    by = {t["name"]: t for t in doc["tests"]}
    ceil = by["conv_output_size"]
    assert ceil["status"] == "failed" and ceil["score"] < ceil["max_score"]  # partial credit
    assert "ceil" in ceil["output"]  # the known mistake is named
    assert by["maxpool2d_forward"]["score"] == by["maxpool2d_forward"]["max_score"]
    assert 0 < doc["score"] < sum(t["max_score"] for t in doc["tests"])

    root = _autograder(tmp_path / "hostile", zip_path, None, meta)
    shutil.rmtree(root / "submission")
    shutil.copytree(_hostile(tmp_path, root), root / "submission")
    proc, doc = _run(root)
    assert proc.returncode == 0, proc.stderr
    assert doc["score"] == 0.0 and len(doc["tests"]) == 2  # ours, not the forged one
    assert all(t["status"] == "failed" for t in doc["tests"])
    assert SECRET not in json.dumps(doc) and SECRET not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_run_autograder_unreadable_and_grader_failure(tmp_path, fake_wheel):
    zip_path, result = _export(tmp_path, fake_wheel, "--seed", "3")
    assert result.exit_code == 0, result.output
    root = _autograder(tmp_path / "empty", zip_path, None)  # an empty submission
    proc, doc = _run(root)
    assert proc.returncode == 2
    assert doc["score"] == 0.0 and "could not be graded" in doc["output"]
    # usability F6: the failure paths are text too, say what to upload, show no container path
    assert doc["output_format"] == doc["test_output_format"] == "text"
    assert "Upload your .py files" in doc["output"] and str(root) not in doc["output"]
    assert " pass " not in doc["output"]  # no command-line advice

    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    zip_path, _ = _export(tmp_path, fake_wheel, "--secret-file", str(secret_file))
    root = _autograder(tmp_path / "nometa", zip_path, CORRECT, meta=None)  # no metadata: no seed
    proc, doc = _run(root)
    assert proc.returncode == 3
    assert "score" not in doc  # a grader failure is never a score
    assert doc["extra_data"]["cnnlab_grader_error"] is True
    assert "autograder itself failed" in doc["output"]
    assert doc["output_format"] == "text"


def _student_questions(tmp_path: Path, name: str, seed: int) -> Path:
    from grader.exercises import questions
    from grader.problemset.generate import render_topic

    folder = tmp_path / name
    folder.mkdir()
    text = render_topic("questions", questions.QUESTIONS, seed=seed, solution=True)
    (folder / "questions.py").write_text(text)
    return folder


@pytest.mark.slow
def test_run_autograder_grades_questions_against_the_submitters_own_problem_set(
    tmp_path, fake_wheel
):
    """Issue 10.5/10.7: per-student seeds on Gradescope, documented metadata (email, no sid).
    A classmate's questions.py, header included, or an edited header, earns what batch gives."""
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    out = tmp_path / "q.zip"
    args = ["export", "gradescope", "--out", str(out), "--wheel", str(fake_wheel)]
    args += ["--secret-file", str(secret_file), "--assignment", "hw1"]
    names = ["q1_conv_layer_params", "q2_output_size", "q7_dense_params"]
    for name in names:
        args += ["-e", name]
    result = CliRunner().invoke(main, args, env={})
    assert result.exit_code == 0, result.output
    alice = seeds.derive_seed(SECRET, "alice@uni.edu", "hw1")
    bob = seeds.derive_seed(SECRET, "bob@uni.edu", "hw1")
    meta = {"id": 5, "users": [{"email": "Alice@uni.edu", "id": 9, "name": "Alice"}]}

    own = _student_questions(tmp_path, "own", alice)
    root = _autograder(tmp_path / "own_run", out, own, meta)
    proc, doc = _run(root)
    assert proc.returncode == 0, proc.stderr
    assert doc["score"] == sum(t["max_score"] for t in doc["tests"]) == 3
    assert str(alice) not in json.dumps(doc) + proc.stdout + proc.stderr

    copied = _student_questions(tmp_path, "copied", bob)  # bob's file, header and all
    assert f"--seed {bob}" in (copied / "questions.py").read_text()
    root = _autograder(tmp_path / "copied_run", out, copied, meta)
    proc, doc = _run(root)
    assert proc.returncode == 0, proc.stderr
    assert doc["score"] == 0.0 and {t["status"] for t in doc["tests"]} == {"failed"}
    # Red-team F4: the feedback of a wrong answer must not give alice's answer away (she could
    # copy it into her next submission).
    from grader import engine, registry

    text = json.dumps(doc) + proc.stdout
    for spec in registry.select(names):
        answer = engine.prepare(spec, alice).cases[0].expected["answer"]
        assert f"expected {answer}" not in text, spec.name
    assert "the expected value is not shown" in text


@pytest.mark.slow
def test_export_builds_a_real_wheel(tmp_path):
    out = tmp_path / "ag.zip"
    result = CliRunner().invoke(main, ["export", "gradescope", "--seed", "1", "--out", str(out)])
    # Fails with "lacks grader/exercises/__init__.py" while pyproject.toml's package list
    # misses grader.exercises: the autograder would then grade nothing.
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as zf:
        wheels = [n for n in zf.namelist() if n.startswith("dist/cnnlab-") and n.endswith(".whl")]
        assert len(wheels) == 1
        inner = tmp_path / "w.whl"
        inner.write_bytes(zf.read(wheels[0]))
    with zipfile.ZipFile(inner) as whl:
        files = set(whl.namelist())
    assert "grader/classroom/gradescope.py" in files and "grader/engine.py" in files
    assert "cnnref/layers.py" in files and "grader/exercises/__init__.py" in files
