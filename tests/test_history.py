"""Ordered history (``chalicelib/history.py``) on DynamoDB Local, and through the app's handlers: sequence
numbers shared by no two publishers, replay after ``since``, what is reported when the gap cannot be filled,
and what it costs in DynamoDB calls."""
from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from chalicelib.history import HistoryStore
from chalicelib.protocol import encode
from chalicelib.table import Table
from tests.support.chalice_client import ClientInfo
from tests.test_handlers import Harness, harness, harness_with, stage_env  # noqa: F401 - the handler tests' fixtures

__all__ = ["harness", "stage_env"]

RULES = json.dumps([{"topic": "chat/*", "subscribe": "any", "publish": "any", "history_seconds": 120},
                    {"topic": "public/**", "subscribe": "any", "publish": "any"}])


@pytest.fixture
def store(stores: Any) -> HistoryStore:
    return HistoryStore(stores.connections.table)


def test_concurrent_publishers_never_share_a_number(store: HistoryStore) -> None:
    """8 threads x 25 appends to one topic: numbers 1..200, each once, each message stored under its own."""
    topic = f"chat/race-{time.monotonic_ns()}"
    seen: list[int] = []
    lock = threading.Lock()

    def publish(n: int) -> None:
        for i in range(25):
            encoded = store.append(topic, {"type": "publish", "topic": topic, "data": [n, i]}, 120, encode)
            with lock:
                seen.append(json.loads(encoded)["seq"])

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == list(range(1, 201))
    replay = store.since(topic, 0, 1000)
    assert replay.complete and replay.latest == 200 and replay.seqs == list(range(1, 201))
    assert [json.loads(f)["seq"] for f in replay.frames] == list(range(1, 201))


def test_a_replay_reports_what_it_cannot_fill(store: HistoryStore, stores: Any) -> None:
    topic = f"chat/gaps-{time.monotonic_ns()}"
    for n in range(5):
        store.append(topic, {"data": n}, 120, encode)
    assert (store.since(topic, 2, 1000).seqs, store.since(topic, 2, 1000).complete) == ([3, 4, 5], True)
    assert store.since(topic, 5, 1000).complete and store.since(topic, 5, 1000).frames == []
    over = store.since(topic, 0, 3)
    assert (over.more, over.complete, over.seqs) == (True, False, [1, 2, 3])
    assert not store.since(topic, 9, 1000).complete  # newer than the counter: numbers restarted
    table: Table = stores.connections.table  # the message numbered 2 expired (TTL passed, not yet removed)
    table.client.update_item(TableName=table.name, Key={"pk": {"S": f"HIST#{topic}"}, "sk": {"S": f"MSG#{2:020d}"}},
                             UpdateExpression="SET #ttl = :past", ExpressionAttributeNames={"#ttl": "ttl"},
                             ExpressionAttributeValues={":past": {"N": "1"}})
    gap = store.since(topic, 0, 1000)
    assert (gap.complete, gap.oldest, gap.seqs) == (False, 1, [1, 3, 4, 5])


# -- through the handlers --------------------------------------------------------------------------------


history_app = harness_with(CHANNEL_RULES=RULES, MAX_REPLAY_MESSAGES="5")


def open_as(app: Harness, sub: str) -> ClientInfo:
    token = app.tokens.access_token(sub=sub, username=sub)
    return app.open(ClientInfo(headers={"Authorization": f"Bearer {token}"}))


def test_publishes_are_numbered_and_a_resubscribe_replays_the_gap_in_order(history_app: Harness) -> None:
    topic = f"chat/room-{time.monotonic_ns()}"
    reader, writer = open_as(history_app, "reader"), open_as(history_app, "writer")
    history_app.send(reader, {"action": "subscribe", "topic": topic})
    for n in range(3):
        history_app.send(writer, {"action": "publish", "topic": topic, "data": n})
    live = [f for f in history_app.frames(reader) if f["type"] == "publish"]
    assert [(f["seq"], f["data"]) for f in live] == [(1, 0), (2, 1), (3, 2)]
    later = open_as(history_app, "reader")  # a reconnect: a new connection id
    history_app.send(later, {"action": "subscribe", "topic": topic, "since": 1, "id": "s"})
    frames = history_app.frames(later)
    assert [f["type"] for f in frames] == ["replay", "subscribed"]  # one frame carries the whole gap
    replayed = frames[0]["messages"]
    assert (frames[0]["topic"], [(m["seq"], m["data"]) for m in replayed]) == (topic, [(2, 1), (3, 2)])
    assert {k: v for k, v in frames[-1].items() if k != "id"} == {"type": "subscribed", "topic": topic,
                                                                    "resumed": True, "seq": 3}
    # The replay holds the very frames delivered live: the same messageId, so a client drops a duplicate.
    assert [m["messageId"] for m in replayed] == \
        [f["messageId"] for f in history_app.raw_frames(reader) if f["type"] == "publish"][1:]


def test_a_gap_larger_than_the_cap_or_a_topic_without_history_is_said(history_app: Harness) -> None:
    topic = f"chat/busy-{time.monotonic_ns()}"
    writer = open_as(history_app, "writer")
    for n in range(7):
        history_app.send(writer, {"action": "publish", "topic": topic, "data": n})
    reader = open_as(history_app, "reader")
    history_app.send(reader, {"action": "subscribe", "topic": topic, "since": 0})
    answer = history_app.last(reader)
    assert (answer["type"], answer["resumed"], answer["oldest"]) == ("subscribed", False, 1)  # 7 > MAX_REPLAY 5
    assert len(history_app.frames(reader)) == 1  # nothing replayed: the client reloads from its own source
    history_app.send(reader, {"action": "subscribe", "topic": "public/news", "since": 0})
    assert (history_app.last(reader)["type"], history_app.last(reader)["code"]) == ("error", "bad_field")
    for since in (-1, True, "3", 1.5):
        history_app.send(reader, {"action": "subscribe", "topic": topic, "since": since})
        assert history_app.last(reader)["code"] == "bad_field", since


def test_history_costs_two_writes_per_publish_and_one_query_per_replay(history_app: Harness) -> None:
    from chalicelib import runtime

    topic = f"chat/cost-{time.monotonic_ns()}"
    writer, reader = open_as(history_app, "writer"), open_as(history_app, "reader")
    client = runtime.current().components.connections.table.client
    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    history_app.send(writer, {"action": "publish", "topic": "public/plain", "data": 1})
    plain = list(calls)
    calls.clear()
    history_app.send(writer, {"action": "publish", "topic": topic, "data": 1})
    extra = list(calls)
    for name in plain:
        extra.remove(name)
    assert sorted(extra) == ["PutItem", "UpdateItem"]  # the number, the stored message
    history_app.send(writer, {"action": "publish", "topic": topic, "data": 2})
    calls.clear()
    history_app.send(reader, {"action": "subscribe", "topic": topic, "since": 0})
    assert history_app.last(reader)["resumed"] is True
    assert calls.count("Query") == 1  # the replay; the subscribe's own GetItem + transaction as always
    assert sorted(calls) == ["GetItem", "Query", "TransactWriteItems"]


def close(app: Harness, info: ClientInfo) -> None:
    """The connection's $disconnect, as API Gateway runs it."""
    from tests.support.chalice_client import API
    from devtools.gateway.events import disconnect_event

    event = disconnect_event(API, info, status_code=1001, reason="Going away")
    assert app.client.lambda_.invoke("disconnect", event).payload["statusCode"] == 200


def test_resume_moves_a_closed_connections_topics_and_replays_each_gap(history_app: Harness) -> None:
    chat, plain = f"chat/r-{time.monotonic_ns()}", "public/lobby"
    old, writer = open_as(history_app, "rita"), open_as(history_app, "writer")
    for topic in (chat, plain):
        history_app.send(old, {"action": "subscribe", "topic": topic})
    history_app.send(writer, {"action": "publish", "topic": chat, "data": "seen"})
    close(history_app, old)
    history_app.send(writer, {"action": "publish", "topic": chat, "data": "missed"})
    new = open_as(history_app, "rita")
    # Another user, a connection still open, an unknown id: refused, and nothing moves.
    other = open_as(history_app, "otto")
    history_app.send(other, {"action": "resume", "connectionId": old.connection_id})
    assert history_app.last(other)["code"] == "forbidden"
    history_app.send(new, {"action": "resume", "connectionId": writer.connection_id})
    assert history_app.last(new)["code"] == "forbidden"
    history_app.send(new, {"action": "resume", "connectionId": "never-was"})
    assert history_app.last(new)["code"] == "not_found"
    history_app.send(new, {"action": "resume", "connectionId": old.connection_id, "since": {chat: 1}, "id": "r"})
    frames = history_app.frames(new)
    assert [(m["seq"], m["data"]) for m in frames[-2]["messages"]] == [(2, "missed")]
    assert frames[-1] == {"type": "resumed", "connectionId": old.connection_id, "id": "r",
                          "topics": {chat: {"resumed": True, "seq": 2}, plain: {"resumed": True}}}
    assert sorted(history_app.stores.audiences.subscriber_ids(chat)) == sorted([new.connection_id])
    history_app.send(new, {"action": "resume", "connectionId": old.connection_id})  # once only
    assert history_app.last(new)["code"] == "forbidden"


def test_concurrent_resumes_of_one_connection_move_it_once(history_app: Harness) -> None:
    topic = f"chat/once-{time.monotonic_ns()}"
    old = open_as(history_app, "rita")
    history_app.send(old, {"action": "subscribe", "topic": topic})
    close(history_app, old)
    newcomers = [open_as(history_app, "rita") for _ in range(6)]
    answers: list[dict[str, Any]] = []

    def take(info: ClientInfo) -> None:
        history_app.send(info, {"action": "resume", "connectionId": old.connection_id})
        answers.append(history_app.last(info))

    threads = [threading.Thread(target=take, args=(info,)) for info in newcomers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a["type"] for a in answers) == ["error"] * 5 + ["resumed"]
    assert len(history_app.stores.audiences.subscriber_ids(topic)) == 1
