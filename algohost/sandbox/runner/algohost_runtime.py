"""What an algorithm may ask of the platform during a call: read `data://`, write artifacts,
report metrics, call another algorithm.

Standard library only: copied into every image beside the runner, which makes it
importable as `algohost_runtime`. A read travels as a request over the runner's channel
to the worker, which checks the CALLER's rights and streams the file back; nothing here
holds a token or can reach a store.

    import algohost_runtime as ah
    with ah.open("data://alice/sets/iris.csv") as f: ...
    with open(ah.output_path("plot.svg"), "w") as f: ...   # becomes a job artifact
    ah.log_metric("accuracy", 0.93)                         # stored with the job
    ah.call("alice/tokenize@1", "some text")                # another algorithm's output
"""

from __future__ import annotations

import base64
import builtins
import io
import json
import math
import os
import tempfile
import uuid
from typing import IO, Any

DATA_SCHEME = "data://"
_ERRORS = {"FileNotFoundError": FileNotFoundError, "PermissionError": PermissionError,
           "ValueError": ValueError}
_channel: Any = None
_protocol: Any = None


def _install(channel: Any, protocol: Any) -> None:
    """Called by the runner: the channel requests go over, and the message names."""
    global _channel, _protocol
    _channel, _protocol = channel, protocol


def outputs_dir() -> str:
    if _protocol is not None:
        return os.environ.get(_protocol.OUTPUTS_DIR_ENV, _protocol.DEFAULT_OUTPUTS_DIR)
    return os.environ.get("ALGOHOST_OUTPUTS_DIR", "/outputs")


def output_path(name: str) -> str:
    """Where to write a file that becomes one of the job's artifacts (directories made)."""
    normal = os.path.normpath(name)
    if os.path.isabs(normal) or normal in (".", "..") or normal.startswith(".." + os.sep):
        raise ValueError(f"an artifact name is a relative path without '..': {name!r}")
    path = os.path.join(outputs_dir(), normal)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def open(path: Any, mode: str = "r", encoding: str | None = None,  # noqa: A001
         errors: str | None = None, newline: str | None = None) -> IO[Any]:
    """`data://OWNER/COLLECTION/PATH` read through the worker; any other path as builtins.open."""
    if not str(path).startswith(DATA_SCHEME):
        return builtins.open(path, mode, encoding=encoding, errors=errors, newline=newline)
    if any(flag in mode for flag in "wax+"):
        raise PermissionError("data:// is read-only inside a call; write artifacts with "
                              "output_path()")
    if _channel is None:
        raise RuntimeError("data:// can be opened only during an algohost call")
    spool = _fetch(str(path))
    if "b" in mode:
        return spool
    return io.TextIOWrapper(spool, encoding=encoding or "utf-8", errors=errors, newline=newline)


def _fetch(uri: str) -> IO[bytes]:
    request_id = uuid.uuid4().hex
    _channel.send({"type": _protocol.REQUEST, "id": request_id, "op": _protocol.OP_DATA_READ,
                   "uri": uri})
    spool = tempfile.TemporaryFile(prefix="algohost-data-")
    try:
        while True:
            msg = _channel.read()
            if msg is None:
                raise ConnectionError("the worker closed the channel during a data:// read")
            if msg.get("type") != _protocol.RESPONSE or msg.get("id") != request_id:
                continue
            if not msg.get("ok"):
                error = msg.get("error") or {}
                raise _ERRORS.get(error.get("type"), OSError)(
                    f"{uri}: {error.get('message', 'refused')}")
            spool.write(base64.b64decode(msg.get("data") or ""))
            if msg.get("end"):
                break
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


class CallError(Exception):
    """A call() that did not succeed: refused (`status` is its HTTP-style code, `code` why)
    or run and failed (`job` is the child job, `code` its reason: exception, timeout...)."""

    def __init__(self, message: str, code: str, status: int, job: str | None = None,
                 error_type: str = "") -> None:
        super().__init__(message)
        self.code, self.status, self.job, self.error_type = code, status, job, error_type


def call(algorithm: str, input: Any = None, timeout_s: float | None = None) -> Any:  # noqa: A002
    """Call another algorithm (`owner/name`, `@1.2.3`, `@1.2`, `@1` or `@latest`) with the
    rights of whoever called this one, and return its output; raises CallError. The call is
    a job of its own, linked to this one; it gets at most the time this call has left."""
    if _channel is None:
        raise RuntimeError("call() works only during an algohost call")
    request_id = uuid.uuid4().hex
    _channel.send({"type": _protocol.REQUEST, "id": request_id, "op": _protocol.OP_CALL,
                   "algorithm": str(algorithm), "input": input, "timeout_s": timeout_s})
    parts = []
    while True:
        msg = _channel.read()
        if msg is None:
            raise ConnectionError("the worker closed the channel during call()")
        if msg.get("type") != _protocol.RESPONSE or msg.get("id") != request_id:
            continue
        if not msg.get("ok"):
            error = msg.get("error") or {}
            raise CallError(f"{algorithm}: {error.get('message', 'refused')}",
                            str(error.get("code", "refused")), int(error.get("status", 500)),
                            error.get("job"), str(error.get("type", "")))
        parts.append(base64.b64decode(msg.get("data") or ""))
        if msg.get("end"):
            return json.loads(b"".join(parts))["output"]


def log_metric(name: str, value: float) -> None:
    """Report a number for this call (the last value per name is kept with the job, and
    compared across builds). The worker checks the name and the count and refuses with
    ValueError; outside an algohost call this does nothing."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"a metric's value is a number; got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"a metric's value is a finite number; got {value!r}")
    if _channel is None:
        return
    request_id = uuid.uuid4().hex
    _channel.send({"type": _protocol.REQUEST, "id": request_id, "op": _protocol.OP_METRIC_LOG,
                   "name": str(name), "value": float(value)})
    while True:
        msg = _channel.read()
        if msg is None:
            raise ConnectionError("the worker closed the channel during log_metric")
        if msg.get("type") == _protocol.RESPONSE and msg.get("id") == request_id:
            break
    if not msg.get("ok"):
        error = msg.get("error") or {}
        raise ValueError(f"log_metric({name!r}): {error.get('message', 'refused')}")
