"""Sweeps: start one (a parameter space, a strategy, a budget, an objective), read its
ranked trials, list them, cancel one.

The API validates the spec down to its last range, writes the record and sends one step
message; the worker's controller does the rest. A bad spec is a 400 naming its problem.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from dataclasses import replace
from typing import Annotated, Literal

from flask import Blueprint
from pydantic import BaseModel, ConfigDict, Field

from algohost.api.auth import current_owner, require_owner
from algohost.api.context import services
from algohost.api.jobs import CANCELABLE
from algohost.api.routing import Reply, route
from algohost.api.schemas import JsonValue, TimeoutSeconds, check_max_timeout
from algohost.clock import now_iso
from algohost.errors import ServiceUnavailable, SweepNotCancelable, SweepNotFound
from algohost.names import REF_FORMS, REF_PATTERN, AlgorithmRef
from algohost.public import Sweep, SweepList, public_sweep
from algohost.store.jobs import JobStatus
from algohost.store.sweeps import SweepRecord, SweepStatus, Trial, TrialStatus
from algohost.sweepspace import (
    Direction,
    Objective,
    Param,
    Pruning,
    Strategy,
    SweepSpec,
    resolve_spec,
)

log = logging.getLogger(__name__)
bp = Blueprint("sweeps", __name__)

PARAM_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
Number = Annotated[float, Field(allow_inf_nan=False)]
ChoiceValue = str | int | float | bool | None
# Bounds a sampler can draw between and a JSON reader can take back exactly: integers a
# double holds, and floats whose span stays finite.
MAX_INT = 2**53
MAX_FLOAT = 1e100


class IntRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["int"]
    low: int = Field(ge=-MAX_INT, le=MAX_INT)
    high: int = Field(ge=-MAX_INT, le=MAX_INT)
    step: int | None = Field(default=None, ge=1, description="Default 1")
    log: bool = Field(default=False, description="Sample on a log scale (low >= 1, no step)")


class FloatRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["float"]
    low: Number = Field(ge=-MAX_FLOAT, le=MAX_FLOAT)
    high: Number = Field(ge=-MAX_FLOAT, le=MAX_FLOAT)
    step: Number | None = Field(default=None, gt=0,
                                description="Sample on this grid; a grid sweep needs it")
    log: bool = Field(default=False, description="Sample on a log scale (low > 0, no step)")


class Choices(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["choice"]
    values: list[Annotated[ChoiceValue, Field(union_mode="left_to_right")]] = Field(
        min_length=1, max_length=1000, description="Strings, numbers, booleans or null")


ParamSpec = Annotated[IntRange | FloatRange | Choices, Field(discriminator="type")]


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trials: int | None = Field(default=None, ge=1,
                               description="How many trials at most; default: a grid's size, "
                                           "else 20")
    parallelism: int = Field(default=1, ge=1, le=64, description="Trials in flight at once")


class ObjectiveSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=200, pattern=r"^[^.]+(\.[^.]+)*$",
                     description="A key of the output holding a number; dots reach into "
                                 "nested objects (metrics.f1)")
    direction: Direction = Direction.MAXIMIZE


class PruningSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patience: int = Field(ge=1, le=10_000, description="Stop after this many finished trials "
                                                       "in a row without a better objective")
    min_delta: Number = Field(default=0.0, ge=0,
                              description="How much better counts as better")


class SweepCreate(BaseModel):
    """A hyperparameter sweep: each trial is one job of the algorithm with its input set
    to `input` plus the trial's parameters."""

    model_config = ConfigDict(extra="forbid")

    algorithm: str = Field(pattern=REF_PATTERN, description=REF_FORMS,
                           examples=["alice/train@latest"])
    space: dict[Annotated[str, Field(pattern=PARAM_NAME)], ParamSpec] = Field(
        min_length=1, max_length=32, description="Parameter name -> its range or choices",
        json_schema_extra={"propertyNames": {"pattern": PARAM_NAME},
                           "additionalProperties": False})
    strategy: Strategy = Field(description="grid: every point once; random: seeded draws; "
                                           "tpe: Optuna's Tree-structured Parzen Estimator")
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1,
                             description="Makes random and tpe repeatable; one is chosen "
                                         "and shown when none is given")
    budget: Budget = Field(default_factory=Budget)
    objective: ObjectiveSpec
    pruning: PruningSpec | None = Field(default=None, description="Stop early when trials "
                                                                  "stop improving")
    input: dict[str, JsonValue] = Field(default_factory=dict,
                                        description="Fixed inputs of every trial; the "
                                                    "trial's parameters are set over them")
    timeout_s: TimeoutSeconds | None = Field(default=None, description="Each trial's limit")

    def to_spec(self, max_trials: int) -> SweepSpec:
        space = {name: Param(type=p.type, values=tuple(p.values)) if isinstance(p, Choices)
                 else Param(type=p.type, low=p.low, high=p.high, step=p.step, log=p.log)
                 for name, p in self.space.items()}
        seed = self.seed if self.seed is not None else secrets.randbelow(2**32)
        spec = SweepSpec(
            space=space, strategy=self.strategy,
            objective=Objective(self.objective.key, self.objective.direction),
            trials=self.budget.trials or 0, parallelism=self.budget.parallelism, seed=seed,
            pruning=Pruning(self.pruning.patience, self.pruning.min_delta)
            if self.pruning else None,
            input=dict(self.input), timeout_s=self.timeout_s)
        return resolve_spec(spec, max_trials)


class SweepListQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=20, ge=1, le=200)


def owned_sweep(sweep_id: str) -> SweepRecord:
    record = services().sweeps.get(sweep_id)
    if record is None:
        raise SweepNotFound(f"sweep {sweep_id} does not exist (or has expired)")
    require_owner(record.owner, f"sweep {sweep_id}")
    return record


@route(bp, "POST", "/v1/sweeps", summary="Start a hyperparameter sweep of an algorithm",
       body=SweepCreate, responses={202: Sweep},
       response_headers={"Location": "The sweep's URL"}, errors=(402, 403, 404, 409, 503))
def create_sweep(body: SweepCreate) -> Reply:
    svc = services()
    check_max_timeout(body.timeout_s, svc.settings.max_timeout_s, "request body")
    spec = body.to_spec(svc.settings.max_sweep_trials)
    ref = AlgorithmRef.parse(body.algorithm)
    require_owner(ref.owner, f"algorithm {ref.base}")
    build = svc.registry.resolve(ref.owner, ref.name, ref.version)
    if svc.budget is not None:  # its trials would each be refused: say so now
        svc.budget.check(ref.owner)
    record = SweepRecord(id="s_" + uuid.uuid4().hex[:24], owner=ref.owner,
                         status=SweepStatus.RUNNING, spec=spec, requested=body.algorithm,
                         algorithm=build.ref, build_id=build.id, created_at=now_iso())
    svc.sweeps.create(record, time.time())
    try:
        svc.dispatcher.enqueue_sweep(record.id)
    except Exception as exc:  # the broker's errors vary by transport
        log.exception("could not enqueue sweep %s", record.id)
        svc.sweeps.finish(record.id, SweepStatus.FAILED, reason="enqueue_failed",
                          finished_at=now_iso())
        raise ServiceUnavailable("the job queue is unreachable; the sweep was not started",
                                 sweep_id=record.id) from exc
    return Reply(public_sweep(record, []), 202, {"Location": f"/v1/sweeps/{record.id}"})


@route(bp, "GET", "/v1/sweeps/<sweep_id>",
       summary="A sweep: progress and the ranked table of its trials",
       responses={200: Sweep}, errors=(403, 404))
def get_sweep(sweep_id: str) -> Reply:
    record = owned_sweep(sweep_id)
    return Reply(public_sweep(record, services().sweeps.trials(sweep_id)))


@route(bp, "GET", "/v1/sweeps", summary="Your sweeps, newest first (without their trials)",
       query=SweepListQuery, responses={200: SweepList})
def list_sweeps(query: SweepListQuery) -> Reply:
    records = services().sweeps.list_for_owner(current_owner(), query.limit)
    return Reply(SweepList(sweeps=[public_sweep(record, None) for record in records]))


@route(bp, "POST", "/v1/sweeps/<sweep_id>/cancel",
       summary="Cancel a running sweep and its trials in flight; finished trials are kept",
       responses={200: Sweep}, errors=(403, 404, 409))
def cancel_sweep(sweep_id: str) -> Reply:
    svc = services()
    record = owned_sweep(sweep_id)
    if not svc.sweeps.finish(sweep_id, SweepStatus.CANCELED, reason="canceled",
                             finished_at=now_iso()):
        status = (svc.sweeps.get(sweep_id) or record).status
        raise SweepNotCancelable(f"sweep {sweep_id} is already {status}", status=status.value)
    for trial in svc.sweeps.trials(sweep_id):
        if trial.status is TrialStatus.RUNNING:
            _cancel_trial(record, trial)
    return Reply(public_sweep(svc.sweeps.get(sweep_id) or record, svc.sweeps.trials(sweep_id)))


def _cancel_trial(record: SweepRecord, trial: Trial) -> None:
    """Cancel the trial's job if it is still unfinished, and record how the trial ended."""
    svc = services()
    if svc.jobs.transition(trial.job_id, JobStatus.CANCELED, CANCELABLE,
                           finished_at=now_iso(), reason="canceled"):
        try:
            svc.fair.finished(record.owner, trial.job_id)
        except Exception:  # the lease reaper's repair gives the slot back later
            log.exception("releasing the slot of job %s failed", trial.job_id)
    job = svc.jobs.get(trial.job_id)
    if job is None:  # its job was never written: nothing ran
        svc.sweeps.settle_trial(record.id, replace(trial, status=TrialStatus.FAILED,
                                                   reason="canceled", finished_at=now_iso()))
    elif job.status.terminal:
        svc.sweeps.settle_trial(record.id, trial.settled_by(job, record.spec.objective))
