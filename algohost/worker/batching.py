"""One chunk of a batch: its inputs through one warm container, in turn, results written together.

One failing input never fails the others and a dead container is replaced; every input
ends with a result, canceled ones included, so a batch never waits on inputs nobody runs.
A chunk runs under a lease; a reaper runs again (or, past the limit, fails) what a lost
worker's chunk left unrecorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from algohost.artifacts.outputs import CallRequests, Outputs
from algohost.clock import now_iso
from algohost.errors import AlgohostError, BuildNotReady, NoFreeSlot, SandboxUnavailable
from algohost.sandbox.base import CallOutcome, ContainerSpec, ExitReason, Session
from algohost.sandbox.runner import protocol
from algohost.store.batch_metering import BatchMetering
from algohost.store.batches import BatchRecord, BatchStatus, BatchStore, ItemResult
from algohost.store.registry import BuildRecord, BuildStatus, Registry
from algohost.webhooks import Event
from algohost.webhooks.notifier import WebhookNotifier
from algohost.worker.execution import (
    OUTCOME_STATUS,
    Pool,
    SecretSource,
    lost_pause_s,
    lost_to_sandbox,
    spec_for,
    worker_lost,
)
from algohost.worker.redacting import Redactor
from algohost.worker.reported import ReportedMetrics

log = logging.getLogger(__name__)

CANCEL_CHECK_S = 0.25  # one status read per interval, however cheap the inputs are
FLUSH_S = 2.0  # slow inputs still show progress before their chunk ends
ACQUIRE_SLICE_S = 1.0  # a chunk waiting for a container still sees a cancel within it
LOG_TAIL = 4096


def item_result(outcome: CallOutcome, redactor: Redactor) -> ItemResult:
    """What is stored for one input: status, output or error, and its metrics."""
    status = OUTCOME_STATUS.get(outcome.reason, None)
    result: ItemResult = {
        "status": (status.value if status else "failed"), "reason": outcome.reason.value,
        "metrics": {"run_ms": round(outcome.run_ms, 3),
                    "peak_memory_bytes": outcome.peak_memory_bytes}}
    if outcome.reason is ExitReason.SUCCEEDED:
        result["output"] = redactor.output(outcome.output)
    else:
        result["error"] = redactor.error(outcome.error, LOG_TAIL)
        if outcome.logs:
            result["logs"] = redactor.logs(outcome.logs, LOG_TAIL, outcome.logs_dropped)
    return result


def failed_result(error: AlgohostError | Exception, reason: str,
                  redactor: Redactor) -> ItemResult:
    """A failure met while running inputs: its message may quote the algorithm (an import
    error), so it is masked like everything else the algorithm produced."""
    return {"status": "failed", "reason": reason, "error": redactor.failure(error)}


CANCELED: ItemResult = {"status": "canceled", "reason": "canceled"}


def artifacts_not_kept(files: int) -> str:
    """The log line of an input that left files under /outputs: a batch keeps none."""
    return (f"[algohost] {files} file(s) written to /outputs were not kept: batch inputs "
            "keep no artifacts (call the algorithm as a job to keep them)\n")

NESTED_CALL_CODE = "nested_call_in_batch"


def no_nested_calls(msg: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A batch input's `algohost_runtime.call()`: refused, with a code the algorithm can
    tell apart (a batch input is no job, so it has no child jobs)."""
    error: dict[str, Any] = {
        **protocol.error_info("Unavailable", "nested calls are not available in batches; "
                                             "call the algorithm as a job instead"),
        "code": NESTED_CALL_CODE, "status": 400}
    yield {"type": protocol.RESPONSE, "id": str(msg.get("id", "")), "ok": False, "end": True,
           "error": error}


def batch_peer(outputs: Outputs, batch: BatchRecord, build: BuildRecord) -> CallRequests:
    """One input's peer, with the batch owner's rights: `data://` reads as in a job,
    `metric.log` checked as for jobs and not kept, nested calls refused."""
    return outputs.for_batch(batch.owner, build, {protocol.OP_METRIC_LOG: ReportedMetrics(),
                                                  protocol.OP_CALL: no_nested_calls})


class ChunkLease:
    """A chunk's hold on its inputs: claimed before it runs, renewed while it runs, released.

    Lost once the reaper (or a run that took it over) has it: the rest is someone else's."""

    def __init__(self, batches: BatchStore, batch_id: str, start: int, stop: int,
                 lease_s: float, clock: Callable[[], float] = time.time) -> None:
        self.batches, self.batch_id, self.start, self.stop = batches, batch_id, start, stop
        self.lease_s, self.clock = lease_s, clock
        self.until: float | None = None  # the expiry this holder last wrote
        self.lost = False

    def claim(self) -> bool:
        now = self.clock()
        if not self.batches.claim_chunk(self.batch_id, self.start, self.stop,
                                        now + self.lease_s, now):
            return False
        self.until = now + self.lease_s
        return True

    def renew(self) -> bool:
        """Push the expiry on once a third of the lease has passed; False once it is lost."""
        now = self.clock()
        if self.until is not None and not self.lost and now >= self.until - self.lease_s * 2 / 3:
            if self.batches.hold_chunk(self.batch_id, self.start, self.stop, self.until,
                                       now + self.lease_s):
                self.until = now + self.lease_s
            else:
                self.lost = True
        return not self.lost

    def release(self) -> None:
        if self.until is not None and not self.lost:
            self.batches.hold_chunk(self.batch_id, self.start, self.stop, self.until, None)
            self.until = None


class CancelCheck:
    """True once the batch is no longer running or the chunk's lease was lost; reads and
    renews at most every interval."""

    def __init__(self, batches: BatchStore, lease: ChunkLease,
                 clock: Callable[[], float] = time.monotonic, every_s: float = CANCEL_CHECK_S
                 ) -> None:
        self.batches, self.lease, self.clock, self.every_s = batches, lease, clock, every_s
        self._next = clock() + every_s
        self.canceled = False

    def __call__(self) -> bool:
        if not self.canceled and self.clock() >= self._next:
            self._next = self.clock() + self.every_s
            self.canceled = (not self.lease.renew()
                             or self.batches.status(self.lease.batch_id) is not BatchStatus.RUNNING)
        return self.canceled


class _Results:
    """A chunk's results: buffered, written in one round trip per flush, never twice, and
    metered in that same round trip when the runner meters."""

    def __init__(self, batches: BatchStore, batch: BatchRecord,
                 metering: BatchMetering | None) -> None:
        self.batches, self.batch, self.metering = batches, batch, metering
        self.buffer: dict[int, ItemResult] = {}
        self.finished: set[int] = set()

    def add(self, index: int, result: ItemResult) -> None:
        self.buffer[index] = result
        self.finished.add(index)

    def fill(self, indices: list[int], result: ItemResult) -> None:
        for index in indices:
            if index not in self.finished:
                self.add(index, result.copy())

    def flush(self) -> bool:
        """Write the buffer; True when this write finished the batch."""
        buffer, self.buffer = self.buffer, {}
        if not buffer:
            return False
        at = now_iso()
        meter = None if self.metering is None else self.metering.meter(self.batch, at)
        return self.batches.record_results(self.batch.id, buffer, at, meter)


class ChunkRunner:
    def __init__(self, batches: BatchStore, registry: Registry, pool: Pool,
                 secrets: SecretSource, notifier: WebhookNotifier | None = None, *,
                 lease_s: float, clock: Callable[[], float] = time.time,
                 mounts: Callable[[BuildRecord], tuple[tuple[str, str], ...]] | None = None,
                 metering: BatchMetering | None = None,
                 outputs: Outputs | None = None, max_attempts: int = 3,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        # Wall-clock seconds: the chunk's lease is compared with other workers' clocks.
        self.batches, self.registry, self.pool = batches, registry, pool
        self.secrets, self.notifier, self.lease_s, self.clock = secrets, notifier, lease_s, clock
        self.mounts, self.metering, self.outputs = mounts, metering, outputs
        # An input lost to the sandbox runs again, as a job does, up to this many times.
        self.max_attempts, self.sleep = max_attempts, sleep

    def run(self, batch_id: str, start: int, stop: int) -> None:
        batch = self.batches.get(batch_id)
        if batch is None:
            log.warning("batch %s has no record (expired?); dropping chunk", batch_id)
            return
        # A chunk run again runs only what earlier runs did not finish.
        todo = self.batches.unfinished(batch_id, start, stop)
        if not todo:
            return
        results = _Results(self.batches, batch, self.metering)
        lease = ChunkLease(self.batches, batch_id, start, stop, self.lease_s, self.clock)
        rest = CANCELED  # what the inputs this run does not finish record
        redactor = Redactor()  # learns the build's secret values once they are fetched
        if batch.status is BatchStatus.RUNNING:
            if not lease.claim():
                log.info("chunk %d..%d of batch %s runs elsewhere; dropping the message",
                         start, stop, batch_id)
                return
            self._notify(batch, "started")
            try:
                self._run_items(batch, todo, start, stop, results, lease, redactor)
            except Exception as exc:  # never leave inputs pending forever
                reason = exc.code if isinstance(exc, AlgohostError) else "worker_error"
                if not isinstance(exc, AlgohostError):
                    redactor.log_exception(log, "chunk %d..%d of batch %s failed", start, stop,
                                           batch_id, exc=exc)
                rest = failed_result(exc, reason, redactor)
        if not lease.lost:  # a lost lease leaves the rest to the run that holds it now
            results.fill(todo, rest)
        self._flush(batch, results)
        lease.release()  # only after the flush: a worker lost before it leaves the lease

    def give_up(self, batch_id: str, start: int, stop: int, attempts: int) -> None:
        """Fail what a chunk left unrecorded after its worker was lost `attempts` times."""
        batch = self.batches.get(batch_id)
        if batch is None:
            return
        results = _Results(self.batches, batch, self.metering)
        results.fill(self.batches.unfinished(batch_id, start, stop),
                     {"status": "failed", "reason": "worker_lost", "error": worker_lost(attempts)})
        self._flush(batch, results)

    def _run_items(self, batch: BatchRecord, todo: list[int], start: int, stop: int,
                   results: _Results, lease: ChunkLease, redactor: Redactor) -> None:
        # As for jobs: a version deleted (or never built) after the batch was accepted
        # runs no more of its inputs.
        build = self.registry.build_for_call(batch.build_id)
        if build.status is not BuildStatus.SUCCEEDED:
            raise BuildNotReady(f"{build.ref} was {build.status} after this batch was accepted")
        values, version = self.secrets.for_build(build)
        redactor.hide(values.values())
        mounts = self.mounts(build) if self.mounts is not None else ()
        spec = spec_for(build, values, version, mounts, caller=batch.owner)
        inputs = self.batches.inputs(batch.id, start, stop)
        canceled = CancelCheck(self.batches, lease, self.clock)
        timeout_s = float(batch.timeout_s)
        session: Session | None = None
        last_flush = self.clock()
        try:
            for index in todo:
                attempt = 1
                while True:  # more than once only for an input lost to the sandbox
                    if canceled():
                        return
                    if session is None:
                        try:
                            session = self._acquire(spec, canceled)
                        except SandboxUnavailable as exc:  # the engine is away
                            if attempt >= self.max_attempts:
                                raise
                            self._lost(batch, index, attempt, exc.message)
                            attempt += 1
                            continue
                        if session is None:
                            return
                    # Made per input (reported names are capped per call); reaches no store
                    # unless the algorithm makes a request.
                    peer = batch_peer(self.outputs, batch, build) if self.outputs else None
                    try:
                        outcome = session.call(inputs[index - start], timeout_s, canceled, peer)
                    except Exception as exc:  # the session closed itself; go on with a new one
                        redactor.log_exception(log, "input %d of batch %s failed in the worker",
                                               index, batch.id, exc=exc)
                        self.pool.release(session, False)
                        session = None
                        results.add(index, failed_result(exc, "worker_error", redactor))
                        break
                    if not outcome.reusable:
                        self.pool.release(session, False)
                        session = None
                    if lease.lost:
                        return  # stopped for the chunk's new holder, which runs this input again
                    # The same rule as for jobs: only the sandbox's loss, never the input's own
                    # crash, OOM or timeout, runs it again (in a fresh container).
                    if lost_to_sandbox(outcome) and attempt < self.max_attempts:
                        self._lost(batch, index, attempt,
                                   str((outcome.error or {}).get("message", "")))
                        attempt += 1
                        continue
                    result = item_result(outcome, redactor)
                    if peer is not None and peer.dropped:
                        result["logs"] = result.get("logs", "") + artifacts_not_kept(peer.dropped)
                    results.add(index, result)
                    break
                if self.clock() - last_flush >= FLUSH_S:
                    self._flush(batch, results)
                    last_flush = self.clock()
        finally:
            if session is not None:
                self.pool.release(session, True)

    def _lost(self, batch: BatchRecord, index: int, attempt: int, message: str) -> None:
        """Pause before running an input lost to the sandbox again; the pause (seconds, well
        inside a lease) lets a restarting engine come back."""
        log.warning("input %d of batch %s: the sandbox was lost (%s); running it again",
                    index, batch.id, message)
        self.sleep(lost_pause_s(attempt))

    def _acquire(self, spec: ContainerSpec, canceled: CancelCheck) -> Session | None:
        """A container for the next input, or None if the chunk must stop while it waits.

        Waiting for a slot can outlast the lease (other chunks hold every container of the
        build), so it waits in slices and renews between them."""
        while True:
            try:
                return self.pool.acquire(spec, wait_s=ACQUIRE_SLICE_S)[0]
            except NoFreeSlot:
                if canceled():
                    return None

    def _flush(self, batch: BatchRecord, results: _Results) -> None:
        if results.flush():
            self._notify(self.batches.get(batch.id) or batch, "completed")

    def _notify(self, batch: BatchRecord, event: Event) -> None:
        if self.notifier is None or event not in batch.webhook_events or not batch.webhook:
            return
        try:
            self.notifier.batch(batch, self.batches.counts(batch.id), event)
        except Exception:  # a webhook must never lose a batch's results
            log.exception("queueing the %s webhook of batch %s failed", event, batch.id)


def reap_expired_chunks(runner: ChunkRunner,
                        enqueue: Callable[[str, Sequence[tuple[int, int]]], None],
                        max_attempts: int, now: float | None = None) -> list[tuple[str, int, int]]:
    """Re-enqueue chunks whose worker stopped renewing; past the limit, fail what they left."""
    reaped = []
    for batch_id, start, stop, attempts in runner.batches.take_expired_chunks(
            time.time() if now is None else now):
        if attempts < max_attempts:
            enqueue(batch_id, [(start, stop)])
        else:
            runner.give_up(batch_id, start, stop, attempts)
        reaped.append((batch_id, start, stop))
    return reaped
