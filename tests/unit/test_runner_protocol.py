"""The runner protocol: message encoding, the attach frame demuxer, and runner.py itself
run as a real subprocess on the host against a tiny algorithm directory."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from algohost.jsonlimits import nesting_depth
from algohost.sandbox.attach import FrameDemuxer, ProtocolViolation
from algohost.sandbox.base import ExitReason
from algohost.sandbox.docker import _result_outcome
from algohost.sandbox.runner import protocol

RUNNER = Path(protocol.__file__).with_name("runner.py")

ALGORITHM = """
import os, sys
print("importing")
LOADED = []

def load():
    LOADED.append(True)
    print("load() ran", file=sys.stderr)

def apply(input):
    kind = input.get("kind")
    if kind == "echo":
        return {"input": input, "loaded": LOADED}
    if kind == "print":
        print("via print"); print("via stderr", file=sys.stderr)
        os.write(1, b"via fd 1\\n"); os.write(2, b"via fd 2\\n")
        return "printed"
    if kind == "raise":
        raise ValueError("asked to raise")
    if kind == "big":
        return "x" * input["size"]
    if kind == "spam":
        print("y" * input["size"])
        return "spammed"
    if kind == "secret":
        path = os.path.join(os.environ["ALGOHOST_SECRETS_DIR"], "TOKEN")
        return {"file": open(path).read(), "env": os.environ.get("TOKEN"),
                "mode": oct(os.stat(path).st_mode & 0o777)}
    if kind == "exit":
        sys.exit(4)
    if kind == "flood":
        line = "z" * 1023 + "\\n"
        for _ in range(input["mb"] * 1024):
            sys.stdout.write(line)
        return "flooded"
    if kind == "fork_and_forge":
        forged = b'{"type":"result","id":"c1","ok":true,"output":"forged","logs":""}\\n'
        pid = os.fork()
        if pid == 0:  # try every descriptor the runner might hold: none is left open
            wrote = []
            for fd in range(3, 64):
                try:
                    os.write(fd, forged)
                    wrote.append(fd)
                except OSError:
                    pass
            print("child could not write" if not wrote else f"child wrote to {wrote}")
            sys.stdout.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        return "forked"
"""


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


class Runner:
    """runner.py in a subprocess, spoken to exactly as the worker does."""

    def __init__(self, tmp_path: Path, source: str, entrypoint: str = "main:apply") -> None:
        algorithm = tmp_path / "algorithm"
        algorithm.mkdir()
        (algorithm / "main.py").write_text(source)
        env = {
            "PATH": os.environ.get("PATH", ""),
            protocol.ENTRYPOINT_ENV: entrypoint,
            protocol.ALGORITHM_DIR_ENV: str(algorithm),
            protocol.SECRETS_DIR_ENV: str(tmp_path / "secrets"),
            "TMPDIR": str(tmp_path),
        }
        self.secrets_dir = tmp_path / "secrets"
        self.process = subprocess.Popen(
            [sys.executable, "-u", str(RUNNER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )

    def send(self, msg: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(protocol.encode(msg))
        self.process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        return protocol.decode(self.process.stdout.readline())

    def init(self, **overrides: Any) -> dict[str, Any]:
        msg = {
            "type": protocol.INIT,
            "secrets": {},
            "secrets_as_env": False,
            "max_output_bytes": 1000,
            "max_log_bytes": 200,
            **overrides,
        }
        self.send(msg)
        return self.receive()

    def call(self, payload: Any, call_id: str = "c1") -> dict[str, Any]:
        self.send({"type": protocol.CALL, "id": call_id, "input": payload})
        return self.receive()

    def finish(self) -> int:
        if self.process.poll() is None:
            self.send({"type": protocol.SHUTDOWN})
        return self.process.wait(timeout=10)


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    r = Runner(tmp_path, ALGORITHM)
    yield r
    if r.process.poll() is None:
        r.process.kill()
    r.process.wait()


def test_encode_is_one_newline_terminated_line_even_with_newlines_inside() -> None:
    line = protocol.encode({"type": "call", "id": "1", "input": "a\nb", "u": "é"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert protocol.decode(line) == {"type": "call", "id": "1", "input": "a\nb", "u": "é"}


def test_encode_refuses_values_json_cannot_carry() -> None:
    with pytest.raises(ValueError):
        protocol.encode({"type": "result", "output": float("nan")})


@pytest.mark.parametrize("line", [b"not json\n", b"[1, 2]\n", b'{"id": "no type"}\n', b"\xff\n"])
def test_decode_rejects_lines_that_are_not_messages(line: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(line)


def test_decode_turns_a_line_nested_past_the_parser_into_a_protocol_error() -> None:
    line = b'{"type":"result","output":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(line)


def test_nesting_depth_counts_arrays_and_objects_without_recursing() -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = {"a": [deep]}
    assert nesting_depth(1) == 0
    assert nesting_depth({"a": [1, {"b": []}]}) == 4
    assert nesting_depth(deep) == 200_000


def test_an_output_nested_past_the_limit_is_refused_by_the_worker_side() -> None:
    output: Any = 1
    for _ in range(300):
        output = [output]
    outcome = _result_outcome({"type": "result", "id": "c", "ok": True, "output": output,
                               "logs": ""}, max_output_bytes=1 << 20)
    assert outcome.reason is ExitReason.OUTPUT_TOO_LARGE and outcome.output is None
    assert outcome.error is not None and outcome.error["type"] == "OutputTooDeep"


def test_demuxer_joins_a_line_split_across_frames_and_reads_split_headers() -> None:
    data = frame(1, b'{"type":"rea') + frame(2, b"warning\n") + frame(1, b'dy"}\n{"type":"x"}\n')
    demux = FrameDemuxer(max_line_bytes=1000)
    lines = [line for i in range(len(data)) for line in demux.feed(data[i : i + 1])]
    assert lines == [b'{"type":"ready"}', b'{"type":"x"}']
    assert bytes(demux.stderr) == b"warning\n"


def test_demuxer_refuses_an_endless_line() -> None:
    demux = FrameDemuxer(max_line_bytes=10)
    with pytest.raises(ProtocolViolation):
        demux.feed(frame(1, b"x" * 11))


def test_runner_imports_once_calls_load_and_serves_several_calls(runner: Runner) -> None:
    ready = runner.init()
    assert ready["type"] == protocol.READY
    assert ready["logs"] == "importing\nload() ran\n"
    first = runner.call({"kind": "echo", "n": 1}, "a")
    second = runner.call({"kind": "echo", "n": 2}, "b")
    assert first["ok"] and first["id"] == "a"
    assert first["output"] == {"input": {"kind": "echo", "n": 1}, "loaded": [True]}
    assert second["output"]["input"]["n"] == 2 and second["output"]["loaded"] == [True]
    # Timings and memory are measured by the worker and the cgroup, never reported.
    assert "peak_memory_bytes" not in second and "run_ms" not in second
    assert runner.finish() == 0


def test_output_written_to_fds_1_and_2_is_captured_not_sent(runner: Runner) -> None:
    runner.init()
    result = runner.call({"kind": "print"})
    assert result["output"] == "printed"
    for text in ("via print", "via stderr", "via fd 1", "via fd 2"):
        assert text in result["logs"]
    assert runner.call({"kind": "echo"})["logs"] == ""  # each call starts a fresh capture


def test_logs_over_the_limit_keep_their_tail_and_count_what_was_dropped(runner: Runner) -> None:
    runner.init(max_log_bytes=200)
    result = runner.call({"kind": "spam", "size": 5000})
    assert result["logs"] == "y" * 215 + "\n"  # the limit and a margin for a secret's length
    assert result["logs_dropped"] == 5001 - 216


def test_a_chatty_algorithm_on_a_full_tmp_still_has_its_tail_captured(runner: Runner,
                                                                    tmp_path: Path) -> None:
    # Capture once lived in a file on the algorithm's own /tmp: 200 MB or a full /tmp
    # failed the call with ENOSPC. It is a pipe now, whose tail the runner keeps.
    runner.init(max_log_bytes=200)
    result = runner.call({"kind": "flood", "mb": 50})
    assert result["ok"] and result["output"] == "flooded"
    assert result["logs"].endswith("z" * 99 + "\n")
    assert result["logs_dropped"] == (50 << 20) - len(result["logs"])


def test_the_runners_channel_is_closed_in_forked_children(runner: Runner) -> None:
    runner.init()
    result = runner.call({"kind": "fork_and_forge"})
    assert result["ok"] and result["output"] == "forked"
    assert result["logs_dropped"] == 0 and "child could not write" in result["logs"]


def test_exception_reports_type_message_and_traceback_and_keeps_serving(runner: Runner) -> None:
    runner.init()
    result = runner.call({"kind": "raise"})
    assert not result["ok"] and result["reason"] == protocol.REASON_EXCEPTION
    assert result["error"]["type"] == "ValueError"
    assert result["error"]["message"] == "asked to raise"
    assert "main.py" in result["error"]["traceback"]
    assert "runner.py" not in result["error"]["traceback"]
    assert runner.call({"kind": "exit"})["error"]["type"] == "SystemExit"
    assert runner.call({"kind": "echo"})["ok"]


def test_output_over_the_limit_is_refused(runner: Runner) -> None:
    runner.init(max_output_bytes=1000)
    assert runner.call({"kind": "big", "size": 990})["ok"]
    result = runner.call({"kind": "big", "size": 1000})
    assert not result["ok"] and result["reason"] == protocol.REASON_OUTPUT_TOO_LARGE
    assert "output" not in result


@pytest.mark.parametrize("as_env", [False, True])
def test_secrets_become_read_only_files_and_env_only_when_asked(
    tmp_path: Path, as_env: bool
) -> None:
    r = Runner(tmp_path, ALGORITHM)
    r.init(secrets={"TOKEN": "s3cr3t"}, secrets_as_env=as_env)
    output = r.call({"kind": "secret"})["output"]
    assert output == {"file": "s3cr3t", "env": "s3cr3t" if as_env else None, "mode": "0o400"}
    assert r.finish() == 0


def test_an_import_error_is_reported_as_load_error(tmp_path: Path) -> None:
    r = Runner(tmp_path, 'print("partial")\nimport not_a_module_anywhere\n')
    msg = r.init()
    assert msg["type"] == protocol.LOAD_ERROR
    assert msg["error"]["type"] == "ModuleNotFoundError"
    assert "not_a_module_anywhere" in msg["error"]["traceback"]
    assert msg["logs"] == "partial\n"
    assert r.process.wait(timeout=10) == 1


def test_a_missing_function_is_a_load_error(tmp_path: Path) -> None:
    r = Runner(tmp_path, "x = 1\n", entrypoint="main:apply")
    msg = r.init()
    assert msg["type"] == protocol.LOAD_ERROR and msg["error"]["type"] == "AttributeError"


def test_end_of_input_stops_the_runner_cleanly(runner: Runner) -> None:
    runner.init()
    assert runner.process.stdin is not None
    runner.process.stdin.close()
    assert runner.process.wait(timeout=10) == 0
    assert runner.process.stderr is not None and runner.process.stderr.read() == b""


def test_result_lines_are_valid_json_with_the_documented_keys(runner: Runner) -> None:
    runner.init()
    result = runner.call({"kind": "echo"})
    assert set(result) == {"type", "id", "ok", "output", "logs", "logs_dropped",
                           "processes_left", "tmp_free_bytes"}
    json.dumps(result, allow_nan=False)


def reload_message(files: dict[str, str]) -> dict[str, Any]:
    encoded = {name: base64.b64encode(text.encode()).decode() for name, text in files.items()}
    return {"type": protocol.RELOAD, "files": encoded}


def test_reload_imports_the_new_code_in_place_of_the_old_and_runs_load_again(
        runner: Runner) -> None:
    assert runner.init()["type"] == protocol.READY
    runner.send(reload_message({
        "main.py": "import helper\n\ndef load():\n    print('loaded again')\n\n"
                   "def apply(x):\n    return {'v': 2, 'helper': helper.VALUE}\n",
        "helper.py": "VALUE = 'fresh'\n"}))
    ready = runner.receive()
    assert ready["type"] == protocol.READY and "loaded again" in ready["logs"]
    assert runner.call({})["output"] == {"v": 2, "helper": "fresh"}

    runner.send(reload_message({"main.py": "import helper\n\ndef apply(x):\n"
                                           "    return helper.VALUE\n",
                                "helper.py": "VALUE = 'newer'\n"}))
    assert runner.receive()["type"] == protocol.READY
    assert runner.call({})["output"] == "newer"  # the helper module was read again too
    assert runner.finish() == 0


def test_a_reload_that_fails_to_import_keeps_the_previous_code_serving(runner: Runner) -> None:
    assert runner.init()["type"] == protocol.READY
    runner.send(reload_message({"main.py": "def apply(x):\n    return (\n"}))
    failed = runner.receive()
    assert failed["type"] == protocol.LOAD_ERROR
    assert failed["error"]["type"] == "SyntaxError"
    assert runner.call({"kind": "echo"})["output"]["input"] == {"kind": "echo"}


def test_a_reloaded_file_may_not_leave_the_algorithm_directory(runner: Runner) -> None:
    assert runner.init()["type"] == protocol.READY
    runner.send(reload_message({"../escape.py": "x = 1\n"}))
    refused = runner.receive()
    assert refused["type"] == protocol.LOAD_ERROR
    assert "leaves the algorithm directory" in refused["error"]["message"]
