"""Channel rules at subscribe, publish, refresh and back-end pushes, through the app's handlers (Chalice's test
client) on DynamoDB Local: refused means ``forbidden`` and nothing written."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib import channels
from chalicelib.items import connection_key
from tests.support.chalice_client import ClientInfo, app_harness
from tests.test_handlers import Harness, harness, stage_env  # noqa: F401 - the handler tests' fixtures

__all__ = ["harness", "stage_env"]


def open_as(harness: Harness, sub: str, username: str, groups: tuple[str, ...] = ()) -> ClientInfo:
    token = harness.tokens.access_token(sub=sub, username=username, groups=groups)
    return harness.open(ClientInfo(headers={"Authorization": f"Bearer {token}"}))


def subscription_count(harness: Harness, info: ClientInfo) -> int:
    item = harness.stores.connections.table.get(connection_key(info.connection_id)) or {}
    return int((item.get("subscriptions") or {}).get("N", "0"))


def error(harness: Harness, info: ClientInfo) -> dict[str, Any]:
    frame = harness.last(info)
    assert frame["type"] == "error", frame
    return frame


def test_a_user_cannot_read_another_users_inbox_and_nothing_is_written(harness: Harness) -> None:
    alice, bob = open_as(harness, "a-sub", "alice"), open_as(harness, "b-sub", "bob")
    harness.send(alice, {"action": "subscribe", "topic": "user/b-sub/inbox", "id": 1})
    refused = error(harness, alice)
    assert (refused["code"], refused["id"]) == ("forbidden", 1) and "user/b-sub/inbox" in refused["message"]
    assert harness.stores.audiences.subscriber_ids("user/b-sub/inbox") == []
    assert subscription_count(harness, alice) == 0
    harness.send(bob, {"action": "subscribe", "topic": "user/b-sub/inbox"})
    assert harness.last(bob) == {"type": "subscribed", "topic": "user/b-sub/inbox"}
    harness.send(bob, {"action": "publish", "topic": "user/b-sub/inbox", "data": "to myself"})
    assert error(harness, bob)["code"] == "forbidden"  # back-ends only write there
    harness.send(alice, {"action": "subscribe", "topic": "news"})  # no rule: deny by default
    assert error(harness, alice)["code"] == "forbidden"


def test_a_group_topic_is_for_members_and_a_publish_says_who_sent_it(harness: Harness) -> None:
    member, outsider = open_as(harness, "m-sub", "mia", ("chess",)), open_as(harness, "o-sub", "otto")
    harness.send(member, {"action": "subscribe", "topic": "group/chess/moves"})
    assert harness.last(member)["type"] == "subscribed"
    harness.send(outsider, {"action": "subscribe", "topic": "group/chess/moves"})
    assert error(harness, outsider)["code"] == "forbidden"
    harness.send(outsider, {"action": "publish", "topic": "group/chess/moves", "data": "e4"})
    assert error(harness, outsider)["code"] == "forbidden"
    other = open_as(harness, "m2-sub", "max", ("chess",))
    harness.send(other, {"action": "publish", "topic": "group/chess/moves", "data": "e4"})
    assert harness.frames(member)[-1] == {"type": "publish", "topic": "group/chess/moves",
                                          "from": {"userId": "m2-sub", "username": "max"}, "data": "e4",
                                          "timestamp": harness.frames(member)[-1]["timestamp"]}


def test_a_refresh_that_drops_a_group_unsubscribes_and_later_checks_use_it(harness: Harness) -> None:
    info = open_as(harness, "r-sub", "rita", ("chess", "go"))
    for topic in ("group/chess/moves", "group/go/moves", "public/news"):
        harness.send(info, {"action": "subscribe", "topic": topic})
    fresh = harness.tokens.access_token(sub="r-sub", username="rita", groups=("go",))
    harness.send(info, {"action": "refresh", "token": fresh, "id": "r"})
    frames = harness.frames(info)[-2:]
    assert frames[0] == {"type": "unsubscribed", "topic": "group/chess/moves", "reason": "forbidden"}
    assert (frames[1]["type"], frames[1]["id"]) == ("refreshed", "r")
    assert harness.stores.audiences.subscriber_ids("group/chess/moves") == []
    assert harness.stores.audiences.subscriber_ids("group/go/moves") == [info.connection_id]
    assert subscription_count(harness, info) == 2
    # The authorizer's context still lists chess; the stored identity, refreshed, decides.
    harness.send(info, {"action": "subscribe", "topic": "group/chess/moves"})
    assert error(harness, info)["code"] == "forbidden"
    harness.send(info, {"action": "publish", "topic": "group/chess/moves", "data": 1})
    assert error(harness, info)["code"] == "forbidden"


def test_a_static_rule_costs_no_dynamodb_call(harness: Harness) -> None:
    """A subscribe is one GetItem (the connection, for its TTL and stored identity) and one transaction, and a
    publish reads its sender as before: counted on the app's own DynamoDB client, allowed and refused alike."""
    from chalicelib import runtime

    alice = open_as(harness, "a-sub", "alice")
    client = runtime.current().components.connections.table.client
    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    harness.send(alice, {"action": "subscribe", "topic": "public/news"})
    assert (harness.last(alice)["type"], calls) == ("subscribed", ["GetItem", "TransactWriteItems"])
    calls.clear()
    harness.send(alice, {"action": "subscribe", "topic": "user/b-sub/inbox"})
    assert (harness.last(alice)["code"], calls) == ("forbidden", ["GetItem"])  # refused before any write
    calls.clear()
    harness.send(alice, {"action": "publish", "topic": "group/none/x", "data": 1})
    assert (harness.last(alice)["code"], calls) == ("forbidden", ["GetItem"])


HOOK_RULES = json.dumps([{"topic": "rooms/*", "subscribe": "hook", "publish": "hook"},
                         {"topic": "public/**", "subscribe": "any", "publish": "any"}])


@pytest.fixture
def hooked(tmp_path: Path, stage_env: dict[str, str], token_factory: Any, management_api: Any,
           stores: Any) -> Iterator[Harness]:
    """The app with a ``hook`` rule for ``rooms/*``; the test registers the hook, as app.py would."""
    with app_harness(Harness, tmp_path, {**stage_env, "CHANNEL_RULES": HOOK_RULES}, token_factory, management_api,
                     stores) as harness:
        yield harness
    channels.authorizer(None)


def test_the_hook_decides_members_only_and_refuses_when_it_fails(hooked: Harness) -> None:
    members = {"rooms/chess": {"m-sub"}}
    asked: list[tuple[str, str, str]] = []

    @channels.authorizer
    def can_join(identity: Any, topic: str, action: str) -> bool:
        asked.append((identity.sub, topic, action))
        if topic == "rooms/broken":
            raise RuntimeError("the membership table is down")
        return identity.sub in members.get(topic, set())

    member, outsider = open_as(hooked, "m-sub", "mia"), open_as(hooked, "o-sub", "otto")
    hooked.send(member, {"action": "subscribe", "topic": "rooms/chess"})
    assert hooked.last(member)["type"] == "subscribed"
    hooked.send(outsider, {"action": "subscribe", "topic": "rooms/chess"})
    assert error(hooked, outsider)["code"] == "forbidden"
    hooked.send(member, {"action": "subscribe", "topic": "rooms/broken"})
    assert error(hooked, member)["code"] == "forbidden"  # an exception refuses
    hooked.send(outsider, {"action": "publish", "topic": "rooms/chess", "data": "hi"})
    assert error(hooked, outsider)["code"] == "forbidden"
    hooked.send(member, {"action": "publish", "topic": "rooms/chess", "data": "e4"})
    assert hooked.last(member)["type"] == "ack"
    before = len(asked)
    hooked.client.lambda_.invoke("eventbridge_push", {  # a back-end push to the room: no hook call per delivery
        "version": "0", "id": "e", "source": "ws-cognito.push", "detail-type": "TopicMessage", "account": "1",
        "time": "2026-12-07T00:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"topic": "rooms/chess", "data": "from the back-end"}})
    assert hooked.frames(member)[-1]["data"] == "from the back-end" and len(asked) == before
