"""The console calls the API's own views in-process, as the signed-in owner.

Each view checks ownership and validates as it does for an HTTP caller; the console
only renders what it answers, so no rule of the API is written twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from algohost.api.routing import Reply, Streamed

M = TypeVar("M", bound=BaseModel)


def replied(view: Callable[..., Reply | Streamed], kind: type[M], **arguments: Any
            ) -> tuple[M, Reply]:
    """What `view` answers the signed-in owner: the model its route declares, and the reply
    (its status and headers)."""
    reply = view(**arguments)
    if not isinstance(reply, Reply) or not isinstance(reply.model, kind):
        raise TypeError(f"{view.__name__} did not answer with a {kind.__name__}")
    return reply.model, reply


def answer(view: Callable[..., Reply | Streamed], kind: type[M], **arguments: Any) -> M:
    return replied(view, kind, **arguments)[0]


def stream(view: Callable[..., Reply | Streamed], **arguments: Any) -> Streamed:
    reply = view(**arguments)
    if not isinstance(reply, Streamed):
        raise TypeError(f"{view.__name__} did not answer with bytes")
    return reply
