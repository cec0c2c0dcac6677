"""The layer modules on their own: the Landlock allow-list, the seccomp filter, the container's
memory limit, the parent's hostile-file reading, and matplotlib inside the sandbox (10.10)."""

from __future__ import annotations

import importlib.metadata
import os
import stat
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from grader.sandbox import caseio, filesystem, syscalls
from grader.sandbox.limits import ContainerMemory
from grader.sandbox.runner import Limits, Sandbox, default_forbidden_paths
from grader.submission import load_submission

REPO = Path(__file__).resolve().parents[3]


# ----------------------------------------------------------------------------- allow-list


def _covers(rule: str, path: Path) -> bool:
    real = os.path.realpath(path)
    return real == rule or real.startswith(rule.rstrip("/") + "/")


def test_the_allow_list_never_covers_the_reference_or_the_grader():
    rules, dropped = filesystem.allow_list([str(p) for p in default_forbidden_paths()])
    paths = [p for p, _ in rules]
    for secret in (
        REPO / "cnnref" / "shapes.py",
        REPO / "solutions",
        REPO / "grader" / "engine.py",
    ):
        assert not any(_covers(p, secret) for p in paths), secret
    # the stdlib is allowed entry by entry, never as the folder that holds site-packages
    stdlib = os.path.realpath(os.path.dirname(os.__file__))
    assert stdlib not in paths
    assert os.path.join(stdlib, "json") in paths
    assert os.path.realpath(os.path.dirname(np.__file__)) in paths
    rights = dict(rules)
    assert all(r & filesystem.WRITE_FILE == 0 for p, r in rules if p != "/dev/null")
    assert all(r & filesystem.EXECUTE == 0 for r in rights.values())


def test_the_allow_list_leaves_out_cnnlab_install_records_and_editable_finders():
    rules, dropped = filesystem.allow_list()
    sites = filesystem.site_dirs()
    names = {os.path.basename(p) for p, _ in rules if os.path.dirname(p) in sites}
    assert not any(n.startswith(("__editable__", "cnnlab")) or n.endswith(".pth") for n in names)
    assert "__pycache__" not in names  # it holds the editable finder's bytecode
    try:
        dist = importlib.metadata.distribution("cnnlab")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("cnnlab is not installed")
    record = os.path.realpath(str(dist._path))  # type: ignore[attr-defined]
    assert all(not _covers(p, Path(record)) for p, _ in rules)


def test_a_plugin_distribution_is_left_out(tmp_path, monkeypatch):
    """A package registering exercises (entry point group cnnlab.exercises) holds references."""
    site = tmp_path / "site-packages"
    (site / "myplugin").mkdir(parents=True)
    (site / "myplugin" / "__init__.py").write_text("REFERENCE = 1\n")
    info = site / "myplugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[cnnlab.exercises]\nmine = myplugin:SPECS\n")
    (info / "RECORD").write_text("myplugin/__init__.py,,\nmyplugin-1.0.dist-info/RECORD,,\n")
    (site / "harmless").mkdir()
    monkeypatch.syspath_prepend(str(site))
    assert "myplugin" in filesystem.excluded_distributions()
    rules, dropped = filesystem.allow_list()
    paths = {p for p, _ in rules}
    assert str(site / "harmless") in paths
    assert str(site / "myplugin") not in paths and str(info) not in paths
    assert str(site / "myplugin") in dropped


# ----------------------------------------------------------------------------- seccomp


def test_the_filter_compiles_to_bpf_once():
    if syscalls.available():
        pytest.skip(syscalls.available())
    bpf, unknown = syscalls.build(2)
    assert bpf and len(bpf) % 8 == 0
    assert "ptrace" not in unknown and "socket" not in unknown


# ----------------------------------------------------------------------------- memory


def test_container_memory_from_a_v2_tree(tmp_path):
    (tmp_path / "memory.max").write_text(f"{768 * 1024 * 1024}\n")
    (tmp_path / "memory.current").write_text(f"{400 * 1024 * 1024}\n")
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n")
    found = ContainerMemory.detect(tmp_path)
    assert found.limit_bytes == 768 * 1024 * 1024 and found.version == 2
    assert found.headroom_mb() == 768 - 400 - 64
    assert found.oom_kills() == 2
    assert "768 MB" in found.describe()


def test_container_memory_from_a_v1_tree_and_unlimited(tmp_path):
    (tmp_path / "memory.max").write_text("max\n")
    v1 = tmp_path / "memory"
    v1.mkdir()
    (v1 / "memory.limit_in_bytes").write_text(f"{1536 * 1024 * 1024}\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{500 * 1024 * 1024}\n")
    (v1 / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    found = ContainerMemory.detect(tmp_path)
    assert found.version == 1 and found.headroom_mb() == 1536 - 500 - 64
    assert found.oom_kills() == 1
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    assert ContainerMemory.detect(tmp_path).limit_bytes is None


# ----------------------------------------------------------------------------- hostile files


def test_the_parent_opens_only_regular_files(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to("/etc/passwd")
    done = threading.Event()

    def read_fifo():
        with pytest.raises(caseio.BadArrayFile, match="not a regular file"):
            caseio.read_regular(fifo, 100)
        done.set()

    worker = threading.Thread(target=read_fifo, daemon=True)
    worker.start()
    assert done.wait(5), "reading a FIFO blocked"
    with pytest.raises(caseio.BadArrayFile, match="cannot be opened"):
        caseio.read_regular(link, 100)
    with pytest.raises(caseio.BadArrayFile, match="not a regular file"):
        caseio.load_npz_strict("/dev/zero")
    big = tmp_path / "big"
    big.write_bytes(b"x" * 1000)
    with pytest.raises(caseio.BadArrayFile, match="more than the 100 allowed"):
        caseio.read_regular(big, 100)
    assert stat.S_ISREG(os.stat(big).st_mode)


def _npz(path: Path, members: dict[str, np.ndarray], compression: int) -> Path:
    import io

    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, arr in members.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr)
            zf.writestr(f"{name}.npy", buf.getvalue())
    return path


@pytest.mark.parametrize("compression", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_bz2_and_lzma_members_are_refused_before_decompression(tmp_path, compression, monkeypatch):
    path = _npz(tmp_path / "bomb.npz", {"out": np.zeros(1 << 20)}, compression)

    def boom(*args, **kwargs):
        raise AssertionError("decompression started")

    monkeypatch.setattr(zipfile.ZipFile, "open", boom)
    with pytest.raises(caseio.BadArrayFile, match="compression method"):
        caseio.load_npz_strict(path)


def test_declared_sizes_are_bounded_by_the_expected_outputs(tmp_path, monkeypatch):
    path = _npz(tmp_path / "big.npz", {"out": np.zeros(64 * 1024)}, zipfile.ZIP_DEFLATED)
    assert os.path.getsize(path) < 8192  # small on disk, 512 KiB inflated
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda *a, **k: (_ for _ in ()).throw(OSError()))
    with pytest.raises(caseio.BadArrayFile, match="more than the 4096 expected"):
        caseio.load_npz_strict(path, max_total_bytes=4096, max_file_bytes=1 << 20)
    monkeypatch.undo()
    ok = caseio.load_npz_strict(path, max_total_bytes=1 << 20)
    assert ok["out"].shape == (64 * 1024,)


def test_too_many_members_are_refused(tmp_path):
    path = _npz(
        tmp_path / "many.npz", {f"a{i}": np.zeros(1) for i in range(70)}, zipfile.ZIP_STORED
    )
    with pytest.raises(caseio.BadArrayFile, match="holds 70 arrays"):
        caseio.load_npz_strict(path, max_members=64)


# ----------------------------------------------------------------------------- matplotlib


@pytest.mark.slow
def test_matplotlib_is_harmless_in_a_submission(tmp_path):
    (tmp_path / "plots.py").write_text(
        textwrap.dedent(
            """
            import matplotlib
            import matplotlib.pyplot as plt
            import numpy as np

            def dense_params(in_features, out_features):
                fig, ax = plt.subplots()
                ax.plot(np.arange(5), np.arange(5) ** 2, label="x")
                ax.set_title("a plot")
                ax.legend()
                fig.savefig("plot.png")
                plt.close(fig)
                assert matplotlib.get_backend().lower() == "agg"
                return in_features * out_features + out_features
            """
        )
    )
    with Sandbox(Limits(wall_s=60, cpu_s=60)) as box:
        t0 = time.monotonic()
        outcome = box.run(
            load_submission(tmp_path),
            harness="call",
            function="dense_params",
            cases=[{"in_features": 3, "out_features": 4}],
        )
        elapsed = time.monotonic() - t0
    case = outcome.cases[0]
    assert case.status == "ok", (case, outcome.output)
    assert case.outputs["out"].item() == 16
    assert "thread" not in outcome.output
    assert elapsed < 30


# ----------------------------------------------------------------------------- lockdown


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to 'nobody'")
def test_lock_down_hides_the_reference_from_an_unprivileged_uid():
    import pwd
    import shutil
    import tempfile

    nobody = pwd.getpwnam("nobody")
    tmp_path = Path(tempfile.mkdtemp(prefix="cnnlab-lockdown-"))  # /tmp itself: reachable
    tmp_path.chmod(0o755)
    try:
        _lock_down_case(tmp_path, nobody)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _lock_down_case(tmp_path: Path, nobody) -> None:
    reference = tmp_path / "cnnref"
    reference.mkdir(mode=0o755)
    (reference / "shapes.py").write_text("REFERENCE = 1\n")
    (reference / "shapes.py").chmod(0o644)
    wheel = tmp_path / "cnnlab-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    wheel.chmod(0o644)

    def readable_by_nobody(path: Path) -> bool:
        pid = os.fork()
        if pid == 0:
            try:
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                with open(path, "rb") as fh:
                    fh.read(1)
                os._exit(0)
            except OSError:
                os._exit(1)
            finally:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        return os.WEXITSTATUS(status) == 0

    if not readable_by_nobody(reference / "shapes.py"):
        pytest.skip("the temporary folder is not reachable by 'nobody' here")
    assert filesystem.lock_down([str(reference), str(wheel), str(tmp_path / "missing")]) == [
        str(reference),
        str(wheel),
    ]
    assert not readable_by_nobody(reference / "shapes.py")
    assert not readable_by_nobody(wheel)
    assert (reference / "shapes.py").read_text() == "REFERENCE = 1\n"  # root still reads it


# ----------------------------------------------------------------------------- fail closed


def test_a_layer_that_cannot_be_put_in_place_fails_the_child_setup(tmp_path):
    """A plan that promises Landlock without a prepared ruleset: the child refuses to go on
    (in a forked child, as the fork server would run it)."""
    from grader.sandbox import layers

    plan = layers.Plan(on={"landlock": True}, landlock_abi=filesystem.abi_version() or 1)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            layers.enter(plan, layers.Resources(runs_dir=str(tmp_path)), str(tmp_path), None)
            os.write(write_fd, b"entered")
        except BaseException as exc:  # noqa: BLE001
            os.write(write_fd, f"refused: {exc}".encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    message = os.read(read_fd, 1000).decode()
    os.close(read_fd)
    os.waitpid(pid, 0)
    assert message.startswith("refused: layer landlock"), message


class _StubServer:
    """Answers like a fork server whose child reports fewer layers than the plan."""

    def __init__(self, plan, layers_in_place):
        self.plan = plan
        self._replies = [
            {"event": "started", "pid": 999999, "init": 0},
            {
                "event": "exited",
                "pid": 999999,
                "setup": "S" + __import__("json").dumps({"layers": layers_in_place}),
                "code": 0,
                "signal": None,
            },
        ]

    def send(self, message):
        pass

    def read(self, timeout):
        return self._replies.pop(0)

    def alive(self):
        return True


def test_the_parent_refuses_a_run_with_a_layer_missing():
    from grader.errors import GraderFailure
    from grader.sandbox.layers import Plan

    box = Sandbox(Limits(wall_s=1))
    plan = Plan(on={"landlock": True, "seccomp": True, "audit": True})
    with pytest.raises(GraderFailure, match="lacks the layer"):
        box._exchange(_StubServer(plan, ["landlock", "audit"]), {}, 1.0)
    report, _ = box._exchange(_StubServer(plan, ["landlock", "seccomp", "audit"]), {}, 1.0)
    assert report["layers"] == ["landlock", "seccomp", "audit"]
