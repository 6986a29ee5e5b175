"""Webhooks: signed, retried, recorded deliveries of job and batch events to their callers.

Delivery happens on its own queue, never inside a job's task; every attempt is kept.
"""

from typing import Literal

Event = Literal["started", "completed"]
EVENTS: tuple[Event, ...] = ("started", "completed")
