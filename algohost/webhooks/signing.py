"""Standard Webhooks signatures: `webhook-id`, `webhook-timestamp`, `webhook-signature`.

The `standardwebhooks` library computes the HMAC, so receivers can verify with any
Standard Webhooks verifier. A signing key never appears in a log or an error.
"""

from __future__ import annotations

from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook


def signature_headers(secret: str, message_id: str, timestamp: float, body: str) -> dict[str, str]:
    """The three headers for one attempt of a message; the id stays the same across retries."""
    moment = datetime.fromtimestamp(int(timestamp), tz=UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": Webhook(secret).sign(message_id, moment, body),
    }
