"""The messages the worker and the in-container runner exchange: one JSON object per line.

Standard library only: this file is copied into every image next to runner.py, so it
must never import algohost or anything outside the standard library.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

# Message types, worker -> runner.
INIT = "init"
CALL = "call"
SHUTDOWN = "shutdown"
RESPONSE = "response"  # the answer to a REQUEST, in one or more parts
RELOAD = "reload"  # new source files to import in place of the current ones (local --watch)
# Message types, runner -> worker.
READY = "ready"
LOAD_ERROR = "load_error"
RESULT = "result"
ARTIFACT = "artifact"  # one part of a file the call left under /outputs, sent before RESULT
REQUEST = "request"  # the algorithm asks the worker for something (read data://...)

# Why a result has ok=false.
REASON_EXCEPTION = "exception"
REASON_OUTPUT_TOO_LARGE = "output_too_large"
REASON_ARTIFACTS_TOO_LARGE = "artifacts_too_large"

# Environment the image sets for the runner; the two directories are overridable so the
# runner can be exercised outside a container.
ENTRYPOINT_ENV = "ALGOHOST_ENTRYPOINT"
ALGORITHM_DIR_ENV = "ALGOHOST_ALGORITHM_DIR"
SECRETS_DIR_ENV = "ALGOHOST_SECRETS_DIR"
DEFAULT_ALGORITHM_DIR = "/opt/algorithm"
RELOAD_DIR = "algohost-reload"  # under the container's /tmp: the root filesystem is read-only
DEFAULT_SECRETS_DIR = "/run/secrets"
OUTPUTS_DIR_ENV = "ALGOHOST_OUTPUTS_DIR"
DEFAULT_OUTPUTS_DIR = "/outputs"
ARTIFACT_PART_BYTES = 256 * 1024  # raw bytes per ARTIFACT part (base64 on the wire)

DEFAULT_MAX_OUTPUT_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_LOG_BYTES = 64 * 1024
DEFAULT_MAX_ARTIFACTS = 100
DEFAULT_MAX_ARTIFACT_BYTES = 256 * 1024 * 1024
# Starts a text the runner cut to its tail (an error message, a traceback).
CUT_MARK = "[...]"

# Notebook algorithms (papermill's conventions): an entrypoint ending in NOTEBOOK_SUFFIX is
# a notebook; the cell tagged PARAMETERS_TAG holds the defaults, the call's input becomes a
# cell tagged INJECTED_TAG right after it, and the output is the variable RESULT_VARIABLE
# (or the last expression of the cell tagged RESULT_TAG).
NOTEBOOK_SUFFIX = ".ipynb"
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
RESULT_TAG = "result"
RESULT_VARIABLE = "result"


class ProtocolError(ValueError):
    """A line that is not a protocol message."""


class ErrorInfo(TypedDict):
    type: str
    message: str
    traceback: str


class CellInfo(TypedDict):
    """Where a notebook failed: the cell's index in the notebook and the head of its source."""

    index: int
    source: str


class InitMessage(TypedDict):
    type: str
    secrets: dict[str, str]
    secrets_as_env: bool
    max_output_bytes: int
    max_log_bytes: int
    max_artifacts: int
    max_artifact_bytes: int


class CallMessage(TypedDict):
    type: str
    id: str
    input: Any


class ArtifactMessage(TypedDict):
    type: str
    id: str  # the call's id
    name: str  # the path under /outputs, with "/" separators
    data: str  # base64 of up to ARTIFACT_PART_BYTES
    end: bool  # the file's last part


# Request ops, runner -> worker.
OP_DATA_READ = "data.read"  # answered with the file in parts
OP_METRIC_LOG = "metric.log"  # answered with one RESPONSE, ok or refused
OP_CALL = "call"  # another algorithm, as a child job: answered with its JSON reply in parts


class _RequestBase(TypedDict):
    type: str
    id: str  # the request's own id, echoed by each RESPONSE part
    op: str  # one of the OP_ names


class RequestMessage(_RequestBase, total=False):
    uri: str  # data.read
    name: str  # metric.log
    value: float  # metric.log
    algorithm: str  # call: owner/name[@version|@range]
    input: Any  # call
    timeout_s: float | None  # call: at most what is left of this call's own time


class ResponseMessage(TypedDict, total=False):
    type: str
    id: str
    ok: bool
    data: str  # base64 of a part, when ok
    end: bool  # the last part
    error: ErrorInfo  # when not ok


class ShutdownMessage(TypedDict):
    type: str


class ReadyMessage(TypedDict):
    type: str
    import_ms: float
    logs: str
    logs_dropped: int  # bytes cut from the start of logs, to keep them within the limit


class LoadErrorMessage(TypedDict):
    type: str
    error: ErrorInfo
    logs: str
    logs_dropped: int


class _ResultBase(TypedDict):
    # No timings or memory here: what is billed or compared is measured outside.
    type: str
    id: str
    ok: bool
    logs: str
    logs_dropped: int
    processes_left: int  # hints for recycling the container; the worker looks itself too
    tmp_free_bytes: int


class ResultMessage(_ResultBase, total=False):
    output: Any  # present when ok
    error: ErrorInfo  # present when not ok
    reason: str  # present when not ok: REASON_EXCEPTION, _OUTPUT_ or _ARTIFACTS_TOO_LARGE


def encode(msg: Any) -> bytes:
    """One message as one UTF-8 line; json escapes newlines inside strings."""
    text = json.dumps(msg, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8") + b"\n"


def decode(line: bytes | str) -> dict[str, Any]:
    """Parse one line into a message dict; raise ProtocolError if it is not one."""
    try:
        msg = json.loads(line)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise ProtocolError(f"not a JSON line: {exc}") from exc
    except RecursionError as exc:
        raise ProtocolError("a JSON line nested too deeply to parse") from exc
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError("a message must be a JSON object with a string 'type'")
    return msg


def error_info(type_: str, message: str, traceback: str = "") -> ErrorInfo:
    return {"type": type_, "message": message, "traceback": traceback}

