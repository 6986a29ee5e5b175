"""The API as `dev up` serves it (gunicorn, gevent workers) against a real Redis: callers
waiting with `Prefer: wait` hold no thread, so the health check and other calls answer
while they wait. No worker consumes the queue: the jobs stay queued until canceled.
"""

import http.client
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from algohost.archive import make_archive
from algohost.config import Settings
from algohost.dev.commands import api_argv
from algohost.gunicorn_hooks import KEEPALIVE_REQUESTS
from algohost.store.keys import KeyStore
from algohost.store.registry import Registry
from tests.integration.test_api_redis import algorithm

pytestmark = pytest.mark.integration
WAITERS = 80  # more than the 2 x 16 threads the API had before it was evented


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(port, method, path, key=None, body=None, headers=None, timeout_s=90):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if key:
        all_headers["Authorization"] = f"Bearer {key}"
    payload = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    try:
        conn.request(method, path, payload, all_headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def until(check, what, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


@pytest.fixture
def served_api(api_redis, api_redis_url, tmp_path):
    port = free_port()
    settings = Settings(redis_url=api_redis_url, api_url=f"http://127.0.0.1:{port}",
                        state_dir=str(tmp_path))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALGOHOST_")}
    env.update({"ALGOHOST_REDIS_URL": api_redis_url, "ALGOHOST_STATE_DIR": str(tmp_path)})
    log = open(tmp_path / "api.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(api_argv(settings), env=env, stdout=log, stderr=log,
                              start_new_session=True)

    def answers():
        try:
            return request(port, "GET", "/healthz", timeout_s=2)[0] in (200, 503)
        except OSError:
            return False

    try:
        until(answers, "the API answers")
        yield port, api_redis
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def test_the_api_runs_gevent_workers():
    argv = api_argv(Settings())
    assert argv[argv.index("-k") + 1] == "gevent" and "--preload" not in argv


def test_a_keep_alive_connection_is_closed_after_its_hundredth_request(served_api):
    """So a client's connections, opened at once, do not stay split unevenly between the
    API's processes: each is reopened now and then, and accepted by the least busy."""
    port, _ = served_api
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        answers, sockets = [], set()
        for _ in range(KEEPALIVE_REQUESTS):
            conn.request("GET", "/healthz")
            sockets.add(id(conn.sock))
            response = conn.getresponse()
            response.read()
            answers.append(response.getheader("Connection"))
        assert len(sockets) == 1
        assert answers[:-1] == ["keep-alive"] * (KEEPALIVE_REQUESTS - 1)
        assert answers[-1] == "close" and conn.sock is None  # http.client saw it close
        conn.request("GET", "/healthz")  # a new connection, transparently
        assert conn.getresponse().status in (200, 503)
    finally:
        conn.close()


def test_waiting_callers_leave_the_health_check_and_reads_answering(served_api, tmp_path):
    port, client = served_api
    key = KeyStore(client).create("alice")
    status, reply = request(port, "POST", "/v1/algorithms/alice/hello/versions", key,
                            make_archive(algorithm(tmp_path / "hello")),
                            {"Content-Type": "application/gzip"})
    assert status == 202, reply
    Registry(client).update_build(reply["build"]["id"], status="succeeded")
    outcomes = []

    def wait_for_a_call(n):
        outcomes.append(request(port, "POST", "/v1/jobs", key,
                                {"algorithm": "alice/hello", "input": n},
                                {"Prefer": "wait=60"}))

    waiters = [threading.Thread(target=wait_for_a_call, args=(n,)) for n in range(WAITERS)]
    for waiter in waiters:
        waiter.start()
    index = "algohost:jobs:owner:alice"
    until(lambda: client.zcard(index) == WAITERS, "every caller's job is queued")

    assert request(port, "GET", "/healthz")[0] in (200, 503)
    status, listed = request(port, "GET", "/v1/jobs?limit=5", key)
    assert status == 200 and len(listed["jobs"]) == 5
    assert not outcomes and all(waiter.is_alive() for waiter in waiters)

    for job_id in client.zrange(index, 0, -1):
        assert request(port, "POST", f"/v1/jobs/{job_id}/cancel", key)[0] == 200
    for waiter in waiters:
        waiter.join(90)
    assert len(outcomes) == WAITERS
    assert all(status == 200 and job["status"] == "canceled" for status, job in outcomes)


def test_build_log_followers_leave_the_health_check_answering(served_api, tmp_path):
    port, client = served_api
    key = KeyStore(client).create("alice")
    status, reply = request(port, "POST", "/v1/algorithms/alice/hello/versions", key,
                            make_archive(algorithm(tmp_path / "hello")),
                            {"Content-Type": "application/gzip"})
    assert status == 202, reply
    build_id = reply["build"]["id"]
    endings = []
    opened = threading.Semaphore(0)

    def follow():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=90)
        try:
            conn.request("GET", "/v1/algorithms/alice/hello/versions/0.1.0/logs?follow=1",
                         headers={"Authorization": f"Bearer {key}"})
            response = conn.getresponse()
            opened.release()
            endings.append(response.read().decode())  # to the end of the stream
        finally:
            conn.close()

    followers = [threading.Thread(target=follow) for _ in range(WAITERS)]
    for follower in followers:
        follower.start()
    for _ in range(WAITERS):
        assert opened.acquire(timeout=60), "a follower's stream opened"

    assert request(port, "GET", "/healthz")[0] in (200, 503)
    assert not endings and all(follower.is_alive() for follower in followers)

    registry = Registry(client)
    registry.append_log(build_id, "Step 1/1 : the only step\n")
    registry.update_build(build_id, status="failed", error="stopped by the test")
    for follower in followers:
        follower.join(90)
    assert len(endings) == WAITERS
    assert all("data: Step 1/1 : the only step" in text and "event: end" in text
               for text in endings)
