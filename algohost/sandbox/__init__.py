"""Running algorithm code in isolation: the `Sandbox` seam, its Docker and stub backends,
the warm pool and the image builder. Never touches Redis or Vault.
"""

from algohost.sandbox.base import (
    CallOutcome,
    ContainerSpec,
    ExitReason,
    Limits,
    Sandbox,
    Session,
)

__all__ = ["CallOutcome", "ContainerSpec", "ExitReason", "Limits", "Sandbox", "Session"]
