"""algohost: publish versioned algorithms and call them through an HTTP API.

A thin Flask API enqueues calls; Celery workers run them in sandboxed Docker
containers; results and timing metrics are stored in Redis.
"""

__version__ = "0.1.0"
