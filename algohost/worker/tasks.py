"""Celery tasks and the worker's lifetime: one runtime per process, built lazily.

Tasks carry only ids; everything else is read from the store. On start and
periodically the worker gives back what lost workers held (jobs, batch chunks,
webhook attempts whose message never came, sweeps whose step was lost); on start it also
removes containers a previous incarnation left behind and checks the egress fence; on
shutdown it stops its warm containers.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery.signals import celeryd_init, task_received, worker_ready, worker_shutdown
from celery.worker import state as worker_state
from celery.worker.control import control_command

from algohost.artifacts.data import DataStore
from algohost.artifacts.gc import collect_periodically
from algohost.artifacts.lineage import LineageIndex
from algohost.artifacts.models import ModelCache, ModelRegistry
from algohost.artifacts.outputs import Outputs
from algohost.artifacts.store import ArtifactStore
from algohost.config import Settings
from algohost.dispatch import (
    BUILD_TASK,
    BUILDS_QUEUE,
    BULK_QUEUE,
    CALLS_QUEUE,
    CLOSE_BUILD_COMMAND,
    PREWARM_TASK,
    REMOVE_IMAGE_TASK,
    RUN_TASK,
    CeleryDispatcher,
    run_queue,
)
from algohost.errors import AlgohostError, EgressNotInstalled
from algohost.sandbox.builder import ImageBuilder
from algohost.sandbox.docker import DockerSandbox
from algohost.sandbox.fence import Fence, may_manage_firewall
from algohost.sandbox.pool import WarmPool
from algohost.secrets import VaultReader, VaultSecretSource
from algohost.store import connect, connect_raw
from algohost.store.batch_metering import BatchMetering
from algohost.store.batches import BatchStore
from algohost.store.build_leases import BuildLeases
from algohost.store.fairshare import FairShare, UrgentLane
from algohost.store.jobs import JobRecord, JobStore
from algohost.store.limits import LimitStore
from algohost.store.pipelines import PipelineStore
from algohost.store.registry import Registry
from algohost.store.sweeps import SweepStore
from algohost.store.usage import ComputeBudget, UsageLedger
from algohost.submission import JobSubmitter
from algohost.webhooks.notifier import WebhookHook, WebhookNotifier
from algohost.worker.app import celery
from algohost.worker.batching import ChunkRunner, reap_expired_chunks
from algohost.worker.building import BuildRunner, ImageRestorer, reap_expired_builds
from algohost.worker.execution import JobHook, JobRunner, reap_expired_leases
from algohost.worker.metering import FinishHook, MetricsHook, UsageHook, metered_status
from algohost.worker.pipelines import PipelineHook, Scheduler, redrive_due_runs
from algohost.worker.sweeping import SweepController, SweepHook
from algohost.worker.watchdog import ConsumerWatchdog, force_reconnect, queue_lengths
from algohost.worker.webhook_tasks import make_notifier

log = logging.getLogger(__name__)
WORKER_BUILD_CACHE_S = 300.0
LIMITS_CACHE_S = 5.0
# How often the consumer watchdog looks: a stalled consumer is made to reconnect after two.
WATCHDOG_INTERVAL_S = 5.0
# A bulk job's thread runs the owner's next backlog job itself (see run_job), for at most
# this long and this many jobs, then sends the next one through the broker again.
HAND_ON_S = 1.0
HAND_ON_JOBS = 32


class HandOn:
    """The next job of a backlog, kept by the thread whose job freed its slot.

    A flood's jobs each cost the worker's consumer a broker round trip, a Redis
    transaction to take the message and another to ack it; a thread that already runs
    the owner's jobs can run the next one at once instead. Only a thread inside run_job
    (`open`) keeps one, and none while `yield_to(owner)` (another owner's first call is
    being served: the broker's slower pace leaves it the CPU); a release anywhere else
    sends as before."""

    def __init__(self, yield_to: Callable[[str], bool] = lambda owner: False) -> None:
        self._local = threading.local()
        self.yield_to = yield_to

    def open(self) -> None:
        self._local.kept = []

    def keep(self, owner: str, job_id: str) -> bool:
        kept = getattr(self._local, "kept", None)
        if kept is None or kept or self.yield_to(owner):
            return False
        kept.append(job_id)
        return True

    def take(self) -> str | None:
        kept = getattr(self._local, "kept", None)
        return kept.pop() if kept else None

    def close(self) -> list[str]:
        """Stop keeping; returns what was kept and not run (to be sent)."""
        kept, self._local.kept = getattr(self._local, "kept", None) or [], None
        return kept


_serving = threading.local()  # .urgent: this thread runs an owner's first call


class UrgentLaneHook:
    """A job hook: a first call marks its owner in the urgent lane as it starts."""

    def __init__(self, lane: UrgentLane) -> None:
        self.lane = lane

    def job_started(self, job: JobRecord) -> None:
        if getattr(_serving, "urgent", False):
            self.lane.mark(job.owner)

    def job_finished(self, job: JobRecord) -> None:
        pass


@dataclass
class Runtime:
    settings: Settings
    worker_id: str
    jobs: JobStore
    registry: Registry
    sandbox: DockerSandbox
    pool: WarmPool
    runner: JobRunner
    chunks: ChunkRunner
    builds: BuildRunner
    notifier: WebhookNotifier
    fair: FairShare
    hand_on: HandOn
    dispatcher: CeleryDispatcher
    pipelines: Scheduler
    sweeps: SweepController
    stop: threading.Event
    fence: Fence
    metering: Sequence[MetricsHook | UsageHook] = ()


_runtime: Runtime | None = None
_lock = threading.Lock()
_worker_id = f"{socket.gethostname()}-{os.getpid()}"


def runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = _make_runtime(celery.conf.algohost_settings, _worker_id)
        return _runtime


def _make_runtime(settings: Settings, worker_id: str) -> Runtime:
    client = connect(settings)
    jobs = JobStore(client, settings.job_retention_s)
    # A successful build never changes but for deletion, which is broadcast to every
    # worker (close_build); the cache saves a registry read per call.
    registry = Registry(client, connect_raw(settings), cache_s=WORKER_BUILD_CACHE_S)
    # Asked before every networked container; as root it puts back rules a reboot dropped.
    fence = Fence(settings.sandbox, may_install=may_manage_firewall())
    sandbox = DockerSandbox(settings.sandbox, worker_id, fence=fence)
    builder = ImageBuilder(settings.sandbox, fence=fence)
    pool = WarmPool(sandbox, settings.sandbox,
                    restore_image=ImageRestorer(registry, builder, settings).restore)
    pool.start_reaper()
    # Always the Vault source: without a worker token it fails only the jobs that name
    # secrets (secrets_unavailable, saying so) instead of running them without their files.
    secrets = VaultSecretSource(VaultReader.from_settings(settings))
    notifier = make_notifier(settings)
    artifacts = ArtifactStore.from_settings(settings, client)
    outputs = Outputs(artifacts, LineageIndex(client), settings.sandbox.max_artifacts,
                      settings.sandbox.max_artifact_bytes, ModelRegistry(client),
                      ModelCache(Path(settings.state_dir) / "models", artifacts.blobs),
                      DataStore(client, artifacts))
    dispatcher = CeleryDispatcher(celery)
    limits = LimitStore(client, settings, cache_s=LIMITS_CACHE_S)
    lane = UrgentLane(client)
    hand_on = HandOn(yield_to=lane.busy_for)
    fair = FairShare(client, limits, dispatcher.enqueue_run, JobStore.key(""),
                     keep=hand_on.keep)
    # Pipeline steps are the owner's calls: admitted, limited and budgeted as the API's are.
    budget = ComputeBudget(UsageLedger.from_settings(client, settings), limits)
    submitter = JobSubmitter(jobs, fair, dispatcher.enqueue_run, settings.max_timeout_s, budget,
                             dispatcher.run_message)
    pipelines = Scheduler(PipelineStore(client, settings.job_retention_s), jobs, registry,
                          submitter, settings.lease_s)
    sweeps = SweepController(SweepStore(client, settings.job_retention_s), jobs, registry,
                             submitter)
    # Metered before the slot is given back (one script chain for the three): a job still
    # holding one may need metering.
    finish = FinishHook.from_settings(client, settings, fair)
    metering = finish.metering
    hooks: list[JobHook] = [UrgentLaneHook(lane), WebhookHook(notifier), finish,
                            PipelineHook(pipelines.advance, dispatcher.enqueue_pipeline),
                            SweepHook(dispatcher.enqueue_sweep)]
    runner = JobRunner(jobs, registry, pool, settings, worker_id, secrets=secrets,
                       hooks=hooks, outputs=outputs, requeue=dispatcher.enqueue_run,
                       budget=budget)
    chunks = ChunkRunner(BatchStore(client, settings.job_retention_s), registry, pool, secrets,
                         notifier, lease_s=settings.lease_s, mounts=outputs.mounts,
                         metering=BatchMetering.from_settings(settings), outputs=outputs,
                         max_attempts=settings.max_attempts)
    builds = BuildRunner(registry, builder, settings, BuildLeases(client),
                         on_succeeded=[dispatcher.enqueue_prewarm] if settings.prewarm else [])
    return Runtime(settings, worker_id, jobs, registry, sandbox, pool, runner, chunks, builds,
                   notifier, fair, hand_on, dispatcher, pipelines, sweeps, threading.Event(),
                   fence, metering)


@celery.task(name=RUN_TASK, bind=True)
def run_job(self: Any, job_id: str) -> None:
    rt = runtime()
    priority = (self.request.delivery_info or {}).get("priority")
    if priority is None or run_queue(int(priority)) != BULK_QUEUE:
        _serving.urgent = True  # bulk workers stop handing others' floods on while it runs
        try:
            rt.runner.run(job_id)  # an owner's first calls: never followed by its backlog
        finally:
            _serving.urgent = False
        return
    rt.hand_on.open()
    started = time.monotonic()
    try:
        rt.runner.run(job_id)
        for _ in range(HAND_ON_JOBS):
            next_id = None if time.monotonic() - started > HAND_ON_S else rt.hand_on.take()
            if next_id is None:
                break
            rt.runner.run(next_id)
    finally:
        for left in rt.hand_on.close():
            rt.dispatcher.enqueue_run(left)


@celery.task(name=BUILD_TASK)
def build(build_id: str) -> None:
    runtime().builds.run(build_id)


@celery.task(name=PREWARM_TASK)
def prewarm(build_id: str) -> None:
    """A new build's first warm container, on this calls worker, if its pool has room."""
    try:
        started = runtime().runner.prewarm(build_id)
    except AlgohostError as exc:  # a missing secret, an engine away: the first call says so
        log.warning("no warm container of build %s: %s", build_id, exc.message)
        return
    log.info("build %s: %s", build_id,
             "a warm container is ready" if started else "no room to prewarm, or one exists")


@celery.task(name=REMOVE_IMAGE_TASK)
def remove_image(build_id: str) -> None:
    """Drop a deleted build's image (on the builds worker, which owns images)."""
    rt = runtime()
    image = rt.registry.get_build(build_id).image
    removed = ImageBuilder(rt.settings.sandbox).remove_image(image)
    log.info("image %s of deleted build %s %s", image, build_id,
             "removed" if removed else "was already gone")


@control_command(name=CLOSE_BUILD_COMMAND, args=[("build_id", str)], signature="<build_id>")
def close_build(state: Any, build_id: str) -> dict[str, Any]:
    """Broadcast when a version is deleted: stop this worker's warm containers of it."""
    if _runtime is None:
        return {"ok": "no warm containers here"}
    _runtime.registry.forget(build_id)
    closed = _runtime.pool.close_build(build_id)
    return {"ok": f"closed {closed} warm containers"}


def _reap(rt: Runtime, dispatcher: CeleryDispatcher) -> None:
    """Give back what lost workers held, and send attempts whose message never came."""
    reap_expired_leases(rt.jobs, dispatcher.enqueue_run, rt.settings.max_attempts)
    reap_expired_chunks(rt.chunks, dispatcher.enqueue_batch, rt.settings.max_attempts)
    rt.fair.repair(metered_status(rt.jobs, rt.metering), stale_s=rt.settings.lease_s)
    reap_expired_builds(rt.builds.leases, dispatcher.enqueue_build, rt.settings.max_attempts)
    redrive_due_runs(rt.pipelines.runs, dispatcher.enqueue_pipeline, rt.settings.lease_s)
    rt.notifier.resend_overdue()
    rt.sweeps.step_all()


def _reap_forever(rt: Runtime) -> None:
    dispatcher = CeleryDispatcher(celery)
    interval = max(rt.settings.lease_s / 2, 1.0)
    while not rt.stop.wait(interval):
        try:
            _reap(rt, dispatcher)
        except Exception:
            log.exception("lease reaper failed; retrying")


@celeryd_init.connect
def _on_init(sender: Any = None, **_: Any) -> None:
    global _worker_id
    # A stable id per Celery node name, so a restarted worker finds what its
    # killed predecessor left behind.
    if sender:
        _worker_id = str(sender)


def _watch_consumer(rt: Runtime, consumer: Any) -> None:
    """Start the watchdog that makes a stalled broker consumer reconnect."""
    waiting = queue_lengths(rt.settings.broker, [q.name for q in consumer.task_consumer.queues])
    if waiting is None:
        return
    concurrency = int(consumer.controller.concurrency)
    watchdog = ConsumerWatchdog(
        waiting, lambda: concurrency - len(worker_state.reserved_requests),
        lambda: force_reconnect(consumer))
    task_received.connect(lambda **_: watchdog.on_received(), weak=False)
    threading.Thread(target=watchdog.watch, args=(WATCHDOG_INTERVAL_S, rt.stop),
                     name="consumer-watchdog", daemon=True).start()


def _check_fence(rt: Runtime, consumer: Any) -> None:
    """At start, where calls or builds run: the egress fence is put back (root) or its
    absence said at once, not at the first networked call."""
    queues = {q.name for q in consumer.task_consumer.queues} if consumer is not None \
        else {CALLS_QUEUE, BUILDS_QUEUE}
    if not queues & {CALLS_QUEUE, BUILDS_QUEUE}:
        return
    try:
        rt.fence()
    except EgressNotInstalled as exc:
        log.error("networked calls and builds will fail with egress_not_installed: %s",
                  exc.message)


@worker_ready.connect
def _on_ready(sender: Any = None, **_: Any) -> None:
    rt = runtime()
    _check_fence(rt, sender)
    threading.Thread(target=_reap_forever, args=(rt,), name="lease-reaper", daemon=True).start()
    if sender is not None:  # the consumer
        _watch_consumer(rt, sender)
    threading.Thread(target=collect_periodically, args=(rt.settings, rt.stop),
                     name="artifact-gc", daemon=True).start()
    _reap(rt, CeleryDispatcher(celery))
    try:
        removed = rt.sandbox.remove_orphans(rt.worker_id)
    except AlgohostError as exc:
        # A worker without the Docker socket (webhooks) has no containers to clean.
        log.info("no container cleanup at start: %s", exc.message)
        return
    if removed:
        log.warning("removed %d containers left by a previous worker", removed)


@worker_shutdown.connect
def _on_shutdown(**_: Any) -> None:
    if _runtime is not None:
        _runtime.stop.set()
        _runtime.pool.shutdown()
