"""Baseline B: the hello function called in-process behind a minimal Flask endpoint,
served by gunicorn as a hand-made wrapper would be.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from typing import Any

import requests
from flask import Flask, jsonify, request

from bench.lean_http import LeanHTTP
from bench.stats import summary


def create_app() -> Flask:
    sys.path.insert(0, "examples/hello")
    from main import apply  # type: ignore[import-not-found]

    app = Flask("baseline")

    @app.post("/hello")
    def hello() -> Any:
        return jsonify(apply(request.get_json()))

    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(calls: int = 500) -> dict[str, Any]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
         "bench.baseline_flask:create_app()"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/hello"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.post(url, json={"name": "x"}, timeout=2).raise_for_status()
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        http = LeanHTTP(f"http://127.0.0.1:{port}")  # the same client as algohost's loops
        samples = []
        for i in range(calls):
            started = time.perf_counter()
            status, _ = http.request("POST", "/hello", {"name": str(i)})
            samples.append(time.perf_counter() - started)
            assert status == 200
        return summary(samples)
    finally:
        server.terminate()
        server.wait(30)
