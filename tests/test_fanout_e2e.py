"""Queued fan-out end to end: ``devtools.stack`` with FANOUT_INLINE_MAX=5, real clients, moto's SQS.

The stack is the one ``make run`` starts (its own instance, so the session
stack's inline-only broadcasts are not affected): the app enqueues work items
to moto's SQS queue, the stack's event source mapping invokes ``fanout_worker``
in worker processes with Lambda's SQS event, deletes on success, and leaves a
failed item for the visibility timeout (2 s here); moto's server moves it to
the dead-letter queue after 3 receives. Faults come from the gateway's
management API (``LOCAL_GATEWAY_FAIL_POSTS``: a connection's first N POSTs
answer 500), so the worker fails the way it would when API Gateway does.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.aws import WORKER_MAX_ATTEMPTS
from chalicelib.fanout import WorkItem
from devtools.gateway.management import FAIL_POSTS_ENV, FAIL_POSTS_HEADER
from devtools.gateway.server import LOSE_DISCONNECTS_ENV
from tests.support.stack import Client, ClientFactory, RunningStack, run_stack

INLINE_MAX = 5
CLIENTS = 8  # the sender and 7 others: over FANOUT_INLINE_MAX, so every broadcast is queued
VISIBILITY = 2
MAX_RECEIVE = 3

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def fanout_stack() -> Iterator[RunningStack]:
    with run_stack({"FANOUT_INLINE_MAX": str(INLINE_MAX)}, {LOSE_DISCONNECTS_ENV: "1", FAIL_POSTS_ENV: "1"},
                   args=["--fanout-workers", "2", "--fanout-visibility-timeout", str(VISIBILITY),
                         "--fanout-max-receive", str(MAX_RECEIVE)]) as stack:
        yield stack


@pytest.fixture
def clients(fanout_stack: RunningStack) -> Iterator[ClientFactory]:
    fanout_stack.wait_no_connections(timeout=10.0)
    _purge(fanout_stack)
    factory = ClientFactory(fanout_stack)
    try:
        yield factory
    finally:
        factory.close_all()


def _sqs(stack: RunningStack) -> Any:
    import boto3

    return boto3.client("sqs", endpoint_url=stack.state["fanout"]["sqs_endpoint"], region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")


def _purge(stack: RunningStack) -> None:
    """Empty the DLQ (PurgeQueue is allowed once a minute: received and deleted instead)."""
    _dlq_bodies(stack, wait=0)


def _frames(client: Client, settle: float) -> list[dict[str, Any]]:
    """Every frame that arrives until ``settle`` seconds pass without one (duplicates included)."""
    frames: list[dict[str, Any]] = []
    while True:
        try:
            frames.append(client.recv_raw(timeout=settle))
        except TimeoutError:
            return frames


def _once_each(receivers: list[Client], data: str, first_timeout: float, settle: float) -> str:
    """Each receiver got ``data`` exactly once ignoring duplicates by messageId; the shared messageId."""
    ids: set[str] = set()
    for receiver in receivers:
        frames = [receiver.recv_raw(timeout=first_timeout)] + _frames(receiver, settle)
        assert {f["type"] for f in frames} == {"message"}, frames
        assert [f["data"] for f in frames] == [data] * len(frames), frames
        ids |= {f["messageId"] for f in frames}
    assert len(ids) == 1, f"one push, one messageId for everyone: {ids}"
    return ids.pop()


def _worker_lines(stack: RunningStack) -> list[str]:
    return [line for line in stack.logs().splitlines() if "SQS fanout_worker" in line]


def _connect_all(stack: RunningStack, clients: ClientFactory, headers: dict[str, dict[str, str]] | None = None,
                 ) -> list[Client]:
    opened = []
    for index in range(CLIENTS):
        user = stack.user(f"fan{index}")
        opened.append(clients(user.access_token, headers=(headers or {}).get(str(index))))
    return opened


def test_a_broadcast_over_the_inline_limit_is_queued_and_arrives_once(fanout_stack: RunningStack,
                                                                     clients: ClientFactory) -> None:
    sender, *receivers = _connect_all(fanout_stack, clients)
    # A connection lost without $disconnect: its record stays until a post meets 410.
    item = fanout_stack.connection_item(receivers[0].connection_id)
    assert item is not None
    stale = "Stale" + uuid.uuid4().hex[:10] + "="
    fanout_stack.dynamodb.put_item(TableName=fanout_stack.table, Item={
        **item, "pk": {"S": f"CONN#{stale}"}, "connectionId": {"S": stale}})

    ack = sender.request({"action": "sendmessage", "data": "to everyone", "id": "b1"})
    assert ack["type"] == "ack" and ack["id"] == "b1" and ack["queued"] >= 1, ack
    assert "delivered" not in ack  # queued: no per-connection counts
    _once_each(receivers, "to everyone", first_timeout=20, settle=0.5)
    sender.recv_none(within=0.5)  # "every other connection": never the sender, on the queued path too
    fanout_stack.wait_until(lambda: fanout_stack.connection_item(stale) is None, 10,
                            "the gone connection's record to be removed by the worker")
    assert fanout_stack.connection_item(receivers[0].connection_id) is not None


def test_a_worker_that_fails_once_is_redelivered_once(fanout_stack: RunningStack, clients: ClientFactory) -> None:
    # Receiver 1's first WORKER_MAX_ATTEMPTS posts answer 500: the first invocation gives up on it.
    sender, *receivers = _connect_all(fanout_stack, clients,
                                      {"1": {FAIL_POSTS_HEADER: f"1,{WORKER_MAX_ATTEMPTS}"}})  # after whoami
    before = _worker_lines(fanout_stack)
    ack = sender.request({"action": "sendmessage", "data": "try again"})
    assert ack["queued"] == 1, ack  # 8 connections: one scan segment, one work item
    _once_each(receivers, "try again", first_timeout=60, settle=VISIBILITY + 1.5)
    fanout_stack.wait_until(lambda: len(_worker_lines(fanout_stack)) >= len(before) + 2, 10, "two invocations")
    new = _worker_lines(fanout_stack)[len(before):]
    assert [("receive #1 error" in line, "receive #2 ok" in line) for line in new] == [(True, False), (False, True)], new
    assert _dlq_bodies(fanout_stack, wait=0) == []


def test_a_worker_that_keeps_failing_ends_in_the_dead_letter_queue(fanout_stack: RunningStack,
                                                                   clients: ClientFactory) -> None:
    sender, *receivers = _connect_all(fanout_stack, clients, {"1": {FAIL_POSTS_HEADER: "1,1000"}})
    doomed, others = receivers[0], receivers[1:]
    ack = sender.request({"action": "sendmessage", "data": "never for one"})
    assert ack["queued"] == 1, ack
    message_id = _once_each(others, "never for one", first_timeout=60, settle=0.3)
    bodies = _dlq_bodies(fanout_stack, wait=90)
    assert len(bodies) == 1, bodies
    item = WorkItem.decode(bodies[0])
    assert item.message_id == message_id and json.loads(item.frame)["messageId"] == message_id
    assert item.exclude == (sender.connection_id,)
    doomed.recv_none(within=0.3)
    receives = [line for line in _worker_lines(fanout_stack) if "error" in line]
    assert len(receives) >= MAX_RECEIVE
    assert _dlq_bodies(fanout_stack, wait=0) == []  # taken above; nothing else arrived


def _dlq_bodies(stack: RunningStack, wait: float) -> list[str]:
    """The DLQ's messages (received and deleted), waiting up to ``wait`` seconds for the first."""
    sqs = _sqs(stack)
    url = stack.state["fanout"]["dlq_url"]
    deadline = time.monotonic() + wait
    bodies: list[str] = []
    while True:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1 if wait else 0)
        for message in answer.get("Messages") or []:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if bodies or time.monotonic() > deadline:
            return bodies
