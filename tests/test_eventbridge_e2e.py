"""End to end: pushes published to EventBridge (``PutEvents`` on the local stack's port) reach WebSocket clients.

The session stack of ``tests.support.stack`` (as ``make run`` runs it) serves
app.py; publishers use a real boto3 ``events`` client, or the AWS CLI as the
README shows it, with ``endpoint_url`` = the gateway. The gateway matches the
app's rule pattern and invokes ``eventbridge_push`` with the event EventBridge
sends; clients are real ``websockets`` connections with local Cognito tokens.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.event_contract import event_source
from tests.support.stack import ClientFactory, RunningStack

pytestmark = pytest.mark.timeout(60)

SOURCE = event_source("ws-cognito")


def _events(stack: RunningStack) -> Any:
    return boto3.client("events", endpoint_url=stack.http_url, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")


def _put(stack: RunningStack, detail_type: str, detail: dict[str, Any], source: str = SOURCE) -> str:
    answer = _events(stack).put_events(Entries=[{"Source": source, "DetailType": detail_type,
                                                  "Detail": json.dumps(detail)}])
    assert answer["FailedEntryCount"] == 0, answer
    event_id: str = answer["Entries"][0]["EventId"]
    return event_id


def _content(frame: dict[str, Any]) -> dict[str, Any]:
    """What the push decided (type, topic, data); the service's own stamps set aside."""
    assert isinstance(frame.get("timestamp"), int), frame
    return {key: frame[key] for key in ("type", "topic", "data") if key in frame}


def test_user_notification_reaches_that_users_connections_only(local_stack: RunningStack,
                                                               ws_clients: ClientFactory) -> None:
    alice, bob = local_stack.user("alice"), local_stack.user("bob")
    alice_1, alice_2 = ws_clients(alice.access_token), ws_clients(alice.id_token, via="ID_Token")
    bob_1 = ws_clients(bob.access_token)
    event_id = _put(local_stack, "UserNotification", {"userId": alice.sub, "data": {"invoice": 42}})
    for client in (alice_1, alice_2):
        assert _content(client.recv()) == {"type": "notification", "data": {"invoice": 42}}
    bob_1.recv_none()
    assert "-> eventbridge_push" in local_stack.wait_for_log(event_id)
    local_stack.wait_for_log(f"EVENTBRIDGE eventbridge_push {event_id} ok")

    _put(local_stack, "UserNotification", {"username": bob.username, "data": "hi bob"})
    assert _content(bob_1.recv()) == {"type": "notification", "data": "hi bob"}
    alice_1.recv_none(0.1)
    alice_2.recv_none(0.1)


def test_topic_message_and_broadcast(local_stack: RunningStack, ws_clients: ClientFactory) -> None:
    users = [local_stack.user(f"eb{n}") for n in range(3)]
    subscriber, other_subscriber, outsider = (ws_clients(u.access_token) for u in users)
    topic = f"public/news-{uuid.uuid4().hex[:8]}"
    for client in (subscriber, other_subscriber):
        assert client.request({"action": "subscribe", "topic": topic})["type"] == "subscribed"
    _put(local_stack, "TopicMessage", {"topic": topic, "data": [1, 2, 3]})
    for client in (subscriber, other_subscriber):
        assert _content(client.recv()) == {"type": "push", "topic": topic, "data": [1, 2, 3]}
    outsider.recv_none()

    _put(local_stack, "Broadcast", {"data": "maintenance at noon"})
    for client in (subscriber, other_subscriber, outsider):
        assert _content(client.recv()) == {"type": "broadcast", "data": "maintenance at noon"}


@pytest.mark.parametrize("source, detail_type", [("billing.events", "UserNotification"), (SOURCE, "Invoice")])
def test_an_event_no_pattern_matches_invokes_nothing(local_stack: RunningStack, ws_clients: ClientFactory,
                                                     source: str, detail_type: str) -> None:
    user = local_stack.user("nomatch")
    client = ws_clients(user.access_token)
    event_id = _put(local_stack, detail_type, {"userId": user.sub, "data": "must not arrive"}, source=source)
    assert local_stack.wait_for_log(event_id).endswith("-> no rule")
    client.recv_none(0.5)
    assert not any(f"EVENTBRIDGE eventbridge_push {event_id}" in line for line in local_stack.output.lines)


def test_bad_detail_is_accepted_by_eventbridge_then_dropped_by_the_handler(local_stack: RunningStack,
                                                                          ws_clients: ClientFactory) -> None:
    user = local_stack.user("baddetail")
    client = ws_clients(user.access_token)
    event_id = _put(local_stack, "Broadcast", {"userId": user.sub, "data": "meant for one user"})
    # The handler returned normally (so Lambda would not retry it) after logging why.
    local_stack.wait_for_log(f"EVENTBRIDGE eventbridge_push {event_id} ok")
    dropped = json.loads(local_stack.wait_for_log(f'"eventId":"{event_id}"'))
    assert (dropped["event"], dropped["reason"]) == ("push_event_dropped", "bad_request")
    client.recv_none(0.3)


def test_the_readmes_aws_cli_commands(local_stack: RunningStack, ws_clients: ClientFactory, tmp_path: Path) -> None:
    """``aws events put-events`` and ``aws lambda invoke`` as docs/local-stack.md shows them, with .venv/bin/aws."""
    user = local_stack.user("cli")
    client = ws_clients(user.access_token)
    aws = str(Path(sys.executable).with_name("aws"))
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    detail = json.dumps({"username": user.username, "data": "hi"})
    entries = json.dumps([{"Source": SOURCE, "DetailType": "UserNotification", "Detail": detail}])
    done = subprocess.run([aws, "events", "put-events", "--endpoint-url", local_stack.http_url, "--entries", entries],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["FailedEntryCount"] == 0
    assert _content(client.recv()) == {"type": "notification", "data": "hi"}

    out = tmp_path / "out.json"
    done = subprocess.run([aws, "lambda", "invoke", "--endpoint-url", local_stack.http_url, "--function-name",
                           "notify", "--payload", json.dumps({"username": user.username, "data": "hi"}), str(out)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text()) == {"ok": True, "connections": 1, "delivered": 1, "gone": 0, "failed": 0}
    assert _content(client.recv()) == {"type": "notification", "data": "hi"}
