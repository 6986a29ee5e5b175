"""Runs INSIDE the container: imports the algorithm once, then serves calls over stdin/stdout.

Standard library only (it runs on the image's interpreter, next to protocol.py). Nothing
the algorithm prints may ever reach the protocol stream, and secrets are never logged.
"""

from __future__ import annotations

import base64
import importlib
import importlib.util
import json
import os
import select
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))


def _load_protocol() -> ModuleType:
    # Loaded by path under a private name, and the runner's directory taken off sys.path,
    # so an algorithm with its own `protocol` or `runner` module imports its own.
    path = os.path.join(_HERE, "protocol.py")
    spec = importlib.util.spec_from_file_location("_algohost_protocol", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


protocol = _load_protocol()
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]


def install_runtime(channel: Channel) -> None:
    """Make `import algohost_runtime` work for the algorithm, speaking over `channel`."""
    path = os.path.join(_HERE, "algohost_runtime.py")
    if not os.path.exists(path):  # an image built before the module existed
        return
    spec = importlib.util.spec_from_file_location("algohost_runtime", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module._install(channel, protocol)
    sys.modules["algohost_runtime"] = module


def outputs_dir() -> str:
    return os.environ.get(protocol.OUTPUTS_DIR_ENV, protocol.DEFAULT_OUTPUTS_DIR)


def clear_outputs() -> None:
    """/outputs starts every call empty, in a warm container too."""
    directory = outputs_dir()
    if not os.path.isdir(directory):
        return
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass


def output_files() -> list[tuple[str, str]]:
    """(name, path) of every regular file the call left under /outputs; links are skipped."""
    directory = outputs_dir()
    found: list[tuple[str, str]] = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            if os.path.isfile(path) and not os.path.islink(path):
                found.append((os.path.relpath(path, directory).replace(os.sep, "/"), path))
    return found


def artifacts_over_limits(files: list[tuple[str, str]], max_count: int, max_bytes: int
                          ) -> str | None:
    total = sum(os.path.getsize(path) for _, path in files)
    if len(files) > max_count:
        return f"the call left {len(files)} files under /outputs; the limit is {max_count}"
    if total > max_bytes:
        return f"the call left {total} bytes under /outputs; the limit is {max_bytes}"
    return None


def send_artifacts(channel: Channel, call_id: str, files: list[tuple[str, str]]) -> None:
    """Each file in parts; the worker counts and hashes what arrives, trusting no size here."""
    for name, path in files:
        with open(path, "rb") as f:
            while True:
                part = f.read(protocol.ARTIFACT_PART_BYTES)
                end = len(part) < protocol.ARTIFACT_PART_BYTES
                channel.send({"type": protocol.ARTIFACT, "id": call_id, "name": name,
                              "data": base64.b64encode(part).decode("ascii"), "end": end})
                if end:
                    break


class Capture:
    """fds 1 and 2 pointed at a pipe that a thread drains into a bounded tail, so output
    written from C (or by a child) is captured too. Never a file: a chatty algorithm costs
    no disk, and a full /tmp cannot fail a call or silence its logs."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._tail = bytearray()
        self._dropped = 0
        self._lock = threading.Lock()
        read_fd, write_fd = os.pipe()  # both non-inheritable (PEP 446)
        os.set_blocking(read_fd, False)
        self._read_fd = read_fd
        os.dup2(write_fd, 1)  # 1 and 2 stay inheritable: children's output is captured too
        os.dup2(write_fd, 2)
        os.close(write_fd)
        threading.Thread(target=self._drain_forever, name="capture", daemon=True).start()

    def _drain_forever(self) -> None:
        while True:
            select.select([self._read_fd], [], [])
            self._drain()

    def _drain(self) -> None:
        """Take in what the pipe holds; reads and appends under one lock, so in order."""
        with self._lock:
            while True:
                try:
                    chunk = os.read(self._read_fd, 65536)
                except BlockingIOError:
                    return
                if not chunk:
                    return
                self._tail += chunk
                excess = len(self._tail) - self.max_bytes
                if excess > 0:
                    del self._tail[:excess]
                    self._dropped += excess

    def reset(self) -> None:
        _flush_std()
        self._drain()
        with self._lock:
            self._tail.clear()
            self._dropped = 0

    def collect(self) -> tuple[str, int]:
        """The captured tail and how many bytes before it were dropped."""
        _flush_std()
        self._drain()
        with self._lock:
            return self._tail.decode("utf-8", errors="replace"), self._dropped


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a stream the algorithm closed or replaced must not stop the runner
            pass


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else protocol.CUT_MARK + text[-limit:]


def _error(exc: BaseException, limit: int) -> dict[str, Any]:
    described = getattr(exc, "error_info", None)
    if callable(described):  # a notebook's failed cell says which cell, in its own terms
        return described(protocol, limit)  # type: ignore[no-any-return]
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next  # the runner's own frame says nothing about the algorithm
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    return protocol.error_info(type(exc).__name__, _tail(str(exc), limit), _tail(text, limit))


class Channel:
    """The protocol, over private copies of fds 0 and 1 taken before anything is redirected.

    The copies are close-on-exec and closed in any child forked from Python, so nothing
    the algorithm starts can write frames to the worker or read the next call's input."""

    def __init__(self) -> None:
        in_fd, self._out = os.dup(0), os.dup(1)
        for fd in (in_fd, self._out):
            os.set_inheritable(fd, False)
        self._in = os.fdopen(in_fd, "rb")
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.register_at_fork(after_in_child=self.close)

    def close(self) -> None:
        try:
            self._in.close()
        except OSError:
            pass
        _close_quietly(self._out)

    def read(self) -> dict[str, Any] | None:
        line = self._in.readline()
        return protocol.decode(line) if line else None

    def send(self, msg: dict[str, Any]) -> None:
        view = memoryview(protocol.encode(msg))
        while view:
            view = view[os.write(self._out, view) :]


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def write_secrets(secrets: dict[str, str], as_env: bool) -> None:
    directory = os.environ.get(protocol.SECRETS_DIR_ENV, protocol.DEFAULT_SECRETS_DIR)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    for name, value in secrets.items():
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid secret name {name!r}")
        path = os.path.join(directory, name)
        if os.path.exists(path):
            os.unlink(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(value)
        if as_env:
            os.environ[name] = value


def load_entrypoint(directory: str | None = None, channel: Channel | None = None
                    ) -> Callable[[Any], Any]:
    spec = os.environ.get(protocol.ENTRYPOINT_ENV, "")
    if spec.endswith(protocol.NOTEBOOK_SUFFIX):
        return load_notebook(spec, channel, directory)
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise ValueError(f"{protocol.ENTRYPOINT_ENV} must be 'module:function', got {spec!r}")
    if directory is None:
        directory = os.environ.get(protocol.ALGORITHM_DIR_ENV, protocol.DEFAULT_ALGORITHM_DIR)
    os.chdir(directory)
    sys.path.insert(0, directory)
    module = importlib.import_module(module_name)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise AttributeError(f"module {module_name!r} has no callable {func_name!r}")
    load = getattr(module, "load", None)
    if callable(load):
        load()
    return func  # type: ignore[no-any-return]


def write_reload(files: dict[str, str], generation: int) -> str:
    """The reloaded source, written under /tmp (the image's copy is read-only); the
    previous reload's directory goes, so /tmp holds one copy at a time."""
    root = os.path.join(tempfile.gettempdir(), protocol.RELOAD_DIR)
    directory = os.path.join(root, str(generation))
    shutil.rmtree(root, ignore_errors=True)
    for name, data in files.items():
        path = os.path.normpath(os.path.join(directory, name))
        if not path.startswith(directory + os.sep):
            raise ValueError(f"source path {name!r} leaves the algorithm directory")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
    return directory


def forget_modules(*directories: str) -> None:
    """Drop every module imported from `directories` and take them off sys.path, so the
    next import reads the new code."""
    prefixes = tuple(os.path.abspath(d) + os.sep for d in directories)
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None) or ""
        if path and os.path.abspath(path).startswith(prefixes):
            del sys.modules[name]
    sys.path[:] = [p for p in sys.path
                   if not (os.path.abspath(p or ".") + os.sep).startswith(prefixes)]
    importlib.invalidate_caches()


def spec_is_notebook() -> bool:
    return os.environ.get(protocol.ENTRYPOINT_ENV, "").endswith(protocol.NOTEBOOK_SUFFIX)


_notebooks: list[Any] = []  # the loaded notebook algorithm; a reload replaces it


def load_notebook(spec: str, channel: Channel | None, directory: str | None = None
                  ) -> Callable[[Any], Any]:
    """A notebook algorithm: its kernel started and warmed here, once per container (and
    again on a reload, after the previous kernel is shut down)."""
    if directory is None:
        directory = os.environ.get(protocol.ALGORITHM_DIR_ENV, protocol.DEFAULT_ALGORITHM_DIR)
    while _notebooks:
        _notebooks.pop().close()
    os.chdir(directory)
    path = os.path.join(_HERE, "notebook.py")
    module_spec = importlib.util.spec_from_file_location("_algohost_notebook", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    algorithm = module.load(os.path.join(directory, spec), channel, protocol)
    _notebooks.append(algorithm)
    return algorithm  # type: ignore[no-any-return]


def run_call(
    func: Callable[[Any], Any], msg: dict[str, Any], capture: Capture, max_output: int,
    channel: Channel | None = None, limits: tuple[int, int] = (
        protocol.DEFAULT_MAX_ARTIFACTS, protocol.DEFAULT_MAX_ARTIFACT_BYTES),
) -> dict[str, Any]:
    capture.reset()
    clear_outputs()
    reply: dict[str, Any] = {"type": protocol.RESULT, "id": msg.get("id", ""), "ok": True}
    try:
        output = func(msg.get("input"))
        size = len(protocol.encode(output)) - 1  # unserialisable output is the algorithm's error
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are the algorithm's too
        reply.update(
            ok=False, reason=protocol.REASON_EXCEPTION, error=_error(exc, capture.max_bytes)
        )
    else:
        if size > max_output:
            message = f"output is {size} bytes of JSON; the limit is {max_output}"
            error = protocol.error_info("OutputTooLarge", message)
            reply.update(ok=False, reason=protocol.REASON_OUTPUT_TOO_LARGE, error=error)
        else:
            reply["output"] = output
    if reply["ok"] and channel is not None:
        files = output_files()
        too_large = artifacts_over_limits(files, *limits)
        if too_large:
            error = protocol.error_info("ArtifactsTooLarge", too_large)
            reply.update(ok=False, reason=protocol.REASON_ARTIFACTS_TOO_LARGE, error=error)
            reply.pop("output", None)
        else:
            send_artifacts(channel, str(msg.get("id", "")), files)
    clear_outputs()  # tmpfs pages count against the container's memory
    reply["logs"], reply["logs_dropped"] = capture.collect()
    reply.update(leftovers())
    return reply


def _processes() -> set[str]:
    return {p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()}


_STARTED: set[str] = set()  # processes the runner itself started (a notebook's kernel)


def leftovers() -> dict[str, int]:
    """What a call left in the container (hints: the worker also looks from outside)."""
    pids = _processes() - _STARTED
    try:
        tmp = os.statvfs(tempfile.gettempdir())
        tmp_free = tmp.f_bavail * tmp.f_frsize
    except OSError:
        tmp_free = -1
    return {"processes_left": len(pids), "tmp_free_bytes": tmp_free}


def _margin(secrets: dict[str, str]) -> int:
    """Bytes kept beyond the log limit, so the worker sees every secret whole before it
    masks and cuts (a secret split at the runner's cut would leave its tail unmasked)."""
    return max((len(json.dumps(value)) for value in secrets.values()), default=0) + 16


def serve(channel: Channel, capture: Capture, diag_fd: int) -> int:
    init = channel.read()
    if init is None:
        return 0
    if init["type"] != protocol.INIT:
        os.write(diag_fd, b"algohost runner: the first message must be init\n")
        return 2
    max_output = int(init.get("max_output_bytes") or protocol.DEFAULT_MAX_OUTPUT_BYTES)
    secrets = init.get("secrets") or {}
    capture.max_bytes = (int(init.get("max_log_bytes") or protocol.DEFAULT_MAX_LOG_BYTES)
                         + _margin(secrets))
    install_runtime(channel)
    limits = (int(init.get("max_artifacts") or protocol.DEFAULT_MAX_ARTIFACTS),
              int(init.get("max_artifact_bytes") or protocol.DEFAULT_MAX_ARTIFACT_BYTES))
    capture.reset()
    started = time.perf_counter()
    try:
        write_secrets(secrets, bool(init.get("secrets_as_env")))
        func = load_entrypoint(channel=channel)
    except BaseException as exc:
        error = _error(exc, capture.max_bytes)
        logs, dropped = capture.collect()
        channel.send({"type": protocol.LOAD_ERROR, "error": error, "logs": logs,
                      "logs_dropped": dropped})
        return 1
    import_ms = (time.perf_counter() - started) * 1000.0
    if spec_is_notebook():
        _STARTED.update(_processes())
    logs, dropped = capture.collect()
    channel.send({"type": protocol.READY, "import_ms": import_ms, "logs": logs,
                  "logs_dropped": dropped})
    directory = os.getcwd()
    generation = 0
    while True:
        msg = channel.read()
        if msg is None or msg["type"] == protocol.SHUTDOWN:
            return 0
        if msg["type"] == protocol.CALL:
            channel.send(run_call(func, msg, capture, max_output, channel, limits))
        elif msg["type"] == protocol.RELOAD:
            generation += 1
            loaded = reload(msg, directory, generation, capture, channel)
            channel.send(loaded[0])
            if loaded[1] is not None:
                func, directory = loaded[1], loaded[2]


def reload(msg: dict[str, Any], directory: str, generation: int, capture: Capture,
           channel: Channel | None = None
           ) -> tuple[dict[str, Any], Callable[[Any], Any] | None, str]:
    """Import the source a RELOAD message carries in place of the current one. On an error
    the reply says why and the caller keeps the previous code, so the next save can fix it."""
    capture.reset()
    started = time.perf_counter()
    try:
        forget_modules(directory, os.path.join(tempfile.gettempdir(), protocol.RELOAD_DIR))
        new_directory = write_reload(msg.get("files") or {}, generation)
        func = load_entrypoint(new_directory, channel)
    except BaseException as exc:
        logs, dropped = capture.collect()
        return ({"type": protocol.LOAD_ERROR, "error": _error(exc, capture.max_bytes),
                 "logs": logs, "logs_dropped": dropped}, None, directory)
    logs, dropped = capture.collect()
    return ({"type": protocol.READY, "import_ms": (time.perf_counter() - started) * 1000.0,
             "logs": logs, "logs_dropped": dropped}, func, new_directory)


def main() -> int:
    diag_fd = os.dup(2)  # the container's real stderr, for the runner's own failures only
    os.register_at_fork(after_in_child=lambda: _close_quietly(diag_fd))
    try:
        channel = Channel()
        return serve(channel, Capture(protocol.DEFAULT_MAX_LOG_BYTES), diag_fd)
    except Exception:
        os.write(diag_fd, traceback.format_exc().encode("utf-8", errors="replace"))
        return 70


if __name__ == "__main__":
    sys.exit(main())
