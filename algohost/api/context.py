"""What the API's views share: settings, stores and seams, kept on the Flask app.

One typed object under `app.extensions["algohost"]`; views reach it through
`services()` and never build their own clients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from flask import current_app

from algohost.artifacts.data import DataStore
from algohost.artifacts.lineage import LineageIndex
from algohost.artifacts.models import ModelRegistry
from algohost.artifacts.store import ArtifactStore
from algohost.config import Settings
from algohost.dispatch import Dispatcher
from algohost.secrets.base import SecretStore
from algohost.store.batches import BatchStore
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

EXTENSION = "algohost"


@dataclass
class Services:
    settings: Settings
    jobs: JobStore
    registry: Registry
    keys: KeyStore
    dispatcher: Dispatcher
    redis_ping: Callable[[], bool]
    docker_ping: Callable[[], bool]
    webhooks: WebhookStore
    batches: BatchStore
    notifier: WebhookNotifier
    limits: LimitStore
    fair: FairShare
    submitter: JobSubmitter
    job_keys: IdempotencyKeys
    batch_keys: IdempotencyKeys
    sweeps: SweepStore
    openapi: dict[str, Any] = field(default_factory=dict)
    secrets: SecretStore | None = None
    artifacts: ArtifactStore | None = None
    lineage: LineageIndex | None = None
    models: ModelRegistry | None = None
    data: DataStore | None = None
    sessions: SessionStore | None = None  # the web console's sign-ins
    pipelines: PipelineStore | None = None
    metrics: BuildMetrics | None = None
    usage: UsageLedger | None = None
    budget: ComputeBudget | None = None


def services() -> Services:
    return cast(Services, current_app.extensions[EXTENSION])
