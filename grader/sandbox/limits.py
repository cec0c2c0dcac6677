"""Layer: resource limits, with memory kept inside the container's own limit.

:func:`set_rlimits` (child side) sets CPU seconds, address space (relative to the size of the
preloaded interpreter), processes, file size and no core dumps.

:class:`ContainerMemory` (parent side) reads the memory limit of the cgroup the grader runs
in — cgroup v2 ``memory.max`` or v1 ``memory.limit_in_bytes``, the smallest along the path
from the grader's own cgroup up to the root, and the usage beside it — so that a run's memory
limit is never larger than what the container has left (:meth:`ContainerMemory.headroom_mb`).
Without that, a child that allocates 600 MB in Gradescope's 768 MB container is killed by the
kernel's OOM killer (``SIGKILL``: "crashed") instead of getting a ``MemoryError`` that reads
as status ``memory`` with the limit named. :meth:`ContainerMemory.oom_kills` counts the
cgroup's OOM kills, so that a ``SIGKILL`` the OOM killer dealt is still reported as
``memory``.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MB = 1024 * 1024
#: What is kept free for the grader itself when the container's limit binds (MB).
CONTAINER_RESERVE_MB = 64
#: A cgroup limit above this is "no limit" (v1 writes 2^63 rounded down to a page).
_UNLIMITED = 1 << 60


def set_rlimits(limits: dict[str, Any]) -> None:
    """Child side: the run's limits (``fsize_mb``, ``cpu_s``, ``memory_mb``, ``nproc``)."""

    def cap(which: int, soft: int, hard: int | None = None) -> None:
        hard = soft if hard is None else hard
        _cur_soft, cur_hard = resource.getrlimit(which)
        if cur_hard != resource.RLIM_INFINITY:
            hard = min(hard, cur_hard)
            soft = min(soft, hard)
        resource.setrlimit(which, (soft, hard))

    cap(resource.RLIMIT_CORE, 0)
    cap(resource.RLIMIT_FSIZE, int(limits["fsize_mb"] * MB))
    cpu = max(1, int(-(-float(limits["cpu_s"]) // 1)))  # ceil
    cap(resource.RLIMIT_CPU, cpu, cpu + 1)
    with open("/proc/self/statm", "rb") as fh:  # first field: VmSize in pages
        vm_bytes = int(fh.read().split()[0]) * resource.getpagesize()
    cap(resource.RLIMIT_AS, vm_bytes + int(limits["memory_mb"] * MB))
    cap(resource.RLIMIT_NPROC, int(limits["nproc"]))


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, ValueError):
        return None
    if text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= _UNLIMITED else value


@dataclass(frozen=True)
class ContainerMemory:
    """The memory limit of the cgroup this process runs in (``limit_bytes`` ``None``: none).

    Attributes:
        limit_bytes: the smallest limit along the cgroup path (``None`` when unlimited).
        usage_file: the file holding the usage of the cgroup that sets that limit.
        events_file: where its OOM kills are counted (v2 ``memory.events``, v1
            ``memory.oom_control``).
        version: 1 or 2 (0 when no memory cgroup could be read).
    """

    limit_bytes: int | None
    usage_file: Path | None = None
    events_file: Path | None = None
    version: int = 0

    @classmethod
    def detect(cls, root: str | os.PathLike[str] = "/sys/fs/cgroup") -> ContainerMemory:
        """Read the limit from the cgroup filesystem under ``root`` (v2 first, then v1)."""
        root = Path(root)
        try:
            lines = Path("/proc/self/cgroup").read_text(encoding="utf-8").splitlines()
        except OSError:
            lines = []
        v2_path = v1_path = None
        for line in lines:
            parts = line.split(":", 2)
            if len(parts) != 3:
                continue
            if parts[0] == "0" and parts[1] == "":
                v2_path = parts[2]
            elif "memory" in parts[1].split(","):
                v1_path = parts[2]
        found = cls._walk(root, v2_path, "memory.max", "memory.current", "memory.events", 2)
        if found.limit_bytes is None and (root / "memory").is_dir():
            v1 = cls._walk(
                root / "memory",
                v1_path,
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
                "memory.oom_control",
                1,
            )
            if v1.limit_bytes is not None:
                return v1
        return found

    @classmethod
    def _walk(
        cls, base: Path, rel: str | None, limit: str, usage: str, events: str, version: int
    ) -> ContainerMemory:
        """The smallest limit on the way from ``base/rel`` up to ``base`` (in a container the
        cgroup's own path is often not visible and ``base`` is the container's cgroup)."""
        candidates = []
        if rel:
            p = base / rel.lstrip("/")
            while True:
                candidates.append(p)
                if p == base or base not in p.parents:
                    break
                p = p.parent
        candidates.append(base)
        best: ContainerMemory = cls(None)
        for folder in candidates:
            value = _read_int(folder / limit)
            if value is not None and (best.limit_bytes is None or value < best.limit_bytes):
                best = cls(value, folder / usage, folder / events, version)
        return best

    def usage_bytes(self) -> int | None:
        """What the cgroup uses now, less the page cache the kernel can drop at once
        (``inactive_file`` of ``memory.stat``, as ``docker stats`` counts it)."""
        if self.usage_file is None:
            return None
        used = _read_int(self.usage_file)
        if used is None:
            return None
        try:
            stat_text = (self.usage_file.parent / "memory.stat").read_text(encoding="ascii")
        except OSError:
            return used
        key = "total_inactive_file" if self.version == 1 else "inactive_file"
        for line in stat_text.splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return max(0, used - int(value))
        return used

    def headroom_mb(self) -> int | None:
        """MB a child may still allocate inside the limit (``None``: no limit known)."""
        if self.limit_bytes is None:
            return None
        used = self.usage_bytes() or 0
        return max(0, (self.limit_bytes - used) // MB - CONTAINER_RESERVE_MB)

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer has killed in this cgroup so far."""
        if self.events_file is None:
            return 0
        try:
            text = self.events_file.read_text(encoding="ascii")
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def describe(self) -> str:
        if self.limit_bytes is None:
            return "no container memory limit"
        return f"container memory limit {self.limit_bytes // MB} MB (cgroup v{self.version})"
