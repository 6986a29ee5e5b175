"""`algohost init`, `run` and `test` against the real Docker engine, with no API, Redis or
Vault: the platform's builder and hardened sandbox, driven from a directory.

Each test removes the images its directories produced and checks no container is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from click.testing import CliRunner, Result

from algohost.cli.common import CliContext
from algohost.cli.local import LABEL_LOCAL, read_algorithm
from algohost.cli.main import cli
from algohost.config import load_settings
from tests.stack import CA_BUNDLE
from tests.waiting import eventually

pytestmark = pytest.mark.integration

# Builds that install packages trust the same extra CA as the stack's (a proxy's, here).
LOCAL_ENV = {**os.environ, "ALGOHOST_EXTRA_CA_BUNDLE": os.environ.get(
    "ALGOHOST_EXTRA_CA_BUNDLE", CA_BUNDLE if Path(CA_BUNDLE).exists() else "")}
SETTINGS = load_settings(LOCAL_ENV)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where `run` and `test` remember what passed: the test's own."""
    monkeypatch.setattr(sys.modules[__name__], "SETTINGS",
                        SETTINGS.with_overrides(state_dir=str(tmp_path / "state")))
    return tmp_path / "state"


@pytest.fixture
def local(docker_client: Any) -> Iterator[list[Path | str]]:
    """Directories a test runs (or build ids it made); their images are removed after it."""
    made: list[Path | str] = []
    yield made
    for item in made:
        build_id = (item if isinstance(item, str)
                    else read_algorithm(item, SETTINGS.max_upload_bytes).build_id)
        # The image, its cached steps and the pytest layer all carry the build's label.
        made_here = docker_client.images.list(
            filters={"label": f"algohost.build={build_id}"})
        for image in sorted(made_here, key=lambda i: i.attrs["Created"], reverse=True):
            for tag in image.tags or [image.id]:
                docker_client.images.remove(tag, force=True)
        left = docker_client.containers.list(
            all=True, sparse=True,
            filters={"label": [f"{LABEL_LOCAL}=1", f"algohost.build={build_id}"]})
        assert left == []


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj=CliContext(SETTINGS))


def write_algorithm(root: Path, name: str, code: str, toml_extra: str = "") -> Path:
    directory = root / name
    directory.mkdir()
    (directory / "algorithm.toml").write_text(
        f'name = "{name}"\nentrypoint = "main:apply"\n{toml_extra}', encoding="utf-8")
    (directory / "main.py").write_text(code, encoding="utf-8")
    return directory


def test_init_run_and_test_a_function_template(tmp_path: Path, local: list[Path | str]) -> None:
    created = invoke("init", "greeter", "--dir", str(tmp_path))
    assert created.exit_code == 0, created.stderr
    directory = tmp_path / "greeter"
    local.append(directory)

    ran = invoke("run", str(directory), '{"name": "ada"}')
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(ran.stdout) == {"greeting": "hello ada"}
    assert "greeting ada" in ran.stderr  # the algorithm's print, as its logs
    assert "cold_start_ms" in ran.stderr

    tested = invoke("test", str(directory))
    assert tested.exit_code == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout


def test_test_exits_with_pytests_code_when_a_test_fails(tmp_path: Path,
                                                          local: list[Path | str]) -> None:
    assert invoke("init", "failing", "--dir", str(tmp_path)).exit_code == 0
    directory = tmp_path / "failing"
    local.append(directory)
    (directory / "tests" / "test_more.py").write_text("def test_no():\n    assert 1 == 2\n")

    tested = invoke("test", str(directory))
    assert tested.exit_code == 1
    assert "1 failed, 1 passed" in tested.stdout


def test_run_times_out_as_the_platform_does(tmp_path: Path, local: list[Path | str]) -> None:
    code = "import time\n\ndef apply(x):\n    time.sleep(60)\n"
    directory = write_algorithm(tmp_path, "slow", code, "[resources]\ntimeout_s = 1\n")
    local.append(directory)

    ran = invoke("run", str(directory), "{}")
    assert ran.exit_code == 1
    assert "timed_out" in ran.stderr
    assert "did not finish within 1 s" in ran.stderr


def test_a_secret_file_reaches_run_secrets_and_is_masked_in_logs(
        tmp_path: Path, local: list[Path | str]) -> None:
    code = ("def apply(x):\n"
            "    value = open('/run/secrets/API_TOKEN').read()\n"
            "    print('token is', value)\n"
            "    return {'length': len(value)}\n")
    directory = write_algorithm(tmp_path, "tokenuser", code,
                                '[secrets]\nnames = ["API_TOKEN"]\n')
    local.append(directory)
    secret = tmp_path / "token.txt"
    secret.write_text("s3cr3t-value-42\n", encoding="utf-8")

    ran = invoke("run", str(directory), "{}", "--secret", f"API_TOKEN=@{secret}")
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(ran.stdout) == {"length": len("s3cr3t-value-42")}
    assert "token is ***" in ran.stderr
    assert "s3cr3t-value-42" not in ran.stdout + ran.stderr


def test_run_ends_a_call_over_its_memory_limit_as_the_platform_does(
        tmp_path: Path, local: list[Path | str]) -> None:
    code = ("def apply(x):\n    chunks = []\n    while True:\n"
            "        chunks.append(b'\\x01' * (8 * 1024 * 1024))\n")
    directory = write_algorithm(tmp_path, "hog", code, "[resources]\nmemory_mb = 64\n")
    local.append(directory)

    ran = invoke("run", str(directory), "{}")
    assert ran.exit_code == 1
    assert "(oom)" in ran.stderr
    assert "64 MB memory limit" in ran.stderr


def test_run_builds_on_the_default_bridge_where_no_fenced_network_exists(
        tmp_path: Path, local: list[Path | str]) -> None:
    directory = write_algorithm(tmp_path, "bridged", "def apply(x):\n    return x\n")
    local.append(directory)
    settings = load_settings({"ALGOHOST_BUILDS_NETWORK": "algohost-nonet"})

    ran = CliRunner().invoke(cli, ["run", str(directory), "[1]"], obj=CliContext(settings))
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(ran.stdout) == [1]
    assert "no network algohost-nonet" in ran.stderr


def test_init_writes_a_notebook_with_a_tagged_parameters_cell(tmp_path: Path) -> None:
    created = invoke("init", "explorer", "--template", "notebook", "--dir", str(tmp_path))
    assert created.exit_code == 0, created.stderr
    directory = tmp_path / "explorer"
    assert 'entrypoint = "analysis.ipynb"' in (directory / "algorithm.toml").read_text()
    notebook = json.loads((directory / "analysis.ipynb").read_text())
    assert (notebook["nbformat"], notebook["nbformat_minor"]) == (4, 5)
    tagged = [cell for cell in notebook["cells"]
              if "parameters" in cell["metadata"].get("tags", [])]
    assert len(tagged) == 1 and tagged[0]["cell_type"] == "code"
    namespace: dict[str, Any] = {}
    for cell in notebook["cells"]:  # the cells run top to bottom, as a kernel would run them
        if cell["cell_type"] == "code":
            exec("".join(cell["source"]), namespace)
    assert namespace["result"] == {"greeting": "hello world"}
    assert (directory / "tests" / "test_analysis.py").exists()


def test_the_notebook_template_runs_and_passes_its_test_in_its_image(
        tmp_path: Path, local: list[Path | str]) -> None:
    assert invoke("init", "explorer", "--template", "notebook",
                  "--dir", str(tmp_path)).exit_code == 0
    directory = tmp_path / "explorer"
    local.append(directory)

    ran = invoke("run", str(directory), '{"name": "ada", "repeat": 2}')
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(ran.stdout) == {"greeting": "hello ada hello ada"}
    tested = invoke("test", str(directory))
    assert tested.exit_code == 0, tested.stdout + tested.stderr


def test_a_model_file_is_mounted_read_only_where_the_platform_mounts_models(
        tmp_path: Path, local: list[Path | str]) -> None:
    code = ("from pathlib import Path\n\n"
            "def apply(x):\n"
            "    path = Path('/models/weights')\n"
            "    try:\n"
            "        path.write_bytes(b'x')\n"
            "        writable = True\n"
            "    except OSError:\n"
            "        writable = False\n"
            "    return {'data': path.read_text(), 'writable': writable}\n")
    directory = write_algorithm(tmp_path, "modeluser", code,
                                '[models]\nweights = "weights@latest"\n')
    local.append(directory)
    weights = tmp_path / "weights.txt"
    weights.write_text("w=42", encoding="utf-8")
    weights.chmod(0o644)

    ran = invoke("run", str(directory), "{}", "--model", f"weights={weights}")
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(ran.stdout) == {"data": "w=42", "writable": False}


def test_a_model_the_manifest_does_not_name_is_refused(tmp_path: Path) -> None:
    directory = write_algorithm(tmp_path, "nomodels", "def apply(x):\n    return x\n")
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"1")

    ran = invoke("run", str(directory), "{}", "--model", f"weights={weights}")
    assert ran.exit_code == 2
    assert "weights is not in [models]" in ran.stderr


class Watch:
    """`algohost run --watch` in a process of its own, its stdout lines collected."""

    def __init__(self, directory: Path, payload: str, state_dir: Path) -> None:
        env = {**LOCAL_ENV, "PYTHONPATH": str(ROOT), "ALGOHOST_STATE_DIR": str(state_dir)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from algohost.cli.main import cli; cli()", "run",
             str(directory), payload, "--watch"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
        self.lines: list[str] = []
        self.errors: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        for stream, into in ((self.process.stdout, self.lines),
                             (self.process.stderr, self.errors)):
            threading.Thread(target=self._read, args=(stream, into), daemon=True).start()

    @staticmethod
    def _read(stream: IO[bytes], into: list[str]) -> None:
        for line in stream:
            into.append(line.decode("utf-8", "replace").rstrip("\n"))

    def outputs(self) -> list[Any]:
        return [json.loads(line) for line in list(self.lines)]

    def output_becomes(self, expected: Any) -> None:
        eventually(lambda: self.outputs() and self.outputs()[-1] == expected, 120,
                   lambda: f"output {expected!r}: {self.outputs()} " + "\n".join(self.errors))

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


def test_watch_reloads_an_edited_entrypoint_in_the_same_warm_container(
        tmp_path: Path, local: list[Path | str], state_dir: Path, docker_client: Any) -> None:
    directory = write_algorithm(tmp_path, "watched",
                                "def apply(x):\n    return {'version': 1, 'input': x}\n")
    first = read_algorithm(directory, SETTINGS.max_upload_bytes).build_id
    local.append(first)
    label = {"label": [f"{LABEL_LOCAL}=1", f"algohost.build={first}"]}
    watch = Watch(directory, '"a"', state_dir)
    try:
        watch.output_becomes({"version": 1, "input": "a"})
        containers = docker_client.containers.list(sparse=True, filters=label)
        (directory / "main.py").write_text("def apply(x):\n    return {'version': 2}\n")
        watch.output_becomes({"version": 2})
        # stderr is read by a thread of its own, and its last lines follow the output.
        eventually(lambda: any(line.startswith("save-to-result") for line in watch.errors),
                   30, "the save-to-result line")
        assert any("reloaded the code in the warm container" in line for line in watch.errors)
        assert sum(line.startswith("building") for line in watch.errors) == 1  # the first
        still = docker_client.containers.list(sparse=True, filters=label)
        assert len(containers) == 1 and [c.id for c in still] == [containers[0].id]

        # A change to algorithm.toml builds the image again and starts a new container.
        manifest = directory / "algorithm.toml"
        manifest.write_text(manifest.read_text() + "[resources]\ntimeout_s = 7\n")
        local.append(read_algorithm(directory, SETTINGS.max_upload_bytes).build_id)
        (directory / "main.py").write_text("def apply(x):\n    return {'version': 3}\n")
        local.append(read_algorithm(directory, SETTINGS.max_upload_bytes).build_id)
        watch.output_becomes({"version": 3})
        assert any("building again" in line for line in watch.errors)
    finally:
        code = watch.stop()
    assert code == 0, "\n".join(watch.errors)


def test_run_keeps_what_the_call_reports_with_log_metric(tmp_path: Path,
                                                         local: list[Path | str]) -> None:
    code = ("import algohost_runtime as ah\n\n"
            "def apply(x):\n"
            "    ah.log_metric('accuracy', 0.75)\n"
            "    try:\n"
            "        ah.open('data://alice/sets/a.csv')\n"
            "    except OSError as exc:\n"
            "        return {'data': str(exc)}\n")
    directory = write_algorithm(tmp_path, "reporter", code)
    local.append(directory)

    ran = invoke("run", str(directory), "{}", "--json")
    assert ran.exit_code == 0, ran.stderr
    job = json.loads(ran.stdout)
    assert job["custom_metrics"] == {"accuracy": 0.75}
    assert "a local run cannot answer 'data.read'" in job["output"]["data"]
    shown = invoke("run", str(directory), "{}")
    assert "accuracy (reported)" in shown.stderr and "0.75" in shown.stderr
