"""API Gateway WebSocket service quotas, made configurable so tests can shrink them.

The defaults are AWS's: a 128 KB message (both directions), a 10-minute idle
timeout and a 2-hour maximum connection duration. Code that only behaves
correctly because a limit was never hit locally is the bug this module is
meant to flush out, so the defaults are on unless a caller lowers them.

``post_latency`` is not a quota but a knob for benchmarks: seconds added to
every ``@connections`` POST (awaited, so the loop keeps serving), to stand in
for the ~20 ms a real management API round trip costs. Off by default.
"""
from __future__ import annotations

from dataclasses import dataclass

MAX_MESSAGE_BYTES = 128 * 1024
IDLE_TIMEOUT_SECONDS = 10 * 60.0
MAX_LIFETIME_SECONDS = 2 * 60 * 60.0


class LimitsError(ValueError):
    """A limit was configured with a value the gateway cannot honour."""


@dataclass(frozen=True)
class Limits:
    """Per-gateway quotas; every connection is subject to all three."""

    max_message_bytes: int = MAX_MESSAGE_BYTES
    idle_timeout: float = IDLE_TIMEOUT_SECONDS
    max_lifetime: float = MAX_LIFETIME_SECONDS
    post_latency: float = 0.0

    def __post_init__(self) -> None:
        if self.max_message_bytes <= 0:
            raise LimitsError(f"max_message_bytes must be > 0, got {self.max_message_bytes}")
        if self.idle_timeout <= 0:
            raise LimitsError(f"idle_timeout must be > 0 seconds, got {self.idle_timeout}")
        if self.max_lifetime <= 0:
            raise LimitsError(f"max_lifetime must be > 0 seconds, got {self.max_lifetime}")
        if not 0 <= self.post_latency <= 60:
            raise LimitsError(f"post_latency must be 0..60 seconds, got {self.post_latency}")
