"""The catalogue's queries and replies: what a listing or a search shows of an algorithm.

An entry is read from the registry each time (the algorithm's visibility, its versions and
the latest version's manifest); nothing here decides who may see it (api/access.py does).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from algohost.api.schemas import AlgorithmSummary
from algohost.store.registry import BuildRecord, Registry


class AlgorithmQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    visibility: Literal["private", "public"] | None = Field(
        default=None, description="public: every public algorithm, whoever owns it; "
                                  "private: your private ones; unset: all of yours")
    q: str | None = Field(default=None, min_length=1, max_length=100,
                          description="Only algorithms whose name, description or parameters "
                                      "contain this word (any case)")


class VisibilityChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    visibility: Literal["private", "public"]


def described_parameters(build: BuildRecord | None) -> dict[str, str]:
    """Input fields and their meanings: a notebook's inspected parameters (their comments),
    then what the manifest's [parameters] says, which wins."""
    if build is None:
        return {}
    found = {param.name: param.help for param in build.parameters or []}
    return {**found, **build.manifest.parameters}


def catalogue_entry(registry: Registry, owner: str, name: str) -> AlgorithmSummary:
    builds = registry.versions(owner, name)
    latest = next((b for b in builds if b.listed), None)
    shown = latest or (builds[0] if builds else None)
    manifest = shown.manifest if shown is not None else None
    visibility = registry.visibility(owner, name)
    return AlgorithmSummary(
        owner=owner, name=name, latest=latest.version if latest else None,
        versions=[b.version for b in builds],
        visibility="public" if visibility == "public" else "private",
        description=manifest.description if manifest else "",
        parameters=described_parameters(shown),
        royalty_micros=latest.royalty_micros if latest else 0)
