"""A thousand synchronous callers at once: each holds a `Prefer: wait` on a 5 s call while
/healthz and a warm call of hello (another owner) are timed.

The calls capacity is stated, not hidden: besides the stack's own workers this step runs
one more bulk worker process (niced, as the stack's is) with WAITER_THREADS threads (and
as many warm containers) for the run, and gives the flooding owner enough slots to use them.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from algohost.config import Settings
from algohost.dev.commands import BULK_NICE
from algohost.dev.stack import nice_session
from algohost.dispatch import BULK_QUEUE
from algohost.store import connect
from algohost.store.keys import KeyStore
from algohost.store.limits import LimitStore
from bench.algohost_bench import Client
from bench.lean_http import LeanHTTP
from bench.stats import summary

SLEEPER = Path(__file__).resolve().parent.parent / "tests" / "algorithms" / "sleeper"
FLOOD_OWNER = "bench-waiters"
WAITER_THREADS = 100
CALL_SECONDS = 5


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str,
                    path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, Any]:
    head = [f"{method} {path} HTTP/1.1", "Host: bench", f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in headers.items())]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    data = await reader.readexactly(length) if length else b""
    return status, json.loads(data) if data else None


async def _one_waiter(host: str, port: int, key: str, ref: str) -> tuple[bool, float]:
    """Submit with Prefer: wait, keep waiting on GET until terminal; (got result, seconds)."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
               "Prefer": "wait=60"}
    try:
        body = json.dumps({"algorithm": ref, "input": CALL_SECONDS}).encode()
        status, job = await _exchange(reader, writer, "POST", "/v1/jobs", headers, body)
        while status in (200, 202) and job["status"] in ("queued", "running"):
            status, job = await _exchange(reader, writer, "GET", f"/v1/jobs/{job['id']}",
                                          headers)
        ok = status == 200 and job["status"] == "succeeded" and job["output"] == {
            "slept": CALL_SECONDS}
        return ok, time.perf_counter() - started
    finally:
        writer.close()


async def _flood(base: str, key: str, ref: str, waiters: int) -> list[tuple[bool, float]]:
    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    return list(await asyncio.gather(*(_one_waiter(host, port, key, ref)
                                       for _ in range(waiters))))


def _flood_process(send: Any, base: str, key: str, ref: str, waiters: int) -> None:
    send.send(asyncio.run(_flood(base, key, ref, waiters)))


def _timed(samples: list[float], failures: list[str], request: Any) -> None:
    started = time.perf_counter()
    try:
        request()
    except Exception as exc:  # counted and reported, never hidden
        failures.append(str(exc)[:300])
        return
    samples.append(time.perf_counter() - started)


def _probe(samples: list[float], failures: list[str], stop: threading.Event,
           request: Any) -> None:
    while not stop.is_set():
        _timed(samples, failures, request)
        stop.wait(0.02)


def _extra_worker(settings: Settings) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ALGOHOST_POOL_MAX_TOTAL": str(WAITER_THREADS + 4),
           "ALGOHOST_POOL_MAX_PER_BUILD": str(WAITER_THREADS)}
    log = open(Path(settings.state_dir) / "bench-waiters-worker.log", "ab")  # noqa: SIM115
    # Like the stack's bulk worker, niced: the waiters' calls beyond their owner's first
    # slots are bulk work, and the timed probes must not wait for the CPU behind them.
    worker = subprocess.Popen(
        ["nice", "-n", str(BULK_NICE), sys.executable, "-m", "celery", "-A",
         "algohost.worker.app:celery", "worker", "-P", "threads", "-c", str(WAITER_THREADS),
         "-Q", BULK_QUEUE, "-n", "bench-waiters@%h",
         "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
         "--without-heartbeat"], env=env, stdout=log, stderr=log, start_new_session=True)
    nice_session(worker.pid, BULK_NICE)
    return worker


def run(settings: Settings, hello_client: Client, hello_ref: str,
        waiters: int = 1000) -> dict[str, Any]:
    client = connect(settings)
    key = KeyStore(client).create(FLOOD_OWNER)
    LimitStore(client, settings).set(FLOOD_OWNER, max_running=waiters, max_queued=waiters * 2)
    flood_client = Client(settings, key)
    sleeper = flood_client.publish(SLEEPER, FLOOD_OWNER)
    health = LeanHTTP(settings.api_url.rstrip("/"))
    hello = lambda: hello_client.call(hello_ref, {"name": "probe"})  # noqa: E731
    idle_health: list[float] = []
    idle_hello: list[float] = []
    failures: list[str] = []
    for _ in range(200):
        _timed(idle_health, failures, lambda: health.request("GET", "/healthz"))
        _timed(idle_hello, failures, hello)
    worker = _extra_worker(settings)
    try:
        flood_client.call(sleeper["ref"], 0)  # the extra worker is up (or the stack's is)
        stop = threading.Event()
        busy_health: list[float] = []
        busy_hello: list[float] = []
        probes = [threading.Thread(target=_probe, args=(busy_health, failures, stop,
                                                        lambda: health.request("GET", "/healthz"))),
                  threading.Thread(target=_probe, args=(busy_hello, failures, stop, hello))]
        started = time.perf_counter()
        # The thousand callers run in a process of their own: in this one, their event
        # loop would hold the GIL the probes' clocks need, and a probe's wait for it
        # would be charged to the server.
        receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)
        flood = multiprocessing.get_context("fork").Process(
            target=_flood_process, args=(send, settings.api_url, key, sleeper["ref"], waiters))
        flood.start()
        for probe in probes:
            probe.start()
        outcomes = receive.recv()
        flood.join(60)
        elapsed = time.perf_counter() - started
        stop.set()
        for probe in probes:
            probe.join()
    finally:
        worker.terminate()
        worker.wait(60)
        LimitStore(client, settings).reset(FLOOD_OWNER)
    got = sum(1 for ok, _ in outcomes if ok)
    return {"waiters": waiters, "got_result": got, "seconds": round(elapsed, 1),
            "call_seconds": CALL_SECONDS,
            "workers": f"the stack's workers + one bulk worker of {WAITER_THREADS} threads",
            "wait_s": summary([s for _, s in outcomes]),
            "healthz_idle": summary(idle_health), "healthz_busy": summary(busy_health),
            "hello_idle": summary(idle_hello), "hello_busy": summary(busy_hello),
            "probe_failures": failures[:5], "probe_failure_count": len(failures)}
