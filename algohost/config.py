"""Settings read from ALGOHOST_* environment variables, in this one place.

Every other module receives a `Settings` (or a part of it) as an argument and
must never read the environment itself.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
BRIDGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,14}")


@dataclass(frozen=True)
class SandboxSettings:
    """What the sandbox needs: the Docker engine and the container limits."""

    docker_url: str = "unix:///var/run/docker.sock"
    base_image: str = "python:3.11-slim"
    extra_ca_bundle: str = ""
    runtime: str = ""
    pids_limit: int = 128
    tmpfs_mb: int = 64
    max_output_bytes: int = 5 * MiB
    max_log_bytes: int = 64 * 1024
    max_artifacts: int = 100  # files one call may leave under /outputs
    max_artifact_bytes: int = 256 * MiB  # their total size (also the /outputs tmpfs's)
    start_timeout_s: float = 60.0
    pool_max_total: int = 8
    pool_max_per_build: int = 4
    pool_idle_s: float = 300.0
    pool_max_calls: int = 10000
    build_memory_mb: int = 2048
    build_cpus: float = 1.0
    build_pids: int = 512
    build_timeout_s: int = 900
    build_disk_mb: int = 10240  # what a step may write, and what a build adds to the base; 0: any
    calls_network: str = "algohost-calls"
    builds_network: str = "algohost-builds"
    egress_allow: str = ""
    egress_dns: str = ""  # the name servers networked containers may use; "none", or the host's

    def __post_init__(self) -> None:
        self.egress_allow_networks  # noqa: B018 - a bad CIDR fails at load, not at install
        self.egress_dns_servers  # noqa: B018 - likewise a bad name server
        for name in (self.calls_network, self.builds_network):
            # The network's bridge interface takes its name; Linux allows 15 characters.
            if not BRIDGE_NAME.fullmatch(name):
                raise ValueError(f"network name {name!r} must be 1-15 letters, digits, '-' "
                                 "or '_' (it names the bridge interface too)")

    @property
    def egress_allow_networks(self) -> tuple[ipaddress.IPv4Network, ...]:
        """Private destinations networked containers may reach anyway (a package mirror)."""
        return parse_cidrs(self.egress_allow)

    @property
    def egress_dns_servers(self) -> tuple[ipaddress.IPv4Address, ...] | None:
        """The name servers networked containers may use; None: the host's own."""
        return parse_name_servers(self.egress_dns)


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str = ""
    api_url: str = "http://127.0.0.1:8000"
    api_key: str = ""
    state_dir: str = str(Path.home() / ".local" / "state" / "algohost")
    job_retention_s: int = 7 * 24 * 3600
    idempotency_ttl_s: int = 24 * 3600  # how long an Idempotency-Key names its job or batch
    max_input_bytes: int = 5 * MiB
    max_upload_bytes: int = 50 * MiB
    max_wait_s: int = 60
    api_processes: int = 2
    api_connections: int = 2000  # open connections (so waiting callers) per API process
    max_timeout_s: int = 3600  # also the cap on a manifest's timeout_s, checked at publish
    max_memory_mb: int = 4096  # cap on a manifest's memory_mb, checked at publish
    max_cpus: float = 2.0  # cap on a manifest's cpus, checked at publish
    owner_max_running: int = 16  # an owner's jobs in the calls queue or running at once
    owner_max_queued: int = 10_000  # an owner's accepted, unfinished jobs (429 past it)
    owner_submits_per_s: float = 500.0  # sustained submits per owner (429 + Retry-After)
    owner_submit_burst: int = 5000  # submits an owner may make at once above that rate
    owner_max_builds: int = 500  # stored builds (sources and images) per owner
    owner_compute_s_per_day: float = 0.0  # compute-seconds an owner may spend a day; 0: any
    metrics_retention_days: int = 90  # hourly per-build metrics are kept this long
    usage_retention_days: int = 400  # daily usage totals are kept this long
    worker_concurrency: int = 8
    calls_workers: int = 1  # calls worker processes in `dev up`; 0: one per core, at most 4
    bulk_workers: int = 0  # bulk worker processes (niced) in `dev up`; 0: one per core, at most 4
    lease_s: int = 60
    max_call_depth: int = 8  # algorithms calling algorithms: how deep a chain may go
    max_call_children: int = 100  # calls one job's algorithm may make
    max_attempts: int = 3
    prewarm: bool = True  # a successful build starts one warm container on a calls worker
    vault_url: str = "http://127.0.0.1:8200"
    vault_token: str = ""
    vault_token_file: str = ""
    vault_mount: str = "secret"
    vault_worker_token: str = ""
    vault_worker_token_file: str = ""
    vault_role: str = "algohost-worker"
    secret_max_bytes: int = 64 * 1024
    secret_token_ttl_s: int = 300
    webhook_allow_private: bool = False
    webhook_schedule_s: str = "5,30,120,600,1800,3600"
    webhook_owner_slots: int = 2  # one owner's attempts under way at once, across workers
    max_batch_inputs: int = 100_000
    max_batch_values: int = 1_000_000  # JSON values in one batch body, counted before parsing
    max_page_bytes: int = 8 * MiB  # stored JSON in one page of jobs or batch results
    batch_chunk_size: int = 200
    max_sweep_trials: int = 1000  # trials in one sweep (a grid's points included)
    artifact_url: str = ""  # an fsspec URL; empty: a directory under state_dir
    artifact_quota_bytes: int = 10 * 1024 * MiB
    artifact_gc_grace_s: int = 24 * 3600
    artifact_gc_interval_s: int = 3600
    console_session_s: int = 8 * 3600  # how long a console sign-in lasts
    console_secure_cookie: bool = False  # send the console's cookie over HTTPS only
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)

    def __post_init__(self) -> None:
        self.webhook_schedule  # noqa: B018 - a bad schedule fails at load, not at first retry

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def webhook_schedule(self) -> tuple[float, ...]:
        """Seconds before each retry of a webhook, in order; the first attempt is at once."""
        return parse_schedule(self.webhook_schedule_s)

    @property
    def artifact_location(self) -> str:
        """Where blobs live: ALGOHOST_ARTIFACT_URL, or `artifacts/` under the state directory."""
        return self.artifact_url or str(Path(self.state_dir) / "artifacts")

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def parse_schedule(text: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"ALGOHOST_WEBHOOK_SCHEDULE_S={text!r} is not a comma-separated "
                         "list of seconds") from exc
    if any(delay < 0 for delay in delays):
        raise ValueError(f"ALGOHOST_WEBHOOK_SCHEDULE_S={text!r} has a negative delay")
    return delays


def parse_cidrs(text: str) -> tuple[ipaddress.IPv4Network, ...]:
    try:
        return tuple(ipaddress.IPv4Network(part.strip())
                     for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"ALGOHOST_EGRESS_ALLOW={text!r} is not a comma-separated list of "
                         f"IPv4 CIDRs ({exc})") from exc


def parse_name_servers(text: str) -> tuple[ipaddress.IPv4Address, ...] | None:
    if not text.strip():
        return None
    if text.strip().lower() == "none":
        return ()
    try:
        servers = tuple(ipaddress.IPv4Address(part.strip())
                        for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"ALGOHOST_EGRESS_DNS={text!r} is not `none` or a comma-separated "
                         f"list of IPv4 addresses ({exc})") from exc
    for server in servers:
        # Docker's embedded DNS reaches a loopback name server from the host's own network
        # namespace, where the egress rules do not apply.
        if server.is_loopback or server.is_unspecified:
            raise ValueError(f"ALGOHOST_EGRESS_DNS: {server} is the host's loopback, outside "
                             "the egress fence; name a server containers reach through it")
    return servers


def _coerce(value: str, kind: Any, name: str) -> Any:
    if kind in (int, "int"):
        return int(value)
    if kind in (float, "float"):
        return float(value)
    if kind in (bool, "bool"):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return value


def _read(cls: Any, env: Mapping[str, str], prefix: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name == "sandbox":
            continue
        key = prefix + f.name.upper()
        if key in env and env[key] != "":
            try:
                values[f.name] = _coerce(env[key], f.type, key)
            except ValueError as exc:
                raise ValueError(f"{key}={env[key]!r} is not a valid {f.type}") from exc
    return values


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from ALGOHOST_* variables (sandbox ones included)."""
    source = os.environ if env is None else env
    sandbox = SandboxSettings(**_read(SandboxSettings, source, "ALGOHOST_"))
    return Settings(sandbox=sandbox, **_read(Settings, source, "ALGOHOST_"))


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment plus `extra`, for a child process it starts."""
    return {**os.environ, **extra}
