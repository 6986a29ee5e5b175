"""`algohost dev up|down|status|demo`: the local stack on one host.

`dev up` is idempotent and starts only what is not already answering; `dev down`
stops only processes it recorded in pid files under the state directory.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from rich.table import Column, Table

from algohost.cli.common import CliContext, emit_json, err, json_option, out, pass_ctx
from algohost.config import Settings, child_environment
from algohost.dev import stack
from algohost.dev.demo import demo
from algohost.dev.stack import Part
from algohost.dispatch import BULK_QUEUE, CALLS_QUEUE
from algohost.errors import AlgohostError

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_DOCKER_URL = "unix:///var/run/docker.sock"
APP_TARGET = "algohost.api:create_app()"
CELERY_APP = "algohost.worker.app:celery"
API_START_S = 30.0
WORKER_SETTLE_S = 2.0
DOCKERD_START_S = 60.0
DOCKERD_PID_FILE = Path("/var/run/docker.pid")  # dockerd's default --pidfile
MANAGED_CONTAINERD_PID_FILE = Path("/var/run/docker/containerd/containerd.pid")


MAX_WORKERS_PER_QUEUE = 4
CALLS_WORKERS = ["worker-calls"] + [f"worker-calls-{n}"
                                    for n in range(2, MAX_WORKERS_PER_QUEUE + 1)]
BULK_WORKERS = ["worker-bulk"] + [f"worker-bulk-{n}" for n in range(2, MAX_WORKERS_PER_QUEUE + 1)]
SERVICES = ["api", *CALLS_WORKERS, *BULK_WORKERS, "worker-builds", "worker-webhooks"]
# The bulk workers' niceness, for the process and for its session's scheduling group
# (stack.nice_session): while they have work, the host's CPU goes first to the API, the
# broker and the calls workers serving other owners' first calls (each step of nice is
# ~1.25x less CPU under contention; 19 is ~70x). Alone on the host, they run at full speed.
# Measured on 2 cores, another owner's sync call while a flood of 2,000 drains: 1.21-1.67x
# its idle p50 with two bulk workers whose session groups are niced too (0.84-1.33x with
# one), 1.44-1.86x with the processes alone niced (each being alone in its session, a
# niced process yields to nothing).
BULK_NICE = 19


def parts(state: Path) -> dict[str, Part]:
    services = {name: Part(name, "gunicorn" if name == "api" else "celery", state)
                for name in SERVICES}
    return {
        "redis": Part("redis", "redis-server", state),
        "dockerd": Part("dockerd", "dockerd", state),
        **services,
        "openbao": Part("openbao", "bao", state),
    }


def worker_specs(settings: Settings) -> list[tuple[str, str, int]]:
    """(part, queue, threads) of each worker process `dev up` runs.

    Calls may get one process per core (ALGOHOST_CALLS_WORKERS=0): the work happens
    in containers, but Celery's own bookkeeping is Python and one process holds one
    core at most. One is the default: on a small host it answers sync calls sooner.
    Niced processes take the bulk queue (floods, backlogs, batch chunks), one per core
    by default (ALGOHOST_BULK_WORKERS): niced, they take only the CPU nobody else wants,
    and a flood then drains on every core of an idle host."""
    cores = min(MAX_WORKERS_PER_QUEUE, os.cpu_count() or 1)

    def count(asked: int) -> int:
        return max(1, min(asked or cores, MAX_WORKERS_PER_QUEUE))

    calls = [(name, CALLS_QUEUE, settings.worker_concurrency)
             for name in CALLS_WORKERS[:count(settings.calls_workers)]]
    bulk = [(name, BULK_QUEUE, settings.worker_concurrency)
            for name in BULK_WORKERS[:count(settings.bulk_workers)]]
    return [*calls, *bulk, ("worker-builds", "builds", 2), ("worker-webhooks", "webhooks", 4)]


def step(name: str, message: str) -> None:
    err.print(f"[bold]{name:<14}[/bold] {message}")


def fail_with_log(message: str, part: Part) -> click.ClickException:
    err.rule(f"{part.log_file} (tail)")
    click.echo(stack.log_tail(part.log_file), err=True)
    return click.ClickException(message)


PERSISTENCE_WARNING = ("keeps nothing on disk (no AOF, no snapshots): a restart loses every "
                       "queued job; production Redis must persist (appendonly yes, as in "
                       "compose.yaml)")


def ensure_redis(settings: Settings, part: Part) -> None:
    if stack.redis_answers(settings.redis_url):
        step("redis", f"answering at {settings.redis_url}")
        if stack.redis_keeps_nothing(settings.redis_url):
            step("redis", f"[yellow]warning:[/yellow] {PERSISTENCE_WARNING}")
        return
    if not stack.is_local(settings.redis_url):
        raise click.ClickException(f"Redis at {settings.redis_url} does not answer")
    host, port = stack.host_port(settings.redis_url, 6379)
    argv = [stack.executable("redis-server"), "--daemonize", "yes",
            "--bind", "127.0.0.1" if host == "localhost" else host, "--port", str(port),
            "--save", "", "--appendonly", "no", "--dir", str(part.state_dir),
            "--logfile", str(part.log_file), "--pidfile", str(part.pid_file)]
    with err.status("starting redis"):
        stack.run_checked(argv)
        if not stack.wait_for(lambda: stack.redis_answers(settings.redis_url), 10.0):
            raise fail_with_log("redis-server started but does not answer", part)
    step("redis", f"started at {settings.redis_url}")


def ensure_dockerd(settings: Settings, part: Part) -> None:
    url = settings.sandbox.docker_url
    if stack.docker_answers(url):
        step("docker", f"answering at {url}")
        return
    if not url.startswith("unix://"):
        raise click.ClickException(f"the Docker engine at {url} does not answer")
    argv = [stack.executable("dockerd")]
    if url != DEFAULT_DOCKER_URL:
        argv += ["--host", url]
    other = stack.clear_stale_pid_file(DOCKERD_PID_FILE, "dockerd")
    if other is not None:
        # Still starting up or shutting down: wait for it rather than start a second one.
        with err.status(f"waiting for dockerd (pid {other})"):
            if stack.wait_for(lambda: stack.docker_answers(url), DOCKERD_START_S, interval_s=0.5,
                              give_up=lambda: not stack.is_alive(other, "dockerd")):
                step("docker", f"answering at {url} (pid {other})")
                return
        if stack.clear_stale_pid_file(DOCKERD_PID_FILE, "dockerd") is not None:
            raise click.ClickException(
                f"dockerd (pid {other}) runs but does not answer at {url}: stop it or fix it")
    # The containerd that dockerd starts keeps its own pid file, stale in the same way.
    stack.clear_stale_pid_file(MANAGED_CONTAINERD_PID_FILE, "containerd")
    with err.status("starting dockerd"):
        pid = stack.spawn(part, argv)
        if not stack.wait_for(lambda: stack.docker_answers(url), DOCKERD_START_S, interval_s=0.5,
                              give_up=lambda: not stack.is_alive(pid, part.marker)):
            raise fail_with_log(f"dockerd did not answer at {url}", part)
    step("docker", f"started dockerd (pid {pid})")


def ensure_egress(settings: Settings) -> None:
    from algohost.cli.egress import install

    created = install(settings.sandbox)
    names = f"{settings.sandbox.calls_network}, {settings.sandbox.builds_network}"
    step("egress", f"networks {names} {'created' if created else 'present'}; rules installed")


def ensure_base_image(settings: Settings, state: Path, mirror: str) -> None:
    # Imported here: the image builder pulls in docker-py and is only needed by `dev up`.
    from algohost.dev.baseimage import ensure_base_image as ensure

    log_path = state / "baseimage.log"
    with log_path.open("a", encoding="utf-8") as log_file:
        def log(line: str) -> None:
            log_file.write(line.rstrip("\n") + "\n")
            log_file.flush()
            err.print(f"  [dim]{line.rstrip()}[/dim]", markup=True, highlight=False)

        with err.status(f"checking base image {settings.sandbox.base_image}"):
            try:
                created = ensure(settings.sandbox, mirror, workdir=state / "rootfs", log=log)
            except AlgohostError as exc:
                raise click.ClickException(f"base image: {exc.message} (log: {log_path})"
                                           ) from exc
    step("base image", f"{settings.sandbox.base_image} {'created' if created else 'present'}")


def api_argv(settings: Settings) -> list[str]:
    """gunicorn with gevent workers: a `Prefer: wait` caller parks a greenlet on the
    process's one completions listener, not a thread, so a thousand waiters leave
    /healthz and short calls alone.
    gunicorn patches the standard library before it imports the app (never --preload,
    which would import redis-py and Celery before the patch)."""
    host, port = stack.host_port(settings.api_url, 8000)
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return [stack.executable("gunicorn", venv=True), "-w", str(settings.api_processes),
            "-k", "gevent", "--worker-connections", str(settings.api_connections),
            "-c", "python:algohost.gunicorn_hooks", "-b", bind, APP_TARGET]


def worker_argv(name: str, queue: str, concurrency: int, state: Path) -> list[str]:
    """`queue` may name several, comma-separated; a worker of the bulk queue alone is niced."""
    # The node name is the worker's id: distinct per process, stable across restarts
    # (a restarted worker removes the containers its killed predecessor left), and
    # distinct per state directory, so two stacks on one engine never remove each
    # other's containers as their own orphans.
    stack_id = hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:6]
    node = f"{name.removeprefix('worker-')}-{stack_id}"
    argv = [stack.executable("celery", venv=True), "-A", CELERY_APP, "worker", "-P", "threads",
            "-c", str(concurrency), "-Q", queue, "-n", f"{node}@%h",
            # Celery's per-task INFO lines cost about a millisecond a call and repeat
            # what the job record holds; warnings and errors are still logged.
            "--loglevel", "WARNING" if CALLS_QUEUE in queue.split(",") or queue == BULK_QUEUE
            else "INFO",
            # Gossip, mingle and heartbeats are cluster events for monitors.
            "--without-gossip", "--without-mingle", "--without-heartbeat"]
    return ["nice", "-n", str(BULK_NICE), *argv] if queue == BULK_QUEUE else argv


def ensure_vault(settings: Settings, state: Path) -> dict[str, str]:
    """A local OpenBao dev server, started and bootstrapped if needed; the settings that
    point the API and the workers at it and at their token files."""
    if not stack.is_local(settings.vault_url):
        step("openbao", f"using {settings.vault_url} (not local, not started here)")
        return {}
    # Imported here: only `dev up` runs a secrets server of its own.
    from algohost.dev.openbao import ensure_dev_server

    host, port = stack.host_port(settings.vault_url, 8200)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        info = ensure_dev_server(state, address, log=lambda line: step("openbao", line),
                                 settings=settings)
    except AlgohostError as exc:
        raise click.ClickException(f"openbao: {exc.message}") from exc
    if not info["bootstrapped"]:
        return {}
    return {"ALGOHOST_VAULT_URL": info["url"],
            "ALGOHOST_VAULT_TOKEN_FILE": info["api_token_file"],
            "ALGOHOST_VAULT_WORKER_TOKEN_FILE": info["worker_token_file"]}


def nice_bulk_sessions(specs: list[tuple[str, str, int]], all_parts: dict[str, Part],
                       started: Mapping[str, int]) -> list[int]:
    """Nice the session group of every bulk worker running (`stack.nice_session`), one
    started before `dev up` did this too; the pids niced."""
    niced = []
    for name, queue, _ in specs:
        pid = started.get(name) or all_parts[name].running_pid()
        if queue == BULK_QUEUE and pid is not None and stack.nice_session(pid, BULK_NICE):
            niced.append(pid)
    return niced


def start_services(settings: Settings, all_parts: dict[str, Part],
                   env: Mapping[str, str] | None = None) -> None:
    """API and the two workers: start those not running, then check they stay up."""
    api = all_parts["api"]
    started: dict[str, int] = {}
    if api.running_pid() is None and stack.api_health(settings.api_url) is None:
        started["api"] = stack.spawn(api, api_argv(settings), env)
    specs = worker_specs(settings)
    for name, queue, concurrency in specs:
        if all_parts[name].running_pid() is None:
            started[name] = stack.spawn(all_parts[name], worker_argv(name, queue, concurrency,
                                                                    api.state_dir),
                                        env)
    nice_bulk_sessions(specs, all_parts, started)
    if "api" in started:
        pid = started["api"]
        with err.status("waiting for the API"):
            if not stack.wait_for(lambda: stack.api_health(settings.api_url) is not None,
                                  API_START_S, give_up=lambda: not stack.is_alive(pid, "gunicorn")):
                raise fail_with_log(f"the API did not answer at {settings.api_url}", api)
    if any(name.startswith("worker") for name in started):
        stack.wait_for(lambda: False, WORKER_SETTLE_S)  # a bad import kills celery at once
    for name in ["api", *(spec[0] for spec in specs)]:
        part = all_parts[name]
        if name in started and part.running_pid() is None:
            raise fail_with_log(f"{name} exited right after starting", part)
        step(name, f"started (pid {started[name]})" if name in started else "already running")


@click.group()
def dev() -> None:
    """Run the whole stack on this host: Redis, dockerd, OpenBao, API, workers."""


@dev.command()
@click.option("--debian-mirror", default=DEFAULT_MIRROR, show_default=True,
              help="Debian mirror used to make the base image when it is missing.")
@json_option
@pass_ctx
def up(ctx: CliContext, debian_mirror: str, as_json: bool) -> None:
    """Start whatever part of the local stack is not running (idempotent)."""
    settings, state = ctx.settings, ctx.state_dir
    all_parts = parts(state)
    ensure_redis(settings, all_parts["redis"])
    ensure_dockerd(settings, all_parts["dockerd"])
    ensure_egress(settings)
    ensure_base_image(settings, state, debian_mirror)
    extra = {**ensure_vault(settings, state), **build_trust(settings)}
    start_services(settings, all_parts, child_environment(extra) if extra else None)
    show_status(ctx, as_json)


HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def build_trust(settings: Settings) -> dict[str, str]:
    """Locally, builds trust what this host trusts (a proxy that re-signs TLS, say)."""
    if settings.sandbox.extra_ca_bundle or not HOST_CA_BUNDLE.exists():
        return {}
    return {"ALGOHOST_EXTRA_CA_BUNDLE": str(HOST_CA_BUNDLE)}


@dev.command()
@click.option("--all", "everything", is_flag=True,
              help="Also stop OpenBao, Redis and dockerd, if `dev up` started them.")
@json_option
@pass_ctx
def down(ctx: CliContext, everything: bool, as_json: bool) -> None:
    """Stop the API and the workers (and with --all, Redis and dockerd)."""
    all_parts = parts(ctx.state_dir)
    names = SERVICES + (["openbao", "redis", "dockerd"] if everything else [])
    stopped = stack.stop_all([all_parts[name] for name in names])
    if as_json:
        emit_json({name: name in stopped for name in names})
        return
    for name in names:
        step(name, "stopped" if name in stopped else "was not running (from here)")


def status_rows(ctx: CliContext) -> dict[str, Any]:
    from algohost.dev.openbao import health as vault_health

    settings, all_parts = ctx.settings, parts(ctx.state_dir)
    redis_ok = stack.redis_answers(settings.redis_url)
    docker_ok = stack.docker_answers(settings.sandbox.docker_url)
    health = stack.api_health(settings.api_url)
    vault_ok = vault_health(settings.vault_url) is not None
    rows: list[dict[str, Any]] = []
    workers = [(spec[0], None, "") for spec in worker_specs(settings)]
    for name, answering, address in (("redis", redis_ok, settings.redis_url),
                                     ("dockerd", docker_ok, settings.sandbox.docker_url),
                                     ("openbao", vault_ok, settings.vault_url),
                                     ("api", health is not None, settings.api_url), *workers):
        part = all_parts[name]
        pid = part.running_pid()
        running = pid is not None or bool(answering)
        log = str(part.log_file) if pid is not None or part.log_file.exists() else ""
        rows.append({"part": name, "state": "running" if running else "stopped", "pid": pid,
                     "address": address, "log": log, "started_here": pid is not None})
    warm: list[dict[str, Any]] = []
    if docker_ok:
        from algohost.sandbox.inventory import warm_containers

        warm = warm_containers(settings.sandbox)
    return {"parts": rows, "redis": redis_ok, "docker": docker_ok, "api": health,
            "warm_containers": warm}


def show_status(ctx: CliContext, as_json: bool) -> None:
    report = status_rows(ctx)
    if as_json:
        emit_json(report)
        return
    table = Table("part", "state", "pid", Column("address", overflow="fold"),
                  Column("log", overflow="fold"))
    for row in report["parts"]:
        style = "green" if row["state"] == "running" else "red"
        table.add_row(row["part"], f"[{style}]{row['state']}[/{style}]",
                      str(row["pid"] or "-"), row["address"] or "-", row["log"] or "-")
    out.print(table)
    health = report["api"] or {}
    out.print(f"redis reachable: {report['redis']}  docker reachable: {report['docker']}  "
              f"api health: {health.get('status', 'no answer')}")
    if report["warm_containers"]:
        warm = Table("algorithm", "build", "warm containers", "workers",
                     title="warm containers")
        for entry in report["warm_containers"]:
            warm.add_row(entry["algorithm"] or "-", entry["build"], str(entry["containers"]),
                         ", ".join(entry["workers"]))
        out.print(warm)
    else:
        out.print("no warm containers")


@dev.command()
@json_option
@pass_ctx
def status(ctx: CliContext, as_json: bool) -> None:
    """Show which parts of the local stack run, their pids and where they log."""
    show_status(ctx, as_json)


dev.add_command(demo)
