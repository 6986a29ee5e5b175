"""The HTTP API: a thin Flask app that validates, authorises, writes records and enqueues ids.

`gunicorn 'algohost.api:create_app()'` serves it. It never runs algorithm code,
never reads a secret's value back from Vault, and touches Docker only to answer the
health check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import redis
from flask import Flask

from algohost.api import (
    algorithms,
    artifacts,
    batches,
    buildlogs,
    data,
    jobs,
    limits,
    meta,
    metering,
    models,
    pipelines,
    sweeps,
    webhooks,
)
from algohost.api import secrets as secret_routes
from algohost.api.context import EXTENSION, Services
from algohost.api.handlers import register_error_handlers
from algohost.api.openapi import build_document
from algohost.api.routing import ROUTES
from algohost.artifacts.data import DataStore
from algohost.artifacts.lineage import LineageIndex
from algohost.artifacts.models import ModelRegistry
from algohost.artifacts.store import ArtifactStore
from algohost.config import Settings, load_settings
from algohost.dispatch import CeleryDispatcher, Dispatcher, make_celery
from algohost.secrets.base import SecretStore
from algohost.secrets.vault import VaultSecretStore
from algohost.store import connect, connect_raw
from algohost.store.batches import BatchStore
from algohost.store.completions import shared_waiter
from algohost.store.fairshare import FairShare
from algohost.store.idempotency import IdempotencyKeys
from algohost.store.jobs import JobStore
from algohost.store.keys import KeyStore
from algohost.store.limits import LimitStore
from algohost.store.metrics import BuildMetrics
from algohost.store.pipelines import PipelineStore
from algohost.store.registry import Registry
from algohost.store.sessions import SessionStore
from algohost.store.sweeps import SweepStore
from algohost.store.usage import ComputeBudget, UsageLedger
from algohost.store.webhooks import WebhookStore
from algohost.submission import JobSubmitter
from algohost.webhooks.notifier import WebhookNotifier

__all__ = ["create_app"]

# Headroom over our own limits, so that Werkzeug's hard cap only stops bodies that are
# far too big and ours answer first with the precise limit.
BODY_SLACK_BYTES = 64 * 1024
# How long the API may remember a key's owner and a finished build: a revoked key
# or a deleted version is honoured within this many seconds.
API_CACHE_S = 5.0


def redis_pinger(settings: Settings) -> Callable[[], bool]:
    """A ping on its own client with short timeouts, so a health check never hangs."""
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2,
                                  socket_timeout=2)

    def ping() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    return ping


_DOCUMENTS: dict[tuple[int, tuple[tuple[str, int], ...]], dict[str, Any]] = {}


def openapi_document(maximums: Mapping[str, int]) -> dict[str, Any]:
    """The route table's OpenAPI document, built once per process and set of limits:
    building it costs more than the rest of create_app, and the table only grows while
    modules import."""
    key = (len(ROUTES), tuple(sorted(maximums.items())))
    if key not in _DOCUMENTS:
        _DOCUMENTS[key] = build_document(ROUTES, maximums)
    return _DOCUMENTS[key]


def create_app(settings: Settings | None = None, *, dispatcher: Dispatcher | None = None,
               docker_ping: Callable[[], bool] | None = None,
               secrets: SecretStore | None = None) -> Flask:
    settings = settings or load_settings()
    if dispatcher is None:
        dispatcher = CeleryDispatcher(make_celery(settings))
    client = connect(settings)
    webhook_store = WebhookStore(client, settings.job_retention_s)
    artifact_store = ArtifactStore.from_settings(settings, client)
    owner_limits = LimitStore(client, settings, cache_s=API_CACHE_S)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = (
        max(settings.max_input_bytes, settings.max_upload_bytes) + BODY_SLACK_BYTES)
    # One listener per process wakes every `Prefer: wait` caller: none holds a connection.
    job_store = JobStore(client, settings.job_retention_s, shared_waiter(settings.redis_url))
    fair = FairShare(client, owner_limits, dispatcher.enqueue_run, JobStore.key(""))
    usage = UsageLedger.from_settings(client, settings)
    budget = ComputeBudget(usage, owner_limits)
    app.extensions[EXTENSION] = Services(
        settings=settings,
        jobs=job_store,
        registry=Registry(client, connect_raw(settings), cache_s=API_CACHE_S),
        keys=KeyStore(client, cache_s=API_CACHE_S),
        dispatcher=dispatcher,
        redis_ping=meta.LastAnswer(redis_pinger(settings)),
        docker_ping=docker_ping or meta.DockerPing(settings.sandbox.docker_url),
        webhooks=webhook_store,
        batches=BatchStore(client, settings.job_retention_s),
        notifier=WebhookNotifier(webhook_store, dispatcher.enqueue_webhook),
        limits=owner_limits,
        fair=fair,
        # Looked up per send, so a test that swaps the dispatcher's method is heard.
        submitter=JobSubmitter(job_store, fair,
                               lambda job_id, priority: dispatcher.enqueue_run(job_id, priority),
                               settings.max_timeout_s, budget,
                               lambda job_id: dispatcher.run_message(job_id)),
        job_keys=IdempotencyKeys(client, "job", JobStore.key(""), settings.idempotency_ttl_s),
        batch_keys=IdempotencyKeys(client, "batch", BatchStore.key(""),
                                   settings.idempotency_ttl_s),
        sweeps=SweepStore(client, settings.job_retention_s),
        openapi=openapi_document({"timeout_s": settings.max_timeout_s}),
        secrets=secrets or VaultSecretStore.from_settings(settings),
        artifacts=artifact_store,
        lineage=LineageIndex(client),
        models=ModelRegistry(client),
        data=DataStore(client, artifact_store),
        sessions=SessionStore(client, settings.console_session_s),
        pipelines=PipelineStore(client, settings.job_retention_s),
        metrics=BuildMetrics.from_settings(client, settings),
        usage=usage,
        budget=budget,
    )
    register_error_handlers(app)
    for blueprint in (meta.bp, jobs.bp, algorithms.bp, buildlogs.bp, secret_routes.bp, batches.bp,
                      webhooks.bp, artifacts.bp, models.bp, data.bp, limits.bp, pipelines.bp,
                      sweeps.bp):
        app.register_blueprint(blueprint)
    # Imported here: the console imports the API's views, which import this package.
    from algohost.console import console

    app.register_blueprint(console)
    app.register_blueprint(metering.bp)
    return app
