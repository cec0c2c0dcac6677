"""Secrets stay out of repositories (issue 10.13): a warning when cnnlab writes a secret-bearing
file inside a git work tree that does not ignore it, the ignore rules the project ships for its
documented output paths, and `cnnlab pretrain` never rewriting the shipped checkpoint."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from grader import vcs
from grader.cli import main

ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-course-secret-0123456789"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _repo(path: Path, gitignore: str | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    if gitignore is not None:
        (path / ".gitignore").write_text(gitignore)
    return path


def test_unignored_in_git(tmp_path, monkeypatch):
    repo = _repo(tmp_path / "repo")
    assert vcs.unignored_in_git(repo / "autograder.zip") == repo.resolve()
    assert vcs.unignored_in_git(repo / "new" / "deep" / "file.zip") == repo.resolve()
    (repo / ".gitignore").write_text("*.zip\n")
    assert vcs.unignored_in_git(repo / "autograder.zip") is None
    outside = tmp_path / "plain"
    outside.mkdir()
    assert vcs.unignored_in_git(outside / "autograder.zip") is None  # not a work tree
    monkeypatch.setenv("PATH", "")  # no git at all: nothing to say
    assert vcs.unignored_in_git(repo / "x.txt") is None


def _export(out: Path, *extra: str):
    wheel = out.parent / "cnnlab-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"stand-in")
    args = ["export", "gradescope", "--out", str(out), "--wheel", str(wheel)]
    return CliRunner().invoke(main, [*args, "-e", "dense_params", *extra], env={})


def test_export_warns_inside_a_work_tree_that_does_not_ignore_it(tmp_path):
    secret = tmp_path / "course.secret"
    secret.write_text(SECRET)
    repo = _repo(tmp_path / "course")
    result = _export(repo / "autograder.zip", "--secret-file", str(secret))
    assert result.exit_code == 0, result.output
    assert "warning: autograder.zip holds the course secret" in result.output
    assert ".gitignore" in result.output and (repo / "autograder.zip").is_file()
    seeded = _export(repo / "fixed.zip", "--seed", "5")
    assert "grading seed" in seeded.output  # the one seed of everyone is a secret too
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    quiet = _export(outside / "autograder.zip", "--secret-file", str(secret))
    assert quiet.exit_code == 0 and "warning" not in quiet.output


def test_the_shipped_gitignore_covers_every_documented_secret_output(tmp_path):
    repo = _repo(tmp_path / "course", (ROOT / ".gitignore").read_text())
    for rel in (
        "autograder.zip",
        "course.secret",
        "variants/s1234/solutions/questions.py",
        "bundles/s1234/README.md",
        "gradebook/grades.csv",
        "submissions/alice/layers.py",
        "pretrained/small_cnn_source.pt",
    ):
        path = repo / rel
        assert vcs.unignored_in_git(path) is None, f"{rel} is not ignored"
    secret = tmp_path / "course.secret"
    secret.write_text(SECRET)
    result = _export(repo / "autograder.zip", "--secret-file", str(secret))
    assert result.exit_code == 0 and "warning" not in result.output


@pytest.mark.slow
def test_generate_for_a_student_warns_when_its_solutions_would_be_committed(tmp_path):
    repo = _repo(tmp_path / "course")
    args = ["generate", "--student", "s1", "--no-notebooks", "--out", str(repo / "var" / "s1")]
    result = CliRunner().invoke(main, args, env={"CNNLAB_COURSE_SECRET": SECRET})
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "solutions" in result.output
    (repo / ".gitignore").write_text("/var/\n")
    again = CliRunner().invoke(main, [*args, "--force"], env={"CNNLAB_COURSE_SECRET": SECRET})
    assert again.exit_code == 0 and "warning" not in again.output


def test_pretrain_without_out_writes_to_pretrained_not_the_shipped_checkpoint(
    tmp_path, monkeypatch
):
    from cnnref import transfer

    shipped = transfer.checkpoint_path()
    before = (shipped.read_bytes(), shipped.with_suffix(".json").read_bytes())
    monkeypatch.chdir(tmp_path)
    args = ["pretrain", "--epochs", "1", "--per-class", "2", "--quiet", "--threads", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    written = tmp_path / "pretrained" / shipped.name
    assert written.is_file() and written.with_suffix(".json").is_file()
    assert str(Path("pretrained") / shipped.name) in result.output
    assert (shipped.read_bytes(), shipped.with_suffix(".json").read_bytes()) == before
