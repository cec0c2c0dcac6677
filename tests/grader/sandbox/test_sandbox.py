"""grader.sandbox.runner: statuses, messages, partial results, notebooks, grader faults."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time

import nbformat
import numpy as np
import pytest

from grader.errors import GraderFailure
from grader.sandbox.runner import Limits, Sandbox
from grader.submission import load_submission

CASE = {"n_in": 32, "kernel_size": 3}
CORRECT = """
def conv_output_size(n_in, kernel_size, stride=1, padding=0, dilation=1):
    return (n_in + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1
"""


@pytest.fixture(scope="module")
def box():
    with Sandbox(Limits(wall_s=2.0, cpu_s=2.0)) as sandbox:
        sandbox.start()
        yield sandbox


def write(tmp_path, name, source):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def run(box, path, function="conv_output_size", cases=(CASE,), **kw):
    return box.run(
        load_submission(path), harness="call", function=function, cases=list(cases), **kw
    )


def test_correct_function_returns_plain_arrays_and_output(box, tmp_path):
    path = write(tmp_path, "sol.py", CORRECT.replace("    return", "    print('hi')\n    return"))
    outcome = run(box, path, cases=[CASE, {"n_in": 7, "kernel_size": 2, "stride": 2}])
    assert [c.status for c in outcome.cases] == ["ok", "ok"]
    assert [c.outputs["out"].item() for c in outcome.cases] == [30, 3]
    assert type(outcome.cases[0].outputs["out"]) is np.ndarray
    assert outcome.output == "hi\nhi\n"
    assert outcome.wall_s > 0


def test_stub_is_not_implemented_with_its_message(box, tmp_path):
    path = write(
        tmp_path,
        "shapes.py",
        """
        def conv_output_size(n_in, kernel_size, stride=1, padding=0, dilation=1):
            raise NotImplementedError("Exercise 1.1: conv_output_size")
        """,
    )
    (case,) = run(box, path).cases
    assert case.status == "not_implemented"
    assert case.message == "NotImplementedError: Exercise 1.1: conv_output_size"


def test_error_message_names_function_file_line(box, tmp_path):
    path = write(
        tmp_path,
        "pooling.py",
        """
        def helper(values):
            return values[5]

        def conv_output_size(n_in, kernel_size, stride=1, padding=0, dilation=1):
            return helper([1, 2])
        """,
    )
    (case,) = run(box, path).cases
    assert case.status == "error"
    assert case.message == "IndexError in helper (pooling.py, line 3): list index out of range"


def test_missing_function_lists_the_files(box, tmp_path):
    write(tmp_path, "layers.py", "X = 1\n")
    write(tmp_path, "pooling.py", "def other(): pass\n")
    (case,) = run(box, tmp_path, module_hint="pooling").cases
    assert case.status == "error"
    assert case.message == (
        "no function named 'conv_output_size' in your submission (your files: layers.py, "
        "pooling.py); define it with exactly this name"
    )


def test_modules_of_a_folder_import_each_other(box, tmp_path):
    write(tmp_path, "shapes.py", CORRECT)
    write(
        tmp_path,
        "params.py",
        """
        from shapes import conv_output_size as size

        def conv2d_params(n):
            return size(n, 3) * 2
        """,
    )
    (case,) = run(box, tmp_path, "conv2d_params", [{"n": 32}], module_hint="params").cases
    assert case.status == "ok" and case.outputs["out"].item() == 60


def test_notebook_runs_cell_by_cell(box, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%matplotlib inline\nimport numpy as np"),
        nbformat.v4.new_code_cell(
            "raise ValueError('an experiment that failed')\ndef dense_params():\n    return 1"
        ),
        nbformat.v4.new_code_cell(CORRECT),
        nbformat.v4.new_code_cell("undefined_name + 1"),
    ]
    path = tmp_path / "hw.ipynb"
    path.write_text(nbformat.writes(nb))
    (case,) = run(box, path).cases
    assert case.status == "ok" and case.outputs["out"].item() == 30
    (missing,) = run(box, path, "dense_params", [{}]).cases
    assert missing.status == "error"
    # the cell that defines it failed: that is the reason given, naming the cell as Jupyter
    # shows it, not "no function named"
    assert missing.message == (
        "ValueError in hw.ipynb, the cell defining dense_params (code cell 2), line 1: an "
        "experiment that failed (so dense_params was not defined)"
    )


def test_timeout_keeps_the_cases_before_it(box, tmp_path):
    path = write(
        tmp_path,
        "sol.py",
        CORRECT.replace("    return", "    while n_in > 100:\n        pass\n    return"),
    )
    cases = [CASE, {"n_in": 500, "kernel_size": 3}, CASE]
    outcome = run(box, path, cases=cases)
    assert [c.status for c in outcome.cases] == ["ok", "timeout", "timeout"]
    assert outcome.cases[0].outputs["out"].item() == 30
    assert outcome.cases[1].message == "killed after 2.0 s (time limit)"


def test_timeout_while_loading_names_the_file_and_says_what_to_do(box, tmp_path):
    """A loop at the top level hangs before the function is ever called: the message says the
    code was being loaded and which file, with the fix (a function, or the __main__ guard)."""
    path = write(tmp_path, "shapes.py", CORRECT + "\nwhile True:\n    pass\n")
    (case,) = run(box, path).cases
    assert case.status == "timeout"
    assert case.message.startswith(
        "killed after 2.0 s (time limit) while your code was being loaded (shapes.py had not "
        "finished); code outside any function runs whenever your work is graded"
    )
    assert '`if __name__ == "__main__":`' in case.message


def test_timeout_after_importing_another_file_names_the_file_that_hangs(box, tmp_path):
    """a.py imports b.py at its top, then loops: the hang is in a.py, not in b.py."""
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "b.py").write_text("HELPER = 1\n")
    (folder / "a.py").write_text("import b\n" + CORRECT + "\nwhile b.HELPER:\n    pass\n")
    (case,) = run(box, folder).cases
    assert case.status == "timeout"
    assert "(a.py had not finished)" in case.message


def test_input_at_the_top_level_says_it_gets_no_answer(box, tmp_path):
    path = write(tmp_path, "shapes.py", "name = input('your name? ')\n" + CORRECT)
    (case,) = run(box, path).cases
    assert case.status == "error"
    assert "EOFError in shapes.py, line 1" in case.message
    assert "input() gets no answer while your work is graded" in case.message


def test_timeout_in_a_notebook_cell_names_the_cell(box, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import numpy as np"),
        nbformat.v4.new_code_cell(
            CORRECT + "\nfor _ in iter(int, 1):  # an endless loop\n    pass"
        ),
    ]
    path = tmp_path / "hw.ipynb"
    path.write_text(nbformat.writes(nb))
    (case,) = run(box, path).cases
    assert case.status == "timeout"
    assert "(hw.ipynb, the cell defining conv_output_size (code cell 2) had not finished)" in (
        case.message
    )
    assert "in a cell of its own that defines nothing" in case.message


def test_timeout_in_the_function_is_not_blamed_on_loading(box, tmp_path):
    """The loop is in the function: the message stays the plain time limit, even when the
    function writes a fake progress marker naming no file of the submission."""
    path = write(
        tmp_path,
        "sol.py",
        "def conv_output_size(**kw):\n"
        "    open('progress.txt', 'w').write('load\\tsecret.py\\tfile')\n"
        "    while True:\n        pass\n",
    )
    (case,) = run(box, path).cases
    assert case.status == "timeout"
    assert case.message == "killed after 2.0 s (time limit)"


def test_timeout_s_overrides_the_wall_limit(box, tmp_path):
    path = write(
        tmp_path, "sol.py", "import time\ndef conv_output_size(**kw):\n    time.sleep(60)\n"
    )
    t0 = time.monotonic()
    (case,) = run(box, path, timeout_s=0.5).cases
    assert case.status == "timeout" and "0.5 s" in case.message
    assert time.monotonic() - t0 < 1.9


def test_crash_keeps_the_cases_before_it(box, tmp_path):
    path = write(
        tmp_path,
        "sol.py",
        CORRECT.replace(
            "    return",
            "    import os, signal\n    if n_in > 100:\n"
            "        os.kill(os.getpid(), signal.SIGABRT)\n    return",
        ),
    )
    outcome = run(box, path, cases=[CASE, {"n_in": 500, "kernel_size": 3}])
    assert [c.status for c in outcome.cases] == ["ok", "crashed"]
    assert outcome.cases[1].message == "crashed with SIGABRT"


def test_child_environment_is_minimal_and_fresh(box, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_SOMETHING", "x")
    path = write(
        tmp_path,
        "sol.py",
        """
        import os
        def probe():
            leftovers = os.path.exists("marker.txt")
            open("marker.txt", "w").close()
            names = sorted(os.environ)
            return [
                int(leftovers),
                int(any(n.startswith("CNNLAB") for n in names)),
                int(os.environ["HOME"] == os.getcwd()),
                int(os.environ.get("OMP_NUM_THREADS") == "1"),
            ]

        def ask():
            return int(input())
        """,
    )
    first = run(box, path, "probe", [{}]).cases[0].outputs["out"].tolist()
    second = run(box, path, "probe", [{}]).cases[0].outputs["out"].tolist()
    assert first == second == [0, 0, 1, 1]  # a fresh folder each run, no CNNLAB_* variables
    (case,) = run(box, path, "ask", [{}]).cases  # stdin is /dev/null
    assert case.status == "error" and case.message.startswith("EOFError")


def test_unknown_harness_is_a_grader_failure(box, tmp_path):
    path = write(tmp_path, "sol.py", CORRECT)
    with pytest.raises(GraderFailure, match="could not set itself up"):
        box.run(load_submission(path), harness="no-such-harness", function="f", cases=[{}])
    assert run(box, path).cases[0].status == "ok"  # the sandbox recovers


def test_dead_fork_server_is_restarted(tmp_path):
    path = write(tmp_path, "sol.py", CORRECT)
    with Sandbox(Limits(wall_s=2)) as sandbox:
        assert run(sandbox, path).cases[0].status == "ok"
        old = sandbox.server_pid
        os.kill(old, signal.SIGKILL)
        time.sleep(0.2)
        assert run(sandbox, path).cases[0].status == "ok"
        assert sandbox.server_pid != old


def test_unwritable_workroot_is_a_grader_failure(tmp_path):
    path = write(tmp_path, "sol.py", CORRECT)
    with (
        Sandbox(workroot=tmp_path / "does" / "not" / "exist") as sandbox,
        pytest.raises(GraderFailure, match="temporary folder"),
    ):
        run(sandbox, path)


def test_per_run_overhead_is_tens_of_milliseconds(box, tmp_path):
    path = write(tmp_path, "sol.py", CORRECT)
    run(box, path)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        assert run(box, path).cases[0].status == "ok"
        times.append(time.perf_counter() - t0)
    # ~20-40 ms on an idle machine; generous for a busy shared CI box
    assert statistics.median(times) < 0.5, times


@pytest.mark.slow
def test_torch_imports_within_the_memory_limit_without_preloading(tmp_path):
    path = write(
        tmp_path,
        "sol.py",
        """
        def conv_output_size(n_in, kernel_size, stride=1, padding=0, dilation=1):
            import torch
            x = torch.zeros(1, 1, n_in, n_in)
            w = torch.ones(1, 1, kernel_size, kernel_size)
            return torch.nn.functional.conv2d(x, w).shape[-1]
        """,
    )
    with Sandbox(Limits(wall_s=60, cpu_s=60), preload_torch=False) as sandbox:
        (case,) = run(sandbox, path).cases
    assert case.status == "ok", case
    assert case.outputs["out"].item() == 30


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(entry))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    return kids


@pytest.mark.slow
def test_parent_killed_mid_run_leaves_no_server_or_child(tmp_path):
    """A grading process killed with SIGKILL (a batch worker stuck and force-killed) cannot
    kill its run at the wall limit; the fork server's backstop does, then the server sees its
    stdin close and exits. Nothing is left sleeping."""
    (tmp_path / "sub.py").write_text(
        "import time\n\n"
        "def conv_output_size(n_in, kernel_size, stride=1, padding=0, dilation=1):\n"
        "    time.sleep(1000)\n"
    )
    script = (
        "from grader.sandbox.runner import Limits, Sandbox\n"
        "from grader.submission import load_submission\n"
        f"sub = load_submission({str(tmp_path / 'sub.py')!r})\n"
        "box = Sandbox(Limits(wall_s=2.0), preload_torch=False)\n"
        "box.start()\n"
        "print(box.server_pid, flush=True)\n"
        "box.run(sub, harness='call', function='conv_output_size',\n"
        "        cases=[{'n_in': 5, 'kernel_size': 3}])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    server = int(proc.stdout.readline())
    deadline = time.monotonic() + 20
    while not _children(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = _children(server)
    assert child, "the run never started"
    proc.kill()
    proc.wait()
    # wall 2 s + backstop margin 2 s; allow for a loaded machine
    deadline = time.monotonic() + 20
    while (_alive(server) or any(_alive(c) for c in child)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(c) for c in child), "the sleeping child outlived its grader"
    assert not _alive(server), "the fork server outlived its grader"
