"""The one step between what an algorithm produced and the store: every output, error, log
and failure message a job or a batch input records passes through a `Redactor`.

Logs are masked whole and only then cut to their tail, so a secret that straddles the cut
cannot leave its end behind. A Redactor never logs or stores the values it hides.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from algohost.errors import AlgohostError
from algohost.sandbox.runner.protocol import CUT_MARK
from algohost.secrets.redaction import (
    longest_form,
    redact,
    redact_text,
    redact_text_after,
)
from algohost.store.jobs import ErrorInfo


class Redactor:
    """Masks the secret values of one run; it learns them once they are fetched."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = [s for s in secrets if s]

    def hide(self, secrets: Iterable[str]) -> None:
        self.secrets.extend(s for s in secrets if s)

    def output(self, value: Any) -> Any:
        return redact(value, self.secrets)

    def error(self, error: Any, limit: int | None = None) -> ErrorInfo | None:
        """An error as {type, message, traceback} of strings, masked then cut to `limit`,
        whatever shape the container sent (a forged frame may carry anything)."""
        if error is None:
            return None
        if not isinstance(error, dict):
            error = {"type": "Error", "message": str(error)}
        traceback = error.get("traceback")
        info: ErrorInfo = {
            "type": self._cut_text(str(error.get("type") or "Error"), 200),
            "message": self._cut_text(str(error.get("message") or ""), limit),
            "traceback": None if traceback is None else self._cut_text(str(traceback), limit)}
        cell = error.get("cell")
        if isinstance(cell, dict) and isinstance(cell.get("index"), int):
            # A cell's source may hold a secret as much as its traceback may.
            info["cell"] = {"index": cell["index"],
                            "source": self._cut_text(str(cell.get("source") or ""), 2000)}
        return info

    def _cut_text(self, text: str, limit: int | None) -> str:
        # The runner marks a text it cut to its tail; the secret split there is dropped.
        if text.startswith(CUT_MARK):
            skip = max(longest_form(self.secrets) - 1, 0)
            masked = CUT_MARK + redact_text_after(text[len(CUT_MARK):], self.secrets, skip)
        else:
            masked = redact_text(text, self.secrets)
        return masked if limit is None or len(masked) <= limit else CUT_MARK + masked[-limit:]

    def logs(self, text: str, limit: int | None = None, dropped: int = 0) -> str:
        """Logs masked, then cut to their last `limit` characters. `dropped`: how much the
        container already cut from their start, where a secret may have been split."""
        text = str(text or "")
        if dropped > 0:
            skip = max(longest_form(self.secrets) - 1, 0)
            masked = redact_text_after(text, self.secrets, skip)
            dropped += min(skip, len(text))
        else:
            masked = redact_text(text, self.secrets)
        if limit is not None and len(masked) > limit:
            dropped += len(masked) - limit
            masked = masked[-limit:]
        return f"[algohost: {dropped} earlier bytes of logs dropped]\n{masked}" if dropped \
            else masked

    def failure(self, exc: BaseException) -> ErrorInfo:
        """The error recorded for an exception met while running the algorithm: its message
        may quote what the algorithm sent (an import error, a bad frame)."""
        message = exc.message if isinstance(exc, AlgohostError) else str(exc)
        return {"type": type(exc).__name__, "message": redact_text(message, self.secrets),
                "traceback": None}

    def log_exception(self, log: logging.Logger, message: str, *args: Any,
                      exc: BaseException) -> None:
        """Log a failure in the worker; a traceback could quote a secret, so only runs
        without secrets log one."""
        log.error(message + ": %s", *args, redact_text(repr(exc), self.secrets),
                  exc_info=exc if not self.secrets else None)
