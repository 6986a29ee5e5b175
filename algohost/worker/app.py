"""The workers' Celery application: `celery -A algohost.worker.app:celery worker -P threads`.

Its broker settings, queues and routing live in `algohost.dispatch`, which the API shares;
the threads pool fits because the work happens in containers and the worker only waits.
"""

from __future__ import annotations

from algohost.config import load_settings
from algohost.dispatch import make_celery

celery = make_celery(load_settings())
