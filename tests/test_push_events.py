"""The EventBridge handler (``eventbridge_push``) through ``chalice.test.Client``.

Events come from ``client.events.generate_cw_event`` (the shape EventBridge
sends); connections are real items in DynamoDB Local and posts go to a real
HTTP management API, so each test sees exactly which connections got what.
Also: ``chalicelib.push.event_push`` on its own, and the app's rule pattern
against the local gateway's matcher.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from botocore.exceptions import ClientError
from chalice.app import CloudWatchEventConfig
from chalice.test import Client

import app as app_module
from chalicelib import runtime
from chalicelib.event_contract import EVENT_DETAIL_TYPES, event_pattern, event_source
from chalicelib.errors import AppError
from chalicelib.push import event_push
from devtools.gateway.event_patterns import matches
from tests.support.builders import settings_env
from tests.support.chalice_client import chalice_client
from tests.support.dynamodb import Stores, make_record
from tests.support.management_api import ManagementApiServer

SOURCE = event_source(app_module.app.app_name)


class Harness:
    def __init__(self, client: Client, stores: Stores, management: ManagementApiServer) -> None:
        self.client = client
        self.stores = stores
        self.management = management

    def connect(self, connection_id: str, user_id: str, username: str, *topics: str) -> str:
        self.stores.connections.put(make_record(connection_id, user_id, username))
        for topic in topics:
            self.stores.subscriptions.subscribe(connection_id, topic)
        self.management.add(connection_id)
        return connection_id

    def put(self, detail_type: str, detail: Any, source: str = SOURCE) -> dict[str, Any]:
        event = self.client.events.generate_cw_event(source=source, detail_type=detail_type, detail=detail,
                                                     resources=[], region="us-east-1")
        payload: dict[str, Any] = self.client.lambda_.invoke("eventbridge_push", event).payload
        return payload

    def frames(self) -> dict[str, list[dict[str, Any]]]:
        return {cid: [json.loads(raw) for raw in posts] for cid, posts in self.management.received.items() if posts}


@pytest.fixture
def harness(tmp_path: Path, connections_table: str, dynamodb_local: Any, management_api: ManagementApiServer,
            stores: Stores) -> Iterator[Harness]:
    env = settings_env(CONNECTIONS_TABLE=connections_table, WEBSOCKET_MANAGEMENT_URL=management_api.endpoint_url,
                       AWS_ENDPOINT_URL_DYNAMODB=dynamodb_local.endpoint_url)
    with chalice_client(tmp_path, env) as client:
        yield Harness(client, stores, management_api)
    runtime.rebuild()


def _without_timestamp(frame: dict[str, Any]) -> dict[str, Any]:
    """What a push decides (type, topic, data); the service's own stamps (timestamp, ids) set aside."""
    assert isinstance(frame["timestamp"], int)
    return {key: frame[key] for key in ("type", "topic", "data") if key in frame}


# -- good detail: each audience reaches its connections and no one else ---------------------

def test_user_notification_by_sub_and_by_username(harness: Harness) -> None:
    alice_1 = harness.connect("alice-1", "sub-alice", "alice")
    alice_2 = harness.connect("alice-2", "sub-alice", "alice")
    bob = harness.connect("bob-1", "sub-bob", "bob")
    answer = harness.put("UserNotification", {"userId": "sub-alice", "data": {"invoice": 7}})
    assert answer == {"ok": True, "connections": 2, "delivered": 2, "gone": 0, "failed": 0}
    frames = harness.frames()
    assert set(frames) == {alice_1, alice_2}
    for connection in (alice_1, alice_2):
        assert [_without_timestamp(f) for f in frames[connection]] == [{"type": "notification",
                                                                      "data": {"invoice": 7}}]
    assert harness.put("UserNotification", {"username": "bob", "data": "hi bob"})["delivered"] == 1
    assert [_without_timestamp(f) for f in harness.frames()[bob]] == [{"type": "notification", "data": "hi bob"}]
    assert len(harness.frames()[alice_1]) == 1


def test_topic_message_reaches_subscribers_only(harness: Harness) -> None:
    subscriber_1 = harness.connect("s-1", "sub-1", "one", "public/news", "public/sport")
    subscriber_2 = harness.connect("s-2", "sub-2", "two", "public/news")
    harness.connect("other", "sub-3", "three", "public/sport")
    answer = harness.put("TopicMessage", {"topic": "public/news", "data": [1, 2]})
    assert answer == {"ok": True, "connections": 2, "delivered": 2, "gone": 0, "failed": 0}
    frames = harness.frames()
    assert set(frames) == {subscriber_1, subscriber_2}
    assert _without_timestamp(frames[subscriber_1][0]) == {"type": "push", "topic": "public/news", "data": [1, 2]}


def test_broadcast_reaches_every_connection(harness: Harness) -> None:
    ids = {harness.connect(f"c-{n}", f"sub-{n}", f"user{n}") for n in range(3)}
    answer = harness.put("Broadcast", {"data": "maintenance at noon"})
    assert answer == {"ok": True, "connections": 3, "delivered": 3, "gone": 0, "failed": 0}
    frames = harness.frames()
    assert set(frames) == ids
    assert all([_without_timestamp(f) for f in posts] == [{"type": "broadcast", "data": "maintenance at noon"}]
               for posts in frames.values())


def test_a_user_without_connections_gets_nothing_and_that_is_not_an_error(harness: Harness) -> None:
    harness.connect("c-1", "sub-1", "one")
    assert harness.put("UserNotification", {"userId": "nobody", "data": 1}) == {
        "ok": True, "connections": 0, "delivered": 0, "gone": 0, "failed": 0}
    assert harness.frames() == {}


# -- bad detail: logged with its reason, dropped, never raised (Lambda would retry it) -------

BAD_DETAIL = [
    ("Unknown", {"data": 1}, "unknown_detail_type"),
    ("UserNotification", {"data": 1}, "bad_request"),                         # no user
    ("UserNotification", {"userId": "sub-1", "username": "one", "data": 1}, "bad_request"),
    ("UserNotification", {"userId": "", "data": 1}, "bad_request"),
    ("UserNotification", {"userId": 5, "data": 1}, "bad_request"),
    ("UserNotification", {"userId": "sub-1"}, "missing_field"),              # no data
    ("UserNotification", {"userId": "sub-1", "topic": "news", "data": 1}, "bad_request"),
    ("TopicMessage", {"data": 1}, "missing_field"),
    ("TopicMessage", {"topic": "", "data": 1}, "bad_topic"),
    ("TopicMessage", {"topic": "x" * 5000, "data": 1}, "bad_topic"),         # the stores refuses it
    ("Broadcast", {}, "missing_field"),
    ("Broadcast", {"userId": "sub-1", "data": "meant for one user"}, "bad_request"),
    ("Broadcast", ["not", "an", "object"], "bad_request"),
    ("Broadcast", {"data": "x" * (130 * 1024)}, "payload_too_large"),
]


@pytest.mark.parametrize("detail_type, detail, code", BAD_DETAIL)
def test_bad_detail_is_logged_and_dropped(harness: Harness, capsys: pytest.CaptureFixture[str],
                                          detail_type: str, detail: Any, code: str) -> None:
    harness.connect("c-1", "sub-1", "one", "public/news")
    capsys.readouterr()
    answer = harness.put(detail_type, detail)
    assert answer["ok"] is False and answer["error"]["code"] == code, answer
    assert harness.management.total_posts == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    dropped = [line for line in lines if line.get("event") == "push_event_dropped"]
    assert len(dropped) == 1, lines
    assert dropped[0]["level"] == "WARNING" and dropped[0]["reason"] == code and dropped[0]["message"]
    assert dropped[0]["detailType"] == detail_type and dropped[0]["source"] == SOURCE
    assert dropped[0]["eventId"] == "7bf73129-1428-4cd3-a780-95db273d1602"  # generate_cw_event's id


def test_a_dynamodb_failure_raises_so_lambda_retries(harness: Harness, connections_table: str,
                                                     dynamodb_client: Any) -> None:
    """Nothing was sent yet, so a retry cannot deliver twice; unlike bad input, it may succeed."""
    harness.connect("c-1", "sub-1", "one")
    dynamodb_client.delete_table(TableName=connections_table)
    with pytest.raises(ClientError) as raised:
        harness.put("UserNotification", {"userId": "sub-1", "data": 1})
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert harness.management.total_posts == 0


# -- the detail reader and the rule's pattern -------------------------------------------------

def test_event_push_reads_each_detail_type() -> None:
    assert event_push("UserNotification", {"userId": "s", "data": 1}).audience.kind == "user"
    assert event_push("UserNotification", {"username": "u", "data": 1}).audience.kind == "username"
    topic = event_push("TopicMessage", {"topic": "t", "data": None})
    assert (topic.audience.kind, topic.audience.target, topic.data, topic.audience.frame_type) == \
        ("topic", "t", None, "publish")
    everyone = event_push("Broadcast", {"data": {"a": 1}, "extra": "ignored"})
    assert (everyone.audience.kind, everyone.audience.target, everyone.audience.frame_type) == ("all", "", "broadcast")
    with pytest.raises(AppError):
        event_push(None, {"data": 1})


def test_the_rule_pattern_matches_push_events_only() -> None:
    pattern = event_pattern(app_module.app.app_name)
    (rule,) = [source for source in app_module.app.event_sources
               if isinstance(source, CloudWatchEventConfig) and source.name == "eventbridge_push"]
    assert (rule.name, rule.event_pattern) == ("eventbridge_push", pattern)
    client_event = Client(app_module.app).events.generate_cw_event
    for detail_type in EVENT_DETAIL_TYPES:
        assert matches(pattern, client_event(SOURCE, detail_type, {"data": 1}, []))
    assert matches(pattern, client_event(SOURCE, "Disconnect", {"userId": "u"}, []))  # a kick, same rule
    assert not matches(pattern, client_event("other.app", "UserNotification", {"data": 1}, []))
    assert not matches(pattern, client_event(SOURCE, "Notification", {"data": 1}, []))
