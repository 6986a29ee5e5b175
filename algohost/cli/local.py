"""`algohost run` and `algohost test`: an algorithm directory in its production image, locally.

The image comes from the platform's own builder (same Dockerfile, same layer cache) and runs
in the same hardened sandbox with the manifest's limits. Nothing here needs the API, Redis or
Vault: secrets come from local files for one run and are masked in what is printed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from algohost.archive import content_hash, read_archive
from algohost.artifacts.models import MODELS_DIR
from algohost.cli.archive import MANIFEST, pack_directory
from algohost.cli.commands import finish_job
from algohost.cli.common import CliContext, err, json_input_callback, json_option, pass_ctx
from algohost.cli.localruns import LocalRuns
from algohost.cli.secrets import drop_final_newline
from algohost.clock import now_iso
from algohost.config import SandboxSettings
from algohost.errors import AlgohostError, ContainerStartFailed, SandboxUnavailable
from algohost.manifest import Manifest, loads_manifest
from algohost.names import MODEL_KEY, validate_secret_name
from algohost.public import Job, JobError, JobMetrics
from algohost.sandbox.base import CallPeer, ContainerSpec, ExitReason, Limits
from algohost.sandbox.builder import ImageBuilder
from algohost.sandbox.buildplan import ALGORITHM_DIR, VENV
from algohost.sandbox.docker import DockerSandbox, DockerSession, docker_client
from algohost.sandbox.local import LocalEngine
from algohost.sandbox.runner import protocol
from algohost.secrets.redaction import redact, redact_text
from algohost.store.registry import image_tag
from algohost.worker.reported import ReportedMetrics

LOCAL_OWNER = "local"
LABEL_LOCAL = "algohost.local"  # on every image and container these commands make
TEST_TIMEOUT_S = 600
DEFAULT_BRIDGE = "bridge"
DOCKER_HINT = (
    "algohost runs algorithms in Docker, even locally. Install Docker Engine "
    "(https://docs.docker.com/engine/install/ or `apt-get install docker.io`), start it, "
    "and set ALGOHOST_DOCKER_URL if it does not listen on unix:///var/run/docker.sock."
)
Mounts = tuple[tuple[str, str], ...]
OUTCOME_STATUS = {ExitReason.SUCCEEDED: "succeeded", ExitReason.TIMEOUT: "timed_out",
                  ExitReason.CANCELED: "canceled"}


@dataclass(frozen=True)
class LocalAlgorithm:
    """A directory read the way a publish reads it: the same files, manifest and hash."""

    manifest: Manifest
    files: dict[str, bytes]
    content_hash: str

    @property
    def build_id(self) -> str:
        return f"{LOCAL_OWNER}-{self.content_hash[:16]}"

    @property
    def image(self) -> str:
        return image_tag(LOCAL_OWNER, self.manifest.name, self.content_hash)

    def spec(self, secrets: dict[str, str], mounts: Mounts = ()) -> ContainerSpec:
        return ContainerSpec(
            build_id=self.build_id,
            image=self.image,
            limits=Limits.of(self.manifest.resources),
            labels={"algohost.algorithm": f"{LOCAL_OWNER}/{self.manifest.name}",
                    LABEL_LOCAL: "1"},
            secrets=secrets,
            secrets_as_env=self.manifest.secrets.as_env,
            mounts=mounts,
        )


def read_algorithm(directory: Path, max_bytes: int) -> LocalAlgorithm:
    try:
        files = read_archive(pack_directory(directory), max_bytes)
        if MANIFEST not in files:
            raise click.ClickException(f"{directory / MANIFEST} does not exist")
        manifest = loads_manifest(files[MANIFEST].decode("utf-8"))
    except AlgohostError as exc:
        raise click.ClickException(f"{directory / MANIFEST}: {exc.message}") from exc
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{directory / MANIFEST} is not UTF-8 text") from exc
    return LocalAlgorithm(manifest, files, content_hash(files, manifest.to_dict()))


def engine_client(settings: SandboxSettings) -> Any:
    """A client of an engine that answers, or an error that says how to get one."""
    try:
        client = docker_client(settings, timeout_s=TEST_TIMEOUT_S)
        client.ping()
    except (SandboxUnavailable, OSError) as exc:
        raise click.ClickException(f"no Docker engine at {settings.docker_url}. {DOCKER_HINT}") \
            from exc
    except Exception as exc:  # docker-py and requests raise many kinds for a dead socket
        raise click.ClickException(f"no Docker engine at {settings.docker_url} ({exc}). "
                                   f"{DOCKER_HINT}") from exc
    return client


def local_networks(settings: SandboxSettings, client: Any) -> SandboxSettings:
    """The settings with Docker's default bridge in place of an algohost network this
    engine lacks: a laptop without `algohost egress install` still builds and runs, without
    the egress fence that guards a shared host."""
    import docker.errors

    changes: dict[str, Any] = {}
    for field in ("builds_network", "calls_network"):
        name = getattr(settings, field)
        try:
            client.networks.get(name)
        except docker.errors.NotFound:
            err.print(f"no network {name} on this engine: using Docker's default bridge "
                      "(`algohost egress install` adds the fenced one)")
            changes[field] = DEFAULT_BRIDGE
    return replace(settings, **changes) if changes else settings


def ensure_image(algorithm: LocalAlgorithm, settings: SandboxSettings, client: Any) -> bool:
    """Build the image unless this content's is there already; True if it was built now."""
    import docker.errors

    try:
        client.images.get(algorithm.image)
        return False
    except docker.errors.ImageNotFound:
        pass
    lines: list[str] = []
    err.print(f"building {algorithm.image}")
    try:
        ImageBuilder(settings, client).build(algorithm.build_id, algorithm.image,
                                             algorithm.files, algorithm.manifest, lines.append,
                                             owner=LOCAL_OWNER)
    except AlgohostError as exc:
        click.echo("\n".join(lines[-60:]), err=True)
        raise click.ClickException(f"build failed: {exc.message}") from exc
    return True


def read_secrets(values: tuple[str, ...], manifest: Manifest) -> dict[str, str]:
    secrets: dict[str, str] = {}
    for item in values:
        name, sep, source = item.partition("=@")
        if not sep:
            raise click.BadParameter(f"{item!r} is not NAME=@file", param_hint="--secret")
        try:
            validate_secret_name(name)
        except AlgohostError as exc:
            raise click.BadParameter(exc.message, param_hint="--secret") from exc
        if name not in manifest.secrets.names:
            raise click.BadParameter(f"{name} is not in [secrets] names of {MANIFEST}; the "
                                     "platform would not pass it", param_hint="--secret")
        try:
            secrets[name] = drop_final_newline(Path(source).read_text(encoding="utf-8"))
        except OSError as exc:
            raise click.BadParameter(f"cannot read {source}: {exc.strerror or exc}",
                                     param_hint="--secret") from exc
    return secrets


def _job(algorithm: LocalAlgorithm, created: str, warm: bool = False, **fields: Any) -> Job:
    name = f"{LOCAL_OWNER}/{algorithm.manifest.name}"
    return Job(id=algorithm.build_id, algorithm=name, requested=name, created_at=created,
               started_at=created, finished_at=now_iso(), warm=warm, attempts=1,
               timeout_s=algorithm.manifest.resources.timeout_s, **fields)


def read_models(values: tuple[str, ...], manifest: Manifest) -> Mounts:
    """--model KEY=PATH as the worker mounts a pinned model: read-only at /models/KEY."""
    mounts: dict[str, str] = {}
    for item in values:
        key, sep, source = item.partition("=")
        if not sep or not source:
            raise click.BadParameter(f"{item!r} is not KEY=PATH", param_hint="--model")
        try:
            MODEL_KEY.check(key, AlgohostError, "--model")
        except AlgohostError as exc:
            raise click.BadParameter(exc.message, param_hint="--model") from exc
        if key not in manifest.models:
            raise click.BadParameter(f"{key} is not in [models] of {MANIFEST}; the platform "
                                     "would not mount it", param_hint="--model")
        path = Path(source).expanduser().resolve()
        if not (path.is_file() or path.is_dir()):
            raise click.BadParameter(f"{source} is not a file or directory",
                                     param_hint="--model")
        mounts[key] = str(path)
    for key in sorted(set(manifest.models) - set(mounts)):
        err.print(f"[models] {key} has no --model {key}=PATH: /models/{key} is absent this run")
    return tuple((path, f"{MODELS_DIR}/{key}") for key, path in sorted(mounts.items()))


def start_session(algorithm: LocalAlgorithm, settings: SandboxSettings, client: Any,
                  secrets: dict[str, str], mounts: Mounts = ()) -> DockerSession | Job:
    """A warm container of the algorithm, or the failed record `call` would print."""
    created = now_iso()
    sandbox = DockerSandbox(settings, f"{LOCAL_OWNER}-{algorithm.build_id}", client)
    try:
        return sandbox.start(algorithm.spec(secrets, mounts))
    except ContainerStartFailed as exc:
        return start_failure(algorithm, created, exc, list(secrets.values()))


def start_failure(algorithm: LocalAlgorithm, created: str, exc: ContainerStartFailed,
                  hidden: list[str]) -> Job:
    error = exc.details.get("error") or {"type": "ContainerStartFailed",
                                         "message": exc.message, "traceback": None}
    return _job(algorithm, created, status="failed", reason=ExitReason.START_FAILED.value,
                output=None, error=JobError(**redact(error, hidden)),
                logs=redact_text(str(exc.details.get("logs", "")), hidden), metrics=None)


class LocalPeer(CallPeer):
    """A local call's requests: reported metrics are kept for its record, as the worker
    keeps them; what only the platform can answer (data://, calls) is refused."""

    def __init__(self) -> None:
        self.reported = ReportedMetrics()

    def handle(self, msg: dict[str, Any]) -> Iterable[dict[str, Any]]:
        if msg["type"] != protocol.REQUEST:
            return []
        if msg.get("op") == protocol.OP_METRIC_LOG:
            return self.reported(msg)
        error = protocol.error_info("Unavailable", f"a local run cannot answer "
                                    f"{str(msg.get('op'))[:40]!r}: it needs the platform")
        return [{"type": protocol.RESPONSE, "id": msg.get("id", ""), "ok": False, "end": True,
                 "error": error}]


def call_session(algorithm: LocalAlgorithm, session: DockerSession, payload: Any,
                 secrets: dict[str, str], cold_start_ms: float, startup_logs: str = "") -> Job:
    """One call on a started session; the record `call` prints, secrets masked."""
    hidden = list(secrets.values())
    created, started = now_iso(), time.monotonic()
    peer = LocalPeer()
    outcome = session.call(payload, algorithm.manifest.resources.timeout_s, peer=peer)
    metrics = JobMetrics(queue_ms=0.0, cold_start_ms=round(cold_start_ms, 3),
                         run_ms=round(outcome.run_ms, 3),
                         total_ms=round((time.monotonic() - started) * 1000.0 + cold_start_ms,
                                        3),
                         peak_memory_bytes=outcome.peak_memory_bytes)
    error = redact(outcome.error, hidden)
    return _job(algorithm, created, status=OUTCOME_STATUS.get(outcome.reason, "failed"),
                reason=outcome.reason.value, output=redact(outcome.output, hidden),
                error=JobError(**error) if error else None, metrics=metrics,
                logs=redact_text(startup_logs + outcome.logs, hidden), warm=cold_start_ms == 0,
                custom_metrics=peer.reported.values)


def call_once(algorithm: LocalAlgorithm, settings: SandboxSettings, client: Any, payload: Any,
              secrets: dict[str, str], mounts: Mounts = ()) -> Job:
    """One call in a new hardened container, removed afterwards; the record `call` prints."""
    session = start_session(algorithm, settings, client, secrets, mounts)
    if isinstance(session, Job):
        return session
    try:
        return call_session(algorithm, session, payload, secrets, session.cold_start_ms,
                            session.startup_logs)
    finally:
        session.close()


@click.command("run")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("payload", metavar="INPUT", required=False, default=None)
@click.option("--input-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Read the JSON input from this file.")
@click.option("--secret", "secret_values", multiple=True, metavar="NAME=@FILE",
              help="A secret for this run, read from FILE; repeatable.")
@click.option("--model", "model_values", multiple=True, metavar="KEY=PATH",
              help="A model of [models] for this run, mounted read-only at /models/KEY "
                   "from a local file or directory; repeatable.")
@click.option("--watch", is_flag=True,
              help="Keep a warm container and call it again on each save: code changes are "
                   "reloaded in it, an algorithm.toml change rebuilds. Ctrl-C ends.")
@json_option
@pass_ctx
def run(ctx: CliContext, directory: Path, payload: str | None, input_file: Path | None,
        secret_values: tuple[str, ...], model_values: tuple[str, ...], watch: bool,
        as_json: bool) -> None:
    """Build DIR as the platform would and call it once with INPUT (JSON, `-`, `@file`).

    No API, Redis or Vault is needed: only a Docker engine. Output goes to stdout;
    metrics and logs to stderr, with the secrets masked.
    """
    if (payload is None) == (input_file is None):
        raise click.UsageError("give INPUT or --input-file, not both or neither")
    value = json_input_callback(click.get_current_context(), click.Argument(["payload"]),
                                payload if payload is not None else f"@{input_file}")
    settings = ctx.settings.sandbox
    algorithm = read_algorithm(directory, ctx.settings.max_upload_bytes)
    secrets = read_secrets(secret_values, algorithm.manifest)
    mounts = read_models(model_values, algorithm.manifest)
    client = engine_client(settings)
    settings = local_networks(settings, client)
    runs = LocalRuns(ctx.settings.state_dir)
    if watch:
        from algohost.cli.watch import Watcher

        Watcher(directory, ctx.settings.max_upload_bytes, settings, client, runs,
                Inputs(value, secret_values, model_values)).run()
        return
    ensure_image(algorithm, settings, client)
    job = call_once(algorithm, settings, client, value, secrets, mounts)
    if job.status == "succeeded":
        runs.record(directory, algorithm.content_hash)
        if job.logs and not as_json:
            err.rule("logs")
            click.echo(job.logs.rstrip("\n"), err=True)  # verbatim: no markup
    finish_job(job, as_json, show_metrics=True)


@dataclass(frozen=True)
class Inputs:
    """What each call of a watched directory gets; secrets and models are read again on
    each change, since the manifest may name others."""

    payload: Any
    secret_values: tuple[str, ...]
    model_values: tuple[str, ...]


@click.command("test", context_settings={"ignore_unknown_options": True})
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--timeout", "timeout_s", type=click.IntRange(min=1), default=TEST_TIMEOUT_S,
              show_default=True, help="Seconds the whole test run may take.")
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
@pass_ctx
def test(ctx: CliContext, directory: Path, timeout_s: int, pytest_args: tuple[str, ...]) -> None:
    """Run DIR's tests/ with pytest inside its built image, under the manifest's limits.

    Extra arguments go to pytest. The exit code is pytest's.
    """
    settings = ctx.settings.sandbox
    algorithm = read_algorithm(directory, ctx.settings.max_upload_bytes)
    client = engine_client(settings)
    settings = local_networks(settings, client)
    ensure_image(algorithm, settings, client)
    engine = LocalEngine(settings, client)
    try:
        tag = engine.test_image(algorithm.image, algorithm.build_id, LOCAL_OWNER)
        spec = algorithm.spec({})
        spec = ContainerSpec(build_id=spec.build_id, image=tag, limits=spec.limits,
                             labels=spec.labels)
        command = [f"{VENV}/bin/python", "-m", "pytest", "-p", "no:cacheprovider",
                   f"--rootdir={ALGORITHM_DIR}", *(pytest_args or ("tests",))]
        result = engine.run_command(spec, command, float(timeout_s), _write_stdout,
                                    f"{LOCAL_OWNER}-{algorithm.build_id}")
    except AlgohostError as exc:
        raise click.ClickException(exc.message) from exc
    if result.timed_out:
        raise click.ClickException(f"the tests did not finish within {timeout_s} s")
    if result.exit_code == 0:
        LocalRuns(ctx.settings.state_dir).record(directory, algorithm.content_hash)
    sys.exit(result.exit_code)


def _write_stdout(chunk: bytes) -> None:
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


LOCAL_COMMANDS = (run, test)
