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


def cloudtrail_event(pool_id: str, username: str, sub: str | None = None,
                     call: str = "AdminUserGlobalSignOut") -> dict[str, Any]:
    """What EventBridge delivers when CloudTrail logs an admin sign-out of a Cognito user (Cognito may hide
    ``username``; ``additionalEventData.sub`` names the user then)."""
    detail: dict[str, Any] = {
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": "arn:aws:iam::123456789012:user/ops",
                         "accountId": "123456789012", "accessKeyId": "AKIAEXAMPLE", "userName": "ops"},
        "eventTime": "2026-12-07T05:00:00Z", "eventSource": "cognito-idp.amazonaws.com", "eventName": call,
        "awsRegion": "us-east-1", "sourceIPAddress": "192.0.2.10", "userAgent": "aws-cli/2.15.0",
        "requestParameters": {"userPoolId": pool_id, "username": username}, "responseElements": None,
        "requestID": "3f1c8b1e-0000-4000-8000-000000000001", "eventID": "3f1c8b1e-0000-4000-8000-000000000002",
        "readOnly": False, "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": "123456789012",
        "eventCategory": "Management"}
    if sub is not None:
        detail["additionalEventData"] = {"sub": sub}
    return {"version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602", "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.cognito-idp", "account": "123456789012", "time": "2026-12-07T05:00:00Z",
            "region": "us-east-1", "resources": [], "detail": detail}


def test_a_cloudtrail_sign_out_kicks_and_revokes_only_when_on_and_for_this_pool(
        harness: Harness, stage_env: dict[str, str]) -> None:
    from chalicelib.push_events import handle_signout

    pool = stage_env["COGNITO_USER_POOL_ID"]
    kicked: list[Any] = []

    def disconnect(request: Any) -> dict[str, Any]:
        kicked.append(request)
        return {"ok": True, "closed": 1}

    by_name = cloudtrail_event(pool, "bob")
    assert handle_signout(by_name, True, (pool,), disconnect)["ok"] is True
    assert (kicked[-1].user.name, kicked[-1].user.by, kicked[-1].revoke) == ("bob", "username", True)
    hidden = cloudtrail_event(pool, "HIDDEN_DUE_TO_SECURITY_REASONS", sub="b-sub")
    handle_signout(hidden, True, (pool,), disconnect)
    assert (kicked[-1].user.name, kicked[-1].user.by) == ("b-sub", "sub")
    assert handle_signout(by_name, False, (pool,), disconnect) == {"ok": True,
                                                                    "ignored": "close_on_cognito_signout_off"}
    assert handle_signout(cloudtrail_event("us-east-1_Other", "bob"), True, (pool,), disconnect)["ignored"] == \
        "another_pool"
    nameless = cloudtrail_event(pool, "HIDDEN_DUE_TO_SECURITY_REASONS")
    assert handle_signout(nameless, True, (pool,), disconnect)["error"]["code"] == "bad_request"
    assert len(kicked) == 2
