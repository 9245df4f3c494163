"""Ordered history of a topic: per-topic sequence numbers and the messages kept for a rule's retention.

A rule with ``history_seconds`` makes its topics keep history. Every message
published to one (a user's ``publish`` or a back-end's push) gets the topic's
next sequence number from one atomic ``UpdateItem`` (``ADD``: two publishers
never share one) and is stored as the exact frame that was delivered (its
``messageId`` too) with a TTL of the retention: two writes. A replay is one
Query on the topic's partition: the messages after ``since`` in order, then the
counter item, which sorts after them (``SEQ`` > ``MSG#...``). A number whose
message was never stored (a failure between the two writes) is a hole the
replay reports as not resumed, never papers over.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .protocol import outgoing

if TYPE_CHECKING:
    from .table import Table

HISTORY_PREFIX = "HIST#"
COUNTER_SK = "SEQ"
MESSAGE_PREFIX = "MSG#"
SEQ_DIGITS = 20  # zero-padded: the sort key orders numerically
COUNTER_TTL_SECONDS = 30 * 86_400  # the counter outlives any retention: numbers do not restart under a client


def _key(topic: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": HISTORY_PREFIX + topic}, "sk": {"S": sk}}


def _message_sk(seq: int) -> str:
    return f"{MESSAGE_PREFIX}{seq:0{SEQ_DIGITS}d}"


@dataclass(frozen=True)
class Replay:
    """What a topic holds after ``since``: the stored frames in order (``seqs`` theirs), the latest number."""

    since: int
    frames: list[bytes]
    seqs: list[int]
    latest: int  # 0 when not read (over the cap)
    more: bool  # more than the limit: the client must reload from its own source

    @property
    def complete(self) -> bool:
        """Every number after ``since`` up to ``latest`` is here, in order, within the limit."""
        if self.more or self.since > self.latest:  # a counter newer than the client's is a restart
            return False
        return self.seqs == list(range(self.since + 1, self.latest + 1))

    @property
    def oldest(self) -> int | None:
        return self.seqs[0] if self.seqs else None


class HistoryStore:
    def __init__(self, table: Table, clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self._clock = clock

    def append(self, topic: str, frame: dict[str, Any], retention_seconds: int,
               encode: Callable[[dict[str, Any]], bytes]) -> bytes:
        """Number ``frame`` (its ``seq``), store its encoding for ``retention_seconds``, return the encoding."""
        now = int(self._clock())
        answer = self.table.client.update_item(
            TableName=self.table.name, Key=_key(topic, COUNTER_SK), UpdateExpression="ADD #seq :one SET #ttl = :ttl",
            ExpressionAttributeNames={"#seq": "seq", "#ttl": "ttl"},
            ExpressionAttributeValues={":one": {"N": "1"}, ":ttl": {"N": str(now + COUNTER_TTL_SECONDS)}},
            ReturnValues="UPDATED_NEW")
        seq = int(answer["Attributes"]["seq"]["N"])
        encoded = encode({**frame, "seq": seq})
        self.table.client.put_item(TableName=self.table.name, Item={
            **_key(topic, _message_sk(seq)), "seq": {"N": str(seq)}, "frame": {"B": encoded},
            "ttl": {"N": str(now + retention_seconds)}})
        return encoded

    def since(self, topic: str, since: int, limit: int) -> Replay:
        """One paginated Query: the stored frames after ``since`` (at most ``limit``), then the counter."""
        frames: list[bytes] = []
        seqs: list[int] = []
        latest = 0
        more = False
        now = int(self._clock())
        for item in self.table.query(
                KeyConditionExpression="pk = :pk AND sk > :after",
                ExpressionAttributeValues={":pk": {"S": HISTORY_PREFIX + topic}, ":after": {"S": _message_sk(since)}},
                ConsistentRead=True):
            if item["sk"]["S"] == COUNTER_SK:
                latest = int(item["seq"]["N"])
                break
            if int(item.get("ttl", {}).get("N", now + 1)) <= now:
                continue  # expired, not yet removed by TTL: as good as gone
            if len(frames) == limit:
                more = True  # over the cap: the client reloads; no need to read on
                break
            frames.append(bytes(item["frame"]["B"]))
            seqs.append(int(item["seq"]["N"]))
        return Replay(since=since, frames=frames, seqs=seqs, latest=latest, more=more)


def numbered(frame: dict[str, Any], topic: str, retention: int | None, store: HistoryStore) -> bytes:
    """The frame as every subscriber gets it: numbered and kept when its topic keeps history."""
    return store.append(topic, frame, retention, outgoing) if retention else outgoing(frame)


__all__ = ["HistoryStore", "Replay", "numbered"]
