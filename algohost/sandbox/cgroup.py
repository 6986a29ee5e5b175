"""What the kernel counts for one container, read from its cgroup on this host: peak memory,
the processes in it, the tmpfs pages it holds. Read from outside, so no algorithm can forge it.

`ContainerCgroup.find` returns None where this worker cannot see the engine's cgroups
(another host, another mount namespace): callers then fall back to the engine's stats.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class ContainerCgroup:
    def __init__(self, memory: Path, procs: Path, v2: bool) -> None:
        self.memory, self.procs, self.v2 = memory, procs, v2

    @classmethod
    def find(cls, container_id: str, root: Path = ROOT,
             pid: Callable[[], int | None] = lambda: None,
             proc: Path = Path("/proc")) -> ContainerCgroup | None:
        """The container's cgroup under the cgroupfs or systemd layouts, v1 or v2; else
        where its process says it is (an engine with its own --cgroup-parent, or a host
        whose hierarchy nests it elsewhere), from /proc/PID/cgroup of the `pid` given."""
        names = (f"docker/{container_id}", f"system.slice/docker-{container_id}.scope")
        for name in names:
            found = cls._at(root, name, name)
            if found is not None:
                return found
        init = pid()
        if not init:
            return None
        try:
            lines = (proc / str(init) / "cgroup").read_text().splitlines()
        except OSError:
            return None
        paths = {}
        for line in lines:  # "ID:CONTROLLERS:PATH"; v2 is "0::PATH"
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") or [""]:
                paths[controller] = path.lstrip("/")
        return cls._at(root, paths.get("memory", paths.get("", "")),
                       paths.get("pids", paths.get("memory", "")), unified=paths.get(""))

    @classmethod
    def _at(cls, root: Path, memory_name: str, pids_name: str,
            unified: str | None = None) -> ContainerCgroup | None:
        memory, pids = root / "memory" / memory_name, root / "pids" / pids_name
        if memory_name and (memory / "memory.max_usage_in_bytes").exists():
            procs = pids if (pids / "cgroup.procs").exists() else memory
            return cls(memory, procs / "cgroup.procs", v2=False)
        path = root / (memory_name if unified is None else unified)
        if (path / "memory.peak").exists() or (path / "memory.current").exists():
            return cls(path, path / "cgroup.procs", v2=True)
        return None

    def reset_peak(self) -> bool:
        """Start a new peak for the next call. cgroup v1 allows it (as root); v2 resets a
        peak only for the file handle that wrote it, so there the peak is the container's."""
        if self.v2:
            return False
        try:
            (self.memory / "memory.max_usage_in_bytes").write_text("0")
            return True
        except OSError:
            return False

    def peak_memory(self) -> int | None:
        if self.v2:
            return _read_int(self.memory / "memory.peak")
        return _read_int(self.memory / "memory.max_usage_in_bytes")

    def processes(self) -> int | None:
        """Processes (not threads) in the container; its runner is one of them."""
        try:
            return len(self.procs.read_text().split())
        except OSError:
            return None

    def tmpfs_bytes(self) -> int | None:
        """Memory held by the container's tmpfs mounts (and shared memory)."""
        try:
            for line in (self.memory / "memory.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "shmem":
                    return int(value)
        except (OSError, ValueError):
            return None
        return None
