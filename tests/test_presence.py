"""Presence (``chalicelib/presence.py``) through the app's handlers on DynamoDB Local: join and leave announced
to the others, a user with several tabs is one member, every way a connection goes removes it, the size
limit, and concurrent joins and leaves of one user's connections that never leave a wrong member list."""
from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

from chalicelib.presence import PresenceStore
from tests.support.chalice_client import ClientInfo
from tests.test_handlers import Harness, harness, harness_with, stage_env  # noqa: F401 - the handler tests' fixtures

__all__ = ["harness", "stage_env"]
RULES = json.dumps([{"topic": "room/*", "subscribe": "any", "publish": "any", "presence": True},
                    {"topic": "public/**", "subscribe": "any", "publish": "any"}])


app = harness_with(CHANNEL_RULES=RULES, MAX_PRESENCE_MEMBERS="3")


def open_as(app: Harness, user: str) -> ClientInfo:
    return app.open(ClientInfo(headers={"Authorization": f"Bearer {app.tokens.access_token(sub=user, username=user)}"}))


def close(app: Harness, info: ClientInfo) -> None:
    from devtools.gateway.events import disconnect_event
    from tests.support.chalice_client import API

    app.client.lambda_.invoke("disconnect", disconnect_event(API, info, status_code=1001, reason="Going away"))


def kinds(app: Harness, info: ClientInfo, kind: str) -> list[dict[str, Any]]:
    return [f for f in app.frames(info) if f.get("type") == kind]


def test_join_leave_and_tabs(app: Harness) -> None:
    topic = f"room/{time.monotonic_ns()}"
    mia, max_tab1 = open_as(app, "mia"), open_as(app, "max")
    app.send(mia, {"action": "subscribe", "topic": topic})
    assert app.last(mia)["members"] == [{"userId": "mia", "username": "mia"}]
    app.send(max_tab1, {"action": "subscribe", "topic": topic})
    assert sorted(m["userId"] for m in app.last(max_tab1)["members"]) == ["max", "mia"]
    assert kinds(app, mia, "member_added")[-1]["member"] == {"userId": "max", "username": "max"}
    max_tab2 = open_as(app, "max")
    app.send(max_tab2, {"action": "subscribe", "topic": topic})  # a second tab: still one member
    assert len(kinds(app, mia, "member_added")) == 1
    app.send(max_tab1, {"action": "unsubscribe", "topic": topic})
    assert kinds(app, mia, "member_removed") == []  # the other tab is still there
    close(app, max_tab2)  # $disconnect of the last one
    assert [f["member"]["userId"] for f in kinds(app, mia, "member_removed")] == ["max"]
    assert app.stores.connections.table.get({"pk": {"S": f"PRES#{topic}"}, "sk": {"S": "M#max"}}) is None


def test_a_full_topic_refuses_one_more_member_and_writes_nothing(app: Harness) -> None:
    topic = f"room/{time.monotonic_ns()}"
    for user in ("a", "b", "c"):
        info = open_as(app, user)
        app.send(info, {"action": "subscribe", "topic": topic})
        assert app.last(info)["type"] == "subscribed"
    late = open_as(app, "d")
    app.send(late, {"action": "subscribe", "topic": topic})
    assert app.last(late)["code"] == "presence_full"
    assert late.connection_id not in app.stores.audiences.subscriber_ids(topic)
    tab = open_as(app, "a")  # an existing member's other tab is not a new member
    app.send(tab, {"action": "subscribe", "topic": topic})
    assert app.last(tab)["type"] == "subscribed"


def test_a_gone_connection_found_by_a_broadcast_is_removed(app: Harness) -> None:
    topic = f"room/{time.monotonic_ns()}"
    mia, ghost = open_as(app, "mia"), open_as(app, "ghost")
    for info in (mia, ghost):
        app.send(info, {"action": "subscribe", "topic": topic})
    app.management.remove(ghost.connection_id)  # gone without a $disconnect (API Gateway's best effort)
    app.send(mia, {"action": "publish", "topic": topic, "data": "anyone?"})
    assert [f["member"]["userId"] for f in kinds(app, mia, "member_removed")] == ["ghost"]


def test_concurrent_joins_and_leaves_of_one_users_connections(stores: Any) -> None:
    """40 rounds: a user's 4 connections join and leave at once in random order; the member list always
    ends right (a member exactly while a connection is in), and the announcements alternate."""
    store = PresenceStore(stores.connections.table)
    topic = f"room/race-{time.monotonic_ns()}"
    from chalicelib.identity import Identity

    who = Identity(sub="u", username="u")
    for _ in range(40):
        inside = random.randint(0, 4)
        for _ in range(inside):
            store.join(topic, who, 10)
        events: list[str] = []
        lock = threading.Lock()

        def record(event: str) -> None:
            with lock:
                events.append(event)

        def tab() -> None:  # a new connection: joins, then leaves
            record("added" if store.join(topic, who, 10) else "join")
            time.sleep(random.random() / 200)
            record("removed" if store.leave(topic, "u") else "leave")

        def existing() -> None:  # a connection that was in before the round: leaves
            record("removed" if store.leave(topic, "u") else "leave")

        threads = [threading.Thread(target=tab) for _ in range(4)] + \
            [threading.Thread(target=existing) for _ in range(inside)]
        random.shuffle(threads)
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.members(topic, 10) == [], events  # every connection left: no member
        changes = [e for e in events if e in ("added", "removed")]
        assert changes.count("removed") - changes.count("added") == (1 if inside else 0), events


def test_rest_lists_members_for_callers_who_may_subscribe(app: Harness) -> None:
    topic = f"room/{time.monotonic_ns()}"
    mia = open_as(app, "mia")
    app.send(mia, {"action": "subscribe", "topic": topic})
    token = app.tokens.access_token(sub="zed", username="zed")
    path = "/topics/" + topic.replace("/", "%2F") + "/members"
    answer = app.client.http.get(path, headers={"Authorization": f"Bearer {token}"})
    assert (answer.status_code, json.loads(answer.body)) == (200, {"topic": topic, "members": [
        {"userId": "mia", "username": "mia"}]})
    for other, status in (("public%2Fnews", 400), ("private%2Fx", 403)):  # no presence; no rule lets zed in
        refused = app.client.http.get(f"/topics/{other}/members", headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == status, refused.body
