"""History and resume end to end on ``make run``'s stack (its own, with history rules), real WebSocket clients:
50 messages missed while away arrive exactly once and in order after ``resume``, then live ones; a client away
longer than the retention is told ``resumed: false``; another user cannot resume someone else's connection."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.support.stack import ClientFactory, RunningStack, rules_stack_fixtures

pytestmark = pytest.mark.timeout(120)
RULES = json.dumps([{"topic": "chat/*", "subscribe": "any", "publish": "any", "history_seconds": 120},
                    {"topic": "short/*", "subscribe": "any", "publish": "any", "history_seconds": 2},
                    {"topic": "public/**", "subscribe": "any", "publish": "any"}])


rules_stack, clients = rules_stack_fixtures(RULES)


def test_fifty_missed_messages_arrive_once_in_order_after_resume_then_live_ones(
        rules_stack: RunningStack, clients: ClientFactory) -> None:
    topic = f"chat/{uuid.uuid4().hex[:8]}"
    reader_user, writer = rules_stack.user("reader"), clients(rules_stack.user("writer").access_token)
    reader = clients(reader_user.access_token)
    assert reader.request({"action": "subscribe", "topic": topic})["type"] == "subscribed"
    assert writer.request({"action": "publish", "topic": topic, "data": "seen"})["type"] == "ack"
    seen = reader.recv()
    assert (seen["seq"], seen["data"]) == (1, "seen")
    old_id = reader.connection_id
    reader.close()
    rules_stack.wait_no_connections([old_id])
    for n in range(50):
        writer.send({"action": "publish", "topic": topic, "data": n, "id": n})
    assert [writer.recv()["id"] for _ in range(50)] == list(range(50))  # every publish acknowledged
    back = clients(reader_user.access_token)
    back.send({"action": "resume", "connectionId": old_id, "since": {topic: 1}, "id": "r"})
    replay = back.recv()
    assert (replay["type"], replay["topic"]) == ("replay", topic)  # 50 small messages: one frame
    replayed = replay["messages"]
    assert [(f["seq"], f["data"]) for f in replayed] == [(n + 2, n) for n in range(50)]
    assert len({f["messageId"] for f in replayed}) == 50  # each as it was delivered, its id too
    answer = back.recv()
    assert (answer["type"], answer["id"], answer["topics"]) == ("resumed", "r", {topic: {"resumed": True, "seq": 51}})
    assert writer.request({"action": "publish", "topic": topic, "data": "live"})["type"] == "ack"
    live = back.recv()
    assert (live["seq"], live["data"]) == (52, "live")
    back.recv_none()


def test_away_longer_than_the_retention_is_told_and_another_user_cannot_resume(
        rules_stack: RunningStack, clients: ClientFactory) -> None:
    topic = f"short/{uuid.uuid4().hex[:8]}"
    reader_user = rules_stack.user("reader")
    reader, writer = clients(reader_user.access_token), clients(rules_stack.user("writer").access_token)
    assert reader.request({"action": "subscribe", "topic": topic})["type"] == "subscribed"
    old_id = reader.connection_id
    reader.close()
    rules_stack.wait_no_connections([old_id])
    for n in range(3):
        assert writer.request({"action": "publish", "topic": topic, "data": n})["type"] == "ack"
    stranger = clients(rules_stack.user("stranger").access_token)
    refused = stranger.request({"action": "resume", "connectionId": old_id, "since": {topic: 0}})
    assert (refused["type"], refused["code"]) == ("error", "forbidden")
    time.sleep(3)  # past the 2-second retention
    back = clients(reader_user.access_token)
    answer = back.request({"action": "resume", "connectionId": old_id, "since": {topic: 0}})
    assert answer["topics"] == {topic: {"resumed": False, "seq": 3}}  # nothing kept: reload from your source
    back.recv_none()
