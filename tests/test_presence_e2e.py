"""Presence end to end on ``make run``'s stack (its own, with a presence rule), real WebSocket clients: join,
leave, two tabs of one user, and a member whose connection vanished without a ``$disconnect`` (the 410 a
broadcast finds) removed and announced."""
from __future__ import annotations

import json
import uuid

import pytest

from tests.support.stack import ClientFactory, RunningStack, rules_stack_fixtures

pytestmark = pytest.mark.timeout(120)
RULES = json.dumps([{"topic": "room/*", "subscribe": "any", "publish": "any", "presence": True},
                    {"topic": "public/**", "subscribe": "any", "publish": "any"}])


rules_stack, clients = rules_stack_fixtures(RULES)


def test_join_leave_and_two_tabs(rules_stack: RunningStack, clients: ClientFactory) -> None:
    topic = f"room/{uuid.uuid4().hex[:8]}"
    mia_user, max_user = rules_stack.user("mia"), rules_stack.user("max")
    mia = clients(mia_user.access_token)
    assert mia.request({"action": "subscribe", "topic": topic})["members"] == [
        {"userId": mia_user.sub, "username": mia_user.username}]
    tab1, tab2 = clients(max_user.access_token), clients(max_user.access_token)
    joined = tab1.request({"action": "subscribe", "topic": topic})
    assert {m["userId"] for m in joined["members"]} == {mia_user.sub, max_user.sub}
    assert mia.recv() == {"type": "member_added", "topic": topic,
                          "member": {"userId": max_user.sub, "username": max_user.username}}
    assert tab2.request({"action": "subscribe", "topic": topic})["type"] == "subscribed"
    mia.recv_none()  # a second tab is not a new member
    assert tab1.request({"action": "unsubscribe", "topic": topic})["wasSubscribed"] is True
    mia.recv_none()  # the other tab is still in
    tab2.close()
    assert mia.recv(timeout=10) == {"type": "member_removed", "topic": topic,
                                    "member": {"userId": max_user.sub, "username": max_user.username}}


def test_a_member_gone_without_a_disconnect_is_removed_by_the_next_delivery(
        rules_stack: RunningStack, clients: ClientFactory) -> None:
    """A connection stored and joined, but unknown to the gateway (its $disconnect never ran): the next
    publish to the topic meets a 410 and removes it, and the others hear member_removed."""
    from chalicelib.identity import Identity
    from chalicelib.presence import PresenceStore
    from chalicelib.subscriptions import SubscriptionStore
    from chalicelib.connections import ConnectionStore
    from chalicelib.table import StaticClient, Table
    from tests.support.dynamodb import make_record

    topic = f"room/{uuid.uuid4().hex[:8]}"
    table = Table(rules_stack.table, StaticClient(rules_stack.dynamodb))
    ghost = f"ghost{uuid.uuid4().hex[:8]}"
    ConnectionStore(table).put(make_record(ghost, user_id="ghost-user", username="ghost"))
    SubscriptionStore(table).subscribe(ghost, topic)
    PresenceStore(table).join(topic, Identity(sub="ghost-user", username="ghost"), 100)
    mia_user = rules_stack.user("mia")
    mia = clients(mia_user.access_token)
    # Mia's join is announced to the ghost: that post meets a 410, and the ghost is removed and announced.
    mia.send({"action": "subscribe", "topic": topic})
    frames = {frame["type"]: frame for frame in (mia.recv(timeout=10), mia.recv(timeout=10))}
    assert {m["userId"] for m in frames["subscribed"]["members"]} <= {"ghost-user", mia_user.sub}
    assert frames["member_removed"] == {"type": "member_removed", "topic": topic,
                                        "member": {"userId": "ghost-user", "username": "ghost"}}
    answer = mia.request({"action": "publish", "topic": topic, "data": "anyone?"})
    assert (answer["type"], answer["delivered"], answer["gone"]) == ("ack", 0, 0)  # nobody else: the ghost is gone
