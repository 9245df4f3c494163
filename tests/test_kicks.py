"""Kick and revoke through the app's handlers (Chalice's test client, DynamoDB Local, the management API):
notify's ``disconnect``, EventBridge's ``Disconnect``, ``POST /users/{userId}/disconnect``; a revocation
refuses older tokens at ``$connect``, ``refresh`` and REST, while a newer sign-in works."""
from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.support.chalice_client import ClientInfo, services_env
from tests.support.stack import without_message_id
from tests.test_handlers import Harness, harness  # noqa: F401 - the handler tests' fixture

__all__ = ["harness"]


@pytest.fixture
def stage_env(jwks_server: Any, connections_table: str, dynamodb_local: Any, management_api: Any,
              cognito_issuer: str, client_id: str) -> dict[str, str]:
    """The shared test settings, with admins (``admin``) and publishers."""
    return services_env(jwks_server, connections_table, dynamodb_local, management_api, cognito_issuer, client_id,
                        ADMIN_GROUPS="admin", PUSH_GROUPS="publishers")


def open_as(harness: Harness, sub: str, username: str, **claims: Any) -> ClientInfo:
    token = harness.tokens.access_token(sub=sub, username=username, **claims)
    return harness.open(ClientInfo(headers={"Authorization": f"Bearer {token}"}))


def connect_status(harness: Harness, token: str) -> int:
    from tests.support.chalice_client import API, connect_event

    info = ClientInfo(headers={"Authorization": f"Bearer {token}"})
    answer = harness.authorize(info)
    info.authorizer = {**answer["context"], "principalId": answer["principalId"]}
    return int(harness.client.lambda_.invoke("connect", connect_event(API, info)).payload["statusCode"])


def test_notify_disconnect_closes_every_connection_of_the_user_only(harness: Harness) -> None:
    phone, laptop, other = open_as(harness, "b-sub", "bob"), open_as(harness, "b-sub", "bob"), open_as(
        harness, "c-sub", "cara")
    answer = harness.client.lambda_.invoke("notify", {"userId": "b-sub", "disconnect": True}).payload
    assert answer == {"ok": True, "connections": 2, "closed": 2, "gone": 0, "failed": 0, "revoked": False}
    assert sorted(harness.management.deleted) == sorted([phone.connection_id, laptop.connection_id])
    assert other.connection_id not in harness.management.deleted
    # Not revoked: the same token connects again.
    assert connect_status(harness, harness.tokens.access_token(sub="b-sub", username="bob")) == 200


@pytest.mark.parametrize("payload, code", [
    ({"userId": "b-sub", "disconnect": "yes"}, "bad_request"),
    ({"userId": "b-sub", "disconnect": True, "revoke": "yes"}, "bad_request"),
    ({"userId": "b-sub", "username": "bob", "disconnect": True}, "bad_request"),
    ({"userId": "b-sub", "disconnect": True, "data": 1}, "bad_request"),
])
def test_a_bad_disconnect_closes_nothing(harness: Harness, payload: dict[str, Any], code: str) -> None:
    open_as(harness, "b-sub", "bob")
    answer = harness.client.lambda_.invoke("notify", payload).payload
    assert (answer["ok"], answer["error"]["code"]) == (False, code)
    assert harness.management.deleted == []


def test_revoke_refuses_older_tokens_at_connect_refresh_and_rest_while_a_new_sign_in_works(
        harness: Harness) -> None:
    old = harness.tokens.access_token(sub="b-sub", username="bob", iat=int(time.time()) - 60)
    info = harness.open(ClientInfo(headers={"Authorization": f"Bearer {old}"}))
    event = {"version": "0", "id": "e-1", "source": "ws-cognito.push", "detail-type": "Disconnect",
             "account": "123456789012", "time": "2026-12-07T00:00:00Z", "region": "us-east-1", "resources": [],
             "detail": {"username": "bob", "revoke": True}}
    answer = harness.client.lambda_.invoke("eventbridge_push", event).payload
    assert (answer["closed"], answer["revoked"]) == (1, True)
    assert harness.management.deleted == [info.connection_id]
    assert connect_status(harness, old) == 403  # $connect: the transaction's condition
    rest = harness.client.http.get("/me", headers={"Authorization": f"Bearer {old}"})
    assert rest.status_code == 401 and json.loads(rest.body)["error"]["code"] == "unauthorized"
    time.sleep(1.05)  # a sign-in after the kick's second (a token of that same second is refused: fail closed)
    fresh = harness.tokens.access_token(sub="b-sub", username="bob", iat=int(time.time()))
    assert connect_status(harness, fresh) == 200
    assert harness.client.http.get("/me", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
    again = harness.open(ClientInfo(headers={"Authorization": f"Bearer {fresh}"}))
    harness.send(again, {"action": "refresh", "token": old, "id": "r"})
    refused = without_message_id(harness.raw_frames(again)[-1])
    assert (refused["type"], refused["code"]) == ("error", "forbidden") and "revoked" in refused["message"]
    assert again.connection_id in harness.management.deleted  # closed after the error frame


def test_the_rest_route_is_for_admins(harness: Harness) -> None:
    target = open_as(harness, "b-sub", "bob")
    for token in (harness.tokens.access_token(sub="u", username="u"),
                  harness.tokens.access_token(sub="p", username="p", groups=("publishers",))):
        refused = harness.client.http.post("/users/b-sub/disconnect", headers={"Authorization": f"Bearer {token}"},
                                           body=b"{}")
        assert refused.status_code == 403, refused.body
    admin = harness.tokens.access_token(sub="adm", username="adm", groups=("admin",))
    answer = harness.client.http.post("/users/b-sub/disconnect", body=json.dumps({"revoke": True}).encode(),
                                      headers={"Authorization": f"Bearer {admin}",
                                               "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.body
    assert json.loads(answer.body) == {"ok": True, "connections": 1, "closed": 1, "gone": 0, "failed": 0,
                                       "revoked": True}
    assert harness.management.deleted == [target.connection_id]
