"""One contract for both sandboxes: the in-process stub and Docker (the real engine).

The stub runs the very code of tests/algorithms where that is safe in-process, and
simulates what only a container can do (a timeout, a crash, the OOM killer) with
`SimulatedExit`; the outcomes the layers above see must be the same either way.
"""

import importlib.util
import uuid
from dataclasses import replace

import docker.errors
import pytest

from algohost.config import MiB, SandboxSettings
from algohost.errors import ImageMissing, SandboxError
from algohost.sandbox.base import ContainerSpec, ExitReason, Limits
from algohost.sandbox.docker import DockerSandbox
from algohost.sandbox.stub import SimulatedExit, StubSandbox
from tests.integration.conftest import ALGORITHMS, RUN_ID

pytestmark = pytest.mark.integration


def _apply_of(name):
    """The entrypoint of a test algorithm, loaded in this process."""
    spec = importlib.util.spec_from_file_location(f"stub_{name}", ALGORITHMS / name / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.apply


def _simulated(reason, message):
    def apply(_):
        raise SimulatedExit(reason, message)

    return apply


STUB_ALGORITHMS = {
    "hello": _apply_of("hello"),
    "sleeper": _simulated(ExitReason.TIMEOUT, "the call did not finish in time"),
    "crasher": _simulated(ExitReason.CRASHED, "the container exited with code 3"),
    "memhog": _simulated(ExitReason.OOM, "the container went over its memory limit"),
}


class Backend:
    def __init__(self, make_sandbox, image_of, worker_id, container_gone):
        self.make_sandbox, self.image_of, self.worker_id = make_sandbox, image_of, worker_id
        self.container_gone = container_gone  # nothing of the session is left running
        self.sandbox = make_sandbox()
        self.sessions = []

    def start(self, name, memory_mb=256, sandbox=None):
        spec = ContainerSpec(name, self.image_of(name),
                             limits=Limits(timeout_s=30, memory_mb=memory_mb))
        session = (sandbox or self.sandbox).start(spec)
        self.sessions.append(session)
        return session


@pytest.fixture(params=["real", "fake"])
def backend(request):
    if request.param == "fake":
        backend = Backend(lambda **o: StubSandbox(STUB_ALGORITHMS,
                                                  settings=replace(SandboxSettings(), **o)),
                          lambda name: f"stub/{name}", "stub", lambda session: session.closed)
        yield backend
        for session in backend.sessions:
            session.close()
        return
    settings = request.getfixturevalue("sandbox_settings")
    client = request.getfixturevalue("docker_client")
    worker_id = f"test-{RUN_ID}-{uuid.uuid4().hex[:6]}"
    def container_gone(session):
        try:
            client.containers.get(session.container_id)
        except docker.errors.NotFound:
            return True
        return False

    backend = Backend(lambda **o: DockerSandbox(replace(settings, **o), worker_id, client),
                      request.getfixturevalue("algorithm_image"), worker_id, container_gone)
    yield backend
    for session in backend.sessions:
        session.close()
    backend.sandbox.remove_orphans(worker_id)
    labels = {"label": f"algohost.worker={worker_id}"}
    assert client.containers.list(all=True, filters=labels, sparse=True) == []


def test_a_result_then_a_second_call_on_the_same_session(backend):
    session = backend.start("hello")
    assert session.cold_start_ms > 0 and session.calls == 0 and session.alive
    first = session.call("world", timeout_s=10)
    assert first.reason is ExitReason.SUCCEEDED and first.output == {"hello": "world"}
    assert first.reusable and first.error is None
    assert first.run_ms >= 0 and first.peak_memory_bytes > 0
    second = session.call([1, (2, 3)], timeout_s=10)  # JSON both ways: a tuple comes back a list
    assert second.output == {"hello": [1, [2, 3]]} and session.calls == 2 and session.alive


def test_an_exception_is_reported_with_its_traceback_and_the_session_serves_on(backend):
    session = backend.start("hello")
    outcome = session.call({"raise": "nope"}, timeout_s=10)
    assert outcome.reason is ExitReason.EXCEPTION and outcome.reusable and session.alive
    assert outcome.error is not None and outcome.error["type"] == "ValueError"
    assert outcome.error["message"] == "nope" and "main.py" in outcome.error["traceback"]
    assert outcome.run_ms >= 0
    assert session.call(1, timeout_s=10).succeeded


def test_an_input_that_is_not_json_is_refused_before_the_call(backend):
    session = backend.start("hello")
    with pytest.raises(SandboxError, match="JSON"):
        session.call({"not": object()}, timeout_s=10)
    assert session.calls == 0 and session.alive
    assert session.call("still here", timeout_s=10).succeeded


def test_an_output_over_the_limit_is_refused_and_the_session_kept(backend):
    small = backend.make_sandbox(max_output_bytes=1000)
    session = backend.start("hello", sandbox=small)
    outcome = session.call("x" * 2000, timeout_s=10)
    assert outcome.reason is ExitReason.OUTPUT_TOO_LARGE and outcome.reusable
    assert outcome.error is not None and outcome.error["type"] == "OutputTooLarge"
    assert outcome.output is None and session.alive
    assert session.call("small", timeout_s=10).succeeded


@pytest.mark.parametrize("name, reason, error_type, kwargs", [
    ("sleeper", ExitReason.TIMEOUT, "Timeout", {"timeout_s": 1}),
    ("sleeper", ExitReason.CANCELED, "Canceled", {"should_cancel": lambda: True}),
    ("crasher", ExitReason.CRASHED, "Crashed", {}),
])
def test_a_call_the_container_ends_kills_the_session(backend, name, reason, error_type, kwargs):
    session = backend.start(name)
    outcome = session.call(30, **{"timeout_s": 60, **kwargs})
    assert outcome.reason is reason and not outcome.reusable and outcome.output is None
    assert outcome.error is not None and outcome.error["type"] == error_type
    assert not session.alive and backend.container_gone(session)
    with pytest.raises(SandboxError):
        session.call(1, timeout_s=10)


def test_memory_exhaustion_reports_oom_at_the_limit(backend):
    session = backend.start("memhog", memory_mb=64)
    outcome = session.call(None, timeout_s=30)
    assert outcome.reason is ExitReason.OOM and not outcome.reusable
    assert outcome.error is not None and outcome.error["type"] == "OutOfMemory"
    assert outcome.peak_memory_bytes == 64 * MiB
    assert not session.alive and backend.container_gone(session)


def test_close_is_safe_twice_and_ends_the_session(backend):
    session = backend.start("hello")
    session.close()
    session.close()
    assert not session.alive and backend.container_gone(session)
    with pytest.raises(SandboxError):
        session.call(1, timeout_s=10)


def test_a_missing_image_fails_the_start_as_image_missing(backend):
    with pytest.raises(ImageMissing):
        backend.sandbox.start(ContainerSpec("absent", f"algohost-test/does-not-exist:{RUN_ID}"))


def test_a_live_session_is_no_orphan(backend):
    session = backend.start("hello")
    assert backend.sandbox.ping()
    assert backend.sandbox.remove_orphans(backend.worker_id) == 0
    assert session.alive and session.call(1, timeout_s=10).succeeded
