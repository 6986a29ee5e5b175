"""`GET /v1/limits`: what the caller may use, and how much of it is in use now.

Operator caps on manifests and the owner's own limits (defaults, or an operator's
override); read-only here: only operators change limits (`algohost limits set`).
"""

from __future__ import annotations

from flask import Blueprint
from pydantic import BaseModel, Field

from algohost.api.auth import current_owner
from algohost.api.context import services
from algohost.api.routing import Reply, route

bp = Blueprint("limits", __name__)


class ManifestCaps(BaseModel):
    """The most a manifest's [resources] may ask for; over it, a publish is refused."""

    max_memory_mb: int
    max_cpus: float
    max_timeout_s: int


class OwnerLimitsView(BaseModel):
    max_running: int = Field(description="Jobs in the calls queue or running at once; more "
                                         "wait in the owner's own backlog (fair share)")
    max_queued: int = Field(description="Accepted, unfinished jobs; over it a submit is 429")
    submits_per_s: float = Field(description="Sustained submits per second (429 with "
                                             "Retry-After past it)")
    submit_burst: int = Field(description="Submits allowed at once above that rate")
    max_builds: int = Field(description="Stored builds (sources and images)")
    compute_s_per_day: float = Field(description="Compute-seconds (calls' run time) a UTC "
                                                 "day; once spent, calls are 402 "
                                                 "budget_exhausted. 0: no budget")


class LimitsUsage(BaseModel):
    running: int = Field(description="Jobs holding a slot (sent to a worker or running)")
    waiting: int = Field(description="Jobs in the backlog, waiting for a slot")
    builds: int = Field(description="Stored builds")
    compute_s_today: float = Field(default=0.0, description="Compute-seconds spent today (UTC)")


class Limits(BaseModel):
    owner: str
    manifest: ManifestCaps
    limits: OwnerLimitsView
    usage: LimitsUsage


@route(bp, "GET", "/v1/limits", summary="Your limits and how much of them is in use",
       responses={200: Limits})
def get_limits() -> Reply:
    svc = services()
    owner = current_owner()
    settings = svc.settings
    running, waiting = svc.fair.usage(owner)
    return Reply(Limits(
        owner=owner,
        manifest=ManifestCaps(max_memory_mb=settings.max_memory_mb, max_cpus=settings.max_cpus,
                              max_timeout_s=settings.max_timeout_s),
        limits=OwnerLimitsView(**svc.limits.for_owner(owner).to_dict()),
        usage=LimitsUsage(running=running, waiting=waiting,
                          builds=svc.registry.build_count(owner),
                          compute_s_today=svc.budget.spent_s(owner) if svc.budget else 0.0)))
