"""Every case 1-25 of SECURITY.md against its fixture in ``tests/fixtures/security/``.

Sandbox level: the table :data:`TABLE` maps (fixture, function) to the sandbox status and a
fragment of the message; generic checks run on every row (no ``LEAK`` printed, output capped,
no outputs unless ``ok``). Cases that need more than a status (leftover processes, canary
files, secrets, network, fresh state, copies of inputs) have their own tests below. Engine
level: grading each cheating fixture never gives ``passed``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from grader.sandbox.runner import Limits, RunOutcome, Sandbox
from grader.submission import load_submission

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "security"
LIMITS = Limits(wall_s=2.0, cpu_s=2.0, output_bytes=64 * 1024)

CASES: dict[str, list[dict[str, Any]]] = {
    "conv_output_size": [
        {"n_in": 32, "kernel_size": 3},
        {"n_in": 7, "kernel_size": 2, "stride": 2},
    ],
    "dense_params": [{"in_features": 3, "out_features": 4}],
    "conv2d_params": [{"in_channels": 3, "out_channels": 4, "kernel_size": 3}],
    "depthwise_separable_params": [{"in_channels": 3, "out_channels": 4, "kernel_size": 3}],
    "depthwise_separable_macs": [
        {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "out_h": 2, "out_w": 2}
    ],
    "conv2d_macs": [
        {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "out_h": 2, "out_w": 2}
    ],
    "dense_forward": [{"x": np.ones((2, 3)), "w": np.ones((3, 4)), "b": np.zeros(4)}],
    "maxpool2d_forward": [{"x": np.ones((1, 1, 4, 4)), "pool_size": 2}],
}
#: The topic module each function's stub lives in (the engine's module_hint).
HINTS = {"dense_forward": "layers", "maxpool2d_forward": "pooling", "conv_output_size": "shapes"}


@dataclasses.dataclass(frozen=True)
class Row:
    case: int
    fixture: str
    function: str
    status: str
    message: str = ""
    outputs: list[Any] | None = None  # expected "out" per case when status is ok

    def __str__(self) -> str:
        return (
            f"{self.case:02d}-{self.fixture.split('_', 1)[1].removesuffix('.py')}-{self.function}"
        )


TABLE = [
    Row(1, "case01_endless_loop.py", "conv_output_size", "timeout", "killed after 2.0 s"),
    Row(1, "case01_endless_loop.py", "conv2d_params", "timeout", "(time limit)"),
    Row(2, "case02_swallow_timeout.py", "conv_output_size", "timeout", "(time limit)"),
    Row(3, "case03_memory_blowup.py", "conv_output_size", "memory", "ran out of memory"),
    Row(3, "case03_memory_blowup.py", "conv2d_params", "memory", "limit 1024 MB"),
    Row(3, "case03_memory_blowup.py", "depthwise_separable_params", "memory", "ran out of"),
    Row(4, "case04_fork_bomb.py", "conv_output_size", "error", "os.fork is not allowed"),
    Row(4, "case04_fork_bomb.py", "conv2d_params", "error", "starting a thread is not allowed"),
    Row(4, "case04_fork_bomb.py", "depthwise_separable_params", "error", "subprocess.Popen"),
    Row(4, "case04_fork_bomb.py", "depthwise_separable_macs", "error", "starting a process"),
    Row(4, "case04_fork_bomb.py", "conv2d_macs", "error", "ctypes.dlopen is not allowed"),
    Row(5, "case05_leftover_processes.py", "conv_output_size", "ok", "", [30, 3]),
    Row(6, "case06_sys_exit.py", "conv_output_size", "error", "exited (sys.exit(0)) before"),
    Row(6, "case06_sys_exit.py", "conv2d_params", "error", "KeyboardInterrupt in conv2d_params"),
    Row(6, "case06_sys_exit_at_import.py", "conv_output_size", "error", "called while importing"),
    Row(7, "case07_os_exit.py", "conv_output_size", "crashed", "exited with status 0 before"),
    Row(8, "case08_segfault.py", "conv_output_size", "crashed", "crashed with SIGSEGV"),
    Row(8, "case08_segfault.py", "conv2d_params", "error", "ctypes.string_at is not allowed"),
    Row(8, "case08_segfault.py", "depthwise_separable_params", "error", "ctypes.cdata"),
    Row(
        9, "case09_broken_modules", "conv_output_size", "error", "SyntaxError in shapes.py, line 8"
    ),
    Row(9, "case09_broken_modules", "conv2d_params", "error", "unexpected keyword argument"),
    Row(
        9,
        "case09_broken_modules",
        "dense_forward",
        "error",
        "ModuleNotFoundError in layers.py, line 3: No module named 'tensorflow'",
    ),
    Row(9, "case09_broken_modules", "maxpool2d_forward", "error", "no function named"),
    Row(10, "case10_huge_output.py", "conv_output_size", "ok", "", [30, 3]),
    Row(11, "case11_disk_and_delete.py", "conv_output_size", "ok", "", [30, 3]),
    Row(12, "case12_fake_pass.py", "conv_output_size", "ok", "", [-1, -1]),
    Row(13, "case13_overwrite_results.py", "conv_output_size", "ok", "", [7, 7]),
    Row(14, "case14_read_reference.py", "conv_output_size", "ok", "", [-1, -1]),
    Row(15, "case15_read_secrets.py", "conv_output_size", "ok", "", [-1, -1]),
    Row(16, "case16_monkeypatch.py", "conv_output_size", "ok", "", [-1, -1]),
    Row(17, "case17_fake_equality.py", "conv_output_size", "error", "must be a number"),
    Row(17, "case17_fake_equality.py", "conv2d_params", "ok", "", [-1]),
    Row(17, "case17_fake_equality.py", "dense_params", "error", "got LyingTensor"),
    Row(18, "case18_object_array.py", "conv_output_size", "error", "must be a number"),
    Row(18, "case18_object_array.py", "dense_params", "error", "has dtype object"),
    Row(19, "case19_reduce.py", "conv_output_size", "error", "got Payload"),
    Row(19, "case19_reduce.py", "dense_params", "error", "could not be read back"),
    Row(20, "case20_broadcast_shape.py", "conv_output_size", "ok", "", [[30] * 5, [3] * 5]),
    Row(21, "case21_nan_inf_float16.py", "conv_output_size", "ok", "", [np.nan, np.nan]),
    Row(21, "case21_nan_inf_float16.py", "conv2d_params", "ok", "", [np.inf]),
    Row(21, "case21_nan_inf_float16.py", "dense_params", "ok", "", [np.float16(16)]),
    Row(22, "case22_mutate_inputs.py", "conv_output_size", "ok", "", [30, 3]),
    Row(23, "case23_global_state.py", "conv_output_size", "ok", "", [30, 3]),
    Row(25, "case25_network.py", "conv_output_size", "error", "is not allowed in graded code"),
]
#: Fixtures whose dense_params is correct: the rest of the submission is still graded.
STILL_GRADED = [
    "case01_endless_loop.py",
    "case02_swallow_timeout.py",
    "case03_memory_blowup.py",
    "case04_fork_bomb.py",
    "case06_sys_exit.py",
    "case07_os_exit.py",
    "case08_segfault.py",
    "case09_broken_modules",
]


@pytest.fixture(scope="module", autouse=True)
def fixtures_copy(tmp_path_factory):
    """The fixtures copied to a temporary folder (``*.py.broken`` renamed to ``*.py``: kept
    unparseable out of the repository so that linters do not trip over them)."""
    global FIXTURES
    original = FIXTURES
    copy = tmp_path_factory.mktemp("security") / "fixtures"
    shutil.copytree(original, copy)
    for broken in copy.rglob("*.py.broken"):
        broken.rename(broken.with_suffix(""))
    FIXTURES = copy
    yield copy
    FIXTURES = original


@pytest.fixture(scope="module")
def box():
    with Sandbox(LIMITS) as sandbox:
        sandbox.start()
        yield sandbox


def run(box: Sandbox, fixture: str | Path, function: str, cases=None, **kw) -> RunOutcome:
    path = fixture if isinstance(fixture, Path) else FIXTURES / fixture
    return box.run(
        load_submission(path),
        harness="call",
        function=function,
        cases=CASES[function] if cases is None else cases,
        module_hint=HINTS.get(function, "params"),
        **kw,
    )


def group_alive(pgid: int) -> list[int]:
    """Pids of live (non-zombie) processes whose process group is ``pgid``."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry))
    return alive


def test_every_security_case_has_a_fixture():
    numbers = {int(p.name[4:6]) for p in FIXTURES.iterdir() if p.name.startswith("case")}
    assert (FIXTURES / "case09_broken_modules" / "shapes.py").is_file()
    # 1-25 here; 29-36, 39, 40 in test_kernel_layers.py; 37 (hostile submission files) and
    # 38 (report injection) belong to the submission and classroom tests
    assert set(range(1, 26)) <= numbers
    assert numbers - set(range(1, 26)) <= set(range(29, 41)) - {37, 38}
    tested = {row.case for row in TABLE} | {24}  # 24 is engine level (fresh seeds)
    assert tested == set(range(1, 26))


@pytest.mark.parametrize("row", TABLE, ids=str)
def test_sandbox_status(box, row: Row):
    outcome = run(box, row.fixture, row.function)
    assert len(outcome.cases) == len(CASES[row.function])
    for i, case in enumerate(outcome.cases):
        assert case.status == row.status, (case, outcome.output[-2000:])
        assert row.message in case.message
        if row.status == "ok":
            assert case.outputs is not None and set(case.outputs) == {"out"}
            got = case.outputs["out"]
            assert type(got) is np.ndarray and got.dtype.kind in "biuf"
            want = np.asarray(row.outputs[i])
            assert got.dtype.kind == want.dtype.kind or want.dtype.kind == "i"
            np.testing.assert_array_equal(
                got.reshape(want.shape) if got.size == want.size else got, want
            )
        else:
            assert case.outputs is None
    assert "LEAK" not in outcome.output
    assert len(outcome.output) <= LIMITS.output_bytes + 200
    assert outcome.wall_s < 15


@pytest.mark.parametrize("fixture", STILL_GRADED)
def test_the_rest_of_the_submission_is_still_graded(box, fixture):
    outcome = run(box, fixture, "dense_params")
    assert outcome.cases[0].status == "ok", outcome.cases[0]
    assert outcome.cases[0].outputs["out"].item() == 16


@pytest.mark.parametrize("fixture", ["case01_endless_loop.py", "case05_leftover_processes.py"])
def test_nothing_of_the_child_survives_the_run(box, fixture):
    outcome = run(box, fixture, "conv_output_size")
    pid = outcome.child["pid"]
    assert group_alive(pid) == []
    if fixture.startswith("case05"):  # every way of starting something was refused
        assert outcome.output.count("refused") >= 6
        assert "LEAK" not in outcome.output


def test_timeout_is_the_parents_kill_not_an_alarm(box):
    t0 = time.monotonic()
    outcome = run(box, "case02_swallow_timeout.py", "conv_output_size")
    assert outcome.cases[0].status == "timeout"
    assert time.monotonic() - t0 < 8
    assert group_alive(outcome.child["pid"]) == []


def test_cpu_limit_alone_also_stops_a_loop():
    with Sandbox(Limits(wall_s=30, cpu_s=1)) as sandbox:
        outcome = run(sandbox, "case01_endless_loop.py", "conv_output_size")
    assert [c.status for c in outcome.cases] == ["timeout", "timeout"]
    assert "of CPU time" in outcome.cases[0].message


def test_huge_output_is_capped_and_decoded_with_replacement(box):
    outcome = run(box, "case10_huge_output.py", "conv_output_size")
    assert [c.status for c in outcome.cases] == ["ok", "ok"]
    assert "\ufffd" in outcome.output
    assert "output cut" in outcome.output
    assert len(outcome.output.encode("utf-8", errors="replace")) < LIMITS.output_bytes + 1024


def test_files_outside_the_run_folder_survive(box, tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    shutil.copy(FIXTURES / "case11_disk_and_delete.py", sub / "case11.py")
    (sub / "canary.txt").write_text("still here")
    harness_file = REPO / "grader" / "sandbox" / "harness.py"
    before = hashlib.sha256(harness_file.read_bytes()).hexdigest(), harness_file.stat().st_mode
    outcome = run(box, sub / "case11.py", "conv_output_size")
    assert [c.status for c in outcome.cases] == ["ok", "ok"]
    assert (sub / "canary.txt").read_text() == "still here"
    assert sorted(p.name for p in sub.iterdir()) == ["canary.txt", "case11.py"]
    after = hashlib.sha256(harness_file.read_bytes()).hexdigest(), harness_file.stat().st_mode
    assert before == after
    assert "LEAK" not in outcome.output
    assert "filling stopped after 16 MiB" in outcome.output  # RLIMIT_FSIZE
    assert outcome.output.count("refused") >= 6


def test_forged_result_files_are_only_data(box, tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    shutil.copy(FIXTURES / "case13_overwrite_results.py", sub / "case13.py")
    tmp_results = Path("/tmp/results.json")
    existed = tmp_results.exists() and tmp_results.stat().st_mtime
    outcome = run(box, sub / "case13.py", "conv_output_size")
    # what the parent got is exactly the forged data: wrong answers, compared in the parent
    assert [c.outputs["out"].item() for c in outcome.cases] == [7, 7]
    assert not (sub / "results.json").exists()
    assert (tmp_results.exists() and tmp_results.stat().st_mtime) == existed
    assert "LEAK" not in outcome.output


def test_reference_and_solutions_are_out_of_reach(box):
    on_disk = [REPO / "cnnref" / "shapes.py", REPO / "cnnref" / "__init__.py"]
    assert all(p.is_file() for p in on_disk)  # the forbidden things exist...
    outcome = run(box, "case14_read_reference.py", "conv_output_size")
    assert "LEAK" not in outcome.output  # ...and the child could not get any of them
    assert "refused import cnnref" in outcome.output
    assert "refused open cnnref/shapes.py" in outcome.output
    assert "refused spec_from_file_location cnnref/shapes.py" in outcome.output
    assert "refused gc.get_objects" in outcome.output


@pytest.mark.slow
def test_secrets_are_out_of_reach(tmp_path, monkeypatch):
    canary = f"canary-{os.getpid()}-{time.time_ns()}"
    secret_file = tmp_path / "course_secret"
    secret_file.write_text(canary)
    monkeypatch.setenv("CNNLAB_COURSE_SECRET", canary)
    monkeypatch.setenv("CNNLAB_COURSE_SECRET_FILE", str(secret_file))
    # A process whose *initial* environment (what /proc/<pid>/environ shows) holds the secret,
    # as a grader started with CNNLAB_COURSE_SECRET=... would.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, "CNNLAB_COURSE_SECRET": canary},
    )
    try:
        environ = Path(f"/proc/{holder.pid}/environ")
        deadline = time.monotonic() + 10
        while canary.encode() not in environ.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)  # until the holder has exec'd
        assert canary.encode() in environ.read_bytes()  # there is something to steal
        with Sandbox(LIMITS) as sandbox:
            outcome = run(sandbox, "case15_read_secrets.py", "conv_output_size")
            direct = run(
                sandbox, "case15_read_secrets.py", "read_secret", cases=[{"path": str(secret_file)}]
            )
    finally:
        holder.kill()
        holder.wait()
    assert [c.status for c in outcome.cases] == ["ok", "ok"]
    assert "LEAK" not in outcome.output and canary not in outcome.output
    assert direct.cases[0].status == "error"
    assert "is not allowed in graded code" in direct.cases[0].message
    assert "LEAK" not in direct.output and canary not in direct.output


def test_unpickling_never_happens(box):
    marker = Path("/tmp/cnnlab-case19-unpickled")
    marker.unlink(missing_ok=True)
    for function in ("conv_output_size", "dense_params"):
        outcome = run(box, "case19_reduce.py", function)
        assert outcome.cases[0].status == "error"
    assert not marker.exists()


def test_inputs_are_fresh_copies_in_every_case(box):
    x = np.arange(6.0).reshape(2, 3)
    cases = [{"x": x}, {"x": x}, {"x": x}]
    outcome = run(box, "case22_mutate_inputs.py", "total_then_zero", cases=cases)
    assert [c.outputs["out"].item() for c in outcome.cases] == [15.0, 15.0, 15.0]
    np.testing.assert_array_equal(x, np.arange(6.0).reshape(2, 3))  # the parent's copy


def test_global_state_does_not_leak_between_runs(box):
    cases = [{}, {}]
    first = run(box, "case23_global_state.py", "tamper", cases=cases)
    second = run(box, "case23_global_state.py", "tamper", cases=cases)
    # within a run the child keeps its state (case 2 sees case 1's tampering) ...
    assert first.cases[1].outputs["out"].tolist() == [1, 1, 1]
    # ... but every run starts from the clean interpreter again
    assert first.cases[0].outputs["out"].tolist() == [0, 0, 0]
    assert second.cases[0].outputs["out"].tolist() == [0, 0, 0]


def test_network_is_refused(box):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        outcome = run(box, "case25_network.py", "connect", cases=[{"port": port}])
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    assert outcome.cases[0].status == "ok"
    assert "LEAK" not in outcome.output
    assert outcome.output.count("refused") == 4


# ----------------------------------------------------------------------------- engine level

#: Wrong data: the comparator's verdict (a wrong shape/dtype may be reported as an error).
WRONG = {"failed", "error"}
ENGINE_EXPECTED = {
    # fixture: statuses the engine may give conv_output_size (never "passed")
    "case01_endless_loop.py": {"timeout"},
    "case02_swallow_timeout.py": {"timeout"},
    "case03_memory_blowup.py": {"memory"},
    "case04_fork_bomb.py": {"error"},
    "case06_sys_exit.py": {"error"},
    "case06_sys_exit_at_import.py": {"error"},
    "case07_os_exit.py": {"crashed"},
    "case08_segfault.py": {"crashed"},
    "case09_broken_modules": {"error"},
    "case12_fake_pass.py": WRONG,
    "case13_overwrite_results.py": WRONG,
    "case14_read_reference.py": WRONG,
    "case15_read_secrets.py": WRONG,
    "case16_monkeypatch.py": WRONG,
    "case17_fake_equality.py": {"error"},
    "case18_object_array.py": {"error"},
    "case19_reduce.py": {"error"},
    "case20_broadcast_shape.py": WRONG,
    "case21_nan_inf_float16.py": WRONG,
    "case25_network.py": {"error"},
}


@pytest.fixture(scope="module")
def prepared_conv():
    engine = pytest.importorskip("grader.engine")
    from grader import registry

    spec = registry.get("conv_output_size")
    return dataclasses.replace(engine.prepare(spec, 12345), timeout_s=2.0)


@pytest.mark.parametrize("fixture", sorted(ENGINE_EXPECTED))
def test_engine_never_passes_a_cheat(box, prepared_conv, fixture):
    from grader.engine import grade_prepared

    result = grade_prepared(
        load_submission(FIXTURES / fixture), [prepared_conv], seed=12345, sandbox=box
    )
    (res,) = result.exercises
    assert res.status.value in ENGINE_EXPECTED[fixture], res
    assert res.score == 0
    assert "LEAK" not in res.output


def test_engine_grades_the_correct_parts_of_a_broken_submission(box, prepared_conv):
    from grader import registry
    from grader.engine import grade_prepared, prepare

    dense = dataclasses.replace(prepare(registry.get("dense_params"), 5), timeout_s=2.0)
    result = grade_prepared(
        load_submission(FIXTURES / "case01_endless_loop.py"),
        [prepared_conv, dense],
        seed=5,
        sandbox=box,
    )
    statuses = {r.name: r.status.value for r in result.exercises}
    assert statuses == {"conv_output_size": "timeout", "dense_params": "passed"}


def test_engine_mutating_inputs_does_not_change_the_reference(box):
    from grader import registry
    from grader.engine import grade_prepared, prepare

    prepared = prepare(registry.get("dense_forward"), 7)
    pristine = [{k: np.copy(v) for k, v in c.inputs.items()} for c in prepared.cases]
    result = grade_prepared(
        load_submission(FIXTURES / "case22_mutate_inputs.py"), [prepared], seed=7, sandbox=box
    )
    assert result.exercises[0].status.value == "passed", result.exercises[0]
    for case, before in zip(prepared.cases, pristine, strict=True):
        for key, value in before.items():
            np.testing.assert_array_equal(case.inputs[key], value)


def test_engine_lookup_table_of_public_cases_fails_on_fresh_seeds(box, tmp_path):
    from grader import registry
    from grader.engine import grade_prepared, prepare

    spec = registry.get("conv_output_size")
    public = prepare(spec, 2026)
    rows = []
    for case in public.cases:
        c = case.inputs
        padding = c.get("padding", 0)
        key = [
            c["n_in"],
            c["kernel_size"],
            c.get("stride", 1),
            padding if isinstance(padding, int) else -1,
            c.get("dilation", 1),
        ]
        rows.append({"key": key, "out": int(np.asarray(case.expected["out"]).item())})
    sub = tmp_path / "sub"
    sub.mkdir()
    shutil.copy(FIXTURES / "case24_lookup_table.py", sub / "case24.py")
    (sub / "lookup_table.json").write_text(json.dumps(rows))
    submission = load_submission(sub)  # a folder: its data file is copied beside the module
    on_public = grade_prepared(submission, [public], seed=2026, sandbox=box).exercises[0]
    assert on_public.status.value == "passed", on_public  # the table works on the shipped cases...
    hidden = prepare(spec, 987654)
    on_hidden = grade_prepared(submission, [hidden], seed=987654, sandbox=box).exercises[0]
    assert on_hidden.status.value == "failed"  # ...and not on a fresh seed
    assert on_hidden.score < on_hidden.max_score
