"""Channel rules, kick and revoke end to end on ``make run``'s stack, with real WebSocket clients, the REST
server, the gateway's EventBridge and moto's Cognito: private inboxes, group topics, a refresh that drops a
group, an admin's kick, a revocation, a CloudTrail-shaped sign-out."""
from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from devtools import cognito_local
from tests.support.stack import ClientFactory, RunningStack, User
from tests.test_rest_e2e import _http, _publisher


def member_of(stack: RunningStack, group: str, prefix: str) -> User:
    user = stack.user(prefix)
    cognito_local.ensure_group(stack.pool, group, user.username)
    tokens = cognito_local.sign_in(stack.pool, user.username)
    return User(user.username, user.sub, tokens["access_token"], tokens["id_token"])


def test_a_private_inbox_is_read_only_by_its_user_and_fed_by_back_ends(local_stack: RunningStack,
                                                                      ws_clients: ClientFactory) -> None:
    alice, bob = local_stack.user("alice"), local_stack.user("bob")
    a, b = ws_clients(alice.access_token), ws_clients(bob.access_token)
    inbox = f"user/{bob.sub}/inbox"
    refused = a.request({"action": "subscribe", "topic": inbox, "id": "peek"})
    assert (refused["type"], refused["code"], refused["id"]) == ("error", "forbidden", "peek")
    assert not [item for item in local_stack.dynamodb.scan(TableName=local_stack.table)["Items"]
                if item["sk"]["S"] == f"TOPIC#{inbox}"]  # nothing written
    assert b.request({"action": "subscribe", "topic": inbox}) == {"type": "subscribed", "topic": inbox}
    assert b.request({"action": "publish", "topic": inbox, "data": "me"})["code"] == "forbidden"
    rest = local_stack.state["rest_url"]
    status, report = _http("POST", f"{rest}/topics/{quote(inbox, safe='')}/messages",
                           _publisher(local_stack).access_token, {"data": "for bob"})
    assert (status, report["delivered"]) == (200, 1)
    pushed = b.recv()
    assert (pushed["type"], pushed["topic"], pushed["data"]) == ("push", inbox, "for bob") and "from" not in pushed
    a.recv_none()
    status, answer = _http("POST", f"{rest}/topics/nowhere/messages", _publisher(local_stack).access_token,
                           {"data": 1})
    assert (status, answer["error"]["code"]) == (403, "forbidden")  # no rule: no push either


def test_a_group_topic_is_for_members_and_a_refresh_that_drops_the_group_unsubscribes(
        local_stack: RunningStack, ws_clients: ClientFactory) -> None:
    group = "chess"
    member, outsider = member_of(local_stack, group, "mia"), local_stack.user("otto")
    m, o = ws_clients(member.access_token), ws_clients(outsider.access_token)
    topic = f"group/{group}/moves"
    assert o.request({"action": "subscribe", "topic": topic})["code"] == "forbidden"
    assert m.request({"action": "subscribe", "topic": topic})["type"] == "subscribed"
    assert m.request({"action": "subscribe", "topic": "public/lobby"})["type"] == "subscribed"
    idp = cognito_local.pool_client(local_stack.pool)
    idp.admin_remove_user_from_group(UserPoolId=local_stack.pool.pool_id, Username=member.username, GroupName=group)
    fresh = cognito_local.sign_in(local_stack.pool, member.username)["access_token"]
    m.send({"action": "refresh", "token": fresh, "id": "r"})
    assert m.recv() == {"type": "unsubscribed", "topic": topic, "reason": "forbidden"}
    assert m.recv()["type"] == "refreshed"
    assert m.request({"action": "subscribe", "topic": topic})["code"] == "forbidden"
    assert m.request({"action": "publish", "topic": "public/lobby", "data": "still here"})["type"] == "ack"


def test_kick_closes_every_connection_and_revoke_refuses_the_old_token_while_a_new_sign_in_works(
        local_stack: RunningStack, ws_clients: ClientFactory) -> None:
    """An admin's REST kick with revoke: both of bob's connections close; his old token is refused at
    reconnect and on REST; after signing in again he connects."""
    bob, admin = local_stack.user("bob"), member_of(local_stack, "admin", "adm")
    phone, laptop = ws_clients(bob.access_token), ws_clients(bob.access_token, via="access_token")
    rest = local_stack.state["rest_url"]
    status, answer = _http("POST", f"{rest}/users/{bob.sub}/disconnect", admin.access_token, {"revoke": True})
    assert (status, answer["closed"], answer["revoked"]) == (200, 2, True), answer
    for client in (phone, laptop):
        with pytest.raises(ConnectionClosed):
            while True:
                client.recv(timeout=5)
    with pytest.raises(InvalidStatus) as refused:
        ws_clients(bob.access_token)
    assert refused.value.response.status_code == 403
    assert _http("GET", f"{rest}/me", bob.access_token)[0] == 401
    assert _http("POST", f"{rest}/users/{bob.sub}/disconnect", bob.access_token, {})[0] == 403  # not an admin
    time.sleep(1.05)  # a sign-in after the kick's second
    again = cognito_local.sign_in(local_stack.pool, bob.username)["access_token"]
    assert ws_clients(again).whoami()["userId"] == bob.sub


def test_a_cloudtrail_sign_out_event_closes_the_users_connections(local_stack: RunningStack,
                                                                 ws_clients: ClientFactory) -> None:
    """What CloudTrail hands EventBridge for AdminUserGlobalSignOut, put on the local stack (which plays
    CloudTrail): the user's connections close and the old token is refused."""
    from tests.test_eventbridge_e2e import _events
    from tests.test_kicks import cloudtrail_event

    carol = local_stack.user("carol")
    client = ws_clients(carol.access_token)
    event = cloudtrail_event(local_stack.pool.pool_id, carol.username)
    put = _events(local_stack).put_events(Entries=[{"Source": event["source"], "DetailType": event["detail-type"],
                                                    "Detail": json.dumps(event["detail"])}])
    assert put["FailedEntryCount"] == 0, put
    with pytest.raises(ConnectionClosed):
        while True:
            client.recv(timeout=5)
    with pytest.raises(InvalidStatus):
        ws_clients(carol.access_token)


HOOK_RULES = json.dumps([{"topic": "rooms/*", "subscribe": "hook", "publish": "hook"},
                         {"topic": "public/**", "subscribe": "any", "publish": "any"}])


def test_a_hook_rule_asks_the_apps_function_and_a_failing_hook_refuses() -> None:
    """A stack whose process registered a hook (``tests/support/channel_hook``): members join, others are
    refused, and an exception or a timeout in the hook refuses too."""
    from tests.support.builders import ROOT
    from tests.support.stack import ClientFactory as Factory
    from tests.support.stack import run_stack

    hook_dir = ROOT / "tests" / "support" / "channel_hook"
    with run_stack(settings={"CHANNEL_RULES": HOOK_RULES}, env={"PYTHONPATH": f"{hook_dir}:{ROOT}"}) as stack:
        clients = Factory(stack)
        try:
            member = clients(stack.user("member-mia").access_token)
            outsider = clients(stack.user("otto").access_token)
            assert member.request({"action": "subscribe", "topic": "rooms/chess"})["type"] == "subscribed"
            assert outsider.request({"action": "subscribe", "topic": "rooms/chess"})["code"] == "forbidden"
            assert outsider.request({"action": "publish", "topic": "rooms/chess", "data": 1})["code"] == "forbidden"
            assert member.request({"action": "subscribe", "topic": "rooms/broken"})["code"] == "forbidden"
            started = time.monotonic()
            assert member.request({"action": "subscribe", "topic": "rooms/slow"}, timeout=10)["code"] == "forbidden"
            assert time.monotonic() - started < 2.5  # refused at the hook's 1 s limit, not after its 3 s
            assert "channel_hook_failed" in stack.logs()
        finally:
            clients.close_all()
