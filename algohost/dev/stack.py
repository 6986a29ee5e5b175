"""Processes of the local stack: pid files, liveness, start and stop, service probes.

Only processes recorded in the state directory's pid files are ever signalled; a
service that answers without a pid file belongs to someone else and is left alone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import click
import redis
import requests

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class Part:
    """One process of the stack, known by its pid file and log in the state directory."""

    name: str
    marker: str  # a word its /proc/PID/cmdline must contain, so a reused pid is not ours
    state_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def recorded_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def running_pid(self) -> int | None:
        pid = self.recorded_pid()
        return pid if pid is not None and is_alive(pid, self.marker) else None


def is_alive(pid: int, marker: str = "") -> bool:
    """True if `pid` runs, is not a zombie, and (when /proc can tell) is the expected program."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive, but check below that it is ours
    proc = Path("/proc") / str(pid)
    try:
        stat = (proc / "stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return not proc.parent.exists()  # no /proc on this system: trust the signal
    return marker in cmdline


def clear_stale_pid_file(path: Path, marker: str) -> int | None:
    """The pid in a daemon's own pid file if that daemon still runs; else remove the file.

    A host that lost its processes without a shutdown (a crash, a restored snapshot)
    keeps the pid files: the daemon then refuses to start ("pid file found") while the
    number names nothing, a zombie, or an unrelated process that took the pid.
    """
    try:
        pid = int(path.read_text().strip())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        pid = 0
    if pid > 0 and is_alive(pid, marker):
        return pid
    path.unlink(missing_ok=True)
    return None


def executable(name: str, *, venv: bool = False) -> str:
    """A program next to this Python (the venv's bin) or on PATH (plus sbin, for daemons)."""
    if venv:
        candidate = Path(sys.executable).parent / name
        if candidate.exists():
            return str(candidate)
    # Daemons live in sbin, which a non-root PATH often lacks.
    found = shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    if not found:
        raise click.ClickException(f"`{name}` is not installed (run `make setup`)")
    return found


def spawn(part: Part, argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Start `argv` detached from this terminal, output to the part's log, pid recorded."""
    part.state_dir.mkdir(parents=True, exist_ok=True)
    with part.log_file.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,  # None: children read the same ALGOHOST_* settings this command did
        )
    part.pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def nice_session(pid: int, nice: int) -> bool:
    """Give the scheduling group of `pid`'s session the niceness `nice`; False where the
    kernel has no such groups (or says no).

    With the kernel's autogroups on (`/proc/sys/kernel/sched_autogroup_enabled`), the CPU
    is shared between sessions first and a process's own nice only orders it among the
    processes of its session: a niced process alone in its session (as every part `spawn`
    starts is) yields to nothing. Its session's group must be niced too."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")
    except OSError:  # no autogroups in this kernel, or the process has gone
        return False
    return True


def run_checked(argv: Sequence[str], timeout_s: float = 30.0) -> None:
    """Run a command that daemonizes itself; its failure output becomes the error."""
    try:
        done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise click.ClickException(f"{argv[0]} failed: {exc}") from exc
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()[-2000:]
        raise click.ClickException(f"{argv[0]} exited with {done.returncode}: {output}")


def stop_all(parts: Sequence[Part], grace_s: float = 10.0) -> set[str]:
    """SIGTERM every running part, wait up to `grace_s`, then SIGKILL the groups left.

    Returns the names of the parts that were running. A group kill also reaches
    gunicorn's workers when the master could not stop them itself.
    """
    running: dict[str, tuple[Part, int]] = {}
    for part in parts:
        pid = part.running_pid()
        if pid is None:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
            running[part.name] = (part, pid)
        except ProcessLookupError:
            pass

    def all_gone() -> bool:
        return not any(is_alive(pid, part.marker) for part, pid in running.values())

    if not wait_for(all_gone, grace_s):
        for part, pid in running.values():
            if is_alive(pid, part.marker):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        wait_for(all_gone, 5.0)
    for part in parts:
        part.pid_file.unlink(missing_ok=True)
    return set(running)


def wait_for(
    check: Callable[[], bool],
    timeout_s: float,
    *,
    interval_s: float = 0.2,
    give_up: Callable[[], bool] = lambda: False,
) -> bool:
    """Poll `check` until true or timeout; `give_up` ends early (the process died)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline or give_up():
            return False
        time.sleep(interval_s)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def redis_keeps_nothing(url: str) -> bool:
    """True when the Redis at `url` has neither AOF nor RDB snapshots: a restart loses
    every queued job. False when it persists, or when it will not say (CONFIG renamed)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1,
                                  decode_responses=True)
    try:
        appendonly = str(client.config_get("appendonly").get("appendonly") or "")
        save = str(client.config_get("save").get("save") or "")
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()
    return appendonly != "yes" and not save.strip()


def docker_answers(url: str) -> bool:
    import docker  # heavy import, only for the commands that talk to the engine

    try:
        client = docker.DockerClient(base_url=url, timeout=3)
    except Exception:  # docker-py raises DockerException or requests errors here
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def api_health(url: str) -> dict[str, object] | None:
    """The /healthz body if the API answers at all (any status), else None."""
    try:
        resp = requests.get(url.rstrip("/") + "/healthz", timeout=2)
    except requests.RequestException:
        return None
    try:
        body = resp.json()
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {"status": f"http {resp.status_code}"}


def host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "unix" or (parts.hostname or "") in LOCAL_HOSTS
