"""The strong proof of plugins: real packages installed with pip into a throwaway virtual
environment, found through their ``cnnlab.exercises`` entry points, and used by every command.

The environment (``--system-site-packages``, so numpy and torch are shared) gets this checkout
on its path and two plugins, installed with ``pip install --no-deps --no-build-isolation``:
the worked example ``examples/avgpool_plugin`` and a package made by ``cnnlab new-exercise``.
Then, with the environment's interpreter: ``list``, ``generate``, ``release`` (and grading
inside the bundle), ``grade`` (the generated solution, a known mistake, the unfilled stub),
``batch`` over three students, the scaffold's own tests, and an attack on the plugin's
reference from student code.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "avgpool_plugin"
SEED = 5

pytestmark = pytest.mark.slow


class Env:
    """A virtual environment and how to run cnnlab in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.python = root / "venv" / "bin" / "python"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("CNNLAB_", "PYTHON"))}
        self.env["XDG_CONFIG_HOME"] = str(root / "config")

    def run(self, *args: str, cwd: Path | None = None, check: bool = True, timeout: float = 300):
        proc = subprocess.run(
            [str(self.python), *args],
            cwd=cwd or self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode not in (0, 1):
            raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def cnnlab(self, *args: str, **kw):
        return self.run("-m", "grader.cli", *args, **kw)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    root = tmp_path_factory.mktemp("plugin-venv")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "venv",
            "--system-site-packages",
            "--without-pip",
            str(root / "venv"),
        ],
        check=True,
    )
    e = Env(root)
    purelib = e.run("-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout
    # this checkout's grader and cnnref come first (before any other cnnlab install)
    (Path(purelib.strip()) / "cnnlab_checkout.pth").write_text(str(ROOT) + "\n")
    made = e.cnnlab("new-exercise", "relu_forward", "--topic", "layers", "--out", "relu")
    assert "exercise 3.5 'relu_forward'" in made.stdout, made.stdout + made.stderr
    shutil.copytree(EXAMPLE, root / "avgpool", ignore=shutil.ignore_patterns("__pycache__"))
    install = e.run(
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        str(root / "avgpool"),
        str(root / "relu"),
    )
    assert install.returncode == 0, install.stderr
    which = e.run(
        "-c", "import grader, avgpool_plugin; print(grader.__file__, avgpool_plugin.__file__)"
    )
    grader_file, plugin_file = which.stdout.split()
    assert Path(grader_file).is_relative_to(ROOT)
    assert Path(plugin_file).is_relative_to(root / "venv")  # installed, not the source folder
    return e


PLUGIN_EXERCISES = ("avgpool2d_forward", "avgpool2d_backward", "relu_forward")


def test_the_plugins_are_listed_with_their_distributions(env):
    out = env.cnnlab("list").stdout
    assert "30 exercises" in out
    lines = {ln.split()[1]: ln for ln in out.splitlines() if ln[:5].strip()[:1].isdigit()}
    assert "[plugin cnnlab-avgpool]" in lines["avgpool2d_backward"]
    assert "4.4" in lines["avgpool2d_backward"] and "pooling" in lines["avgpool2d_backward"]
    assert "[plugin cnnlab-relu-forward]" in lines["relu_forward"]
    # the environment this test runs in has no plugin: the built-in set is untouched there
    assert "avgpool2d_backward" not in sysconfig.get_paths()["purelib"]


def test_the_scaffolded_package_passes_its_own_tests_through_the_grader(env):
    proc = env.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=env.root / "relu")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "4 passed" in proc.stdout


@pytest.fixture(scope="module")
def generated(env) -> Path:
    out = env.root / "ps"
    env.cnnlab("generate", "--seed", str(SEED), "--out", str(out))
    return out


def test_generation_makes_stub_solution_and_notebook_of_the_plugin_exercises(generated):
    stub = (generated / "exercises" / "pooling.py").read_text()
    solution = (generated / "solutions" / "pooling.py").read_text()
    assert 'raise NotImplementedError("Exercise 4.4: avgpool2d_backward")' in stub
    assert "class AvgPoolCache(NamedTuple)" in stub
    assert "None, None] / p**2" in solution and "None, None] / p**2" not in stub
    notebook = json.loads((generated / "exercises" / "notebooks" / "pooling.ipynb").read_text())
    assert any("avgpool2d_backward" in "".join(c["source"]) for c in notebook["cells"])
    assert "relu_forward" in (generated / "exercises" / "layers.py").read_text()
    for path in (generated / "exercises").rglob("*"):
        if path.is_file():
            assert "avgpool_plugin" not in path.read_text(errors="replace"), path


def _grade(env, path: Path, *extra: str) -> dict:
    out = env.root / "grade.json"
    args = ["grade", str(path), "--seed", str(SEED), "--json", str(out)]
    for name in PLUGIN_EXERCISES:
        args += ["-e", name]
    proc = env.cnnlab(*args, *extra)
    doc = json.loads(out.read_text())
    out.unlink()
    return {e["name"]: e for e in doc["exercises"]} | {"_stdout": proc.stdout}


def test_grading_the_solution_stub_and_a_known_mistake(env, generated, tmp_path):
    results = _grade(env, generated / "solutions")
    for name in PLUGIN_EXERCISES:
        assert results[name]["status"] == "passed", results[name]
        assert results[name]["score"] == results[name]["max_score"] > 0
    stubs = _grade(env, generated / "exercises")
    assert {stubs[n]["status"] for n in PLUGIN_EXERCISES} == {"not_implemented"}
    wrong = tmp_path / "wrong"
    shutil.copytree(generated / "solutions", wrong)
    pooling = wrong / "pooling.py"
    text = pooling.read_text()
    assert text.count("j * s + p] +=") == 1
    pooling.write_text(text.replace("j * s + p] +=", "j * s + p] ="))
    results = _grade(env, wrong)
    backward = results["avgpool2d_backward"]
    assert (backward["status"], backward.get("mistake")) == ("failed", "overlap_overwritten")
    assert "overlapping windows overwritten instead of accumulated" in backward["feedback"]
    assert results["avgpool2d_forward"]["status"] == "passed"


def test_the_bundle_carries_the_plugin_exercises_but_not_the_plugin(env, generated):
    bundle = env.root / "bundle"
    env.cnnlab("release", "--seed", str(SEED), "--out", str(bundle))
    assert (bundle / "cases" / "avgpool2d_backward.npz").is_file()
    assert (bundle / "cases" / "relu_forward.npz").is_file()
    solved = "dout[:, :, i, j, None, None] / p**2"  # the reference's body: solutions only
    for path in bundle.rglob("*"):
        assert "avgpool_plugin" not in path.name and "cnnlab_relu" not in path.name, path
        if path.is_file() and path.suffix in (".py", ".json", ".md", ".ipynb"):
            text = path.read_text(errors="replace")
            assert solved not in text and "np.maximum(x, 0.0)" not in text, path
            assert "import avgpool_plugin" not in text and "from avgpool_plugin" not in text
    # students grade inside the bundle against its public cases, without the plugin
    shutil.copy(generated / "solutions" / "pooling.py", bundle / "exercises" / "pooling.py")
    env.run(
        "-m",
        "grader",
        "grade",
        "exercises/",
        "-e",
        "avgpool2d_backward",
        "-e",
        "relu_forward",
        "--json",
        "bundle.json",
        cwd=bundle,
    )
    doc = json.loads((bundle / "bundle.json").read_text())
    status = {e["name"]: e["status"] for e in doc["exercises"]}
    assert status == {"avgpool2d_backward": "passed", "relu_forward": "not_implemented"}


def test_batch_grades_the_plugin_exercises_of_a_class(env, generated):
    subs = env.root / "submissions"
    (subs / "alice").mkdir(parents=True)
    shutil.copy(generated / "solutions" / "pooling.py", subs / "alice" / "pooling.py")
    shutil.copy(generated / "solutions" / "layers.py", subs / "alice" / "layers.py")
    (subs / "bob").mkdir()
    text = (generated / "solutions" / "pooling.py").read_text()
    (subs / "bob" / "pooling.py").write_text(text.replace("None, None] / p**2", "None, None]"))
    shutil.copytree(generated / "exercises", subs / "carol")
    args = ["batch", str(subs), "--seed", str(SEED), "--out", str(env.root / "gradebook")]
    for name in PLUGIN_EXERCISES:
        args += ["-e", name]
    proc = env.cnnlab(*args, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["student"]: r for r in csv.DictReader((env.root / "gradebook" / "grades.csv").open())}
    assert set(rows) == {"alice", "bob", "carol"}
    assert float(rows["alice"]["total"]) == float(rows["alice"]["max_total"]) == 1 + 3 + 1
    bob = (env.root / "gradebook" / "feedback").rglob("bob.md")
    assert "gradient not divided" in next(bob).read_text()
    assert float(rows["bob"]["avgpool2d_backward"]) == 0
    assert float(rows["bob"]["avgpool2d_forward"]) == 1
    assert float(rows["carol"]["total"]) == 0


ATTACK = """
import importlib


def relu_forward(x):
    found = []
    try:
        importlib.import_module("cnnlab_relu_forward.reference")
        found.append("imported the plugin")
    except Exception as exc:
        found.append(f"import: {type(exc).__name__}: {exc}")
    try:
        with open(PATH) as fh:
            found.append("read the reference: " + fh.read(40))
    except Exception as exc:
        found.append(f"read: {type(exc).__name__}: {exc}")
    raise RuntimeError("; ".join(found))
"""


def test_student_code_cannot_import_or_read_the_plugins_reference(env, tmp_path):
    reference = env.run(
        "-c", "import cnnlab_relu_forward.reference as r; print(r.__file__)"
    ).stdout.strip()
    assert Path(reference).is_file()
    attack = tmp_path / "layers.py"
    attack.write_text(ATTACK.replace("PATH", repr(reference)))
    out = tmp_path / "r.json"
    env.cnnlab("grade", str(attack), "-e", "relu_forward", "--seed", "1", "--json", str(out))
    (result,) = json.loads(out.read_text())["exercises"]
    feedback = result["feedback"]
    assert result["status"] == "error", result
    assert "imported the plugin" not in feedback and "read the reference" not in feedback
    # Which layer stopped it: the filesystem allow-list (Landlock, grader/sandbox/filesystem.py)
    # leaves every file of a distribution with a cnnlab.exercises entry point out of what the
    # child may read (the import finds nothing, the open is refused by the kernel); where the
    # kernel has no Landlock, the audit hook refuses both (plugin packages are blocked modules
    # and forbidden paths, grader/sandbox/runner.py), with its own message.
    audit = "is not allowed in graded code"
    assert "import: ModuleNotFoundError" in feedback or (
        "import: PermissionError" in feedback and audit in feedback
    ), feedback
    assert "read: PermissionError" in feedback or "read: FileNotFoundError" in feedback, feedback


def test_the_gradescope_export_ships_a_wheel_of_the_plugin(env, tmp_path):
    import zipfile

    fake_cnnlab = tmp_path / "cnnlab-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(fake_cnnlab, "w") as whl:
        for name in (
            "grader/engine.py",
            "grader/sandbox/runner.py",
            "grader/exercises/__init__.py",
        ):
            whl.writestr(name, "")
    out = tmp_path / "autograder.zip"
    proc = env.cnnlab(
        "export",
        "gradescope",
        "--seed",
        "3",
        "--wheel",
        str(fake_cnnlab),
        "--out",
        str(out),
        "-e",
        "avgpool2d_backward",
        "-e",
        "conv2d_params",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "with the plugin wheel cnnlab_avgpool-0.1.0-py3-none-any.whl" in proc.stdout
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        setup = zf.read("setup.sh").decode()
        plugin = zf.read("dist/cnnlab_avgpool-0.1.0-py3-none-any.whl")
    assert "dist/cnnlab-0.1.0-py3-none-any.whl" in names
    assert not any("relu" in n for n in names)  # only the plugins the exercises need
    assert "pip install --no-cache-dir dist/*.whl" in setup
    assert "registry.select(" in setup  # the image build fails if an exercise is missing
    whl = tmp_path / "plugin.whl"
    whl.write_bytes(plugin)
    with zipfile.ZipFile(whl) as zf:
        assert "avgpool_plugin/reference.py" in zf.namelist()
        entry = next(n for n in zf.namelist() if n.endswith("entry_points.txt"))
        assert "[cnnlab.exercises]" in zf.read(entry).decode()
