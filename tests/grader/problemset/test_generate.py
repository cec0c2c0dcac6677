"""Generation: stubs, solutions and notebooks from cnnref; drift of the committed output;
determinism; refusing to overwrite edited work; the `cnnlab generate` command."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from click.testing import CliRunner

from grader import registry
from grader.cli import main
from grader.errors import ConfigError, GraderFailure
from grader.problemset import generate as gen
from grader.registry import ExerciseSpec
from grader.seeds import DEFAULT_SEED

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def default_files() -> dict[str, str]:
    return gen.render_problem_set(seed=DEFAULT_SEED)


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def _spec(fn, *, name=None, number="8.1", topic="params") -> ExerciseSpec:
    return ExerciseSpec(
        name=name or fn.__name__,
        number=number,
        topic=topic,
        title="a test exercise",
        points=1.0,
        function=fn.__name__,
        harness="call",
        make_cases=lambda rng: [{}],
        reference=lambda case: {},
        reference_function=fn,
    )


# --------------------------------------------------------------------------- drift


def test_committed_output_matches_the_generator(default_files):
    """exercises/ and solutions/ are the default seed's output: regenerate after changing
    cnnref, a spec or a template (`cnnlab generate`), never edit them by hand."""
    stale = []
    for rel, text in default_files.items():
        path = ROOT / rel
        if not path.is_file() or path.read_text() != text:
            stale.append(rel)
    assert not stale, f"run `cnnlab generate` and commit: these differ from the generator: {stale}"
    for root in ("exercises", "solutions"):
        listed = set(gen.read_manifest(ROOT / root))
        produced = {rel.split("/", 1)[1] for rel in default_files if rel.startswith(root + "/")}
        assert listed == produced, f"{root}/{gen.MANIFEST_NAME} is stale: run `cnnlab generate`"


def test_same_seed_is_byte_identical_across_processes(default_files, tmp_path):
    """No dict/set order, hash seed or clock leaks into the output."""
    code = (
        "import json, sys; from grader.problemset.generate import render_problem_set; "
        f"json.dump(render_problem_set(seed={DEFAULT_SEED}), sys.stdout)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(out.stdout) == default_files


def test_another_seed_changes_the_questions_only(default_files):
    other = gen.render_problem_set(seed=DEFAULT_SEED + 1)
    assert other.keys() == default_files.keys()
    assert other["exercises/questions.py"] != default_files["exercises/questions.py"]
    for rel in ("exercises/pooling.py", "solutions/layers.py"):
        # only the header line (which names the seed) differs
        assert other[rel].splitlines()[1:] == default_files[rel].splitlines()[1:]
        assert f"--seed {DEFAULT_SEED + 1}" in other[rel].splitlines()[0]


# --------------------------------------------------------------------------- stubs


def _exercise_specs():
    return [s for s in registry.all_specs() if s.reference_function is not None]


@pytest.mark.parametrize("spec", _exercise_specs(), ids=lambda s: s.name)
def test_stub_has_the_reference_signature_docstring_and_raises(spec, default_files, tmp_path):
    path = tmp_path / f"{spec.topic}.py"
    path.write_text(default_files[f"exercises/{spec.topic}.py"])
    module = _load(path, f"stub_{spec.topic}")
    stub = getattr(module, spec.function)
    reference = inspect.unwrap(spec.reference_function)
    assert list(inspect.signature(stub).parameters) == list(inspect.signature(reference).parameters)
    for a, b in zip(
        inspect.signature(stub).parameters.values(),
        inspect.signature(reference).parameters.values(),
        strict=True,
    ):
        assert (a.kind, a.default) == (b.kind, b.default)
    assert inspect.getdoc(stub) == inspect.getdoc(reference)
    if inspect.isclass(reference):  # an nn.Module block: its forward raises
        assert f'raise NotImplementedError("Exercise {spec.number}: {spec.name}")' in (
            path.read_text()
        )
        return
    with pytest.raises(NotImplementedError, match=rf"^Exercise {spec.number}: {spec.name}$"):
        stub(
            *[None]
            * sum(
                p.default is p.empty and p.kind == p.POSITIONAL_OR_KEYWORD
                for p in inspect.signature(stub).parameters.values()
            ),
            **{
                p.name: None
                for p in inspect.signature(stub).parameters.values()
                if p.kind == p.KEYWORD_ONLY and p.default is p.empty
            },
        )


def test_stubs_hold_no_reference_body(default_files):
    """A stub keeps the helper types (NamedTuple caches, layer descriptions), never the
    reference's helper functions or bodies."""
    for rel, text in default_files.items():
        if not (rel.startswith("exercises/") and rel.endswith(".py")):
            continue
        tree = ast.parse(text)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                body = [n for n in node.body if not isinstance(n, ast.Expr)]  # not the docstring
                assert len(body) == 1 and isinstance(body[0], ast.Raise), (rel, node.name)
        assert not re.search(r"^\s*(import|from) cnnref", text, flags=re.M), rel
    layers = default_files["exercises/layers.py"]
    assert "class Conv2dCache(NamedTuple)" in layers  # the student builds the cache


def test_stub_header_says_how_it_was_made(default_files):
    first = default_files["exercises/pooling.py"].splitlines()[0]
    assert first.startswith(f"# generated by cnnlab generate --seed {DEFAULT_SEED}; do not edit")
    assert default_files["solutions/pooling.py"].splitlines()[0] == (
        f"# generated by cnnlab generate --seed {DEFAULT_SEED}; do not edit (regenerate instead)"
    )


# --------------------------------------------------------------------------- solutions


def test_solutions_run_without_cnnref(default_files, tmp_path):
    for rel, text in default_files.items():
        if rel.startswith("solutions/") and rel.endswith(".py"):
            (tmp_path / Path(rel).name).write_text(text)
            assert not re.search(r"^\s*(import|from) cnnref", text, flags=re.M), rel
    topics = sorted(p.stem for p in tmp_path.glob("*.py"))
    code = (
        "import sys; sys.modules['cnnref'] = None; "  # any `import cnnref...` now fails
        f"sys.path.insert(0, {str(tmp_path)!r}); "
        + "; ".join(f"import {t}" for t in topics)
        + "; import numpy as np; from layers import conv2d_forward; "
        "out, _ = conv2d_forward(np.ones((1, 1, 4, 4)), np.ones((2, 1, 3, 3)), np.zeros(2)); "
        "print(out.shape, out.sum())"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(1, 2, 2, 2) 72.0"


@pytest.mark.parametrize("spec", _exercise_specs(), ids=lambda s: s.name)
def test_solution_agrees_with_the_reference(spec, default_files, tmp_path):
    path = tmp_path / f"{spec.topic}.py"
    path.write_text(default_files[f"solutions/{spec.topic}.py"])
    module = _load(path, f"solution_{spec.topic}")
    from grader.engine import prepare

    prepared = prepare(spec, 11)
    if spec.harness != "call":
        assert callable(getattr(module, spec.function))
        return  # forward/backward/receptive harnesses are exercised by the grading tests
    for case in prepared.cases:
        got = getattr(module, spec.function)(**case.inputs)
        for value in case.expected.values():
            np.testing.assert_array_equal(np.asarray(got), value)


def test_cross_module_helpers_are_inlined():
    """cnnref.params.summary imports conv_output_size from cnnref.shapes inside its body: the
    solution carries that function (and its helpers) and no import of cnnref."""
    from cnnref import params

    code = gen.module_code([_spec(params.summary)], solution=True)
    text = "\n".join(code.helpers) + code.exercises[0][1]
    assert "def conv_output_size(" in text
    assert "cnnref" not in text
    stub = gen.module_code([_spec(params.summary)], solution=False)
    helpers = "\n".join(stub.helpers)
    assert "class Conv2D" in helpers and "class Summary" in helpers  # types the student uses
    assert "def conv_output_size(" not in helpers  # a body helper is part of the answer


def _undocumented(x):
    return x


def test_reference_without_docstring_is_refused():
    with pytest.raises(GraderFailure, match="no docstring"):
        gen.function_code(_undocumented)


def test_colliding_helpers_are_renamed():
    """params and shapes both define a different _check_int: the foreign one is renamed."""
    from cnnref import params

    code = gen.module_code([_spec(params.summary)], solution=True)
    namespace: dict = {}
    exec("\n".join(code.imports) + "\n" + "\n".join(code.helpers) + code.exercises[0][1], namespace)
    assert "_shapes_check_int" in namespace and "_check_int" in namespace
    layers = [
        namespace["Conv2D"](8, 3, padding="same"),
        namespace["Flatten"](),
        namespace["Dense"](4),
    ]
    expected = params.summary(
        (32, 32, 3), [params.Conv2D(8, 3, padding="same"), params.Flatten(), params.Dense(4)]
    )
    assert namespace["summary"]((32, 32, 3), layers).total_params == expected.total_params


def test_spec_without_reference_function_is_refused():
    spec = _spec(lambda: None)
    spec = ExerciseSpec(**{**spec.__dict__, "reference_function": None})
    with pytest.raises(GraderFailure, match="no reference_function"):
        gen.module_code([spec], solution=False)


def test_sort_imports_groups_and_merges():
    lines = ["import numpy as np", "from typing import NamedTuple", "from typing import Any"]
    assert gen.sort_imports(lines) == (
        "from typing import Any, NamedTuple",
        "",
        "import numpy as np",
    )


# --------------------------------------------------------------------------- notebooks


@pytest.mark.parametrize("kind", ["exercises", "solutions"])
def test_notebooks_are_valid_nbgrader_documents(kind, default_files):
    for rel, text in default_files.items():
        if not (rel.startswith(f"{kind}/notebooks/") and rel.endswith(".ipynb")):
            continue
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
        meta = [c.metadata["nbgrader"] for c in nb.cells]
        ids = [m["grade_id"] for m in meta]
        assert len(ids) == len(set(ids)), rel
        assert all(m["schema_version"] == 3 for m in meta)
        tests = [m for m in meta if m["grade"]]
        answers = [c for c in nb.cells if c.metadata["nbgrader"]["solution"]]
        assert tests and len(tests) == len(answers), rel
        assert all(m["locked"] and m["points"] > 0 for m in tests)
        sources = "\n".join(c.source for c in answers)
        if kind == "solutions":
            # every answer cell has a solution region (a class exercise one per method)
            assert all("### BEGIN SOLUTION" in c.source for c in answers), rel
            assert sources.count("### BEGIN SOLUTION") == sources.count("### END SOLUTION")
        # no hidden-test region (nbgrader would warn "checksum has changed" for every student)
        # and no cell names the seed (nbgrader releases every cell but the solutions)
        assert "HIDDEN TESTS" not in text, rel
        assert str(DEFAULT_SEED) not in text and "--seed" not in text, rel
        if kind == "exercises":
            assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
            # every answer cell raises (a class exercise once per method)
            assert all("raise NotImplementedError(" in c.source for c in answers), rel


@pytest.mark.parametrize("kind", ["exercises", "solutions"])
def test_every_notebook_code_cell_compiles(kind, default_files):
    """A cell that does not compile would cost a correct student the whole exercise."""
    for rel, text in default_files.items():
        if rel.startswith(f"{kind}/notebooks/") and rel.endswith(".ipynb"):
            for i, cell in enumerate(nbformat.reads(text, as_version=4).cells):
                if cell.cell_type == "code":
                    compile(cell.source, f"{rel}, cell {i}", "exec")


def test_class_exercises_get_one_solution_region_per_method(default_files):
    nb = nbformat.reads(default_files["solutions/notebooks/architectures.ipynb"], as_version=4)
    (cell,) = [c for c in nb.cells if c.source.startswith("class BasicBlock")]
    tree = ast.parse(cell.source)
    methods = [m.name for m in tree.body[0].body if isinstance(m, ast.FunctionDef)]
    assert methods == ["__init__", "forward"]
    assert cell.source.count("### BEGIN SOLUTION") == 2
    # super().__init__() stays outside the region, so the student's module can be built
    head, _ = cell.source.split("### BEGIN SOLUTION", 1)
    assert head.rstrip().endswith("super().__init__()")


@pytest.mark.slow
@pytest.mark.parametrize("kind,expect_full", [("solutions", True), ("exercises", False)])
def test_generated_notebooks_grade_as_expected(kind, expect_full, default_files, tmp_path):
    """Every topic notebook, graded through the sandbox: the nbgrader source (solutions)
    gets full marks, the student copy is not_implemented everywhere."""
    from grader import engine
    from grader.results import Status
    from grader.sandbox.runner import Sandbox

    with Sandbox() as box:
        for rel, text in sorted(default_files.items()):
            if not (rel.startswith(f"{kind}/notebooks/") and rel.endswith(".ipynb")):
                continue
            topic = Path(rel).stem
            names = [s.name for s in registry.all_specs() if s.topic == topic]
            path = tmp_path / kind / Path(rel).name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            result = engine.grade(
                path, seed=11, exercises=names, sandbox=box, problem_seed=DEFAULT_SEED
            )
            for r in result.exercises:
                if expect_full:
                    assert r.status is Status.PASSED, (rel, r.name, r.feedback)
                else:
                    assert r.status is Status.NOT_IMPLEMENTED, (rel, r.name, r.feedback)


def test_notebook_points_match_the_registry(default_files):
    points = {s.name: s.points for s in registry.all_specs()}
    seen = {}
    for rel, text in default_files.items():
        if rel.startswith("solutions/notebooks/"):
            for cell in json.loads(text)["cells"]:
                meta = cell["metadata"]["nbgrader"]
                if meta["grade"]:
                    seen[meta["grade_id"].removeprefix("test_")] = meta["points"]
    assert seen == points


# --------------------------------------------------------------------------- writing


def test_write_refuses_to_overwrite_edited_files(tmp_path):
    files = {"exercises/a.py": "x = 1\n", "solutions/a.py": "x = 2\n"}
    gen.write_problem_set(files, tmp_path)
    (tmp_path / "exercises/a.py").write_text("x = 'my work'\n")
    new = {"exercises/a.py": "x = 3\n", "solutions/a.py": "x = 4\n"}
    with pytest.raises(ConfigError, match=r"edited since.*exercises/a.py.*--force"):
        gen.write_problem_set(new, tmp_path)
    assert (tmp_path / "exercises/a.py").read_text() == "x = 'my work'\n"  # nothing lost
    assert (tmp_path / "solutions/a.py").read_text() == "x = 2\n"  # nothing half-written
    report = gen.write_problem_set(new, tmp_path, force=True)
    assert set(report.written) == {"exercises/a.py", "solutions/a.py"}
    assert (tmp_path / "exercises/a.py").read_text() == "x = 3\n"


def test_write_refuses_unknown_existing_files_and_removes_stale_ones(tmp_path):
    (tmp_path / "exercises").mkdir()
    (tmp_path / "exercises/a.py").write_text("mine\n")
    with pytest.raises(ConfigError):
        gen.write_problem_set({"exercises/a.py": "gen\n"}, tmp_path)
    gen.write_problem_set({"exercises/b.py": "b\n", "exercises/c.py": "c\n"}, tmp_path)
    report = gen.write_problem_set({"exercises/b.py": "b\n"}, tmp_path)
    assert report.removed == ("exercises/c.py",) and report.unchanged == ("exercises/b.py",)
    assert not (tmp_path / "exercises/c.py").exists()
    assert (tmp_path / "exercises/a.py").read_text() == "mine\n"  # never ours: kept
    assert not list(tmp_path.rglob("*.tmp"))
    assert oct((tmp_path / "exercises/b.py").stat().st_mode & 0o777) != "0o600"


def test_write_into_a_file_is_a_clear_error(tmp_path):
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        gen.write_problem_set({"exercises/a.py": ""}, target)


# --------------------------------------------------------------------------- the command


def test_generate_command_writes_a_problem_set(tmp_path):
    result = CliRunner().invoke(main, ["generate", "--seed", "7", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "seed 7" in result.output
    text = (tmp_path / "exercises/questions.py").read_text()
    assert text.startswith("# generated by cnnlab generate --seed 7;")
    again = CliRunner().invoke(main, ["generate", "--seed", "7", "--out", str(tmp_path)])
    assert again.exit_code == 0 and "0 written" in again.output


def test_generate_student_variants_differ_and_need_the_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("CNNLAB_COURSE_SECRET", raising=False)
    monkeypatch.delenv("CNNLAB_COURSE_SECRET_FILE", raising=False)
    missing = CliRunner().invoke(main, ["generate", "--student", "s1", "--out", str(tmp_path)])
    assert missing.exit_code == 2 and "course secret" in missing.output
    secret = tmp_path / "course.secret"
    secret.write_text("a long random course secret\n")
    texts = []
    for student in ("s1", "s2"):
        out = tmp_path / student
        args = ["generate", "--student", student, "--secret-file", str(secret), "--out", str(out)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        text = (out / "exercises/questions.py").read_text()
        assert f"--student {student}" in text.splitlines()[0]
        assert "a long random course secret" not in text
        texts.append(text.split("\n", 1)[1])
    assert texts[0] != texts[1]


def test_generate_seed_and_student_together_is_a_usage_error(tmp_path):
    args = ["generate", "--seed", "3", "--student", "s1", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "either --seed or --student" in result.output
