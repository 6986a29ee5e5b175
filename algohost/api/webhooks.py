"""Webhooks: the owner's signing key, and the deliveries of a job or batch with every attempt.

The signing key is shown only to its owner. Redelivery starts the schedule again with
the same webhook-id, so a receiver that deduplicates by id still can.
"""

from __future__ import annotations

from flask import Blueprint
from pydantic import BaseModel, ConfigDict, Field

from algohost.api.auth import current_owner
from algohost.api.batches import owned_batch
from algohost.api.context import services
from algohost.api.jobs import owned_job
from algohost.api.routing import Reply, route
from algohost.errors import DeliveryNotFound
from algohost.public import Delivery, DeliveryList, public_delivery
from algohost.store.webhooks import DeliveryState
from algohost.webhooks.notifier import batch_subject, job_subject

bp = Blueprint("webhooks", __name__)


class WebhookSecret(BaseModel):
    secret: str = Field(description="The Standard Webhooks signing key, whsec_ + base64",
                        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])


class RedeliverQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    delivery: str | None = Field(default=None, description="Which delivery (default: the "
                                                           "latest dead one, else the latest)")


@route(bp, "GET", "/v1/webhooks/secret", summary="Your webhook signing key (made on first read)",
       responses={200: WebhookSecret})
def get_secret() -> Reply:
    return Reply(WebhookSecret(secret=services().webhooks.secret(current_owner())))


@route(bp, "POST", "/v1/webhooks/secret/rotate",
       summary="Replace your webhook signing key; attempts from now on use the new one",
       responses={200: WebhookSecret})
def rotate_secret() -> Reply:
    return Reply(WebhookSecret(secret=services().webhooks.rotate_secret(current_owner())))


def _deliveries(subject: str) -> Reply:
    deliveries = services().webhooks.for_subject(subject)
    return Reply(DeliveryList(deliveries=[public_delivery(d, log) for d, log in deliveries]))


def _redeliver(subject: str, chosen: str | None) -> Reply:
    svc = services()
    deliveries = [delivery for delivery, _ in svc.webhooks.for_subject(subject)]
    if chosen is not None:
        matching = [d for d in deliveries if d.id == chosen]
    else:
        dead = [d for d in deliveries if d.state is DeliveryState.DEAD]
        matching = (dead or deliveries)[-1:]
    if not matching:
        raise DeliveryNotFound(f"{subject.replace(':', ' ')} has no such webhook delivery")
    delivery_id = matching[0].id
    svc.notifier.redeliver(delivery_id)
    refreshed = svc.webhooks.get(delivery_id) or matching[0]
    return Reply(public_delivery(refreshed, svc.webhooks.attempts(delivery_id)), 202)


@route(bp, "GET", "/v1/jobs/<job_id>/webhooks",
       summary="A job's webhook deliveries, each with every attempt",
       responses={200: DeliveryList}, errors=(403, 404))
def job_deliveries(job_id: str) -> Reply:
    owned_job(job_id)
    return _deliveries(job_subject(job_id))


@route(bp, "POST", "/v1/jobs/<job_id>/webhooks/redeliver",
       summary="Send a job's dead (or latest) delivery again, same webhook-id",
       query=RedeliverQuery, responses={202: Delivery}, errors=(403, 404))
def redeliver_job(job_id: str, query: RedeliverQuery) -> Reply:
    owned_job(job_id)
    return _redeliver(job_subject(job_id), query.delivery)


@route(bp, "GET", "/v1/batches/<batch_id>/webhooks",
       summary="A batch's webhook deliveries, each with every attempt",
       responses={200: DeliveryList}, errors=(403, 404))
def batch_deliveries(batch_id: str) -> Reply:
    owned_batch(batch_id)
    return _deliveries(batch_subject(batch_id))


@route(bp, "POST", "/v1/batches/<batch_id>/webhooks/redeliver",
       summary="Send a batch's dead (or latest) delivery again, same webhook-id",
       query=RedeliverQuery, responses={202: Delivery}, errors=(403, 404))
def redeliver_batch(batch_id: str, query: RedeliverQuery) -> Reply:
    owned_batch(batch_id)
    return _redeliver(batch_subject(batch_id), query.delivery)
