"""Runs a notebook algorithm INSIDE the container: one kernel per container, warmed once.

Loaded by runner.py when the entrypoint is a notebook; unlike the runner it may import
nbformat, nbclient and jupyter_client, which the build installs into the image's venv for
notebook algorithms. The kernel talks to this process over loopback only. Each call runs
the notebook's cells in a fresh namespace; a kernel that dies ends the runner, and so the
container, like any crash. Nothing here writes to the protocol stream itself.
"""

from __future__ import annotations

import ast
import base64
import copy
import json
import os
import re
import sys
import tempfile
from typing import Any

import nbformat
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_HEAD_LINES = 8
IMAGE_TYPES = {"image/png": "png", "image/svg+xml": "svg"}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# Run in the kernel once: algohost_runtime speaks through the relay, like in a function.
BOOTSTRAP = """
def __algohost_bootstrap(here, socket_path):
    import importlib.util, sys
    def load(name, file):
        spec = importlib.util.spec_from_file_location(name, here + "/" + file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    relay = load("_algohost_relay", "relay.py")
    protocol = load("_algohost_protocol", "protocol.py")
    import os
    if os.path.exists(here + "/algohost_runtime.py"):
        runtime = load("algohost_runtime", "algohost_runtime.py")
        runtime._install(relay.RelayChannel(socket_path), protocol)
        sys.modules["algohost_runtime"] = runtime
__algohost_bootstrap(%r, %r)
del __algohost_bootstrap
"""
# Drawing one figure loads the fonts and the PNG writer: the first call's plot is warm too.
WARM_PLOTS = """
import sys as __s
if "matplotlib.pyplot" in __s.modules:
    import io as __io
    __p = __s.modules["matplotlib.pyplot"]
    __f = __p.figure(); __p.plot([0, 1], [0, 1]); __f.savefig(__io.BytesIO(), format="png")
    __p.close("all")
"""
# Before each call: no variable of the last call survives; imported modules stay loaded.
# InteractiveShell.reset() would do it, but its gc.collect() costs a warm call ~100 ms.
RESET = """
def __algohost_reset(directory):
    import os, sys
    shell = get_ipython()
    ns, hidden = shell.user_ns, shell.user_ns_hidden
    for name in [name for name in ns if name not in hidden]:
        del ns[name]
    history = shell.history_manager  # the last call's code and outputs, parameters included
    history.output_hist.clear()
    history.input_hist_parsed[:] = [""]
    history.input_hist_raw[:] = [""]
    for name in ("_", "__", "___", "_i", "_ii", "_iii"):
        ns[name] = ""
    shell.displayhook.prompt_count = 0
    shell.execution_count = 1
    os.chdir(directory)
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
__algohost_reset(%r)
del __algohost_reset
"""
TO_JSON = ("__import__('json').dumps(%s, allow_nan=False, default=lambda o: o.tolist() "
           "if hasattr(o, 'tolist') else (_ for _ in ()).throw(TypeError("
           "f'a {type(o).__name__} is not JSON')))")


class CellFailed(Exception):
    """A cell raised: reported with the cell's own error type, its index and source."""

    def __init__(self, ename: str, evalue: str, traceback: str, index: int, source: str
                 ) -> None:
        super().__init__(evalue)
        self.ename, self.evalue, self.tb = ename, evalue, traceback
        self.cell = {"index": index, "source": source}

    def error_info(self, protocol: Any, limit: int) -> dict[str, Any]:
        head = "\n".join(self.cell["source"].splitlines()[:SOURCE_HEAD_LINES])
        info = dict(protocol.error_info(self.ename, _tail(self.evalue, limit, protocol),
                                        _tail(self.tb, limit, protocol)))
        info["cell"] = {"index": self.cell["index"], "source": head[:2000]}
        return info


def _tail(text: str, limit: int, protocol: Any) -> str:
    return text if len(text) <= limit else protocol.CUT_MARK + text[-limit:]


def _tagged(cell: Any, tag: str) -> bool:
    return tag in (cell.get("metadata", {}).get("tags") or [])


def injected(nb: Any, values: dict[str, Any], protocol: Any) -> tuple[Any, int]:
    """A copy of the notebook with the call's values in a cell right after the parameters
    cell (at the top without one), as papermill does; and where that cell is."""
    copied = copy.deepcopy(nb)
    # JSON values' reprs are Python literals: true is True, null is None.
    lines = ["# Parameters"] + [f"{name} = {value!r}" for name, value in values.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = [protocol.INJECTED_TAG]
    at = next((i + 1 for i, c in enumerate(copied.cells)
               if _tagged(c, protocol.PARAMETERS_TAG)), 0)
    copied.cells.insert(at, cell)
    return copied, at


class NotebookAlgorithm:
    """One kernel, started and warmed by `start`; `__call__` runs one call in it."""

    def __init__(self, path: str, channel: Any, protocol: Any) -> None:
        self.path, self.protocol = path, protocol
        self.directory = os.path.dirname(path)
        self.name = os.path.basename(path)
        with open(path, encoding="utf-8") as f:
            self.nb = nbformat.read(f, as_version=4)
        self.relay = _load("_algohost_relay", "relay.py").RelayServer(channel)
        # Unix sockets in a private directory: the kernel needs no network, not even lo.
        sockets = os.path.join(tempfile.mkdtemp(prefix="algohost-kernel-"), "kernel")
        manager = AsyncKernelManager(transport="ipc", ip=sockets)
        # No history database: nothing of one call may be read back by the next.
        self.client = NotebookClient(self.nb, km=manager, timeout=None,
                                     extra_arguments=["--HistoryManager.enabled=False"],
                                     kernel_name="python3", allow_errors=False,
                                     resources={"metadata": {"path": self.directory}})
        self.logs: list[str] = []

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.client.start_new_kernel(env=env, cwd=self.directory)
        self.client.start_new_kernel_client()
        self._silent(BOOTSTRAP % (HERE, self.relay.path))
        for index, line, _ in _load("_algohost_cells", "cells.py").import_statements(
                self.nb.cells):
            error = self._silent(line)
            if error is not None:
                raise CellFailed(error["ename"], error["evalue"], _plain(error["traceback"]),
                                 index, self.nb.cells[index].source)
        self._silent(WARM_PLOTS)

    def _silent(self, code: str, expressions: dict[str, str] | None = None
                ) -> dict[str, Any] | None:
        """Run code outside the notebook's history; the error content, or None.
        With `expressions`, their results are kept in self.expressions."""
        kc = self.client.kc
        assert kc is not None

        async def go() -> dict[str, Any]:
            msg_id = kc.execute(code, silent=True, store_history=False,
                                user_expressions=expressions or {})
            reply: dict[str, Any] = await self.client.async_wait_for_reply(msg_id)
            return reply

        reply = run_sync(go)()
        if reply is None:  # the kernel died
            raise DeadKernelError("the kernel died")
        content = reply["content"]
        self.expressions = content.get("user_expressions", {})
        return content if content.get("status") == "error" else None

    def close(self) -> None:
        """Shut the kernel down (a reload starts another)."""
        try:
            run_sync(self.client.km.shutdown_kernel)(now=True)
        except Exception:  # a kernel already gone is what was wanted
            pass

    def __call__(self, payload: Any) -> Any:
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise TypeError("a notebook's input is a JSON object of its parameters, "
                            f"not {type(payload).__name__}")
        for name in payload:
            if not str(name).isidentifier():
                raise ValueError(f"{name!r} is not a parameter name")
        try:
            return self._run(payload)
        except DeadKernelError:
            self.die("the notebook's kernel died")

    def die(self, why: str) -> None:
        """A dead kernel ends the container, like any crash."""
        os.write(2, f"algohost notebook runner: {why}\n".encode())
        os._exit(3)

    def _run(self, payload: dict[str, Any]) -> Any:
        if not run_sync(self.client.km.is_alive)():
            self.die("the notebook's kernel is not running")
        self._silent(RESET % self.directory)
        nb, at = injected(self.nb, payload, self.protocol)
        self.client.nb = nb
        self.client.reset_execution_trackers()
        result_cell = None
        try:
            for index, cell in enumerate(nb.cells):
                self.client.execute_cell(cell, index)
                self._echo(cell)
                if _tagged(cell, self.protocol.RESULT_TAG):
                    result_cell = cell
        except CellExecutionError as exc:
            self._echo(nb.cells[index])
            # Named by its index in the published notebook, the one its author knows.
            raise self._failed(nb, index, index - (index > at), exc) from None
        output = self._result(result_cell)
        self._save(nb, at)
        return output

    def _echo(self, cell: Any) -> None:
        """A cell's printed text into the call's logs, as a function's prints go there."""
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                target = sys.stderr if out.get("name") == "stderr" else sys.stdout
                target.write(out.get("text", ""))

    def _failed(self, nb: Any, index: int, published: int, exc: CellExecutionError
                ) -> CellFailed:
        error = next((out for out in nb.cells[index].get("outputs", [])
                      if out.get("output_type") == "error"), None)
        ename = exc.ename or (error or {}).get("ename", "Error")
        evalue = exc.evalue or (error or {}).get("evalue", "")
        tb = _plain((error or {}).get("traceback", [])) or _ANSI.sub("", str(exc))
        return CellFailed(ename, evalue, tb, published, nb.cells[index].source)

    def _result(self, result_cell: Any) -> Any:
        """The call's output, asked of the kernel in one round trip as [found, value]."""
        protocol = self.protocol
        if result_cell is not None and result_cell.get("execution_count"):
            pair = f"[True, Out.get({int(result_cell['execution_count'])})]"
            where = f"the last expression of the cell tagged {protocol.RESULT_TAG!r}"
        else:
            name = protocol.RESULT_VARIABLE
            pair = (f"[{name!r} in get_ipython().user_ns, "
                    f"get_ipython().user_ns.get({name!r})]")
            where = f"the variable {name!r}"
        self._silent("", {"value": TO_JSON % pair})
        value = self.expressions.get("value", {})
        if value.get("status") != "ok":
            raise TypeError(f"{where} is not JSON: {value.get('ename', 'Error')}: "
                            f"{value.get('evalue', '')}")
        found, output = json.loads(ast.literal_eval(value["data"]["text/plain"]))
        if not found:
            print(f"notebook: no variable {protocol.RESULT_VARIABLE!r} and no cell tagged "
                  f"{protocol.RESULT_TAG!r}: the output is null")
        return output

    def _save(self, nb: Any, injected_at: int) -> None:
        """The executed notebook and each image it drew go to /outputs: the job's artifacts.
        An image is named by its cell's index in the published notebook."""
        outputs = os.environ.get(self.protocol.OUTPUTS_DIR_ENV,
                                 self.protocol.DEFAULT_OUTPUTS_DIR)
        stem = self.name[: -len(self.protocol.NOTEBOOK_SUFFIX)]
        os.makedirs(outputs, exist_ok=True)
        for index, cell in enumerate(nb.cells):
            count = 0
            for out in cell.get("outputs", []):
                for mime, suffix in IMAGE_TYPES.items():
                    data = out.get("data", {}).get(mime)
                    if data is None:
                        continue
                    count += 1
                    raw = base64.b64decode(data) if suffix == "png" else (
                        data if isinstance(data, str) else "".join(data)).encode("utf-8")
                    cell_name = f"cell{index - (index > injected_at)}-{count}.{suffix}"
                    path = os.path.join(outputs, "images", cell_name)
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "wb") as f:
                        f.write(raw)
        # As nbformat writes it, without validating again what nbformat read and nbclient filled.
        with open(os.path.join(outputs, f"{stem}.executed.ipynb"), "w", encoding="utf-8") as f:
            json.dump(nb, f, indent=1, sort_keys=True, ensure_ascii=False)


def _plain(traceback: Any) -> str:
    lines = traceback if isinstance(traceback, list) else [str(traceback)]
    return _ANSI.sub("", "\n".join(lines))


def _load(name: str, file: str) -> Any:
    """A module beside this one, by path: the runner's directory is not on sys.path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, f"{HERE}/{file}")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(path: str, channel: Any, protocol: Any) -> NotebookAlgorithm:
    algorithm = NotebookAlgorithm(path, channel, protocol)
    algorithm.start()
    return algorithm
