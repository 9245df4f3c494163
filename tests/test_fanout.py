"""Fan-out: the inline/queued decision, the work items, and the worker, against real local services.

DynamoDB Local holds the connections, moto's server the SQS queue, and
``tests.support.management_api`` answers the posts as API Gateway would (410
for unknown ids, scripted 429s and 500s), through real boto3 clients.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib import aws
from chalicelib.audience import Everyone, Topic, User
from chalicelib.delivery import FanoutItemFailed, batches
from chalicelib.fanout import Slice, WorkItem, WorkItemError, message_id_of, segment_count, should_queue
from chalicelib.push import Push
from tests.support.builders import settings
from tests.support.dynamodb import Stores, make_record
from tests.support.entry import Entry
from tests.support.management_api import ManagementApiServer


@pytest.fixture
def queue_url(moto_session: Any) -> str:
    return str(moto_session.client("sqs").create_queue(QueueName="fanout-test")["QueueUrl"])


class Harness:
    """The components wired like ``runtime``: real stores, queue and management clients."""

    def __init__(self, stores: Stores, api: ManagementApiServer, sqs: Any, queue_url: str | None,
                 inline_max: int, segment_size: int = 10) -> None:
        self.stores, self.api, self.sqs, self.queue_url = stores, api, sqs, queue_url
        env = {"FANOUT_INLINE_MAX": str(inline_max), "FANOUT_SEGMENT_SIZE": str(segment_size),
               "WEBSOCKET_MANAGEMENT_URL": api.endpoint_url, "CONNECTIONS_TABLE": stores.table.name}
        if queue_url:
            env["FANOUT_QUEUE_URL"] = queue_url
        self.settings = settings(**env)
        self.service = Entry.build(self.settings, stores.table.client, sqs)

    def connect(self, *ids: str, user: str = "u1", topic: str | None = None) -> None:
        for connection_id in ids:
            self.stores.connections.put(make_record(connection_id, user_id=user, username=user))
            if topic:
                self.stores.subscriptions.subscribe(connection_id, topic)
        self.api.add(*ids)

    def items(self) -> list[WorkItem]:
        """Every work item on the queue (received and deleted)."""
        found: list[WorkItem] = []
        while True:
            answer = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            messages = answer.get("Messages") or []
            if not messages:
                return found
            for message in messages:
                found.append(WorkItem.decode(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def bodies(self) -> list[str]:
        return [item.encode() for item in self.items()]

    def posts(self) -> dict[str, list[dict[str, Any]]]:
        return {cid: [json.loads(frame) for frame in frames] for cid, frames in self.api.received.items() if frames}


@pytest.fixture
def harness(stores: Stores, management_api: ManagementApiServer, moto_session: Any,
            queue_url: str) -> Iterator[Harness]:
    made = Harness(stores, management_api, moto_session.client("sqs"), queue_url, inline_max=3)
    yield made
    made.service.close()


def _ids(n: int, prefix: str = "c") -> list[str]:
    return [f"{prefix}{i:03d}AAAA=" for i in range(n)]


# -- pure pieces ----------------------------------------------------------------------------

def test_the_decision_is_at_the_threshold_and_needs_a_queue() -> None:
    assert not should_queue(100, 100, True)
    assert should_queue(101, 100, True)
    assert not should_queue(10**6, 100, False)  # a minimal stage: no queue, everything inline


def test_segments_follow_the_table_size_within_bounds() -> None:
    assert segment_count(0, 101, 1000) == 1
    assert segment_count(10_000, 101, 1000) == 10
    assert segment_count(10**9, 101, 1000) == 1000  # capped
    assert segment_count(0, 5000, 1000) == 5  # a stale ItemCount never undercounts what was seen


def test_work_items_round_trip_and_refuse_garbage() -> None:
    frame = json.dumps({"type": "broadcast", "data": "\u00e9\"x", "messageId": "m-1"}).encode()
    item = WorkItem("p", message_id_of(frame), "https://e/dev", frame, Slice("all", segment=2, segments=4), ("s",))
    assert WorkItem.decode(item.encode()) == item
    for body in ("nope", "{}", json.dumps({**json.loads(item.encode()), "slice": {"kind": "all", "segment": 4,
                                                                                  "segments": 4}})):
        with pytest.raises(WorkItemError):
            WorkItem.decode(body)


def test_batches_respect_send_message_batch_limits() -> None:
    bodies = ["x" * 100_000] * 5 + ["y"] * 12
    groups = batches(bodies)
    assert all(len(g) <= 10 and sum(len(b) for b in g) <= 256 * 1024 for g in groups)
    assert [b for g in groups for b in g] == bodies


# -- the decision and the items, for each audience ------------------------------------------------

def test_a_broadcast_at_the_limit_is_inline_and_one_over_is_queued(harness: Harness) -> None:
    harness.connect(*_ids(3))
    result = harness.service.push(Push(Everyone(), {"n": 1}))
    assert result.counts() == {"connections": 3, "delivered": 3, "gone": 0, "failed": 0}
    assert harness.items() == []
    harness.connect("c999AAAA=")
    assert harness.service.push(Push(Everyone(), {"n": 2})).counts() == {"queued": 1}
    assert len(harness.posts()["c000AAAA="]) == 1  # the queued push posted nothing yet


def test_without_a_queue_everything_is_inline(stores: Stores,
                                              management_api: ManagementApiServer, moto_session: Any) -> None:
    minimal = Harness(stores, management_api, moto_session.client("sqs"), None, inline_max=3)
    minimal.connect(*_ids(8))
    assert minimal.service.push(Push(Everyone(), {"n": 1})).counts()["delivered"] == 8


def test_broadcast_items_are_scan_segments_that_cover_everyone_once(harness: Harness) -> None:
    ids = _ids(25)
    harness.connect(*ids)
    assert harness.service.push(Push(Everyone(), {"n": 1})).counts() == {"queued": 3}  # ~25 items / 10 per segment
    items = harness.items()
    assert sorted((i.slice.segment, i.slice.segments) for i in items) == [(0, 3), (1, 3), (2, 3)]
    assert len({i.message_id for i in items}) == 1 and len({i.frame for i in items}) == 1
    assert all(len(i.encode()) < 2048 for i in items)  # no id lists: the size does not grow with the audience
    for item in items:
        harness.service.run_work_item(item.encode())
    posts = harness.posts()
    assert sorted(posts) == sorted(ids) and all(len(p) == 1 for p in posts.values())
    assert {p[0]["messageId"] for p in posts.values()} == {items[0].message_id}


def test_topic_items_are_pages_of_the_index(harness: Harness) -> None:
    subscribers = _ids(23, "t")
    harness.connect(*subscribers, topic="public/news")
    harness.connect(*_ids(5, "o"))  # not subscribed
    assert harness.service.push(Push(Topic("public/news"), {"n": 1})).counts() == {"queued": 3}
    items = harness.items()
    assert [i.slice.kind for i in items] == ["topic"] * 3
    assert items[0].slice.after is None and items[-1].slice.through is None
    for item in items:
        harness.service.run_work_item(item.encode())
    posts = harness.posts()
    assert sorted(posts) == sorted(subscribers) and all(len(p) == 1 for p in posts.values())
    assert {p[0]["topic"] for p in posts.values()} == {"public/news"}


def test_a_user_with_many_connections_is_one_item(harness: Harness) -> None:
    harness.connect(*_ids(5), user="bob")
    harness.connect("x000AAAA=", user="carol")
    assert harness.service.push(Push(User("bob"), {"n": 1})).counts() == {"queued": 1}
    (item,) = harness.items()
    assert item.slice == Slice("user", user="bob")
    harness.service.run_work_item(item.encode())
    assert sorted(harness.posts()) == _ids(5)


def test_the_sender_is_excluded_on_the_queued_path(harness: Harness) -> None:
    ids = _ids(6)
    harness.connect(*ids)
    sender = ids[0]
    event = {"requestContext": {"connectionId": sender, "domainName": "localhost", "stage": "dev", "apiId": "a"},
             "body": json.dumps({"action": "sendmessage", "data": "hi"})}
    harness.service.on_message(event)
    (ack,) = harness.posts()[sender]
    assert (ack["type"], ack["queued"]) == ("ack", 1) and "delivered" not in ack
    (item,) = harness.items()
    assert item.exclude == (sender,)
    harness.service.run_work_item(item.encode())
    posts = harness.posts()
    assert len(posts[sender]) == 1  # still only the ack
    assert all([p["data"] for p in posts[cid]] == ["hi"] for cid in ids[1:])


# -- the worker ------------------------------------------------------------------------------

def test_the_worker_deletes_gone_connections(harness: Harness) -> None:
    harness.connect(*_ids(4))
    harness.stores.connections.put(make_record("gone00AA="))  # stored, but API Gateway answers 410
    harness.service.push(Push(Everyone(), {"n": 1}))
    (item,) = harness.items()
    assert harness.service.run_work_item(item.encode()) == {"ok": True, "delivered": 4, "gone": 1, "failed": 0}
    assert harness.stores.connections.get("gone00AA=") is None


def test_the_worker_rides_out_throttling(harness: Harness) -> None:
    harness.connect(*_ids(4))
    harness.api.throttle("c001AAAA=", 2)  # 429 twice: botocore's adaptive mode retries
    harness.service.push(Push(Everyone(), {"n": 1}))
    (item,) = harness.items()
    assert harness.service.run_work_item(item.encode())["delivered"] == 4
    assert harness.api.attempts["c001AAAA="] == 3


def test_a_failed_item_raises_and_its_redelivery_sends_the_same_message(harness: Harness) -> None:
    ids = _ids(4)
    harness.connect(*ids)
    harness.api.fail("c002AAAA=", 500)  # every attempt: the item fails for good this time
    harness.service.push(Push(Everyone(), {"n": 1}))
    (item,) = harness.items()
    with pytest.raises(FanoutItemFailed):
        harness.service.run_work_item(item.encode())
    assert harness.api.attempts["c002AAAA="] == aws.WORKER_MAX_ATTEMPTS
    harness.api.heal("c002AAAA=")
    harness.service.run_work_item(item.encode())  # SQS's redelivery: the same body
    posts = harness.posts()
    assert len(posts["c002AAAA="]) == 1
    assert all(len(posts[cid]) == 2 for cid in ids if cid != "c002AAAA=")  # duplicates, dropped by id
    assert {p["messageId"] for cid in ids for p in posts[cid]} == {item.message_id}


def test_no_message_id_is_shared_between_pushes(harness: Harness) -> None:
    harness.connect(*_ids(25))
    harness.service.push(Push(Everyone(), {"n": 1}))
    first = harness.items()
    harness.service.push(Push(Everyone(), {"n": 2}))
    second = harness.items()
    assert len({i.message_id for i in first}) == 1 and len({i.message_id for i in second}) == 1
    assert first[0].message_id != second[0].message_id
    assert len({i.push_id for i in first + second}) == 2


def test_a_body_that_is_not_a_work_item_is_dropped(harness: Harness) -> None:
    assert harness.service.run_work_item("not json") == {"ok": False, "error": "bad_work_item"}
    assert harness.posts() == {}
