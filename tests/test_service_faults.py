"""The runtime's entry points under faults and hostile events, on real local services.

DynamoDB Local and the HTTP management API are real; a fault is a real one
too (a DynamoDB endpoint nobody listens on). Each entry point answers its
documented shape and writes one log line naming the exception type and the
connection, never the frame or the payload.
"""
from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from chalicelib import logs
from chalicelib.settings import Settings
from tests.support.dynamodb import Stores
from tests.support.entry import Entry
from tests.support.management_api import ManagementApiServer
from tests.support.stack import without_message_id

SECRET = "frame-body-" + uuid.uuid4().hex  # must never reach a log line


def _settings(table: str, management_url: str) -> Settings:
    return Settings(user_pool_ids=("us-east-1_Test",), issuers={}, app_client_ids=frozenset({"client"}),
                    token_uses=frozenset({"access"}), connections_table=table, management_url=management_url)


@pytest.fixture
def make_service(management_api: ManagementApiServer) -> Iterator[Any]:
    logs.configure("INFO")
    made: list[Entry] = []

    def factory(stores: Stores) -> Entry:
        made.append(Entry.build(_settings(stores.table.name, management_api.endpoint_url), stores.table.client))
        return made[-1]

    yield factory
    for entry in made:
        entry.close()


@pytest.fixture
def dead_repository(connections_table: str) -> Stores:
    """A stores whose DynamoDB cannot be reached (connection refused, no retries)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x",
                          config=Config(connect_timeout=0.2, retries={"mode": "standard", "total_max_attempts": 1}))
    return Stores(connections_table, client)


def _connect_event(connection_id: str, username: str = "alice", protocols: str | None = None) -> dict[str, Any]:
    headers = {"Sec-WebSocket-Protocol": protocols} if protocols is not None else {}
    return {"headers": headers, "requestContext": {
        "connectionId": connection_id, "stage": "dev", "domainName": "localhost", "apiId": "api",
        "connectedAt": 1_700_000_000_000, "identity": {"sourceIp": "127.0.0.1", "userAgent": "pytest"},
        "authorizer": {"principalId": "sub-1", "username": username, "tokenSource": "header"}}}


def _message_event(connection_id: str, body: str) -> dict[str, Any]:
    return {"body": body, "isBase64Encoded": False, "requestContext": {
        "connectionId": connection_id, "stage": "dev", "domainName": "localhost", "apiId": "api"}}


def _failure_lines(output: str) -> list[dict[str, Any]]:
    return [line for line in map(json.loads, output.splitlines()) if line.get("event") == "handler_error"]


def test_notify_with_dynamodb_down_answers_its_error_shape(make_service: Any, dead_repository: Stores,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    answer = make_service(dead_repository).notify({"userId": "sub-1", "data": SECRET})
    assert answer == {"ok": False, "error": {"code": "unavailable",
                                             "message": "a service this needs is unavailable; try again later"}}
    output = capsys.readouterr().out
    [line] = _failure_lines(output)
    assert (line["route"], line["error"], line["level"]) == ("notify", "EndpointConnectionError", "ERROR")
    assert SECRET not in output


def test_a_frame_with_dynamodb_down_gets_unavailable(make_service: Any, dead_repository: Stores,
                                                     management_api: ManagementApiServer,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    management_api.add("c1")
    result = make_service(dead_repository).on_message(
        _message_event("c1", json.dumps({"action": "sendmessage", "data": SECRET, "id": "r1"})))
    assert result == {"statusCode": 200}
    [frame] = [json.loads(body) for body in management_api.received["c1"]]
    assert without_message_id(frame) == {
        "type": "error", "code": "unavailable", "message": "a service this needs is unavailable; try again later",
        "id": "r1"}
    output = capsys.readouterr().out
    [line] = _failure_lines(output)
    assert (line["route"], line["connectionId"], line["error"]) == ("$default", "c1", "EndpointConnectionError")
    assert SECRET not in output


def test_an_unexpected_failure_is_still_internal_error(make_service: Any, stores: Stores,
                                                       management_api: ManagementApiServer) -> None:
    """Only an unreachable, throttling or failing dependency is ``unavailable``; a bug stays ``internal_error``."""
    def broken(connection_id: str) -> Any:
        raise KeyError("an unreadable item")

    management_api.add("c1")
    entry = make_service(stores)
    entry.app.connections.get = broken  # type: ignore[method-assign]
    entry.on_message(_message_event("c1", json.dumps({"action": "whoami"})))
    [frame] = [json.loads(body) for body in management_api.received["c1"]]
    assert frame["code"] == "internal_error"


def test_connect_and_disconnect_with_dynamodb_down_fail_with_one_line(
        make_service: Any, dead_repository: Stores, capsys: pytest.CaptureFixture[str]) -> None:
    service = make_service(dead_repository)
    assert service.on_connect(_connect_event("c1")) == {"statusCode": 500}
    assert service.on_disconnect({"requestContext": {"connectionId": "c1"}}) == {"statusCode": 500}
    lines = _failure_lines(capsys.readouterr().out)
    assert [(line["route"], line["connectionId"]) for line in lines] == [("$connect", "c1"), ("$disconnect", "c1")]


@pytest.mark.parametrize("username", ["bad\nname", "lone\ud800", "x" * 1025])
def test_connect_with_an_unsafe_username_is_refused_and_stores_nothing(
        make_service: Any, stores: Stores, username: str) -> None:
    assert make_service(stores).on_connect(_connect_event("c1", username)) == {"statusCode": 403}
    assert stores.connections.get("c1") is None


@pytest.mark.parametrize("offered, status, selected", [
    ("csrf.c5rf", 200, "csrf.c5rf"),
    ("cognito-jwt, eyJhbGciOiJSUzI1NiJ9.e30.sig", 200, "cognito-jwt"),
    ("chat.v1", 200, "chat.v1"),
    ("eyJhbGciOiJSUzI1NiJ9.e30.sig", 400, None),
    ("", 200, None),
])
def test_connect_selects_an_offered_subprotocol_before_storing(make_service: Any, stores: Stores,
                                                               offered: str, status: int,
                                                               selected: str | None) -> None:
    answer = make_service(stores).on_connect(_connect_event("c1", protocols=offered))
    assert answer["statusCode"] == status
    assert answer.get("headers", {}).get("Sec-WebSocket-Protocol") == selected
    assert (stores.connections.get("c1") is not None) == (status == 200)


def test_a_message_event_without_a_connection_id_is_refused(make_service: Any,
                                                           stores: Stores) -> None:
    assert make_service(stores).on_message({"body": "{}", "requestContext": {}}) == {"statusCode": 400}


# -- the subscription count, on DynamoDB Local ---------------------------------------------------------

def _stored_topics(stores: Stores, connection_id: str) -> list[str]:
    return sorted(stores.subscriptions.topics_for(connection_id))


def _count(stores: Stores, connection_id: str) -> int:
    item = stores.table.client.get_item(TableName=stores.table.name, ConsistentRead=True,
                                      Key={"pk": {"S": f"CONN#{connection_id}"}, "sk": {"S": "META"}})["Item"]
    return int(item.get("subscriptions", {"N": "0"})["N"])


def test_the_limit_counts_subscriptions_exactly(stores: Stores) -> None:
    from chalicelib.subscriptions import SubscriptionLimitReached
    from tests.support.dynamodb import make_record

    stores.connections.put(make_record("c1"))
    for topic in ("a", "b", "c"):
        stores.subscriptions.subscribe("c1", topic, max_subscriptions=3)
    stores.subscriptions.subscribe("c1", "a", max_subscriptions=3)  # held already: fine at the limit, not counted twice
    with pytest.raises(SubscriptionLimitReached):
        stores.subscriptions.subscribe("c1", "d", max_subscriptions=3)
    assert (_stored_topics(stores, "c1"), _count(stores, "c1")) == (["a", "b", "c"], 3)
    assert stores.subscriptions.unsubscribe("c1", "a") is True and stores.subscriptions.unsubscribe("c1", "a") is False
    assert _count(stores, "c1") == 2
    stores.subscriptions.subscribe("c1", "d", max_subscriptions=3)
    assert (_stored_topics(stores, "c1"), _count(stores, "c1")) == (["b", "c", "d"], 3)


def test_unsubscribing_an_uncounted_subscription_never_goes_below_zero(stores: Stores) -> None:
    """Subscriptions written before the count existed (a deploy mid-connection) are deleted, the count kept >= 0."""
    from tests.support.dynamodb import make_record

    stores.connections.put(make_record("c1"))
    stores.table.client.put_item(TableName=stores.table.name, Item={
        "pk": {"S": "CONN#c1"}, "sk": {"S": "TOPIC#old"}, "topic": {"S": "old"}, "connectionId": {"S": "c1"}})
    assert stores.subscriptions.unsubscribe("c1", "old") is True
    assert _stored_topics(stores, "c1") == [] and _count(stores, "c1") == 0


def test_concurrent_subscribes_never_exceed_the_limit(stores: Stores) -> None:
    """API Gateway may run one connection's frames in parallel Lambdas: the count is in the transaction."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.support.dynamodb import make_record

    stores.connections.put(make_record("c1"))

    def attempt(n: int) -> str:
        try:
            stores.subscriptions.subscribe("c1", f"t{n}", max_subscriptions=5)
            return "ok"
        except Exception as error:  # noqa: BLE001 - limit reached, or a conflicting transaction
            return type(error).__name__

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(attempt, range(40)))
    stored = _stored_topics(stores, "c1")
    assert len(stored) == _count(stores, "c1") == outcomes.count("ok") <= 5
    assert "SubscriptionLimitReached" in outcomes


# -- the management API throttling in bursts ------------------------------------------------------------

def test_a_burst_of_429s_slows_deliveries_down_and_loses_nothing(
        make_service: Any, stores: Stores, management_api: ManagementApiServer) -> None:
    """Every recipient's first two posts answer 429: botocore backs off and retries, every message arrives once."""
    import time

    from tests.support.dynamodb import make_record

    ids = [f"c{n}" for n in range(40)]
    for connection_id in ids:
        stores.connections.put(make_record(connection_id, user_id=f"u-{connection_id}"))
        management_api.add(connection_id)
    for connection_id in ids[1:]:
        management_api.throttle(connection_id, 2)
    service = make_service(stores)
    started = time.monotonic()
    assert service.on_message(_message_event("c0", json.dumps({"action": "sendmessage", "data": "hi", "id": 1}))) \
        == {"statusCode": 200}
    elapsed = time.monotonic() - started
    received = management_api.received
    [ack] = [json.loads(body) for body in received.pop("c0")]
    assert (ack["type"], ack["delivered"], ack["gone"], ack["failed"]) == ("ack", 39, 0, 0), ack
    assert {connection_id: len(bodies) for connection_id, bodies in received.items()} == {i: 1 for i in ids[1:]}
    [message_id] = {json.loads(bodies[0])["messageId"] for bodies in received.values()}  # one message, same id
    assert message_id
    attempts = management_api.attempts
    assert all(attempts[i] == 3 for i in ids[1:]), attempts  # two throttled tries, then delivered
    assert elapsed > 0.05  # slowed by the backoff between tries
