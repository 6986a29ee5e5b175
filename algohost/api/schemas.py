"""Request, query and response bodies of the HTTP API, as pydantic models.

Views answer through these models and the OpenAPI document is generated from them,
so what is served and what is documented cannot drift apart. No store internals here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    model_validator,
)
from pydantic.config import JsonDict

from algohost.artifacts.data import Collection, DataFile
from algohost.artifacts.lineage import LineageEntry
from algohost.artifacts.models import ModelVersion
from algohost.artifacts.records import ArtifactRecord
from algohost.errors import InvalidRequest, WebhookRefused
from algohost.jsonlimits import MAX_JSON_DEPTH, nesting_depth
from algohost.names import (
    DATA_PREFIX_PATTERN,
    GIT_COMMIT_PATTERN,
    GIT_REF_PATTERN,
    REF_FORMS,
    REF_PATTERN,
    SHA256_PATTERN,
    DataUri,
)
from algohost.public import (
    AlgorithmList,
    AlgorithmSummary,
    Build,
    Job,
    JobError,
    JobMetrics,
    public_build,
    public_job,
)
from algohost.semver import Bump
from algohost.webhooks import EVENTS, Event
from algohost.webhooks.urls import URL_PATTERN, documented_url

# Re-exported for the views.
__all__ = ["AlgorithmList", "AlgorithmSummary", "Build", "Job", "JobError", "JobMetrics",
           "public_build", "public_job"]


# Requests ------------------------------------------------------------------------------

def _default_events() -> list[Event]:
    return ["completed"]


# What _events_need_a_url checks, said in the document: webhook_events needs a webhook URL.
_EVENTS_NEED_A_URL: JsonDict = {
    "if": {"required": ["webhook_events"]},
    "then": {"required": ["webhook"], "properties": {"webhook": {"type": "string"}}}}


def _webhook_url(url: str) -> str:
    try:
        return documented_url(url)
    except WebhookRefused as exc:
        raise ValueError(exc.message) from exc


WebhookURL = Annotated[str, Field(max_length=2048, json_schema_extra={"pattern": URL_PATTERN}),
                       AfterValidator(_webhook_url)]


class WebhookRequest(BaseModel):
    """Where to send events of a job or batch; signed per Standard Webhooks."""

    model_config = ConfigDict(json_schema_extra=_EVENTS_NEED_A_URL)

    webhook: WebhookURL | None = Field(default=None,
                                       description="An http(s) URL that receives the events",
                                       examples=["https://example.com/hooks/algohost"])
    webhook_events: list[Event] = Field(
        default_factory=_default_events, min_length=1, max_length=len(EVENTS),
        description="Which events to send: started, completed (default: completed)")

    @model_validator(mode="after")
    def _events_need_a_url(self) -> Self:
        if self.webhook is None and "webhook_events" in self.model_fields_set:
            raise ValueError("webhook_events is given without a webhook")
        self.webhook_events = list(dict.fromkeys(self.webhook_events))
        return self


def _shallow(value: Any) -> Any:
    # Deeper values would pass through here but fail later, when a reply renders them.
    if nesting_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels of arrays and objects")
    return value


JsonValue = Annotated[Any, AfterValidator(_shallow)]


def _whole_number(value: Any) -> Any:
    # JSON has one number type: 30.0 is the integer 30 to JSON Schema, and to us. Strings stay out.
    return int(value) if isinstance(value, float) and value.is_integer() else value


TimeoutSeconds = Annotated[int, Field(ge=1), BeforeValidator(_whole_number)]


def check_max_timeout(timeout_s: int | None, max_timeout_s: int, where: str) -> None:
    """A timeout over the server's max_timeout_s (which the document states) is a 400."""
    if timeout_s is not None and timeout_s > max_timeout_s:
        message = f"must be at most {max_timeout_s}"
        raise InvalidRequest(f"invalid {where}: timeout_s: {message}",
                             errors=[{"field": "timeout_s", "message": message}])


class JobCreate(WebhookRequest):
    """A call of an algorithm."""

    # Strict: "5" is not a timeout, and an unknown field is a typo, not something to ignore.
    model_config = ConfigDict(extra="forbid", strict=True)

    algorithm: str = Field(pattern=REF_PATTERN, description=REF_FORMS,
                           examples=["alice/hello@latest"])
    input: JsonValue = Field(description="Any JSON value, handed to the entrypoint (null "
                                         f"allowed), nested at most {MAX_JSON_DEPTH} deep")
    timeout_s: TimeoutSeconds | None = Field(default=None,
                                  description="Wall-clock limit in seconds; defaults to the "
                                              "manifest's resources.timeout_s and may not "
                                              "exceed the server's maximum")


class JobView(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include: Literal["input"] | None = Field(
        default=None, description="`input` adds the job's input to the response")


class JobListQuery(JobView):
    limit: int = Field(default=20, ge=1, le=200, description="How many jobs, newest first")
    cursor: str | None = Field(default=None, pattern=r"^[0-9]{1,9}$",
                               description="next_cursor of the previous page")


class PublishQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    bump: Bump = Field(default=Bump.PATCH,
                       description="Which part of the newest version a new build increments")
    local_hash: str | None = Field(
        default=None, pattern=SHA256_PATTERN,
        description="The content hash `algohost run`/`test` last passed with locally; the "
                    "version records whether it is this source's (matches_local)")
    git_commit: str | None = Field(default=None, pattern=GIT_COMMIT_PATTERN,
                                   description="The commit the archive was made from")
    git_ref: str | None = Field(default=None, pattern=GIT_REF_PATTERN, max_length=255,
                                description="The branch, tag or ref that named the commit")


# Responses -----------------------------------------------------------------------------

class JobList(BaseModel):
    jobs: list[Job]
    next_cursor: str | None = Field(default=None, description="null on the last page; a "
                                    "page also ends early at ALGOHOST_MAX_PAGE_BYTES")


class BuildReply(BaseModel):
    build: Build


class BuildList(BaseModel):
    versions: list[Build] = Field(description="Newest version first")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    redis: bool
    docker: bool


class WhoAmI(BaseModel):
    owner: str


class OpenAPIDocument(RootModel[dict[str, Any]]):
    """This document."""


# Artifacts -----------------------------------------------------------------------------



class ArtifactUploadQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(default="upload", min_length=1, max_length=255,
                      description="A name for the artifact (a file name)")


class ArtifactListQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    algorithm: str | None = Field(default=None, max_length=200,
                                  description="Only artifacts of calls of this algorithm: "
                                              "owner/name or owner/name@1.2.3")
    input_sha256: str | None = Field(default=None, pattern=SHA256_PATTERN,
                                     description="Only artifacts of calls with this input "
                                                 "(sha256 of its canonical JSON)")
    job: str | None = Field(default=None, max_length=64, description="Only this job's")
    limit: int = Field(default=100, ge=1, le=1000)


class ArtifactLineage(BaseModel):
    job: str
    algorithm: str = Field(description="The exact build: owner/name@1.2.3")
    build_id: str
    input_sha256: str


class Artifact(BaseModel):
    sha256: str
    name: str
    size: int
    media_type: str
    creator: str = Field(description="upload, or job:<id>")
    created_at: str
    url: str = Field(description="Where to download it")
    lineage: ArtifactLineage | None = None
    references: list[str] = Field(default_factory=list,
                                  description="What keeps it from garbage collection")


class ArtifactList(BaseModel):
    artifacts: list[Artifact]


def public_artifact(record: ArtifactRecord) -> Artifact:
    lineage = record.lineage
    return Artifact(sha256=record.sha256, name=record.name, size=record.size,
                    media_type=record.media_type, creator=record.creator,
                    created_at=record.created_at, url=f"/v1/artifacts/{record.sha256}",
                    lineage=ArtifactLineage(**vars(lineage)) if lineage else None,
                    references=list(record.references))


def lineage_artifact(entry: LineageEntry, references: tuple[str, ...]) -> Artifact:
    """One job's artifact, as a lineage query finds it."""
    return Artifact(sha256=entry.sha256, name=entry.name, size=entry.size,
                    media_type=entry.media_type, creator=f"job:{entry.job}",
                    created_at=entry.created_at, url=f"/v1/artifacts/{entry.sha256}",
                    lineage=ArtifactLineage(job=entry.job, algorithm=entry.algorithm,
                                            build_id=entry.build_id,
                                            input_sha256=entry.input_sha256),
                    references=list(references))


# Models --------------------------------------------------------------------------------


class ModelPush(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(pattern=SHA256_PATTERN, description="An artifact you uploaded")
    kind: Literal["file", "directory"] = Field(
        default="file", description="directory: the artifact is a tar of the directory")
    filename: str = Field(default="model", min_length=1, max_length=255,
                          pattern=r"^[^/\\]+$", description="The pushed file's own name")


class ModelVersionView(BaseModel):
    ref: str = Field(description="NAME@sha256:<hex>, for algorithm.toml's [models]")
    name: str
    sha256: str
    kind: str
    filename: str
    size: int
    pushed_at: str


class Model(BaseModel):
    name: str
    latest: ModelVersionView | None
    versions: list[ModelVersionView] = Field(description="Newest first")


class ModelList(BaseModel):
    models: list[Model]


def public_model_version(owner: str, version: ModelVersion) -> ModelVersionView:
    return ModelVersionView(ref=version.ref, name=version.name, sha256=version.sha256,
                            kind=version.kind, filename=version.filename, size=version.size,
                            pushed_at=version.pushed_at)


# Data collections ----------------------------------------------------------------------


class CollectionMake(BaseModel):
    model_config = ConfigDict(extra="forbid")

    access: Literal["private", "algorithms", "public"] = Field(
        default="private", description="private: you (and calls you make); algorithms: also "
                                       "your algorithms, whoever calls them; public: anyone")


class CollectionView(BaseModel):
    uri: str = Field(description="data://OWNER/COLLECTION")
    owner: str
    name: str
    access: str
    created_at: str


class CollectionList(BaseModel):
    collections: list[CollectionView]


class DataListQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prefix: str = Field(default="", max_length=1024, pattern=DATA_PREFIX_PATTERN,
                        description="Only files under this path")


class DataFileView(BaseModel):
    uri: str = Field(description="data://OWNER/COLLECTION/PATH")
    path: str
    sha256: str
    size: int
    media_type: str
    modified_at: str


class DataListing(BaseModel):
    collection: CollectionView
    files: list[DataFileView]


def public_collection(found: Collection) -> CollectionView:
    return CollectionView(uri=f"data://{found.owner}/{found.name}", owner=found.owner,
                          name=found.name, access=found.access.value,
                          created_at=found.created_at)


def public_data_file(uri: DataUri, entry: DataFile) -> DataFileView:
    return DataFileView(uri=f"data://{uri.owner}/{uri.collection}/{entry.path}",
                        path=entry.path, sha256=entry.sha256, size=entry.size,
                        media_type=entry.media_type, modified_at=entry.modified_at)


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. job_not_found")
    message: str
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


