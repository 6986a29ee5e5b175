"""The typed exception hierarchy: every error algohost raises on purpose.

Each class carries its HTTP status and a stable machine `code`; the API renders
them all with one handler. Vendor errors (redis, docker, hvac) are translated
into these where they are caught, with `raise ... from exc`.

    AlgohostError (500 internal_error)
    ├── BadRequest (400 bad_request)
    │   ├── MalformedJSON (malformed_json)
    │   ├── InvalidRequest (invalid_request)
    │   ├── InvalidManifest (invalid_manifest)
    │   ├── InvalidNotebook (invalid_notebook)
    │   ├── UnknownParameter (unknown_parameter)
    │   ├── InvalidParameter (invalid_parameter)
    │   ├── InvalidPrefer (invalid_prefer)
    │   ├── InvalidArchive (invalid_archive)
    │   ├── InvalidParameterRange, GridNotEnumerable, GridTooLarge, TooManyTrials (sweeps)
    │   ├── WebhookRefused (webhook_refused)
    │   ├── CallDepthExceeded, NestedCallTimeout (call_depth_exceeded, no_time_left)
    │   └── InvalidPipeline (invalid_pipeline)
    │       ├── UnknownStep, UnknownReference (unknown_step, unknown_reference)
    │       └── PipelineCycle (pipeline_cycle)
    ├── Unauthorized (401 unauthorized)
    ├── Forbidden (403 forbidden)
    │   ├── SecretsForbidden (secrets_forbidden)
    │   └── CsrfRefused (csrf_refused)
    ├── NotFound (404 not_found)
    │   ├── AlgorithmNotFound, VersionNotFound, JobNotFound, BuildNotFound
    │   ├── SecretNotFound (secret_not_found)
    │   ├── BatchNotFound, DeliveryNotFound, SweepNotFound
    │   ├── ArtifactNotFound (artifact_not_found)
    │   ├── UnknownAlgorithm (unknown_algorithm: a pipeline step's algorithm)
    │   └── PipelineNotFound, PipelineRunNotFound (pipeline_*not_found)
    ├── MethodNotAllowed (405 method_not_allowed)
    ├── Conflict (409 conflict)
    │   ├── JobNotCancelable (job_not_cancelable)
    │   ├── PipelineRunNotCancelable (pipeline_run_not_cancelable)
    │   ├── BuildNotReady (build_not_ready)
    │   ├── BatchNotCancelable (batch_not_cancelable)
    │   ├── ParentCanceled (parent_canceled)
    │   ├── SweepNotCancelable (sweep_not_cancelable)
    │   └── IdempotencyKeyInUse (idempotency_key_in_use; Retry-After)
    ├── IdempotencyKeyReused (422 idempotency_key_reused)
    ├── PayloadTooLarge (413 payload_too_large)
    │   ├── TooManyInputs (too_many_inputs)
    │   ├── TooManyValues (too_many_values)
    │   └── BlobTooLarge (blob_too_large)
    │       └── QuotaExceeded (quota_exceeded)
    ├── PaymentRequired (402 payment_required)
    │   └── BudgetExhausted (budget_exhausted)
    ├── UnsupportedMediaType (415 unsupported_media_type)
    ├── TooManyRequests (429 too_many_requests)
    │   ├── RateLimited (rate_limited; Retry-After)
    │   ├── LimitReached (limit_reached)
    │   └── CallFanoutExceeded (call_fanout_exceeded)
    ├── ServiceUnavailable (503 service_unavailable)
    │   ├── StoreUnavailable (store_unavailable)
    │   ├── SandboxUnavailable (sandbox_unavailable)
    │   │   └── NoFreeSlot (no_free_slot)
    │   └── SecretsUnavailable (secrets_unavailable)
    ├── SandboxError (sandbox_error)
    │   ├── ContainerStartFailed (container_start_failed)
    │   │   └── ImageMissing (image_missing)
    │   └── EgressNotInstalled (egress_not_installed)
    └── BuildFailed (build_failed)
        ├── BuildTimedOut (build_timeout)
        └── BuildDiskQuota (build_disk_quota)
"""

from __future__ import annotations

from typing import Any, ClassVar


class AlgohostError(Exception):
    http_status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message or self.code.replace("_", " "))
        self.message = message or self.code.replace("_", " ")
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class BadRequest(AlgohostError):
    http_status = 400
    code = "bad_request"


class MalformedJSON(BadRequest):
    code = "malformed_json"


class InvalidRequest(BadRequest):
    code = "invalid_request"


class InvalidManifest(BadRequest):
    code = "invalid_manifest"


class InvalidNotebook(BadRequest):
    """A notebook nbformat refuses; `cell` names the cell its message points at, if any."""

    code = "invalid_notebook"


class UnknownParameter(BadRequest):
    """A notebook call named a parameter its `parameters` cell does not have."""

    code = "unknown_parameter"


class InvalidParameter(BadRequest):
    """A notebook call gave a parameter a value of another type than its default's."""

    code = "invalid_parameter"


class InvalidPrefer(BadRequest):
    code = "invalid_prefer"


class InvalidArchive(BadRequest):
    code = "invalid_archive"


class InvalidParameterRange(BadRequest):
    """A sweep's range that is empty, or whose step or log scale cannot be sampled."""

    code = "invalid_parameter_range"


class GridNotEnumerable(BadRequest):
    """A grid sweep over a float range without a step."""

    code = "grid_not_enumerable"


class GridTooLarge(BadRequest):
    code = "grid_too_large"


class TooManyTrials(BadRequest):
    code = "too_many_trials"


class WebhookRefused(BadRequest):
    """A webhook URL that is not http(s), or whose host is a private address."""

    code = "webhook_refused"


class InvalidPipeline(BadRequest):
    """A pipeline spec that cannot run; `details.problems` names every offending place."""

    code = "invalid_pipeline"


class UnknownStep(InvalidPipeline):
    """A `$steps.NAME...` reference to a step the pipeline does not have."""

    code = "unknown_step"


class UnknownReference(InvalidPipeline):
    """A `$...` string that is neither `$input...` nor `$steps.NAME.output...`."""

    code = "unknown_reference"


class PipelineCycle(InvalidPipeline):
    """Steps that depend on each other in a circle: none of them could ever start."""

    code = "pipeline_cycle"


class Unauthorized(AlgohostError):
    http_status = 401
    code = "unauthorized"


class Forbidden(AlgohostError):
    http_status = 403
    code = "forbidden"


class SecretsForbidden(Forbidden):
    """Vault refused a token scoped to one algorithm: a misconfiguration or an attack."""

    code = "secrets_forbidden"


class CsrfRefused(Forbidden):
    """A console form arrived without the session's CSRF token: another site may have sent it."""

    code = "csrf_refused"


class NotFound(AlgohostError):
    http_status = 404
    code = "not_found"


class UnknownAlgorithm(NotFound):
    """A pipeline's step names an algorithm its owner has not published."""

    code = "unknown_algorithm"


class AlgorithmNotFound(NotFound):
    code = "algorithm_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class BuildNotFound(NotFound):
    code = "build_not_found"


class SecretNotFound(NotFound):
    """A secret named in the manifest (or a request) does not exist; retrying will not help."""

    code = "secret_not_found"


class BatchNotFound(NotFound):
    code = "batch_not_found"


class SweepNotFound(NotFound):
    code = "sweep_not_found"


class DeliveryNotFound(NotFound):
    code = "delivery_not_found"


class ArtifactNotFound(NotFound):
    """No such blob for this owner: another owner's blob is not found either."""

    code = "artifact_not_found"


class PipelineNotFound(NotFound):
    code = "pipeline_not_found"


class PipelineRunNotFound(NotFound):
    code = "pipeline_run_not_found"


class CallDepthExceeded(BadRequest):
    """A call an algorithm made would nest deeper than max_call_depth."""

    code = "call_depth_exceeded"


class NestedCallTimeout(BadRequest):
    """A call an algorithm made when its own call had under a second left."""

    code = "no_time_left"


class MethodNotAllowed(AlgohostError):
    http_status = 405
    code = "method_not_allowed"


class Conflict(AlgohostError):
    http_status = 409
    code = "conflict"


class ParentCanceled(Conflict):
    """A call an algorithm made after its own job was canceled."""

    code = "parent_canceled"


class JobNotCancelable(Conflict):
    code = "job_not_cancelable"


class PipelineRunNotCancelable(Conflict):
    code = "pipeline_run_not_cancelable"


class BuildNotReady(Conflict):
    code = "build_not_ready"


class SweepNotCancelable(Conflict):
    code = "sweep_not_cancelable"


class BatchNotCancelable(Conflict):
    code = "batch_not_cancelable"


class IdempotencyKeyInUse(Conflict):
    """The same request under the same Idempotency-Key is being made right now; retry."""

    code = "idempotency_key_in_use"


class IdempotencyKeyReused(AlgohostError):
    """An Idempotency-Key already names a different request of this owner."""

    http_status = 422
    code = "idempotency_key_reused"


class PayloadTooLarge(AlgohostError):
    http_status = 413
    code = "payload_too_large"


class TooManyInputs(PayloadTooLarge):
    code = "too_many_inputs"


class TooManyValues(PayloadTooLarge):
    code = "too_many_values"


class BlobTooLarge(PayloadTooLarge):
    """A streamed blob went past its cap; nothing of it was kept."""

    code = "blob_too_large"


class QuotaExceeded(BlobTooLarge):
    """The owner's artifact quota would be exceeded."""

    code = "quota_exceeded"


class PaymentRequired(AlgohostError):
    http_status = 402
    code = "payment_required"


class BudgetExhausted(PaymentRequired):
    """The owner spent its compute-seconds for the day; calls are refused until it turns."""

    code = "budget_exhausted"


class UnsupportedMediaType(AlgohostError):
    http_status = 415
    code = "unsupported_media_type"


class TooManyRequests(AlgohostError):
    http_status = 429
    code = "too_many_requests"


class RateLimited(TooManyRequests):
    """Over the owner's submit rate; `retry_after_s` becomes the Retry-After header."""

    code = "rate_limited"


class LimitReached(TooManyRequests):
    """An owner's limit on unfinished jobs or stored builds is reached."""

    code = "limit_reached"


class CallFanoutExceeded(TooManyRequests):
    """One job's algorithm made more calls than max_call_children."""

    code = "call_fanout_exceeded"


class ServiceUnavailable(AlgohostError):
    http_status = 503
    code = "service_unavailable"


class StoreUnavailable(ServiceUnavailable):
    code = "store_unavailable"


class SandboxUnavailable(ServiceUnavailable):
    code = "sandbox_unavailable"


class NoFreeSlot(SandboxUnavailable):
    """Every container slot stayed busy for as long as the caller would wait."""

    code = "no_free_slot"


class SecretsUnavailable(ServiceUnavailable):
    code = "secrets_unavailable"


class SandboxError(AlgohostError):
    code = "sandbox_error"


class ContainerStartFailed(SandboxError):
    code = "container_start_failed"


class ImageMissing(ContainerStartFailed):
    """The build's image is not on this engine (pruned, or a new worker host)."""

    code = "image_missing"


class EgressNotInstalled(SandboxError):
    """The host firewall fencing networked containers is not in place: none is started."""

    code = "egress_not_installed"


class BuildFailed(AlgohostError):
    code = "build_failed"


class BuildTimedOut(BuildFailed):
    """The build ran past ALGOHOST_BUILD_TIMEOUT_S and was killed."""

    code = "build_timeout"


class BuildDiskQuota(BuildFailed):
    """A build step wrote more than ALGOHOST_BUILD_DISK_MB and was killed."""

    code = "build_disk_quota"
