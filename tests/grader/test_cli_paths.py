"""Output paths a user gets wrong: a clear message naming the path they gave, exit status 2,
before any slow work, never a traceback (usability test F7, F8)."""

from __future__ import annotations

import errno
import os

import pytest
from click.testing import CliRunner

from grader import render
from grader.cli import main
from grader.commands._common import describe_os_error
from grader.errors import ConfigError


def test_the_temporary_name_of_an_atomic_write_is_reported_as_the_users_path(tmp_path):
    exc = PermissionError(errno.EPERM, "Operation not permitted", str(tmp_path / ".rel.t26s3thm"))
    assert describe_os_error(exc).startswith(f"cannot use {str(tmp_path / 'rel')!r}")
    exc = PermissionError(errno.EPERM, "x", str(tmp_path / ".grades.csv.61q54iq4.tmp"))
    assert str(tmp_path / "grades.csv") in describe_os_error(exc)


def test_a_file_where_a_folder_must_be_is_named(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    exc = FileExistsError(errno.EEXIST, "File exists", str(afile))
    assert describe_os_error(exc) == (
        f"{str(afile)!r} is a file, not a folder; choose another path (e.g. --out)"
    )
    exc = NotADirectoryError(errno.ENOTDIR, "Not a directory", str(afile / "x" / "y.zip"))
    assert "is a file, not a folder" in describe_os_error(exc)


def test_saliency_refuses_an_out_under_a_file_before_the_model_runs(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = CliRunner().invoke(main, ["saliency", "--out", str(afile / "g.png")])
    assert result.exit_code == 2, result.output
    assert "is a file, not a folder" in result.output and "Traceback" not in result.output


def test_export_names_the_file_in_the_way(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    args = ["export", "gradescope", "--seed", "1", "--out", str(afile / "x.zip")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert f"{str(afile)!r} is a file, not a folder" in result.output


def test_a_report_path_without_write_permission_is_refused_before_grading(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    real = os.access

    def access(path, mode):
        return False if str(path) == str(folder) else real(path, mode)

    monkeypatch.setattr(os, "access", access)
    with pytest.raises(ConfigError, match="no permission"):
        render.check_report_path(folder / "r.json", "--json")
