"""A small typed client for the algohost HTTP API, used by the command line.

Replies are read into the API's own public models (algohost.public), so the command
line knows exactly the fields the API returns. Transport failures, non-2xx replies and
bodies that do not fit are translated here into click exceptions that carry an exit
code, so no `requests` error ever reaches the user as a traceback.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar, cast

import click
import requests
from pydantic import TypeAdapter, ValidationError

from algohost.names import AlgorithmRef
from algohost.public import (
    AlgorithmSummary,
    Batch,
    BatchResults,
    Build,
    Delivery,
    Job,
    PipelineList,
    PipelineRun,
    PipelineRunList,
    PipelineVersion,
    Sweep,
    SweepList,
)
from algohost.reports import AlgorithmMetrics, UsageReport
from algohost.store.registry import BuildStatus

__all__ = ["AlgorithmSummary", "Batch", "BatchResults", "Build", "Delivery", "Job"]

BUILD_TERMINAL = frozenset({BuildStatus.SUCCEEDED, BuildStatus.FAILED})
M = TypeVar("M")
_JOB = TypeAdapter(Job)
_JOBS = TypeAdapter(list[Job])
_BUILD = TypeAdapter(Build)
_BUILDS = TypeAdapter(list[Build])
_BATCH = TypeAdapter(Batch)
_SUMMARY = TypeAdapter(AlgorithmSummary)
_SUMMARIES = TypeAdapter(list[AlgorithmSummary])
_RESULTS = TypeAdapter(BatchResults)
_DELIVERY = TypeAdapter(Delivery)
_DELIVERIES = TypeAdapter(list[Delivery])
_METRICS = TypeAdapter(AlgorithmMetrics)
_USAGE = TypeAdapter(UsageReport)
_PIPELINE = TypeAdapter(PipelineVersion)
_PIPELINE_RUN = TypeAdapter(PipelineRun)
_PIPELINE_RUNS = TypeAdapter(PipelineRunList)
_PIPELINES = TypeAdapter(PipelineList)
_SWEEP = TypeAdapter(Sweep)
_SWEEPS = TypeAdapter(SweepList)
# A submit is retried after these pauses when the API could not be reached or answered
# that it could not finish it now; its Idempotency-Key makes every retry the same submit.
SUBMIT_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)
RETRIED = frozenset({(409, "idempotency_key_in_use"), (502, ""), (503, ""), (504, "")})


def retryable(exc: ApiError) -> bool:
    return (exc.status, exc.code) in RETRIED or (exc.status, "") in RETRIED


class ApiError(click.ClickException):
    """The API answered with an error body {"error": {"code", "message"}}."""

    exit_code = 1

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} [{code}, HTTP {status}]")
        self.status = status
        self.code = code
        self.detail = message


class ApiUnreachable(click.ClickException):
    """No HTTP conversation was possible: refused, reset, timed out or bad URL."""

    exit_code = 1

    def __init__(self, base_url: str, reason: str = "", *, retryable: bool = True) -> None:
        message = f"cannot reach the algohost API at {base_url}; is `algohost dev up` running?"
        super().__init__(f"{message} ({reason})" if reason else message)
        self.base_url = base_url
        self.retryable = retryable


class MissingApiKey(click.ClickException):
    exit_code = 1

    def __init__(self) -> None:
        super().__init__(
            "no API key: set ALGOHOST_API_KEY (make one with `algohost keys create OWNER`)"
        )


def error_from_response(resp: requests.Response) -> ApiError:
    """Read the API's error envelope; fall back to the HTTP reason for foreign bodies."""
    code, message = f"http_{resp.status_code}", resp.reason or "request failed"
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code") or code)
        message = str(body["error"].get("message") or message)
    elif resp.text.strip() and body is None:
        message = f"{message}: {resp.text.strip()[:200]}"
    return ApiError(resp.status_code, code, message)


class ApiClient:
    """One method per endpoint the command line uses."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        http: requests.Session | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.http = http or requests.Session()
        self.timeout_s = timeout_s
        self.sleep: Callable[[float], None] = time.sleep

    def _submit(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """POST a submit with a fresh Idempotency-Key, retried under that same key."""
        headers = {**kwargs.pop("headers", {}), "Idempotency-Key": str(uuid.uuid4())}
        for delay in (*SUBMIT_RETRY_DELAYS_S, None):
            try:
                return self._json("POST", path, headers=headers, **kwargs)
            except ApiUnreachable as exc:
                if delay is None or not exc.retryable:
                    raise
            except ApiError as exc:
                if delay is None or not retryable(exc):
                    raise
            self.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def request(
        self,
        method: str,
        path: str,
        *,
        auth: bool = True,
        timeout_s: float | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        headers: dict[str, str] = dict(kwargs.pop("headers", None) or {})
        if auth:
            if not self.api_key:
                raise MissingApiKey()
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.base_url + path
        try:
            resp = self.http.request(
                method, url, headers=headers, timeout=timeout_s or self.timeout_s, **kwargs
            )
        except requests.ConnectionError as exc:
            raise ApiUnreachable(self.base_url) from exc
        except requests.Timeout as exc:
            raise ApiUnreachable(self.base_url, "timed out") from exc
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
            raise ApiUnreachable(self.base_url, "invalid URL", retryable=False) from exc
        if not resp.ok:
            raise error_from_response(resp)
        return resp

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        resp = self.request(method, path, **kwargs)
        try:
            body = resp.json()
        except ValueError as exc:
            raise ApiError(resp.status_code, "bad_response", "the API did not answer JSON") from exc
        if not isinstance(body, dict):
            raise ApiError(resp.status_code, "bad_response", "the API answered a non-object")
        return body

    @staticmethod
    def _model(adapter: TypeAdapter[M], body: Any) -> M:
        """A reply's body read into the API's public model of it."""
        try:
            return adapter.validate_python(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the body"
            raise ApiError(200, "bad_response",
                           f"the API answered an unexpected body ({where}: {first['msg']})"
                           ) from exc

    def healthz(self) -> dict[str, Any]:
        return self._json("GET", "/healthz", auth=False, timeout_s=5)

    def whoami(self) -> str:
        return str(self._json("GET", "/v1/whoami")["owner"])

    def limits(self) -> dict[str, Any]:
        return self._json("GET", "/v1/limits")

    def metrics(self, owner: str, name: str, versions: list[str] | None = None,
                since: str | None = None) -> AlgorithmMetrics:
        params = {"versions": ",".join(versions) if versions else None, "since": since}
        body = self._json("GET", f"/v1/algorithms/{owner}/{name}/metrics", params=params)
        return self._model(_METRICS, body)

    def usage(self, group_by: str, since: str | None = None, until: str | None = None,
              role: str = "payer") -> UsageReport:
        params = {"group_by": group_by, "since": since, "until": until, "role": role}
        return self._model(_USAGE, self._json("GET", "/v1/usage", params=params))

    def publish(self, owner: str, name: str, archive: bytes, bump: str,
                origin: dict[str, str] | None = None) -> Build:
        """`origin`: what the CLI knows of the source (local_hash, git_commit, git_ref)."""
        body = self._json(
            "POST",
            f"/v1/algorithms/{owner}/{name}/versions",
            params={"bump": bump, **(origin or {})},
            data=archive,
            headers={"Content-Type": "application/gzip"},
            timeout_s=max(self.timeout_s, 120),
        )
        return self._model(_BUILD, body.get("build"))

    def build_log_events(self, owner: str, name: str, version: str
                         ) -> Iterator[tuple[str, str]]:
        """(event, data) of a version's build log followed live, until its `end` event."""
        resp = self.request("GET", f"/v1/algorithms/{owner}/{name}/versions/{version}/logs",
                            params={"follow": "1"}, stream=True,
                            timeout_s=max(self.timeout_s, 60))  # keepalives every 15 s
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        try:
            event, pending = "message", ""
            data: list[str] = []
            # chunk_size=None: each piece as it arrives, not after 512 bytes.
            for chunk in resp.iter_content(chunk_size=None):
                pending += decoder.decode(chunk)
                *lines, pending = pending.split("\n")
                for line in lines:
                    if line == "":
                        if data:
                            yield event, "\n".join(data)
                        event, data = "message", []
                    elif line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                    elif line.startswith("event:"):
                        event = line[6:].strip()
        finally:
            resp.close()

    def version(self, owner: str, name: str, version: str) -> Build:
        return self._model(_BUILD,
                           self._json("GET", f"/v1/algorithms/{owner}/{name}/versions/{version}"))

    def delete_version(self, owner: str, name: str, version: str) -> Build:
        return self._model(_BUILD, self._json(
            "DELETE", f"/v1/algorithms/{owner}/{name}/versions/{version}"))

    def yank(self, owner: str, name: str, version: str, undo: bool = False) -> Build:
        action = "unyank" if undo else "yank"
        return self._model(_BUILD, self._json(
            "POST", f"/v1/algorithms/{owner}/{name}/versions/{version}/{action}"))

    def set_visibility(self, owner: str, name: str, visibility: str) -> AlgorithmSummary:
        return self._model(_SUMMARY, self._json(
            "PUT", f"/v1/algorithms/{owner}/{name}/visibility", json={"visibility": visibility}))

    def search(self, word: str | None = None) -> list[AlgorithmSummary]:
        """The public catalogue, or the part of it that mentions `word`."""
        params = {"visibility": "public", **({"q": word} if word else {})}
        body = self._json("GET", "/v1/algorithms", params=params)
        return self._model(_SUMMARIES, body.get("algorithms"))

    def versions(self, owner: str, name: str) -> list[Build]:
        body = self._json("GET", f"/v1/algorithms/{owner}/{name}/versions")
        return self._model(_BUILDS, body.get("versions"))

    def submit(
        self, algorithm: str, payload: Any, *, timeout_s: int | None = None, wait_s: int = 0
    ) -> Job:
        """POST /v1/jobs; with wait_s > 0 the API holds the reply until the job ends or wait_s."""
        request: dict[str, Any] = {"algorithm": algorithm, "input": payload}
        if timeout_s is not None:
            request["timeout_s"] = timeout_s
        headers = {"Prefer": f"wait={wait_s}"} if wait_s > 0 else {}
        body = self._submit("/v1/jobs", json=request, headers=headers,
                            timeout_s=wait_s + self.timeout_s)
        return self._model(_JOB, body)

    def job(self, job_id: str) -> Job:
        return self._model(_JOB, self._json("GET", f"/v1/jobs/{job_id}"))

    def jobs(self, limit: int = 20) -> list[Job]:
        body = self._json("GET", "/v1/jobs", params={"limit": limit})
        return self._model(_JOBS, body.get("jobs"))

    def cancel(self, job_id: str) -> Job:
        return self._model(_JOB, self._json("POST", f"/v1/jobs/{job_id}/cancel"))

    # -- secrets: values go in, never come out ----------------------------------------------

    @staticmethod
    def _secrets_path(algorithm: str, secret: str = "") -> str:
        ref = AlgorithmRef.parse(algorithm, versioned=False)
        base = f"/v1/algorithms/{ref.owner}/{ref.name}/secrets"
        return f"{base}/{secret}" if secret else base

    def set_secret(self, algorithm: str, name: str, value: str) -> dict[str, Any]:
        return self._json("PUT", self._secrets_path(algorithm, name), json={"value": value})

    def secrets(self, algorithm: str) -> list[dict[str, Any]]:
        body = self._json("GET", self._secrets_path(algorithm))
        return cast(list[dict[str, Any]], body.get("secrets", []))

    def delete_secret(self, algorithm: str, name: str) -> dict[str, Any]:
        return self._json("DELETE", self._secrets_path(algorithm, name))

    # -- webhooks and batches --------------------------------------------------------------

    def webhook_secret(self, rotate: bool = False) -> str:
        if rotate:
            return str(self._json("POST", "/v1/webhooks/secret/rotate")["secret"])
        return str(self._json("GET", "/v1/webhooks/secret")["secret"])

    @staticmethod
    def _subject_path(subject_id: str) -> str:
        """Batch ids start with b_, job ids with j_."""
        kind = "batches" if subject_id.startswith("b_") else "jobs"
        return f"/v1/{kind}/{subject_id}"

    def deliveries(self, subject_id: str) -> list[Delivery]:
        body = self._json("GET", f"{self._subject_path(subject_id)}/webhooks")
        return self._model(_DELIVERIES, body.get("deliveries"))

    def redeliver(self, subject_id: str, delivery_id: str | None = None) -> Delivery:
        params = {"delivery": delivery_id} if delivery_id else {}
        return self._model(_DELIVERY, self._json(
            "POST", f"{self._subject_path(subject_id)}/webhooks/redeliver", params=params))

    def submit_batch(self, algorithm: str, jsonl: bytes, *, webhook: str | None = None,
                     timeout_s: int | None = None) -> Batch:
        """POST /v1/batches with a JSON Lines body: the file is sent as it is."""
        params: dict[str, Any] = {"algorithm": algorithm}
        if webhook:
            params["webhook"] = webhook
        if timeout_s is not None:
            params["timeout_s"] = timeout_s
        return self._model(_BATCH, self._submit(
            "/v1/batches", params=params, data=jsonl,
            headers={"Content-Type": "application/x-ndjson"}, timeout_s=max(self.timeout_s, 300)))

    def publish_pipeline(self, owner: str, name: str, spec: Any) -> tuple[PipelineVersion, bool]:
        """POST the spec as the pipeline's next version; (version, whether it is new)."""
        resp = self.request("POST", f"/v1/pipelines/{owner}/{name}", json=spec)
        return self._model(_PIPELINE, resp.json()), resp.status_code == 201

    def pipelines(self) -> PipelineList:
        return self._model(_PIPELINES, self._json("GET", "/v1/pipelines"))

    def pipeline(self, owner: str, name: str) -> PipelineVersion:
        return self._model(_PIPELINE, self._json("GET", f"/v1/pipelines/{owner}/{name}"))

    def start_pipeline_run(self, owner: str, name: str, payload: Any, *,
                           version: int | None = None, cache: bool = True) -> PipelineRun:
        body: dict[str, Any] = {"input": payload, "cache": cache}
        if version is not None:
            body["version"] = version
        return self._model(_PIPELINE_RUN, self._json(
            "POST", f"/v1/pipelines/{owner}/{name}/runs", json=body))

    def pipeline_run(self, run_id: str) -> PipelineRun:
        return self._model(_PIPELINE_RUN, self._json("GET", f"/v1/pipeline-runs/{run_id}"))

    def cancel_pipeline_run(self, run_id: str) -> PipelineRun:
        return self._model(_PIPELINE_RUN, self._json(
            "POST", f"/v1/pipeline-runs/{run_id}/cancel"))

    def pipeline_runs(self, name: str | None = None, limit: int = 20) -> PipelineRunList:
        params: dict[str, Any] = {"limit": limit}
        if name:
            params["pipeline"] = name
        return self._model(_PIPELINE_RUNS, self._json("GET", "/v1/pipeline-runs",
                                                      params=params))

    def start_sweep(self, spec: dict[str, Any]) -> Sweep:
        return self._model(_SWEEP, self._json("POST", "/v1/sweeps", json=spec))

    def sweep(self, sweep_id: str) -> Sweep:
        return self._model(_SWEEP, self._json("GET", f"/v1/sweeps/{sweep_id}"))

    def sweeps(self, limit: int = 20) -> list[Sweep]:
        return self._model(_SWEEPS, self._json("GET", "/v1/sweeps",
                                               params={"limit": limit})).sweeps

    def cancel_sweep(self, sweep_id: str) -> Sweep:
        return self._model(_SWEEP, self._json("POST", f"/v1/sweeps/{sweep_id}/cancel"))

    def batch(self, batch_id: str) -> Batch:
        return self._model(_BATCH, self._json("GET", f"/v1/batches/{batch_id}"))

    def batch_results(self, batch_id: str, cursor: int, limit: int = 1000) -> BatchResults:
        return self._model(_RESULTS, self._json("GET", f"/v1/batches/{batch_id}/results",
                                                params={"cursor": str(cursor), "limit": limit}))

    def cancel_batch(self, batch_id: str) -> Batch:
        return self._model(_BATCH, self._json("POST", f"/v1/batches/{batch_id}/cancel"))

    # -- artifacts: streamed both ways, never whole in memory --------------------------------

    def upload_artifact(self, source: IO[bytes], name: str, size: int,
                        media_type: str = "application/octet-stream") -> dict[str, Any]:
        return self._json("POST", "/v1/artifacts", params={"name": name}, data=source,
                          headers={"Content-Type": media_type, "Content-Length": str(size)},
                          timeout_s=max(self.timeout_s, 600))

    def has_artifact(self, digest: str) -> bool:
        try:
            self.request("HEAD", f"/v1/artifacts/{digest}")
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def artifacts(self, **filters: str) -> list[dict[str, Any]]:
        params = {k: v for k, v in filters.items() if v}
        return cast(list[dict[str, Any]],
                    self._json("GET", "/v1/artifacts", params=params)["artifacts"])

    def push_model(self, owner: str, name: str, digest: str, kind: str,
                   filename: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/models/{owner}/{name}",
                          json={"sha256": digest, "kind": kind, "filename": filename})

    def models(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._json("GET", "/v1/models")["models"])

    # -- data collections -------------------------------------------------------------------

    @staticmethod
    def data_path(owner: str, collection: str, path: str = "") -> str:
        return f"/v1/data/{owner}/{collection}" + (f"/{path}" if path else "")

    def collections(self, owner: str) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._json("GET", f"/v1/data/{owner}")["collections"])

    def make_collection(self, owner: str, collection: str, access: str) -> dict[str, Any]:
        return self._json("PUT", self.data_path(owner, collection), json={"access": access})

    def list_data(self, owner: str, collection: str, prefix: str = "") -> dict[str, Any]:
        return self._json("GET", self.data_path(owner, collection),
                          params={"prefix": prefix} if prefix else {})

    def put_data(self, owner: str, collection: str, path: str, source: IO[bytes], size: int,
                 media_type: str = "application/octet-stream") -> dict[str, Any]:
        return self._json("PUT", self.data_path(owner, collection, path), data=source,
                          headers={"Content-Type": media_type, "Content-Length": str(size)},
                          timeout_s=max(self.timeout_s, 600))

    def delete_data(self, owner: str, collection: str, path: str) -> dict[str, Any]:
        return self._json("DELETE", self.data_path(owner, collection, path))

    def stream(self, path: str, **kwargs: Any) -> Iterator[bytes]:
        resp = self.request("GET", path, stream=True, timeout_s=max(self.timeout_s, 600),
                            **kwargs)
        with resp:
            yield from resp.iter_content(CHUNK_BYTES)

    def download_artifact(self, digest: str, target: Path,
                          progress: Callable[[int], None] | None = None) -> None:
        save_stream(self.stream(f"/v1/artifacts/{digest}"), target, digest, progress)


CHUNK_BYTES = 1024 * 1024


def save_stream(chunks: Iterator[bytes], target: Path, digest: str | None = None,
                progress: Callable[[int], None] | None = None) -> None:
    """Write a download beside its target and move it into place once it checks out."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    hasher = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                hasher.update(chunk)
                out.write(chunk)
                if progress is not None:
                    progress(len(chunk))
        if digest is not None and hasher.hexdigest() != digest:
            raise click.ClickException(f"the download of {target} does not match its sha256")
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
