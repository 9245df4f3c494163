"""At-least-once delivery without duplicates: what botocore may retry, against a real HTTP management API.

The client is the runtime's (``aws.Clients.management``: standard retries plus
``_refuse_retry_after_send``). The local management API records a post as
delivered once it has answered it, whether or not the client was still
waiting, as API Gateway delivers a frame whose answer the caller lost.
"""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chalicelib import aws
from chalicelib.broadcaster import Broadcaster
from chalicelib.protocol import outgoing
from tests.support.management_api import ManagementApiServer

READ_TIMEOUT = 0.4


@pytest.fixture
def client_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Any]]:
    """The runtime's management client with a short read timeout, fresh per test."""
    monkeypatch.setattr(aws, "MANAGEMENT_READ_TIMEOUT", READ_TIMEOUT)
    monkeypatch.setattr(aws, "MANAGEMENT_CONNECT_TIMEOUT", 0.5)
    yield aws.Clients().management


def _sent_bodies(client: Any) -> list[bytes]:
    """Every attempt's request body, in order, as it left for the wire."""
    bodies: list[bytes] = []

    def record(request: Any, **_: Any) -> None:
        body = request.body
        bodies.append(body if isinstance(body, bytes) else bytes(body or b""))

    client.meta.events.register("before-send.apigatewaymanagementapi", record)
    return bodies


def test_a_slow_post_is_delivered_once_and_reported_failed(management_api: ManagementApiServer,
                                                          client_factory: Callable[[str], Any]) -> None:
    management_api.add("slow")
    management_api.latency(READ_TIMEOUT * 2.5)  # answered, and delivered, after the client gave up
    client = client_factory(management_api.endpoint_url)
    bodies = _sent_bodies(client)
    broadcaster = Broadcaster(client)
    frame = outgoing({"type": "notification", "data": "once"})

    started = time.monotonic()
    outcome = broadcaster.send("slow", frame)
    elapsed = time.monotonic() - started

    assert outcome == "failed"
    assert len(bodies) == 1  # not retried: the first attempt may have been delivered
    assert elapsed < READ_TIMEOUT * 2  # one read timeout, not three
    time.sleep(READ_TIMEOUT * 3)  # let the server finish the post it was still answering
    assert management_api.attempts == {"slow": 1}
    assert management_api.received == {"slow": [frame]}  # delivered exactly once


def test_a_slow_fan_out_reports_the_read_timeouts_as_failed(management_api: ManagementApiServer,
                                                           client_factory: Callable[[str], Any]) -> None:
    management_api.add("a", "b")
    management_api.latency(READ_TIMEOUT * 2.5)
    broadcaster = Broadcaster(client_factory(management_api.endpoint_url))
    try:
        report = broadcaster.broadcast(["a", "b"], b"m")
    finally:
        broadcaster.close()
    assert report.failed == {"a": "ReadTimeoutError", "b": "ReadTimeoutError"} and not report.gone
    time.sleep(READ_TIMEOUT * 3)
    assert management_api.attempts == {"a": 1, "b": 1}
    assert management_api.received == {"a": [b"m"], "b": [b"m"]}


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_throttling_and_5xx_are_retried_with_the_same_message_id(
        management_api: ManagementApiServer, client_factory: Callable[[str], Any], status: int) -> None:
    management_api.add("a")
    management_api.fail("a", status, times=2)
    client = client_factory(management_api.endpoint_url)
    bodies = _sent_bodies(client)
    frame = outgoing({"type": "message", "data": {"n": 1}})

    assert Broadcaster(client).send("a", frame) == "delivered"

    assert management_api.attempts == {"a": 3}
    assert len(bodies) == 3 and set(bodies) == {frame}  # every retry: the same bytes, the same messageId
    assert [json.loads(body)["messageId"] for body in bodies] == [json.loads(frame)["messageId"]] * 3
    assert management_api.received == {"a": [frame]}


def test_a_refused_connection_is_retried(client_factory: Callable[[str], Any]) -> None:
    with socket.socket() as probe:  # a port nobody listens on: the post never left
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = client_factory(f"http://127.0.0.1:{port}/dev")
    bodies = _sent_bodies(client)
    assert Broadcaster(client).send("a", b"x") == "failed"
    assert len(bodies) == aws.MANAGEMENT_MAX_ATTEMPTS


def test_the_hook_is_registered_once_per_client(management_api: ManagementApiServer,
                                                client_factory: Callable[[str], Any]) -> None:
    client = client_factory(management_api.endpoint_url)
    assert client_factory(management_api.endpoint_url + "/") is client
    management_api.add("a")
    management_api.latency(READ_TIMEOUT * 2.5)
    bodies = _sent_bodies(client)
    assert Broadcaster(client).send("a", b"x") == "failed"
    assert len(bodies) == 1
