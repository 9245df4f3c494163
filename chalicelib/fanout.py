"""Fan-out beyond one Lambda: the inline/queued decision and the work items on the queue.

A push whose audience is at most ``FANOUT_INLINE_MAX`` connections is posted
inline by the Lambda that received it. A larger one is written to the fan-out
queue (``FANOUT_QUEUE_URL``) as work items, each naming a *slice* of the
audience for a worker Lambda to read and post to:

- everyone: one item per DynamoDB parallel-scan segment (``Segment`` of
  ``TotalSegments``), so no single Lambda reads the whole table;
- a topic: one item per page of the ``byTopic`` index, bounded by the keys the
  enqueuer saw (``after``: the exclusive start key, ``through``: the last
  ``pk`` of the page), so an item's size never grows with the audience;
- a user: one item, the user's connections (read through the user index).

Each item carries the encoded frame once (base64, so any frame up to API
Gateway's 128 KB fits SQS's 256 KB message whatever it contains) and the
frame's ``messageId``, the same in every item of one push and in every
redelivery of an item: delivery is at least once, and clients drop frames
whose id they have seen. ``exclude`` names the sender for "every other
connection" pushes, whichever path is taken.

Pure: no boto3. The queue client lives in ``fanout_queue``; reading slices in
``audience``; posting in ``broadcaster``.
"""
from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

VERSION = 1
DEFAULT_INLINE_MAX = 100
# Connections per scan segment a broadcast aims for: each work item is one
# Lambda invocation, and 1,000 posts take a worker about a second at 20 ms a post.
DEFAULT_SEGMENT_SIZE = 1000
MAX_SEGMENTS = 1000  # a bound on one broadcast's items (DynamoDB allows 1,000,000)

SliceKind = Literal["all", "topic", "user", "username"]


class WorkItemError(ValueError):
    """A queue message that is not a work item this version understands: never worth a retry."""


@dataclass(frozen=True)
class Slice:
    """The part of an audience one work item reads: a scan segment, a topic page, or a user."""

    kind: SliceKind
    segment: int = 0
    segments: int = 1
    topic: str = ""
    after: Mapping[str, Any] | None = None  # DynamoDB ExclusiveStartKey of the topic page
    through: str | None = None  # the page's last ``pk`` (None: to the end of the topic)
    user: str = ""  # sub (kind user) or username (kind username)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "all":
            return {"kind": "all", "segment": self.segment, "segments": self.segments}
        if self.kind == "topic":
            return {"kind": "topic", "topic": self.topic, "after": dict(self.after) if self.after else None,
                    "through": self.through}
        return {"kind": self.kind, "user": self.user}

    @classmethod
    def from_dict(cls, value: object) -> Slice:
        if not isinstance(value, Mapping):
            raise WorkItemError("slice must be an object")
        kind = value.get("kind")
        if kind == "all":
            segment, segments = value.get("segment"), value.get("segments")
            if not (isinstance(segment, int) and isinstance(segments, int) and 0 <= segment < segments):
                raise WorkItemError("bad scan segment")
            return cls("all", segment=segment, segments=segments)
        if kind == "topic":
            topic, after, through = value.get("topic"), value.get("after"), value.get("through")
            if not isinstance(topic, str) or not topic or not (after is None or isinstance(after, Mapping)) \
                    or not (through is None or isinstance(through, str)):
                raise WorkItemError("bad topic page")
            return cls("topic", topic=topic, after=after, through=through)
        if kind in ("user", "username"):
            user = value.get("user")
            if not isinstance(user, str) or not user:
                raise WorkItemError("bad user")
            return cls(kind, user=user)
        raise WorkItemError(f"unknown slice kind {kind!r}")


@dataclass(frozen=True)
class WorkItem:
    """One queue message: post ``frame`` to every connection of ``slice`` except ``exclude``."""

    push_id: str
    message_id: str
    endpoint: str
    frame: bytes
    slice: Slice
    exclude: tuple[str, ...] = field(default=())

    def encode(self) -> str:
        """The SQS message body (compact JSON; the frame base64, byte for byte)."""
        return json.dumps({
            "v": VERSION, "push": self.push_id, "messageId": self.message_id, "endpoint": self.endpoint,
            "exclude": list(self.exclude), "slice": self.slice.to_dict(),
            "frame": base64.b64encode(self.frame).decode("ascii"),
        }, separators=(",", ":"))

    @classmethod
    def decode(cls, body: str) -> WorkItem:
        try:
            value = json.loads(body)
        except ValueError:
            raise WorkItemError("body is not JSON") from None
        if not isinstance(value, dict) or value.get("v") != VERSION:
            raise WorkItemError("not a version-1 work item")
        push_id, message_id, endpoint = value.get("push"), value.get("messageId"), value.get("endpoint")
        exclude, frame = value.get("exclude"), value.get("frame")
        if not all(isinstance(v, str) and v for v in (push_id, message_id, endpoint, frame)):
            raise WorkItemError("push, messageId, endpoint and frame must be non-empty strings")
        if not isinstance(exclude, list) or not all(isinstance(e, str) for e in exclude):
            raise WorkItemError("exclude must be a list of connection ids")
        try:
            data = base64.b64decode(frame, validate=True)
        except ValueError:
            raise WorkItemError("frame is not base64") from None
        return cls(push_id=push_id, message_id=message_id, endpoint=endpoint, frame=data,
                   slice=Slice.from_dict(value.get("slice")), exclude=tuple(exclude))


def message_id_of(frame: bytes) -> str:
    """The ``messageId`` inside an encoded frame (``protocol.outgoing`` puts one in every frame)."""
    value = json.loads(frame)
    message_id = value.get("messageId") if isinstance(value, dict) else None
    if not isinstance(message_id, str) or not message_id:
        raise ValueError("the frame carries no messageId")
    return message_id


def should_queue(audience_size: int, inline_max: int, queue_configured: bool) -> bool:
    """Queued only when a queue exists and the audience (the sender excluded) is over ``inline_max``."""
    return queue_configured and audience_size > inline_max


def segment_count(approximate_items: int, at_least: int, segment_size: int = DEFAULT_SEGMENT_SIZE,
                  max_segments: int = MAX_SEGMENTS) -> int:
    """Scan segments for a broadcast: about ``segment_size`` connections each.

    ``approximate_items`` is DynamoDB's ``ItemCount`` (refreshed about every six
    hours on AWS, so it can be stale); ``at_least`` is what the caller has
    already seen. A wrong estimate only changes how the work is split, never
    who is reached: the segments together always cover the whole table.
    """
    if segment_size < 1 or max_segments < 1:
        raise ValueError("segment_size and max_segments must be positive")
    estimate = max(approximate_items, at_least, 1)
    return max(1, min(max_segments, math.ceil(estimate / segment_size)))


def work_items(push_id: str, endpoint: str, frame: bytes, slices: list[Slice],
               exclude: tuple[str, ...] = ()) -> list[WorkItem]:
    """The items of one push: the same frame and ``messageId`` in every one."""
    message_id = message_id_of(frame)
    return [WorkItem(push_id, message_id, endpoint, frame, s, exclude) for s in slices]


__all__ = ["WorkItem", "Slice", "WorkItemError", "should_queue", "segment_count", "work_items", "message_id_of",
           "DEFAULT_INLINE_MAX"]
