"""`cnnlab new-exercise`: the scaffolded package, and clear errors for bad names."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from grader import authoring, registry
from grader.cli import main
from grader.course import tomllib  # tomli on Python 3.10


@pytest.mark.parametrize(
    "args, expected",
    [
        (["1relu", "--topic", "layers"], "exercise name '1relu' is not a Python identifier"),
        (["class", "--topic", "layers"], "exercise name 'class' is not a Python identifier"),
        (["sum", "--topic", "layers"], "would hide Python's builtin 'sum'"),
        (
            ["conv2d_forward", "--topic", "layers"],
            "already exercise 3.1 'conv2d_forward' (built in)",
        ),
        (["fit", "--topic", "transfer"], "already exercise 7.4 'fit' (built in)"),
        (["ReLU", "--topic", "layers"], "must be lower case (snake_case)"),
        (["relu", "--topic", "numpy"], "hides the module 'numpy'"),
        (["relu", "--topic", "questions"], "reserved for the built-in numeric questions"),
        (["relu", "--topic", "Pooling"], "topic 'Pooling' must be lower case"),
    ],
)
def test_bad_names_and_topics_are_clear_errors(tmp_path, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["new-exercise", *args])
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_non_empty_target_is_refused(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(
        main, ["new-exercise", "relu", "--topic", "layers", "--out", str(tmp_path / "pkg")]
    )
    assert result.exit_code == 2 and "exists and is not an empty folder" in result.output
    assert [p.name for p in (tmp_path / "pkg").iterdir()] == ["keep.txt"]


def test_the_scaffold_is_a_package_with_an_entry_point_that_registers(tmp_path, plugin_site):
    out = tmp_path / "pkg"
    result = CliRunner().invoke(
        main, ["new-exercise", "relu", "--topic", "layers", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "exercise 3.5 'relu'" in result.output  # the next free number of the topic
    meta = tomllib.loads((out / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "cnnlab-relu"
    assert meta["project"]["entry-points"]["cnnlab.exercises"] == {"relu": "cnnlab_relu.spec:SPEC"}
    assert (out / "tests" / "test_relu.py").is_file()
    plugin_site.install_folder("cnnlab-relu", out, "cnnlab_relu", {"relu": "cnnlab_relu.spec:SPEC"})
    assert registry.plugin_problems() == []
    spec = registry.get("relu")
    assert (spec.number, spec.topic, spec.harness) == ("3.5", "layers", "call")
    assert [m.name for m in spec.mistakes] == ["negatives_kept"]
    assert all(r.recognisable for r in authoring.mistake_report(spec))
    # once installed, the name is taken
    again = CliRunner().invoke(main, ["new-exercise", "relu", "--topic", "layers", "--out", "x"])
    assert again.exit_code == 2 and "of plugin 'relu' (distribution cnnlab-relu" in again.output


def test_a_new_topic_gets_the_next_chapter(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "new-exercise",
            "batchnorm_forward",
            "--topic",
            "normalization",
            "--out",
            str(tmp_path / "p"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "exercise 10.1 'batchnorm_forward'" in result.output
    assert "'normalization' is a new topic: students get it as normalization.py" in result.output
