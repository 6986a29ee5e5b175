"""Who may see an algorithm: its owner always, every key when it is public.

To any other owner a private algorithm does not exist: the answer is the same 404, with
the same message, as for a name never published, so no route tells them otherwise.
"""

from __future__ import annotations

from algohost.api.auth import current_owner
from algohost.api.context import services
from algohost.errors import AlgorithmNotFound, Forbidden


def _missing(owner: str, name: str) -> AlgorithmNotFound:
    return AlgorithmNotFound(f"algorithm {owner}/{name} does not exist")


def is_owner(owner: str) -> bool:
    return owner == current_owner()


def readable_algorithm(owner: str, name: str) -> None:
    """The caller may read and call `owner/name`: it is theirs, or public."""
    if not is_owner(owner) and not services().registry.is_public(owner, name):
        raise _missing(owner, name)


def owned_algorithm(owner: str, name: str) -> None:
    """The caller may change `owner/name`: 404 to others for a private one, 403 for a
    public one (whose existence is no secret)."""
    if is_owner(owner):
        return
    if services().registry.is_public(owner, name):
        raise Forbidden(f"algorithm {owner}/{name} belongs to another owner")
    raise _missing(owner, name)
