"""Writing work items to the fan-out queue: SendMessageBatch, 10 entries and 256 KB per call.

The SQS client is created lazily (``aws.sqs_client``) or injected, so
importing this module never imports boto3. botocore retries a throttled or
failed call; SendMessageBatch can also succeed with some entries ``Failed``,
which botocore leaves to the caller: those are sent again (a few times, then
an error is raised, so the caller reports the push as failed rather than
quietly dropping part of the audience).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

logger = logging.getLogger("ws.fanout")

BATCH_ENTRIES = 10  # SendMessageBatch's per-call maximum
BATCH_BYTES = 256 * 1024  # SendMessageBatch's payload maximum (all entries)
MAX_SEND_ATTEMPTS = 3


class EnqueueFailed(RuntimeError):
    """Some work items could not be written to the queue."""


def batches(bodies: Sequence[str], max_entries: int = BATCH_ENTRIES,
            max_bytes: int = BATCH_BYTES) -> list[list[str]]:
    """``bodies`` grouped for SendMessageBatch: at most ``max_entries`` and ``max_bytes`` each."""
    groups: list[list[str]] = []
    current: list[str] = []
    size = 0
    for body in bodies:
        length = len(body.encode("utf-8"))
        if length > max_bytes:
            raise ValueError(f"a work item of {length} bytes is over SQS's {max_bytes}")
        if current and (len(current) == max_entries or size + length > max_bytes):
            groups.append(current)
            current, size = [], 0
        current.append(body)
        size += length
    if current:
        groups.append(current)
    return groups


class FanoutQueue:
    """The queue at ``url``; ``send`` writes bodies with as few SendMessageBatch calls as fit."""

    def __init__(self, url: str, client: Any | None = None,
                 client_factory: Callable[[], Any] | None = None) -> None:
        if not url:
            raise ValueError("the fan-out queue needs a URL")
        self.url = url
        self._client = client
        self._client_factory = client_factory

    @property
    def client(self) -> Any:
        if self._client is None:
            if self._client_factory is not None:
                self._client = self._client_factory()
            else:
                from .aws import sqs_client

                self._client = sqs_client()
        return self._client

    def send(self, bodies: Sequence[str]) -> int:
        """Write every body; returns how many. Raises EnqueueFailed if some stay unsent."""
        sent = 0
        for group in batches(bodies):
            pending = {str(i): body for i, body in enumerate(group)}
            for _ in range(MAX_SEND_ATTEMPTS):
                answer = self.client.send_message_batch(
                    QueueUrl=self.url, Entries=[{"Id": key, "MessageBody": body} for key, body in pending.items()])
                for entry in answer.get("Successful") or []:
                    if pending.pop(str(entry.get("Id")), None) is not None:
                        sent += 1
                failed = answer.get("Failed") or []
                if any(entry.get("SenderFault") for entry in failed):
                    codes = sorted({str(entry.get("Code")) for entry in failed})
                    raise EnqueueFailed(f"SQS refused {len(failed)} work items: {codes}")
                if not pending:
                    break
            if pending:
                raise EnqueueFailed(f"{len(pending)} work items unsent after {MAX_SEND_ATTEMPTS} attempts")
        return sent
