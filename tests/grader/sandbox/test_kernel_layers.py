"""SECURITY.md cases 29-36, 39 and 40 through the real sandbox: the attack fails, and the test
names the layer that stopped it.

Most tests run the attack with the audit hook switched off (``layers_off={"audit"}``): that is
the state of a child after a student has disabled the hook (case 29 shows that it can be done,
and that the kernel layers hold after it). The layer that answered is told by the error: the
audit hook raises ``PermissionError`` without an errno (``HOOK``), Landlock ``EACCES``,
seccomp ``EPERM``, the PID namespace ``ESRCH`` (nothing of that number in the child's world),
the private mounts ``ENOENT``. Some tests switch a layer off too, to show that the next one
holds (and, as controls, that without any the attack works: the tests can fail).

Layers this machine lacks make their tests skip with the reason (``cnnlab doctor`` tells which).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from grader.sandbox.runner import Limits, RunOutcome, Sandbox
from grader.submission import load_submission

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "security"
LIMITS = Limits(wall_s=10.0, cpu_s=10.0)
KERNEL = ("landlock", "mount_ns", "pid_ns", "net_ns", "ipc_ns", "seccomp", "capabilities")


def results(outcome: RunOutcome) -> dict[str, str]:
    """``{attempt: result}`` from the fixture's ``<what>: <result>`` lines (``LEAK:`` kept)."""
    out = {}
    for line in outcome.output.splitlines():
        what, sep, result = line.partition(": ")
        if sep:
            out[what.removeprefix("LEAK:")] = ("LEAK " if what.startswith("LEAK:") else "") + result
    return out


def ok(result: str) -> bool:
    """The attempt worked (``OK``; printed ``LEAK:`` when the fixture counts it as a leak)."""
    return result.startswith(("OK", "LEAK OK"))


@pytest.fixture
def elsewhere():
    """A scratch folder outside ``/tmp`` (which the private mounts hide anyway), so that what
    stops a read there is Landlock alone."""
    import tempfile

    root = Path.home() / ".cache"
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="cnnlab-test-", dir=root))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run(box: Sandbox, fixture: str, function: str, cases=({},), **kw) -> RunOutcome:
    return box.run(
        load_submission(FIXTURES / fixture),
        harness="call",
        function=function,
        cases=list(cases),
        **kw,
    )


@pytest.fixture(scope="module")
def full():
    """Every layer this machine has."""
    with Sandbox(LIMITS) as box:
        box.start()
        yield box


@pytest.fixture(scope="module")
def no_hook():
    """Every kernel layer; the audit hook off (as after a student disabled it)."""
    with Sandbox(LIMITS, layers_off={"audit"}) as box:
        box.start()
        yield box


def need(box: Sandbox, *layers: str) -> None:
    missing = [n for n in layers if not box.plan.has(n)]
    if missing:
        reasons = "; ".join(f"{n}: {box.plan.why_not.get(n, 'off')}" for n in missing)
        pytest.skip(f"this machine lacks {reasons}")


def refused(box: Sandbox, path: Path) -> str:
    """How a read of ``path`` is refused: ``ENOENT`` under the temp folder where the private
    mounts are on (a fresh tmpfs hides it: a checkout cloned into /tmp, as CI does), else
    Landlock's ``EACCES``."""
    import tempfile

    under_tmp = Path(path).resolve().is_relative_to(Path(tempfile.gettempdir()).resolve())
    return "ENOENT" if under_tmp and box.plan.has("mount_ns") else "EACCES"


def sandbox_without(*off: str) -> Sandbox:
    return Sandbox(LIMITS, layers_off={"audit", *off})


# ----------------------------------------------------------------------------- 29


def test_29_hook_disabled_from_python_still_no_reference(full, tmp_path):
    need(full, "landlock")
    secret = tmp_path / "course_secret"
    secret.write_text("canary-29")
    outcome = run(full, "case29_disable_hook.py", "steal", [{"secret_path": str(secret)}])
    got = results(outcome)
    assert "hook disabled" in outcome.output, outcome.output  # the bypass works...
    for what in ("read cnnref/shapes.py", "list cnnref/", "read solutions/layers.py"):
        assert got[what] == refused(full, REPO), (what, outcome.output)  # ...and Landlock holds
    assert got["read the course secret"] == refused(full, secret)
    assert got["read .git objects"] == refused(full, REPO)
    assert "LEAK" not in outcome.output and "canary-29" not in outcome.output


def test_29_control_the_hook_alone_is_not_a_barrier(tmp_path):
    """With every kernel layer off, the same bypass reads the reference: the hook is a
    convenience, and the test above can fail."""
    secret = tmp_path / "course_secret"
    secret.write_text("canary-29")
    with Sandbox(LIMITS, layers_off=KERNEL) as box:
        outcome = run(box, "case29_disable_hook.py", "steal", [{"secret_path": str(secret)}])
    got = results(outcome)
    assert "hook disabled" in outcome.output
    assert got["read cnnref/shapes.py"].startswith("LEAK OK"), outcome.output


# ----------------------------------------------------------------------------- 30


def test_30_copies_of_the_reference_are_unreadable(no_hook, elsewhere):
    need(no_hook, "landlock")
    copies = []
    for rel in (
        "autograder/source/dist/cnnlab-0.1.0-py3-none-any.whl",
        "autograder/source/dist/cnnlab-0.1.0.tar.gz",
        "home/.cache/pip/wheels/ab/cnnlab-0.1.0-py3-none-any.whl",
        "checkout/.git/objects/pack/pack-1.pack",
    ):
        path = elsewhere / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"PK\x03\x04 a copy of cnnref")
        copies.append(str(path))
    outcome = run(no_hook, "case30_reference_copies.py", "read_copies", [{"paths": copies}])
    got = results(outcome)
    for path in copies:
        assert got[f"read {os.path.basename(path)}"] == "EACCES", outcome.output
    editable = [k for k in got if k.startswith("read __editable__") or k == "read cnnlab's RECORD"]
    assert all(got[k] == "EACCES" for k in editable), outcome.output
    assert "LEAK" not in outcome.output


def test_30_a_symlink_to_solutions_leads_nowhere(no_hook, elsewhere):
    need(no_hook, "landlock")
    target = str(REPO / "solutions" / "layers.py")
    outcome = run(no_hook, "case30_reference_copies.py", "symlink_to", [{"target": target}])
    got = results(outcome)
    assert got["make a symlink in the run folder"] == "EACCES"  # Landlock: no MAKE_SYM
    assert got["read through the symlink"] == "ENOENT"
    # the control reads a copy outside /tmp (a checkout under /tmp is hidden by the mounts)
    copy = elsewhere / "solutions" / "layers.py"
    copy.parent.mkdir()
    shutil.copy(target, copy)
    with sandbox_without("landlock") as box:  # the link can be made; reading through it...
        need(box, "mount_ns")
        outcome = run(box, "case30_reference_copies.py", "symlink_to", [{"target": str(copy)}])
    got = results(outcome)
    assert ok(got["make a symlink in the run folder"])
    # ...reads the read-only mount (no Landlock: this is the control that shows why it is needed)
    assert ok(got["read through the symlink"])


# ----------------------------------------------------------------------------- 31


@pytest.fixture
def classroom(elsewhere):
    """A class folder (the student's file among classmates'), another live sandbox's run
    folder, and a gradebook."""
    tmp_path = elsewhere
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    shutil.copy(FIXTURES / "case31_classmates.py", submissions / "alice.py")
    (submissions / "bob.py").write_text("SECRET_OF_BOB = 1\n")
    gradebook = tmp_path / "gradebook"
    gradebook.mkdir()
    (gradebook / "grades.csv").write_text("student,score\nbob,54\n")
    other = tmp_path / "other-sandbox" / "runs" / "run-00001"
    other.mkdir(parents=True)
    (other / "submission.json").write_text("{}")
    return {
        "alice": submissions / "alice.py",
        "case": {
            "classmate_file": str(submissions / "bob.py"),
            "other_run_file": str(other / "submission.json"),
            "gradebook_file": str(gradebook / "grades.csv"),
        },
    }


def test_31_classmates_are_invisible(no_hook, classroom):
    need(no_hook, "landlock")
    outcome = no_hook.run(
        load_submission(classroom["alice"]),
        harness="call",
        function="look_around",
        cases=[classroom["case"]],
    )
    got = results(outcome)
    assert "bob.py" not in got["list my own folder"]  # only its own copy
    for what in (
        "read a classmate's file",
        "list the classmate's folder",
        "read another run's file",
        "list another run's folder",
        "read the gradebook",
        "list /tmp",
        "list /dev/shm",
    ):
        assert got[what] == "EACCES", (what, outcome.output)
    assert got["list the runs folder"].startswith("OK ['run-")  # its own run, alone
    assert got["list the runs folder"].count("run-") == 1
    assert "LEAK" not in outcome.output


def test_31_without_landlock_the_private_mounts_hide_tmp(classroom):
    with sandbox_without("landlock") as box:
        need(box, "mount_ns")
        outcome = box.run(
            load_submission(classroom["alice"]),
            harness="call",
            function="look_around",
            cases=[classroom["case"]],
        )
    got = results(outcome)
    assert got["list /dev/shm"] == "LEAK OK []"  # a fresh, empty, private tmpfs
    # under /tmp only the sandbox's own runs folder was put back
    assert "pytest-of" not in got["list /tmp"] and "cnnlab-sandbox-" in got["list /tmp"]


# ----------------------------------------------------------------------------- 32


@pytest.fixture
def victim():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the fixture uses x86_64 numbers")
def test_32_no_signal_or_inspection_outside_the_run(no_hook, victim):
    need(no_hook, "seccomp")
    outcome = run(no_hook, "case32_signals.py", "attack", [{"victim": victim.pid}])
    got = results(outcome)
    for what in (
        "kill the victim",
        "kill pid 1",
        "pidfd_open the victim",
        "pidfd_send_signal",
        "ptrace attach",
        "process_vm_readv",
        "prlimit the victim",
    ):
        assert got[what] == "EPERM", (what, outcome.output)  # seccomp
    assert victim.poll() is None


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the fixture uses x86_64 numbers")
def test_32_without_seccomp_the_pid_namespace_and_landlock_hold(victim):
    with sandbox_without("seccomp") as box:
        need(box, "pid_ns")
        outcome = run(box, "case32_signals.py", "attack", [{"victim": victim.pid}])
    got = results(outcome)
    # the victim does not exist in the child's PID namespace (or Landlock's scope refuses)
    for what in ("kill the victim", "pidfd_open the victim", "ptrace attach", "prlimit the victim"):
        assert got[what] in ("ESRCH", "EPERM"), (what, outcome.output)
    assert got["kill pid 1"] in ("EPERM", "OK None")  # pid 1 is the run's own init
    assert victim.poll() is None
    assert "LEAK:kill the victim" not in outcome.output


# ----------------------------------------------------------------------------- 33


def _processes_named(token: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/comm").read_text().strip() == token[:15]:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    if stat.rsplit(")", 1)[1].split()[0] != "Z":
                        found.append(int(entry))
    return found


def _token() -> str:
    return f"cnl{os.getpid() % 100000}{time.time_ns() % 100000}"


def test_33_seccomp_refuses_new_processes_and_setsid(no_hook):
    need(no_hook, "seccomp")
    token = _token()
    outcome = run(no_hook, "case33_escape_group.py", "daemonize", [{"token": token}])
    assert results(outcome)["fork"] == "EPERM", outcome.output
    assert results(run(no_hook, "case33_escape_group.py", "setsid_only"))["setsid"] == "EPERM"
    assert _processes_named(token) == []


def test_33_without_seccomp_the_pid_namespace_kills_the_daemon():
    token = _token()
    with sandbox_without("seccomp") as box:
        need(box, "pid_ns")
        outcome = run(box, "case33_escape_group.py", "daemonize", [{"token": token}])
        assert ok(results(outcome)["fork"]), outcome.output  # it ran...
        time.sleep(0.3)
        assert _processes_named(token) == []  # ...and died with the run's namespace


def test_33_control_without_seccomp_and_pid_namespace_a_daemon_escapes():
    """The process group alone cannot hold a ``setsid`` daemon: why seccomp refuses setsid
    (and the test above can fail)."""
    token = _token()
    try:
        with sandbox_without("seccomp", "pid_ns") as box:
            outcome = run(box, "case33_escape_group.py", "daemonize", [{"token": token}])
            time.sleep(0.3)
            survivors = _processes_named(token)
        assert ok(results(outcome)["fork"])
        assert survivors, "expected the daemon to survive without seccomp and PID namespace"
    finally:
        for pid in _processes_named(token):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


# ----------------------------------------------------------------------------- 34


def _sysv_keys() -> set[int]:
    try:
        lines = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except OSError:
        return set()
    return {int(line.split()[0]) for line in lines if line.strip()}


def test_34_nothing_is_left_behind(no_hook):
    need(no_hook, "landlock", "seccomp")
    token, key = _token(), 0x434E4C00 + os.getpid() % 255
    outcome = run(no_hook, "case34_leftovers.py", "leave", [{"token": token, "key": key}])
    got = results(outcome)
    assert got["/dev/shm"] == "EACCES" and got["/tmp"] == "EACCES"  # Landlock
    assert got["shmget"] == "EPERM"  # seccomp
    assert not Path(f"/dev/shm/{token}").exists() and not Path(f"/tmp/{token}").exists()
    assert key not in _sysv_keys()


def test_34_without_landlock_and_seccomp_the_namespaces_take_it_all_away():
    token, key = _token(), 0x434E4D00 + os.getpid() % 255
    with sandbox_without("landlock", "seccomp") as box:
        need(box, "mount_ns", "ipc_ns")
        outcome = run(box, "case34_leftovers.py", "leave", [{"token": token, "key": key}])
    got = results(outcome)
    assert ok(got["/dev/shm"]) or got["/dev/shm"] == "EFBIG"
    assert ok(got["shmget"])  # made, in the run's own IPC namespace...
    assert not Path(f"/dev/shm/{token}").exists() and not Path(f"/tmp/{token}").exists()
    assert key not in _sysv_keys()  # ...which died with it


def test_34_nothing_a_child_writes_outlives_its_run():
    """The runner, not a kernel layer: Landlock lets a child write the sandbox's ``runs/``
    folder (its run's parent). Folders planted there under the names later runs would take are
    gone when the run ends, and runs are named unpredictably: the next run is graded."""
    from grader.sandbox.runner import RUNS_DIR

    guesses = [f"run-{n:05d}" for n in range(1, 200)]
    with Sandbox(LIMITS, layers_off={"audit"}) as box:
        planted = run(box, "case34_leftovers.py", "plant_in_runs", [{"names": guesses}])
        runs = box._base / RUNS_DIR
        assert results(planted)["planted"] == str(len(guesses))  # the attempt worked...
        assert os.listdir(runs) == []  # ...and was undone
        after = run(box, "case34_leftovers.py", "plant_in_runs", [{"names": []}])
        assert after.cases[0].status == "ok", after.cases[0]


def test_34_a_deep_folder_chain_is_removed_and_the_result_stands():
    """The runner: ``shutil.rmtree`` recurses per level, so 1500 nested folders raised
    ``RecursionError`` in the parent (a traceback, a grader failure instead of the student's
    result, folders left in /tmp). Removal falls back to ``rm -rf``."""
    from grader.sandbox.runner import RUNS_DIR

    with Sandbox(LIMITS) as box:
        outcome = run(box, "case34_leftovers.py", "deep_chain", [{"depth": 1500}])
        assert outcome.cases[0].status == "ok", outcome.cases[0]
        base = box._base
        assert os.listdir(base / RUNS_DIR) == []
    assert not base.exists()  # close() removed the sandbox's folder


def test_34_no_descriptor_of_the_fork_server_reaches_student_code(no_hook):
    """The child set-up closes every inherited descriptor above stderr (the fork server's
    handle on the host's PID namespace was fd 4 in every child)."""
    outcome = run(no_hook, "case34_leftovers.py", "inherited_descriptors")
    assert results(outcome)["descriptors"] == "none", outcome.output


# ----------------------------------------------------------------------------- 35


def test_35_no_fifo_in_the_run_folder(no_hook):
    need(no_hook, "seccomp")
    outcome = run(no_hook, "case35_special_files.py", "plant", [{"target": "x"}] * 2)
    assert results(outcome)["mkfifo output"] == "EPERM"  # seccomp refuses mknod


def test_35_without_seccomp_landlock_refuses_fifos_and_symlinks():
    with sandbox_without("seccomp") as box:
        need(box, "landlock")
        outcome = run(box, "case35_special_files.py", "plant", [{"target": "x"}] * 2)
        linked = run(box, "case35_special_files.py", "plant_symlink", [{"target": "/etc/passwd"}])
    assert results(outcome)["mkfifo output"] == "EACCES"
    assert results(linked)["symlink output"] == "EACCES"


def test_35_the_parent_never_hangs_on_a_fifo_or_follows_a_link():
    with sandbox_without("seccomp", "landlock") as box:
        t0 = time.monotonic()
        outcome = run(box, "case35_special_files.py", "plant", [{"target": "x"}] * 2)
        linked = run(box, "case35_special_files.py", "plant_symlink", [{"target": "/etc/passwd"}])
        printed = run(box, "case35_special_files.py", "plant_output_fifo")
        assert time.monotonic() - t0 < 30
    assert ok(results(outcome)["mkfifo output"])  # the FIFOs were made (the control)
    assert printed.output == "" and printed.cases[0].status == "ok"
    first, second = outcome.cases
    assert first.status == "error" and "not a regular file" in first.message, first
    assert second.status == "error" and "tampered" in second.message, second
    assert linked.cases[0].status == "error" and "cannot be opened" in linked.cases[0].message


# ----------------------------------------------------------------------------- 36


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("bz2_members", "compression method 12"),
        ("lzma_members", "compression method 14"),
        ("inflates", "more than the"),
        ("many_members", "more than the"),  # its size alone gives it away
        ("deep_status", "tampered with (RecursionError"),  # the status record itself
        ("bool_shape", "declares the shape (True,)"),
    ],
)
def test_36_npz_bombs_are_refused_before_decompression(no_hook, function, message):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    outcome = run(no_hook, "case36_npz_bombs.py", function, max_output_bytes=4096)
    (case,) = outcome.cases
    assert case.status == "error" and message in case.message, case
    assert time.monotonic() - t0 < 20
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 64, f"the parent grew by {grown_mb:.0f} MB reading a bomb"


# ----------------------------------------------------------------------------- 39


def test_39_patching_the_harness_changes_only_data(full):
    from grader import registry
    from grader.engine import grade_prepared, prepare

    prepared = dataclasses.replace(prepare(registry.get("conv_output_size"), 3), timeout_s=10.0)
    result = grade_prepared(
        load_submission(FIXTURES / "case39_patch_harness.py"), [prepared], seed=3, sandbox=full
    )
    (res,) = result.exercises
    assert res.status.value in ("failed", "error") and res.score == 0, res


# ----------------------------------------------------------------------------- 40

CGROUP_V1 = Path("/sys/fs/cgroup/memory")


def _own_memory_cgroup() -> Path | None:
    """A folder where this (root) process may make a child memory cgroup, v1 or v2."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        num, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            folder = CGROUP_V1 / path.lstrip("/")
            if (folder / "memory.limit_in_bytes").exists() and os.access(folder, os.W_OK):
                return folder
        if num == "0" and controllers == "":
            folder = Path("/sys/fs/cgroup") / path.lstrip("/")
            ctl = folder / "cgroup.subtree_control"
            if ctl.exists() and "memory" in ctl.read_text() and os.access(folder, os.W_OK):
                return folder
    return None


@pytest.mark.slow
def test_40_a_large_allocation_in_a_small_container_reads_memory(tmp_path):
    parent = _own_memory_cgroup()
    if parent is None:
        pytest.skip("no writable memory cgroup to play the container in")
    group = parent / f"cnnlab-test-{os.getpid()}"
    group.mkdir()
    try:
        v1 = (group / "memory.limit_in_bytes").exists()
        limit_file = group / ("memory.limit_in_bytes" if v1 else "memory.max")
        limit_file.write_text(str(768 * 1024 * 1024))
        if v1 and (group / "memory.memsw.limit_in_bytes").exists():
            with contextlib.suppress(OSError):
                (group / "memory.memsw.limit_in_bytes").write_text(str(768 * 1024 * 1024))
        script = textwrap.dedent(
            f"""
            import json, os
            open({str(group / "cgroup.procs")!r}, "w").write(str(os.getpid()))
            from grader.sandbox.runner import Limits, Sandbox
            from grader.submission import load_submission
            sub = load_submission({str(FIXTURES / "case40_container_memory.py")!r})
            with Sandbox(Limits(wall_s=60, cpu_s=60, memory_mb=4096)) as box:
                out = box.run(sub, harness="call", function="conv_output_size",
                              cases=[{{"n_in": 32, "kernel_size": 3}}])
            c = out.cases[0]
            print(json.dumps({{"status": c.status, "message": c.message}}))
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        import json

        got = json.loads(proc.stdout.strip().splitlines()[-1])
        assert got["status"] == "memory", got
        assert "768 MB" in got["message"], got
    finally:
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)
