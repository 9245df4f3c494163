"""API Gateway WebSocket service quotas, made configurable so tests can shrink them.

The defaults are AWS's: a 128 KB message (both directions), a 10-minute idle
timeout and a 2-hour maximum connection duration. Code that only behaves
correctly because a limit was never hit locally is the bug this module is
meant to flush out, so the defaults are on unless a caller lowers them.

``post_latency`` is not a quota but a knob for benchmarks: seconds added to
every ``@connections`` POST (awaited, so the loop keeps serving), to stand in
for the ~20 ms a real management API round trip costs. Off by default.

The rest keep one bad client from slowing anybody else (a client that stops
reading, one that floods, one that sends oversize headers):

``write_timeout`` (10 s): how long one frame may wait to be written to a
client that is not reading (the socket buffers are full). Then the connection
is dropped, as API Gateway drops a connection whose client stops taking data:
the socket is aborted (the client sees 1006), ``$disconnect`` runs with 1006,
and later ``@connections`` calls for it answer 410 ``GoneException``. API
Gateway does not publish its own value.

``max_outbox_bytes`` (1 MiB): frames POSTed to a connection and not yet
written. A POST never waits for the client: it queues the frame and answers
200. A POST that does not fit answers 429 ``LimitExceededException`` and the
frame is not sent: that is what API Gateway's ``PostToConnection`` documents
for "the WebSocket client side buffer is full", and it leaves the decision to
the app (botocore's standard retry mode retries a 429 with backoff), while a
client that is only briefly slow keeps its connection. A client that stays
stalled is dropped by ``write_timeout``. An empty queue always takes one
frame, so a 128 KB message can always be posted.

``max_inbox_messages`` / ``max_inbox_bytes`` (1,000 messages / 8 MiB):
messages received on one connection and not yet handed to a handler. The
gateway runs a connection's messages one at a time, in order; a client
sending faster than its handler builds this backlog. Over either bound the
connection is closed with 1013 (Try Again Later) and ``$disconnect`` runs.
API Gateway has no such queue (each message is its own Lambda invocation,
throttled account-wide); closing rather than back-pressuring (not reading) is
deliberate: a gateway that stops reading cannot see the client's close frame
behind the backlog, and would go on running frames of a client that left.

``max_header_bytes`` (10,240): the upgrade request's header names and values
together, and any single header of any request (aiohttp's parser limit, 8,190
by default, is raised to it). Over it the answer is 431 with a fixed
``{"message": "Request Header Fields Too Large"}`` body that echoes nothing
of the request (headers carry tokens; see ``httpserver``). 10,240 bytes is
API Gateway's documented limit on the combined size of header values (REST
and HTTP APIs; the WebSocket quota table lists none).
"""
from __future__ import annotations

from dataclasses import dataclass

MAX_MESSAGE_BYTES = 128 * 1024
IDLE_TIMEOUT_SECONDS = 10 * 60.0
MAX_LIFETIME_SECONDS = 2 * 60 * 60.0
WRITE_TIMEOUT_SECONDS = 10.0
MAX_OUTBOX_BYTES = 1024 * 1024
MAX_INBOX_MESSAGES = 1000
MAX_INBOX_BYTES = 8 * 1024 * 1024
MAX_HEADER_BYTES = 10240


class LimitsError(ValueError):
    """A limit was configured with a value the gateway cannot honour."""


@dataclass(frozen=True)
class Limits:
    """Per-gateway quotas; every connection is subject to all of them."""

    max_message_bytes: int = MAX_MESSAGE_BYTES
    idle_timeout: float = IDLE_TIMEOUT_SECONDS
    max_lifetime: float = MAX_LIFETIME_SECONDS
    post_latency: float = 0.0
    write_timeout: float = WRITE_TIMEOUT_SECONDS
    max_outbox_bytes: int = MAX_OUTBOX_BYTES
    max_inbox_messages: int = MAX_INBOX_MESSAGES
    max_inbox_bytes: int = MAX_INBOX_BYTES
    max_header_bytes: int = MAX_HEADER_BYTES

    def __post_init__(self) -> None:
        if self.max_message_bytes <= 0:
            raise LimitsError(f"max_message_bytes must be > 0, got {self.max_message_bytes}")
        if self.idle_timeout <= 0:
            raise LimitsError(f"idle_timeout must be > 0 seconds, got {self.idle_timeout}")
        if self.max_lifetime <= 0:
            raise LimitsError(f"max_lifetime must be > 0 seconds, got {self.max_lifetime}")
        if not 0 <= self.post_latency <= 60:
            raise LimitsError(f"post_latency must be 0..60 seconds, got {self.post_latency}")
        if self.write_timeout <= 0:
            raise LimitsError(f"write_timeout must be > 0 seconds, got {self.write_timeout}")
        for name in ("max_outbox_bytes", "max_inbox_messages", "max_inbox_bytes"):
            if getattr(self, name) <= 0:
                raise LimitsError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_header_bytes < 1024:
            raise LimitsError(f"max_header_bytes must be >= 1024, got {self.max_header_bytes}")
