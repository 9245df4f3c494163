"""Hostile input and faults, end to end: real WebSocket clients against the local stack (``make run``).

Every frame gets a typed answer (``Client.recv`` fails on anything without
``type`` and ``messageId``, such as API Gateway's ``{"message": "Internal
server error"}``), the connection stays open, peers receive nothing the app
refused, and a refused request leaves nothing in DynamoDB. ``notify`` answers
``{"ok": false, "error": ...}``. ``$connect`` selects an offered subprotocol
whenever it lets in a client that offered some.
"""
from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support.stack import Client, ClientFactory, RunningStack, WscatFactory

pytestmark = pytest.mark.timeout(120)

FRAME_LIMIT = 128 * 1024


def _error(client: Client, raw: str | bytes) -> dict[str, Any]:
    """Send ``raw`` as it is; the answer must be an error frame, and the connection must stay usable."""
    client.ws.send(raw)
    answer = client.recv()
    assert answer["type"] == "error", answer
    assert isinstance(answer["message"], str) and answer["message"], answer
    assert client.whoami()["connectionId"] == client.connection_id  # still open, still answering
    return answer


def _topic_items(stack: RunningStack, connection_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": stack.table, "ConsistentRead": True,
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :t)",
        "ExpressionAttributeValues": {":pk": {"S": f"CONN#{connection_id}"}, ":t": {"S": "TOPIC#"}}}
    while True:
        page = stack.dynamodb.query(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# -- 1 + 2: what json.loads accepts or crashes on, and what a peer's JSON.parse would choke on ----------

SENDMESSAGE = '{"action":"sendmessage","data":%s}'

HOSTILE_JSON = {
    "nested_past_the_parser": SENDMESSAGE % ("[" * 30_000 + "]" * 30_000),  # RecursionError in json.loads
    "nested_past_the_limit": SENDMESSAGE % ("[" * 100 + "]" * 100),
    "int_past_int_max_str_digits": SENDMESSAGE % ("9" * 5000),  # ValueError from int()
    "int_past_a_double": SENDMESSAGE % ("9" * 400),  # JSON.parse reads Infinity
    "float_overflow": SENDMESSAGE % "1e400",  # json.loads reads inf, json.dumps writes Infinity
    "nan": SENDMESSAGE % "NaN",
    "infinity": SENDMESSAGE % '{"x": Infinity}',
    "minus_infinity": SENDMESSAGE % "[-Infinity]",
    "lone_surrogate": SENDMESSAGE % '"\\ud800"',  # cannot be encoded to UTF-8 on the way out
    "lone_surrogate_key": SENDMESSAGE % '{"\\udfff": 1}',
    "duplicate_action": '{"action":"whoami","action":"sendmessage","data":1}',
    "bom": "\ufeff" + SENDMESSAGE % "1",
    "not_an_object": "[1, 2]",
    "syntax": "{not json",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_JSON))
def test_non_strict_json_is_answered_invalid_json_and_reaches_no_peer(
        local_stack: RunningStack, ws_clients: ClientFactory, name: str) -> None:
    sender, peer = ws_clients(local_stack.user("mallory").access_token), ws_clients(local_stack.user("peer").access_token)
    answer = _error(sender, HOSTILE_JSON[name])
    assert answer["code"] == "invalid_json", answer
    assert len(answer["message"]) < 200 and "9999" not in answer["message"]  # the input is never echoed
    peer.recv_none()


def test_the_strict_json_refusals_say_why(local_stack: RunningStack, ws_clients: ClientFactory) -> None:
    client = ws_clients(local_stack.user("mallory").access_token)
    assert _error(client, HOSTILE_JSON["nan"])["message"] == "NaN is not JSON"
    assert "same key twice" in _error(client, HOSTILE_JSON["duplicate_action"])["message"]
    assert "deeper than 64" in _error(client, HOSTILE_JSON["nested_past_the_parser"])["message"]
    assert "unpaired surrogate" in _error(client, HOSTILE_JSON["lone_surrogate"])["message"]


def test_binary_frames(local_stack: RunningStack, ws_clients: ClientFactory) -> None:
    client = ws_clients(local_stack.user("bin").access_token)
    assert _error(client, b"\xff\xfe{}")["code"] == "bad_request"  # not UTF-8
    client.ws.send(b'{"action":"whoami"}')
    assert client.recv()["type"] == "whoami"


@pytest.mark.parametrize("frame, code", [
    ({"action": 3}, "unknown_action"),
    ({"action": {"nested": "sendmessage"}}, "unknown_action"),
    ({"action": "subscribe", "topic": 5}, "bad_field"),
    ({"action": "subscribe", "topic": ["t"]}, "bad_field"),
    ({"action": "subscribe", "topic": "bell\u0007"}, "bad_field"),
    ({"action": "subscribe", "topic": "x" * 129}, "bad_field"),
    ({"action": "publish", "topic": "ok", "data": None, "id": {"an": "object"}}, "bad_field"),
    ({"action": "whoami", "id": "x" * 129}, "bad_field"),
    ({"action": "whoami", "id": 1.5}, "bad_field"),
    ({"action": "whoami", "id": 2 ** 60}, "bad_field"),
    ({"action": "whoami", "id": "line\nbreak"}, "bad_field"),
    ({"action": "sendmessage"}, "missing_field"),
])
def test_wrong_types_get_typed_errors_and_write_nothing(local_stack: RunningStack, ws_clients: ClientFactory,
                                                        frame: dict[str, Any], code: str) -> None:
    client = ws_clients(local_stack.user("typo").access_token)
    answer = _error(client, json.dumps(frame))
    assert answer["code"] == code, answer
    assert "id" not in answer  # a bad id is never echoed, and no good one was sent
    assert _topic_items(local_stack, client.connection_id) == []


def test_a_good_id_is_echoed_in_errors_too(local_stack: RunningStack, ws_clients: ClientFactory) -> None:
    client = ws_clients(local_stack.user("ids").access_token)
    assert _error(client, json.dumps({"action": "subscribe", "id": "r-1"})) | {"message": ""} == {
        "type": "error", "code": "missing_field", "message": "", "id": "r-1"}
    assert _error(client, HOSTILE_JSON["nan"].replace('"data"', '"id":7,"data"')).get("id") is None  # unparsed


# -- 1: oversize answers, and faults that are not the client's ---------------------------------------

def test_an_echo_that_would_exceed_128_kb_is_answered_payload_too_large(local_stack: RunningStack,
                                                                        ws_clients: ClientFactory) -> None:
    client = ws_clients(local_stack.user("big").access_token)
    frame = json.dumps({"hello": "x" * (FRAME_LIMIT - 100)})
    assert len(frame.encode()) <= FRAME_LIMIT  # the frame itself is allowed; its echo (+ identity) is not
    assert _error(client, frame)["code"] == "payload_too_large"


def test_a_message_that_would_exceed_128_kb_reaches_no_peer(local_stack: RunningStack,
                                                           ws_clients: ClientFactory) -> None:
    sender, peer = ws_clients(local_stack.user("big").access_token), ws_clients(local_stack.user("peer").access_token)
    frame = json.dumps({"action": "sendmessage", "data": "x" * (FRAME_LIMIT - 60)})
    assert len(frame.encode()) <= FRAME_LIMIT
    assert _error(sender, frame)["code"] == "payload_too_large"
    peer.recv_none()


def test_an_unexpected_failure_is_answered_internal_error_and_logged_as_one_line(
        local_stack: RunningStack, ws_clients: ClientFactory) -> None:
    """A stored item the code cannot read (a connection time that is not a number) makes ``whoami`` raise."""
    client = ws_clients(local_stack.user("broken").access_token)
    local_stack.dynamodb.update_item(
        TableName=local_stack.table, Key={"pk": {"S": f"CONN#{client.connection_id}"}, "sk": {"S": "META"}},
        UpdateExpression="SET #odd = :odd", ExpressionAttributeNames={"#odd": "connectedAt"},
        ExpressionAttributeValues={":odd": {"S": "not a number"}})
    marker = f"secret-{uuid.uuid4().hex}"
    client.send({"action": "whoami", "id": marker})
    answer = client.recv()
    assert answer == {"type": "error", "code": "internal_error", "message": "the request could not be handled",
                      "id": marker}
    line = json.loads(local_stack.wait_for_log(f'"connectionId":"{client.connection_id}","error":'))
    assert line["event"] == "handler_error" and line["level"] == "ERROR"
    assert (line["route"], line["error"]) == ("$default", "ValueError")
    assert line["where"].startswith("items.py:")
    assert marker not in local_stack.logs()  # the frame body is never logged
    assert client.request({"action": "subscribe", "topic": "public/still-works"})["type"] == "subscribed"


# -- 3: validate before acting; nothing half done ----------------------------------------------------

def test_a_lone_surrogate_topic_stores_nothing(local_stack: RunningStack, ws_clients: ClientFactory) -> None:
    client = ws_clients(local_stack.user("sub").access_token)
    assert _error(client, '{"action":"subscribe","topic":"\\ud800"}')["code"] == "invalid_json"
    assert _error(client, '{"action":"subscribe","topic":"a\\u0000b"}')["code"] == "bad_field"
    assert _error(client, '{"action":"publish","topic":"\\udc00","data":1}')["code"] == "invalid_json"
    assert _topic_items(local_stack, client.connection_id) == []


def test_an_id_too_large_to_echo_is_refused_before_anything_is_delivered(local_stack: RunningStack,
                                                                        ws_clients: ClientFactory) -> None:
    sender, peer = ws_clients(local_stack.user("big-id").access_token), ws_clients(local_stack.user("peer").access_token)
    answer = _error(sender, json.dumps({"action": "sendmessage", "data": "hi", "id": "i" * 100_000}))
    assert answer["code"] == "bad_field" and "id" not in answer
    peer.recv_none()  # not delivered to anyone: the ack could not have been sent
    # The longest id allowed still fits every answer.
    ack = sender.request({"action": "sendmessage", "data": "hi", "id": "i" * 128})
    assert (ack["type"], ack["id"], ack["delivered"]) == ("ack", "i" * 128, 1)
    assert peer.recv()["data"] == "hi"


def test_subscriptions_per_connection_are_limited(local_stack: RunningStack, ws_clients: ClientFactory) -> None:
    limit = 100  # MAX_SUBSCRIPTIONS_PER_CONNECTION's default
    client = ws_clients(local_stack.user("hoarder").access_token)
    prefix = f"public/t-{uuid.uuid4().hex[:8]}-"
    for n in range(limit):  # pipelined: the gateway runs one connection's frames in order
        client.send({"action": "subscribe", "topic": f"{prefix}{n}", "id": n})
    answers = [client.recv() for _ in range(limit)]
    assert [(a["type"], a["topic"]) for a in answers] == [("subscribed", f"{prefix}{n}") for n in range(limit)]
    refused = client.request({"action": "subscribe", "topic": f"{prefix}{limit}"})
    assert (refused["type"], refused["code"]) == ("error", "too_many_subscriptions")
    assert "100" in refused["message"]
    assert len(_topic_items(local_stack, client.connection_id)) == limit  # the refused one wrote nothing
    # Subscribing again to a held topic is still fine at the limit; freeing one makes room for one.
    assert client.request({"action": "subscribe", "topic": f"{prefix}0"})["type"] == "subscribed"
    assert client.request({"action": "unsubscribe", "topic": f"{prefix}0"})["wasSubscribed"] is True
    assert client.request({"action": "subscribe", "topic": f"{prefix}{limit}"})["type"] == "subscribed"
    assert client.request({"action": "subscribe", "topic": f"{prefix}x"})["code"] == "too_many_subscriptions"
    meta = local_stack.connection_item(client.connection_id)
    assert meta is not None and meta["subscriptions"] == {"N": str(limit)}


# -- notify: the documented error shape, never a Lambda error ----------------------------------------

@pytest.mark.parametrize("payload, code", [
    ({"userId": "u", "data": float("nan")}, "invalid_json"),
    ({"userId": "u", "data": {"x": float("inf")}}, "invalid_json"),
    ({"userId": "u", "data": "\ud800"}, "invalid_json"),
    ({"userId": "u", "data": json.loads("[" * 100 + "]" * 100)}, "invalid_json"),
    ({"userId": "u" * 2000, "data": 1}, "bad_request"),  # the stores's own limit: a ValueError before
    ({"username": "bad\nname", "data": 1}, "bad_request"),
    ({"username": "\udc00", "data": 1}, "bad_request"),
    ({"userId": ["u"], "data": 1}, "bad_request"),
    ({"userId": "u", "data": "x" * FRAME_LIMIT}, "payload_too_large"),
])
def test_notify_answers_bad_payloads_with_its_error_shape(local_stack: RunningStack, ws_clients: ClientFactory,
                                                          payload: dict[str, Any], code: str) -> None:
    user = local_stack.user("target")
    client = ws_clients(user.access_token)
    payload = {**payload, "userId": user.sub} if payload.get("userId") == "u" else payload
    answer = local_stack.invoke("notify", payload)
    assert answer["ok"] is False and answer["error"]["code"] == code, answer
    assert set(answer) == {"ok", "error"} and "stackTrace" not in json.dumps(answer)
    client.recv_none()


# -- 4: every pushed frame carries a messageId ---------------------------------------------------------

def test_every_frame_carries_a_message_id_shared_by_the_recipients_of_one_message(
        local_stack: RunningStack, ws_clients: ClientFactory) -> None:
    sender, b, c = (ws_clients(local_stack.user(n).access_token) for n in ("alice", "bob", "carol"))
    sender.send({"action": "sendmessage", "data": 1})
    ack = sender.recv_raw()
    at_b, at_c = b.recv_raw(), c.recv_raw()
    assert at_b["messageId"] == at_c["messageId"] != ack["messageId"]
    sender.send({"action": "sendmessage", "data": 2})
    assert sender.recv_raw()["messageId"] not in (ack["messageId"], at_b["messageId"])
    assert b.recv_raw()["messageId"] != at_b["messageId"]
    c.recv_raw()
    errors = {(sender.ws.send("nope"), sender.recv_raw()["messageId"])[1] for _ in range(3)}
    assert len(errors) == 3  # errors too, each its own


# -- 5: subprotocol negotiation in every token mode ----------------------------------------------------

def test_an_offered_application_subprotocol_is_selected_with_header_or_query_tokens(
        local_stack: RunningStack, ws_clients: ClientFactory) -> None:
    user = local_stack.user("proto")
    by_header = ws_clients(user.access_token, subprotocols=["chat.v1", "chat.v2"])
    assert by_header.ws.subprotocol == "chat.v1"
    by_query = ws_clients(user.id_token, via="ID_Token", subprotocols=["cognito-jwt"])
    assert by_query.ws.subprotocol == "cognito-jwt"
    by_protocol = ws_clients(user.access_token, via="protocol", subprotocols=["chat.v1"])
    assert by_protocol.ws.subprotocol == "cognito-jwt"
    assert by_protocol.ws.response is not None
    assert user.access_token not in str(by_protocol.ws.response.headers)


def test_a_client_offering_only_its_token_is_refused_not_echoed(local_stack: RunningStack,
                                                               ws_clients: ClientFactory) -> None:
    user = local_stack.user("leaky")
    with pytest.raises(InvalidStatus) as caught:
        with connect(f"{local_stack.ws_url}?access_token={user.access_token}", subprotocols=[user.access_token],
                     open_timeout=5):  # type: ignore[list-item]
            pass
    assert caught.value.response.status_code == 400
    assert user.access_token not in str(caught.value.response.headers)
    assert local_stack.stored_connection_ids() == []  # refused before anything was stored


def test_cookie_auth_with_the_csrf_subprotocol_opens_in_wscat(local_stack: RunningStack,
                                                             wscat: WscatFactory) -> None:
    """``ws`` (wscat's library), like browsers, fails a handshake that selects none of its offers."""
    user = local_stack.user("browser")
    csrf = uuid.uuid4().hex
    cli = wscat("-c", local_stack.ws_url, "-s", f"csrf.{csrf}", "-o", local_stack.origin,
                "-H", f"Cookie: JWT={user.access_token}; CSRF-TOKEN={csrf}")
    identity = cli.wait_open()
    assert (identity["userId"], identity["tokenSource"]) == (user.sub, "cookie")
    cli.close()
    assert cli.wait_exit(5) == 0
    local_stack.wait_no_connections([identity["connectionId"]])
