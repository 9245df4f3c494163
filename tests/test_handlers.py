"""The app's Lambdas through ``chalice.test.Client``, with events built exactly as
API Gateway sends them, against real local services: a JWKS over HTTP with
keys made here, DynamoDB Local, and an HTTP management API."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from devtools.gateway.events import ClientInfo, authorizer_event, connect_event, disconnect_event
from tests.support.builders import ROOT, cookie_headers
from tests.support.chalice_client import API, AppHarness, app_harness, chalice_client, services_env
from tests.support.jwt_factory import JwksServer, TokenFactory
from tests.support.management_api import ManagementApiServer
from tests.support.stack import without_message_id



class Harness(AppHarness):
    """The shared harness, with the clients and frame checks these tests use."""

    def connect(self, sub: str = "user-1", username: str = "alice", **headers: str) -> ClientInfo:
        """Authorize then $connect one client, as API Gateway would."""
        token = self.tokens.access_token(sub=sub, username=username)
        return self.open(ClientInfo(headers={"Authorization": f"Bearer {token}", "User-Agent": "pytest", **headers},
                                    query={"clientQueryParameter": "v1"}, source_ip="10.0.0.7"))

    def frames(self, info: ClientInfo) -> list[dict[str, Any]]:
        """The frames posted to the client, each checked for a ``messageId`` and shown without it."""
        return [without_message_id(frame) for frame in self.raw_frames(info)]

    def last(self, info: ClientInfo) -> dict[str, Any]:
        frames = self.frames(info)
        assert frames, f"nothing was posted to {info.connection_id}"
        return frames[-1]


@pytest.fixture
def stage_env(jwks_server: JwksServer, connections_table: str, dynamodb_local: Any,
              management_api: ManagementApiServer, cognito_issuer: str, client_id: str) -> dict[str, str]:
    """The shared test settings (cookie auth from ``builders.ORIGIN``) on this test's local services."""
    return services_env(
        jwks_server, connections_table, dynamodb_local, management_api, cognito_issuer, client_id,
        CONTEXT_QUERY_PARAMS="clientQueryParameter",
        CONTEXT_HEADERS="clientHeader",
    )


@pytest.fixture
def harness(tmp_path: Path, stage_env: dict[str, str], token_factory: TokenFactory,
            management_api: ManagementApiServer, stores: Any) -> Iterator[Harness]:
    with app_harness(Harness, tmp_path, stage_env, token_factory, management_api, stores) as harness:
        yield harness


def harness_with(**settings: str) -> Any:
    """A ``harness`` fixture whose stage also sets ``settings`` (``app = harness_with(CHANNEL_RULES=...)``)."""
    @pytest.fixture
    def configured(tmp_path: Path, stage_env: dict[str, str], token_factory: TokenFactory,
                   management_api: ManagementApiServer, stores: Any) -> Iterator[Harness]:
        with app_harness(Harness, tmp_path, {**stage_env, **settings}, token_factory, management_api,
                         stores) as harness:
            yield harness

    return configured


# -- ws_authorizer ------------------------------------------------------------------


def test_authorizer_allows_and_flattens_context(harness: Harness) -> None:
    token = harness.tokens.access_token(sub="sub-1", username="alice", groups=("admins",),
                                        extra={"custom:tenant": "acme"})
    info = ClientInfo(headers={"Authorization": f"Bearer {token}", "clientHeader": "clientHeaderValue"},
                      query={"clientQueryParameter": "clientQueryParameterValue"})
    answer = harness.authorize(info)
    assert answer["principalId"] == "sub-1"
    assert answer["policyDocument"]["Statement"] == [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": API.method_arn("$connect")}]
    context = answer["context"]
    assert {k: context[k] for k in ("sub", "username", "groups", "token_use", "tokenSource", "custom_tenant")} == {
        "sub": "sub-1", "username": "alice", "groups": "admins", "token_use": "access",
        "tokenSource": "header", "custom_tenant": "acme"}
    assert context["query_clientQueryParameter"] == "clientQueryParameterValue"
    assert context["header_clientheader"] == "clientHeaderValue"
    assert all(isinstance(v, (str, int, float, bool)) for v in context.values())
    assert len(json.dumps(answer)) < 8192


@pytest.mark.parametrize("query_name", ["access_token", "ID_Token"])
def test_authorizer_query_tokens(harness: Harness, query_name: str) -> None:
    token = harness.tokens.id_token(sub="sub-2") if query_name == "ID_Token" else harness.tokens.access_token(sub="sub-2")
    answer = harness.authorize(ClientInfo(query={query_name: token}))
    assert answer["principalId"] == "sub-2"
    assert answer["context"]["tokenSource"] == "query"


def test_authorizer_refuses_missing_and_bad_tokens(harness: Harness) -> None:
    with pytest.raises(Exception, match="^Unauthorized$"):
        harness.authorize(ClientInfo())
    expired = harness.tokens.access_token(exp_in=-10)
    with pytest.raises(Exception, match="^Unauthorized$"):
        harness.authorize(ClientInfo(headers={"Authorization": f"Bearer {expired}"}))
    forged = harness.tokens.access_token()[:-4] + "AAAA"
    with pytest.raises(Exception, match="^Unauthorized$"):
        harness.authorize(ClientInfo(query={"access_token": forged}))


def test_authorizer_refuses_when_jwks_is_down(harness: Harness, jwks_server: JwksServer) -> None:
    jwks_server.fail(503)
    with pytest.raises(Exception, match="^Unauthorized$"):
        harness.authorize(ClientInfo(headers={"Authorization": f"Bearer {harness.tokens.access_token()}"}))


def test_authorizer_denies_without_required_group(tmp_path: Path, stage_env: dict[str, str],
                                                  token_factory: TokenFactory) -> None:
    with chalice_client(tmp_path, {**stage_env, "REQUIRED_GROUPS": "admins"}) as client:
        member = token_factory.access_token(groups=("admins",))
        outsider = token_factory.access_token(groups=("staff",))
        allow = client.lambda_.invoke("ws_authorizer", authorizer_event(
            API, ClientInfo(headers={"Authorization": f"Bearer {member}"}))).payload
        deny = client.lambda_.invoke("ws_authorizer", authorizer_event(
            API, ClientInfo(headers={"Authorization": f"Bearer {outsider}"}))).payload
    assert allow["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert deny["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert "context" not in deny


def test_authorizer_cookie_needs_csrf_and_origin(harness: Harness) -> None:
    token = harness.tokens.access_token(sub="cookie-user")
    cookie = f"JWT={token}; CSRF-TOKEN=c5rf"
    good = ClientInfo(headers=cookie_headers(cookie), query={"csrf": "c5rf"})
    assert harness.authorize(good)["context"]["tokenSource"] == "cookie"
    for bad in (ClientInfo(headers=cookie_headers(cookie, "https://evil.example"), query={"csrf": "c5rf"}),
                ClientInfo(headers=cookie_headers(cookie), query={"csrf": "nope"})):
        with pytest.raises(Exception, match="^Unauthorized$"):
            harness.authorize(bad)


# -- $connect / $disconnect ---------------------------------------------------------


def test_connect_stores_the_connection(harness: Harness) -> None:
    info = harness.connect(sub="sub-9", username="zoe")
    record = harness.stores.connections.get(info.connection_id)
    assert record is not None
    assert (record.user_id, record.username, record.source_ip, record.user_agent) == ("sub-9", "zoe", "10.0.0.7", "pytest")
    assert (record.endpoint.stage, record.endpoint.domain, record.identity.source) == ("test", API.domain, "header")
    assert record.identity.client_params == {"query_clientQueryParameter": "v1"}
    assert record.identity.token_use == "access"
    assert 2 * 3600 < record.ttl - record.connected_at // 1000 <= 3 * 3600


def test_connect_without_authorizer_fails_closed(harness: Harness) -> None:
    info = ClientInfo()
    result = harness.client.lambda_.invoke("connect", connect_event(API, info)).payload
    assert result["statusCode"] == 403
    assert harness.stores.connections.get(info.connection_id) is None


def test_connect_selects_the_subprotocol_marker(harness: Harness) -> None:
    token = harness.tokens.access_token(sub="proto")
    info = ClientInfo(headers={"Sec-WebSocket-Protocol": f"cognito-jwt, {token}"})
    answer = harness.authorize(info)
    assert answer["context"]["tokenSource"] == "protocol"
    info.authorizer = {**answer["context"], "principalId": answer["principalId"]}
    result = harness.client.lambda_.invoke("connect", connect_event(API, info)).payload
    assert result == {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "cognito-jwt"}}


def test_disconnect_removes_connection_and_subscriptions_idempotently(harness: Harness) -> None:
    info = harness.connect()
    harness.send(info, {"action": "subscribe", "topic": "public/news"})
    assert harness.stores.audiences.subscriber_ids("public/news") == [info.connection_id]
    for _ in range(2):
        result = harness.client.lambda_.invoke("disconnect", disconnect_event(API, info, 1000, "bye")).payload
        assert result["statusCode"] == 200
    assert harness.stores.connections.get(info.connection_id) is None
    assert harness.stores.audiences.subscriber_ids("public/news") == []


# -- messages -----------------------------------------------------------------------


def test_sendmessage_reaches_everyone_else(harness: Harness) -> None:
    alice, bob, carol = harness.connect("a", "alice"), harness.connect("b", "bob"), harness.connect("c", "carol")
    harness.send(alice, {"action": "sendmessage", "data": {"text": "hi"}, "id": 7})
    for other in (bob, carol):
        frame = harness.last(other)
        assert frame["type"] == "message"
        assert frame["from"] == {"userId": "a", "username": "alice"}
        assert frame["data"] == {"text": "hi"}
        assert isinstance(frame["timestamp"], int)
    assert harness.frames(alice) == [{"type": "ack", "action": "sendmessage", "id": 7,
                                      "delivered": 2, "gone": 0, "failed": 0}]


def test_legacy_sendmessage_form(harness: Harness) -> None:
    alice, bob = harness.connect("a", "alice"), harness.connect("b", "bob")
    harness.send(alice, {"message": "sendmessage", "data": "hello world"})
    assert harness.last(bob)["data"] == "hello world"


def test_topics_reach_subscribers_only(harness: Harness) -> None:
    pub, sub1, sub2, outsider = (harness.connect(u, u) for u in ("p", "s1", "s2", "o"))
    for info in (sub1, sub2):
        harness.send(info, {"action": "subscribe", "topic": "public/scores"})
        assert harness.last(info) == {"type": "subscribed", "topic": "public/scores"}
    harness.send(pub, {"action": "publish", "topic": "public/scores", "data": 42})
    for info in (sub1, sub2):
        assert harness.last(info)["type"] == "publish"
        assert harness.last(info)["data"] == 42
    assert harness.frames(outsider) == []
    assert harness.last(pub)["delivered"] == 2
    harness.send(sub2, {"action": "unsubscribe", "topic": "public/scores"})
    harness.send(pub, {"action": "publish", "topic": "public/scores", "data": 43})
    assert harness.last(sub1)["data"] == 43
    assert harness.last(sub2)["type"] == "unsubscribed"


def test_whoami_and_default_echo(harness: Harness) -> None:
    info = harness.connect("sub-w", "walt")
    harness.send(info, {"action": "whoami"})
    identity = harness.last(info)["identity"]
    assert (identity["userId"], identity["username"], identity["connectionId"]) == ("sub-w", "walt", info.connection_id)
    harness.send(info, {"hello": "there"})
    echo = harness.last(info)
    assert echo["type"] == "echo"
    assert echo["message"] == {"hello": "there"}
    assert echo["connection"]["clientParams"] == {"query_clientQueryParameter": "v1"}


@pytest.mark.parametrize("frame, code", [
    ("{not json", "invalid_json"),
    ({"action": "teleport"}, "unknown_action"),
    ({"action": "subscribe"}, "missing_field"),
    ({"action": "publish", "topic": "t"}, "missing_field"),
    ({"action": "subscribe", "topic": ""}, "bad_field"),
    ({"action": "subscribe", "topic": "x" * 500}, "bad_field"),
    ({"action": "sendmessage", "data": "x" * (128 * 1024)}, "payload_too_large"),
])
def test_bad_input_gets_an_error_frame_and_writes_nothing(harness: Harness, frame: Any, code: str) -> None:
    info = harness.connect()
    result = harness.send(info, frame)
    assert result["statusCode"] == 200
    error = harness.last(info)
    assert (error["type"], error["code"]) == ("error", code)
    assert error["message"]
    assert harness.stores.subscriptions.topics_for(info.connection_id) == []


def test_error_frames_carry_the_request_id(harness: Harness) -> None:
    info = harness.connect()
    harness.send(info, {"action": "teleport", "id": "req-1"})
    assert harness.last(info)["id"] == "req-1"
    harness.send(info, {"action": "subscribe", "id": 2})
    assert (harness.last(info)["code"], harness.last(info)["id"]) == ("missing_field", 2)


@pytest.mark.parametrize("frame, kind", [
    ({"action": "whoami"}, "whoami"), ({"action": "subscribe", "topic": "public/t"}, "subscribed"),
    ({"action": "unsubscribe", "topic": "public/t"}, "unsubscribed"), ({"action": "publish", "topic": "public/t", "data": 1}, "ack"),
    ({"action": "sendmessage", "data": 1}, "ack"), ({"hello": "there"}, "echo"),
    ({"action": "refresh", "token": "not-a-token"}, "error"),
])
@pytest.mark.parametrize("request_id", ["req-7", 7])
def test_every_answer_carries_the_frames_id(harness: Harness, frame: dict[str, Any], kind: str,
                                            request_id: str | int) -> None:
    """The promise the browser client's backoff reset and keepalive rely on: every action's answer."""
    info = harness.connect()
    harness.send(info, {**frame, "id": request_id})
    answer = harness.last(info)
    assert (answer["type"], answer["id"]) == (kind, request_id)


def test_gone_connections_are_removed_by_a_broadcast(harness: Harness) -> None:
    alice, ghost = harness.connect("a", "alice"), harness.connect("g", "ghost")
    harness.management.remove(ghost.connection_id)  # killed without $disconnect
    harness.send(alice, {"action": "sendmessage", "data": "anyone?"})
    assert harness.last(alice)["gone"] == 1
    assert harness.stores.connections.get(ghost.connection_id) is None


# -- notify -------------------------------------------------------------------------


def test_notify_reaches_all_connections_of_one_user(harness: Harness) -> None:
    phone, laptop, other = harness.connect("u-1", "ann"), harness.connect("u-1", "ann"), harness.connect("u-2", "ben")
    report = harness.client.lambda_.invoke("notify", {"userId": "u-1", "data": {"n": 1}}).payload
    assert report == {"ok": True, "connections": 2, "delivered": 2, "gone": 0, "failed": 0}
    for info in (phone, laptop):
        assert harness.last(info)["type"] == "notification"
        assert harness.last(info)["data"] == {"n": 1}
    assert harness.frames(other) == []
    by_name = harness.client.lambda_.invoke("notify", {"username": "ben", "data": "hi"}).payload
    assert by_name["delivered"] == 1


@pytest.mark.parametrize("payload, code", [
    ({"data": 1}, "bad_request"),
    ({"userId": "u", "username": "n", "data": 1}, "bad_request"),
    ({"userId": "u"}, "missing_field"),
    ({"userId": "u", "data": "x" * (128 * 1024)}, "payload_too_large"),
])
def test_notify_bad_input(harness: Harness, payload: dict[str, Any], code: str) -> None:
    harness.connect("u", "n")
    report = harness.client.lambda_.invoke("notify", payload).payload
    assert report["ok"] is False
    assert report["error"]["code"] == code


def test_notify_unknown_user_delivers_nothing(harness: Harness) -> None:
    report = harness.client.lambda_.invoke("notify", {"userId": "nobody", "data": 1}).payload
    assert report == {"ok": True, "connections": 0, "delivered": 0, "gone": 0, "failed": 0}


# -- the authorizer path stays light -----------------------------------------------


def test_authorizer_path_never_imports_boto3(stage_env: dict[str, str], token_factory: TokenFactory) -> None:
    token = token_factory.access_token(sub="light")
    event = authorizer_event(API, ClientInfo(headers={"Authorization": f"Bearer {token}"}))
    script = (
        "import json, sys\n"
        "import app\n"
        "answer = app.ws_authorizer(json.loads(sys.stdin.read()), None)\n"
        "assert answer['principalId'] == 'light', answer\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore'))))\n"
    )
    env = {**os.environ, **stage_env}
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(event), capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    *decision_log, modules = done.stdout.splitlines()
    assert json.loads(decision_log[-1])["decision"] == "allow"
    assert json.loads(modules) == []
