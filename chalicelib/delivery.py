"""Delivery: an encoded message to an audience, posted inline or queued for fan-out workers.

An audience of at most ``FANOUT_INLINE_MAX`` connections is posted inline by
the Lambda that received the message. A larger one, when ``FANOUT_QUEUE_URL``
is set, becomes work items (``fanout``: one per scan segment, topic page or
user) written to the queue with SendMessageBatch; ``run_work_item`` is the
worker that posts one of them. Retrying posts is botocore's job; a work item
that still fails raises, so SQS redelivers it (the same frame, the same
``messageId``) and, after ``maxReceiveCount``, moves it to the dead-letter queue.
"""
from __future__ import annotations

import itertools
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Protocol, Sequence

from .audience import Audience, Reader, slice_ids
from .broadcaster import Broadcaster, DeliveryReport
from .connections import ConnectionStore
from .fanout import WorkItem, WorkItemError, should_queue, work_items
from .logs import log_event
from .management import Management
from .settings import Settings

logger = logging.getLogger("ws.delivery")

BATCH_ENTRIES = 10  # SendMessageBatch's per-call maximum
BATCH_BYTES = 256 * 1024  # SendMessageBatch's payload maximum (all entries)
MAX_SEND_ATTEMPTS = 3


@dataclass(frozen=True)
class PushResult:
    """How many connections the audience had and what happened to each; or ``queued`` work items."""

    connections: int
    report: DeliveryReport
    queued: int = 0

    def counts(self, connections: bool = True) -> dict[str, int]:
        """What reports (and, without ``connections``, acks) show: the counts, or ``{"queued": items}``."""
        if self.queued:
            return {"queued": self.queued}
        return {**({"connections": self.connections} if connections else {}), **counts(self.report)}


NOBODY = PushResult(0, DeliveryReport())


def counts(report: DeliveryReport) -> dict[str, int]:
    return {"delivered": len(report.delivered), "gone": len(report.gone), "failed": len(report.failed)}


class FanoutItemFailed(RuntimeError):
    """Some posts of a work item failed for good: the item goes back to the queue (redelivered whole)."""

    def __init__(self, push_id: str, report: DeliveryReport) -> None:
        codes = sorted(set(report.failed.values()))
        super().__init__(f"work item of push {push_id}: {len(report.failed)} posts failed ({', '.join(codes)})")
        self.report = report


class EnqueueFailed(RuntimeError):
    """Some work items could not be written to the queue."""


def batches(bodies: Sequence[str], max_entries: int = BATCH_ENTRIES, max_bytes: int = BATCH_BYTES) -> list[list[str]]:
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


class SqsSource(Protocol):
    """Where the queue gets its SQS client (``aws.Clients``), on first send."""

    @property
    def sqs(self) -> Any: ...


class FanoutQueue:
    """The queue at ``url``; ``send`` writes bodies with as few SendMessageBatch calls as fit.

    SendMessageBatch can succeed with some entries ``Failed``, which botocore
    leaves to the caller: those are sent again a few times, then EnqueueFailed
    is raised, so a push is reported failed rather than quietly losing part of
    its audience.
    """

    def __init__(self, url: str, clients: SqsSource) -> None:
        if not url:
            raise ValueError("the fan-out queue needs a URL")
        self.url = url
        self._clients = clients

    @property
    def client(self) -> Any:
        return self._clients.sqs

    def send(self, bodies: Sequence[str]) -> int:
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


class Delivery:
    def __init__(self, settings: Settings, reader: Reader, connections: ConnectionStore, management: Management,
                 queue: FanoutQueue | None = None) -> None:
        self.settings = settings
        self.reader = reader
        self.connections = connections
        self.management = management
        self.queue = queue

    def deliver(self, audience: Audience, message: bytes, *, broadcaster: Broadcaster | None = None,
                endpoint: str | None = None) -> PushResult:
        """Post ``message`` to ``audience`` inline, or enqueue it when the audience is over the limit.

        With a queue, at most ``FANOUT_INLINE_MAX + 1`` ids are read to decide
        (the excluded sender is not counted); without one, everything is
        inline and streamed. ``broadcaster``/``endpoint``: the sender's, when a
        connection is sending (its peers share its API).
        """
        limit, exclude = self.settings.fanout_inline_max, audience.exclude
        ids = audience.ids(self.reader, first_page=limit + 1 if self.queue is not None else None)
        head: list[str] = []
        if self.queue is not None:
            seen = set(exclude)
            for connection_id in ids:
                if connection_id not in seen:
                    seen.add(connection_id)
                    head.append(connection_id)
                    if len(head) > limit:
                        break
            if should_queue(len(head), limit, queue_configured=True):
                close = getattr(ids, "close", None)
                if close is not None:
                    close()  # stops the parallel scan's threads
                return self._enqueue(audience, message, head, endpoint or self._first_endpoint(head)[0])
        targets: Iterable[str] = head if self.queue is not None else ids
        if broadcaster is None:
            found, targets = self._first_endpoint(i for i in targets if i not in exclude)
            if found is None:
                return NOBODY
            broadcaster = self.management.broadcaster(found)
        report = broadcaster.broadcast(targets, message, exclude=exclude)
        return PushResult(report.total, report)

    def _enqueue(self, audience: Audience, message: bytes, head: list[str], endpoint: str | None) -> PushResult:
        """Write the push's work items (one per scan segment, topic page or user) to the queue."""
        assert self.queue is not None
        if endpoint is None:  # none of the first ids is stored any more: nobody to reach
            return NOBODY
        slices = audience.slices(self.reader, len(head), self.settings.fanout_segment_size)
        items = work_items(str(uuid.uuid4()), endpoint, message, slices, audience.exclude)
        self.queue.send([item.encode() for item in items])
        log_event(logger, "fanout_queued", connectionId=audience.exclude[0] if audience.exclude else None,
                  audience=audience.kind, target=audience.target, items=len(items),
                  push=items[0].push_id if items else "", messageId=items[0].message_id if items else "")
        return PushResult(0, DeliveryReport(), queued=len(items))

    def run_work_item(self, body: str) -> dict[str, Any]:
        """The fan-out worker: post one work item's frame to its slice of the audience.

        410s are deleted (the broadcaster's ``on_gone``). Posts that still fail
        after botocore's adaptive retries raise FanoutItemFailed: Lambda leaves
        the message on the queue for redelivery. A body that is not a work item
        is logged and dropped: no retry could make it one.
        """
        try:
            item = WorkItem.decode(body)
        except WorkItemError as error:
            log_event(logger, "fanout_item_dropped", logging.WARNING, reason=str(error))
            return {"ok": False, "error": "bad_work_item"}
        report = self.management.worker_broadcaster(item.endpoint).broadcast(
            slice_ids(item.slice, self.reader), item.frame, exclude=item.exclude)
        log_event(logger, "fanout_item", connectionId=None, push=item.push_id, messageId=item.message_id,
                  slice=_slice_text(item), **counts(report))
        if report.failed:
            raise FanoutItemFailed(item.push_id, report)
        return {"ok": True, **counts(report)}

    def _first_endpoint(self, ids: Iterable[str]) -> tuple[str | None, Iterator[str]]:
        """The endpoint of the first stored connection among ``ids``, and ``ids`` again, whole.

        Reads only as far as that first stored record, so a streamed audience
        stays streamed: the ids read on the way are put back in front.
        """
        pending = iter(ids)
        read: list[str] = []
        endpoint = self.settings.management_url or None
        if endpoint is None:
            for connection_id in pending:
                read.append(connection_id)
                record = self.connections.get(connection_id)
                if record is not None:
                    endpoint = self.management.endpoint(record.endpoint)
                    break
        return endpoint, itertools.chain(read, pending)


def _slice_text(item: WorkItem) -> str:
    """A work item's slice for a log line: ``all 3/16``, ``topic news``, ``user <sub>``."""
    piece = item.slice
    if piece.kind == "all":
        return f"all {piece.segment}/{piece.segments}"
    return f"{piece.kind} {piece.topic or piece.user}"


__all__ = ["Delivery", "FanoutItemFailed", "FanoutQueue", "PushResult", "batches", "counts"]
