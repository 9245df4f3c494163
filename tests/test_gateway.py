"""The local API Gateway WebSocket emulator, driven by real clients.

Clients are the ``websockets`` library and a real boto3
``apigatewaymanagementapi`` client; the app is ``tests/gateway_app``, which
records every event it receives. Each test gets its own gateway on a free
port (its own fresh copy of the toy app module).
"""
from __future__ import annotations

import asyncio
import contextlib
import socket
import base64
import json
import logging
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
import websockets
from botocore.config import Config
from chalice import Chalice
from websockets.exceptions import ConnectionClosed, InvalidStatus

from devtools.gateway import (
    Api,
    ClientInfo,
    GatewayConfigError,
    GatewayHandle,
    Limits,
    authorizer_event,
    connect_event,
    run_in_thread,
)
from devtools.gateway.appload import load_app
from devtools.gateway.invoke import AppInvoker
from devtools.gateway.policy import AuthorizerRejection, evaluate
from tests.support.waiting import wait_until

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = os.path.join(ROOT, "tests", "gateway_app")
CONTEXT = {"username": "alice", "scope": "read write", "level": 3, "admin": False}
ID_RE = re.compile(r"^[A-Za-z0-9]{15}=$")


# --------------------------------------------------------------- fixtures
@pytest.fixture
def start_gateway() -> Iterator[Callable[..., GatewayHandle]]:
    handles: list[GatewayHandle] = []

    def start(**options: Any) -> GatewayHandle:
        handle = run_in_thread(TOY, **options)
        handles.append(handle)
        return handle

    yield start
    for handle in reversed(handles):
        handle.stop()


@pytest.fixture
def gateway(start_gateway: Callable[..., GatewayHandle]) -> GatewayHandle:
    return start_gateway()


def management(handle: GatewayHandle, retries: bool = True) -> Any:
    """``retries=False``: not even botocore's one retry (with backoff) of a 429."""
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=handle.management_url,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1} if retries else {"total_max_attempts": 1}),
    )


def events(handle: GatewayHandle, kind: str) -> list[dict[str, Any]]:
    assert handle.app_module is not None
    return [event for k, event in list(handle.app_module.EVENTS) if k == kind]


def connection_id(handle: GatewayHandle) -> str:
    return events(handle, "connect")[-1]["requestContext"]["connectionId"]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def refused_status(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(url, **kwargs):
            pass
    return info.value.response.status_code


async def no_frame(ws: Any, seconds: float = 0.3) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except asyncio.TimeoutError:
        return True
    return False


async def send_until_closed(ws: Any, frame: str) -> None:
    """Send a frame the server will refuse, then wait for its close."""
    with pytest.raises(ConnectionClosed):
        await ws.send(frame)
        while True:  # frames already in flight may still arrive first
            await asyncio.wait_for(ws.recv(), 5)
    await asyncio.wait_for(ws.wait_closed(), 5)


# ------------------------------------------------------------- authorizer
@pytest.mark.parametrize(
    "query,status",
    [
        ("", 401),
        ("?token=bad", 401),
        ("?token=deny", 403),
        ("?token=other-arn", 403),
        ("?token=boom", 500),
        ("?token=malformed", 500),
    ],
)
def test_authorizer_outcome_refuses_before_upgrade(gateway: GatewayHandle, query: str, status: int) -> None:
    assert run(refused_status(gateway.url + query)) == status
    assert len(events(gateway, "authorizer")) == 1
    assert events(gateway, "connect") == []
    assert gateway.connection_ids() == []


def test_wildcard_allow_policy_connects(gateway: GatewayHandle) -> None:
    async def scenario() -> None:
        async with websockets.connect(gateway.url + "?token=wildcard") as ws:
            await ws.send("x")
            assert await ws.recv() == "echo:x"

    run(scenario())


def test_authorizer_event_has_api_gateway_shape(gateway: GatewayHandle) -> None:
    headers = [("X-Multi", "one"), ("X-Multi", "two"), ("Origin", "http://localhost:8000")]

    async def scenario() -> None:
        url = gateway.url + "?token=good&tag=a&tag=b"
        async with websockets.connect(url, additional_headers=headers):
            pass

    before = int(time.time() * 1000)
    run(scenario())
    (event,) = events(gateway, "authorizer")
    assert event["type"] == "REQUEST"
    assert event["methodArn"] == "arn:aws:execute-api:us-east-1:123456789012:localwsapi/dev/$connect"
    assert event["headers"]["X-Multi"] == "two"
    assert event["multiValueHeaders"]["X-Multi"] == ["one", "two"]
    assert event["headers"]["Origin"] == "http://localhost:8000"
    assert event["headers"]["Upgrade"] == "websocket"
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert event["queryStringParameters"] == {"token": "good", "tag": "b"}
    assert event["multiValueQueryStringParameters"] == {"token": ["good"], "tag": ["a", "b"]}
    assert event["stageVariables"] == {}
    context = event["requestContext"]
    assert context["routeKey"] == "$connect"
    assert context["eventType"] == "CONNECT"
    assert context["messageDirection"] == "IN"
    assert context["stage"] == "dev"
    assert context["apiId"] == "localwsapi"
    assert context["domainName"] == f"127.0.0.1:{gateway.port}"
    assert context["identity"] == {"sourceIp": "127.0.0.1"}
    assert ID_RE.match(context["connectionId"])
    assert ID_RE.match(context["requestId"]) and context["extendedRequestId"] == context["requestId"]
    assert before <= context["requestTimeEpoch"] <= int(time.time() * 1000)
    assert isinstance(context["connectedAt"], int)
    assert re.match(r"^\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000$", context["requestTime"])
    assert "authorizer" not in context
    # The same connection id reaches $connect.
    assert connection_id(gateway) == context["connectionId"]


def test_connect_and_later_events_carry_authorizer_context(gateway: GatewayHandle) -> None:
    async def scenario() -> None:
        async with websockets.connect(gateway.url + "?token=good", user_agent_header="toy-agent/1") as ws:
            await ws.send("hi")
            assert await ws.recv() == "echo:hi"

    run(scenario())
    wait_until(lambda: events(gateway, "disconnect"))
    granted = {**CONTEXT, "principalId": "user-123"}
    (connect,) = events(gateway, "connect")
    assert connect["requestContext"]["authorizer"] == granted
    assert connect["requestContext"]["eventType"] == "CONNECT"
    assert connect["requestContext"]["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "toy-agent/1"}
    assert connect["queryStringParameters"] == {"token": "good"}
    assert connect["multiValueQueryStringParameters"] == {"token": ["good"]}
    assert connect["headers"]["User-Agent"] == "toy-agent/1"
    assert connect["isBase64Encoded"] is False
    (message,) = events(gateway, "message")
    assert message["requestContext"]["authorizer"] == granted
    (disconnect,) = events(gateway, "disconnect")
    assert disconnect["requestContext"]["authorizer"] == granted
    ids = {e["requestContext"]["connectionId"] for e in (connect, message, disconnect)}
    assert len(ids) == 1


def test_without_authorizer_connect_query_is_null(start_gateway: Callable[..., GatewayHandle]) -> None:
    handle = start_gateway(authorizer="")

    async def scenario() -> None:
        async with websockets.connect(handle.url):
            pass

    run(scenario())
    assert events(handle, "authorizer") == []
    (connect,) = events(handle, "connect")
    assert connect["queryStringParameters"] is None
    assert connect["multiValueQueryStringParameters"] is None
    assert "authorizer" not in connect["requestContext"]


def test_connect_non_2xx_refuses_handshake_without_disconnect(gateway: GatewayHandle) -> None:
    assert run(refused_status(gateway.url + "?token=good&reject=1")) == 403
    assert len(events(gateway, "connect")) == 1
    time.sleep(0.2)
    assert events(gateway, "disconnect") == []


# ------------------------------------------------------------ subprotocol
def test_subprotocol_selected_only_as_app_returns_it(gateway: GatewayHandle) -> None:
    async def scenario() -> None:
        url = gateway.url + "?token=good"
        async with websockets.connect(url, subprotocols=["jwt.secret-token", "chat.v1"]) as ws:
            assert ws.subprotocol == "chat.v1"
        # The app returns nothing for this offer: nothing must be echoed.
        async with websockets.connect(url, subprotocols=["jwt.secret-token"]) as ws:
            assert ws.subprotocol is None
            assert ws.response.headers.get("Sec-WebSocket-Protocol") is None
        # The app returns a protocol the client never offered: not selected.
        async with websockets.connect(url + "&wrong_protocol=1", subprotocols=["x"]) as ws:
            assert ws.subprotocol is None
        async with websockets.connect(url + "&header=1") as ws:
            assert ws.response.headers.get("X-Toy") == "hello"

    run(scenario())


# --------------------------------------------------------------- messages
def test_messages_route_to_default_and_bodies_are_not_returned(gateway: GatewayHandle) -> None:
    async def scenario() -> None:
        async with websockets.connect(gateway.url + "?token=good") as ws:
            await ws.send("not json {")
            assert await ws.recv() == "echo:not json {"
            await ws.send(json.dumps({"action": "no-such-route"}))
            assert await ws.recv() == 'echo:{"action": "no-such-route"}'
            await ws.send(b"\x00\x01\xff")
            assert await ws.recv() == "echo:AAH/"
            # The handler's return body is never sent (no route response).
            assert await no_frame(ws)

    run(scenario())
    text, action, binary = events(gateway, "message")
    for event in (text, action, binary):
        assert event["requestContext"]["routeKey"] == "$default"
        assert event["requestContext"]["eventType"] == "MESSAGE"
        assert ID_RE.match(event["requestContext"]["messageId"])
    assert text["body"] == "not json {" and text["isBase64Encoded"] is False
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\x00\x01\xff"


def test_route_selection_uses_action_over_registered_keys() -> None:
    app = Chalice(app_name="routes")

    @app.on_ws_message()
    def default(event: Any) -> None:
        return None

    # Chalice itself only registers $default; a custom key exercises selection.
    app._register_on_ws_message(
        name="send", user_handler=default, handler_string="app.default", kwargs={"route_key": "send"}
    )
    app.handler_map["send"] = app.handler_map["default"]
    invoker = AppInvoker(app, stage="dev", authorizer=None, executor=None)  # type: ignore[arg-type]
    assert invoker.select_route('{"action": "send"}') == "send"
    assert invoker.select_route('{"action": "other"}') == "$default"
    assert invoker.select_route('{"action": 3}') == "$default"
    assert invoker.select_route("send") == "$default"
    assert invoker.select_route(b'{"action": "send"}') == "$default"


def test_handler_error_sends_internal_server_error_frame(gateway: GatewayHandle) -> None:
    async def scenario() -> dict[str, Any]:
        async with websockets.connect(gateway.url + "?token=good") as ws:
            await ws.send(json.dumps({"action": "boom"}))
            reply = json.loads(await ws.recv())
            await ws.send("still here")
            assert await ws.recv() == "echo:still here"
            return reply

    reply = run(scenario())
    assert reply["message"] == "Internal server error"
    assert reply["connectionId"] == connection_id(gateway)
    assert ID_RE.match(reply["requestId"])


def test_slow_handler_does_not_delay_other_connections(gateway: GatewayHandle) -> None:
    async def scenario() -> None:
        url = gateway.url + "?token=good"
        async with websockets.connect(url) as slow, websockets.connect(url) as fast:
            await slow.send(json.dumps({"action": "sleep", "seconds": 1.0}))
            await slow.send("after")
            await asyncio.sleep(0.05)
            started = time.monotonic()
            await fast.send("quick")
            assert await fast.recv() == "echo:quick"
            assert time.monotonic() - started < 0.5
            # Per-connection order is kept: the slow message answers first.
            assert (await slow.recv()).startswith('echo:{"action": "sleep"')
            assert await slow.recv() == "echo:after"

    run(scenario())


# ---------------------------------------------------------- management API
def test_management_post_get_delete(gateway: GatewayHandle) -> None:
    client = management(gateway)

    async def scenario() -> None:
        async with websockets.connect(gateway.url + "?token=good", user_agent_header="agent/2") as ws:
            cid = connection_id(gateway)
            assert gateway.connection_ids() == [cid]
            info = await asyncio.to_thread(client.get_connection, ConnectionId=cid)
            assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "agent/2"}
            assert info["ConnectedAt"] <= info["LastActiveAt"]
            assert abs(info["ConnectedAt"].timestamp() - time.time()) < 5
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"pushed")
            assert await ws.recv() == "pushed"
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"\xff\xfe")
            assert await ws.recv() == b"\xff\xfe"
            answer = await asyncio.to_thread(client.delete_connection, ConnectionId=cid)
            assert answer["ResponseMetadata"]["HTTPStatusCode"] == 204
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1000
            for call in (client.post_to_connection, client.get_connection, client.delete_connection):
                kwargs = {"ConnectionId": cid}
                if call == client.post_to_connection:
                    kwargs["Data"] = b"late"
                with pytest.raises(client.exceptions.GoneException):
                    await asyncio.to_thread(call, **kwargs)

    run(scenario())
    (disconnect,) = wait_until(lambda: events(gateway, "disconnect"))
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1000
    with pytest.raises(client.exceptions.GoneException):
        client.post_to_connection(ConnectionId="AAAAAAAAAAAAAAA=", Data=b"x")
    with pytest.raises(client.exceptions.GoneException):
        client.get_connection(ConnectionId="AAAAAAAAAAAAAAA=")


def test_app_can_delete_and_inspect_its_own_connection(gateway: GatewayHandle) -> None:
    async def scenario() -> None:
        async with websockets.connect(gateway.url + "?token=good") as ws:
            await ws.send(json.dumps({"action": "info"}))
            info = json.loads(await ws.recv())
            assert info["identity"]["SourceIp"] == "127.0.0.1"
            await ws.send(json.dumps({"action": "close"}))
            await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.close_code == 1000

    run(scenario())
    wait_until(lambda: events(gateway, "disconnect"))


def test_management_payload_limit_and_wrong_stage(gateway: GatewayHandle) -> None:
    client = management(gateway)

    async def scenario() -> None:
        async with websockets.connect(gateway.url + "?token=good", max_size=None) as ws:
            cid = connection_id(gateway)
            with pytest.raises(client.exceptions.PayloadTooLargeException):
                await asyncio.to_thread(
                    client.post_to_connection, ConnectionId=cid, Data=b"x" * (128 * 1024 + 1)
                )
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"y" * (128 * 1024))
            assert len(await ws.recv()) == 128 * 1024

    run(scenario())
    other = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"http://127.0.0.1:{gateway.port}/prod",
        region_name="us-east-1",
    )
    with pytest.raises(other.exceptions.ForbiddenException):
        other.get_connection(ConnectionId="AAAAAAAAAAAAAAA=")


def test_post_during_connect_is_gone(gateway: GatewayHandle) -> None:
    async def scenario() -> None:
        async with websockets.connect(gateway.url + "?token=good&post_during_connect=1") as ws:
            assert await no_frame(ws)
            await ws.send("open now")
            assert await ws.recv() == "echo:open now"

    run(scenario())
    assert gateway.app_module is not None
    assert gateway.app_module.NOTES["post_during_connect"] == "GoneException"


# -------------------------------------------------------------- disconnect
def test_disconnect_on_client_close(gateway: GatewayHandle) -> None:
    async def scenario() -> None:
        ws = await websockets.connect(gateway.url + "?token=good", user_agent_header="ua/3")
        await ws.close(code=4000, reason="bye")

    run(scenario())
    (event,) = wait_until(lambda: events(gateway, "disconnect"))
    context = event["requestContext"]
    assert context["routeKey"] == "$disconnect"
    assert context["eventType"] == "DISCONNECT"
    assert context["disconnectStatusCode"] == 4000
    assert "bye" in context["disconnectReason"]
    assert context["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "ua/3"}
    assert context["connectionId"] == connection_id(gateway)
    assert event["headers"]["Host"] == f"127.0.0.1:{gateway.port}"


def test_client_leaving_during_connect_still_gets_disconnect(gateway: GatewayHandle) -> None:
    """$connect stored the connection, the client is gone before the 101: $disconnect must follow."""
    host, port = "127.0.0.1", gateway.port
    with socket.create_connection((host, port), timeout=5) as raw:
        raw.sendall((f"GET /dev?token=good&slow_connect=0.5 HTTP/1.1\r\nHost: {host}:{port}\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
        wait_until(lambda: events(gateway, "connect"))
    (event,) = wait_until(lambda: events(gateway, "disconnect"))
    assert event["requestContext"]["connectionId"] == connection_id(gateway)
    assert gateway.connection_ids() == []


def test_idle_timeout_closes_with_1001(start_gateway: Callable[..., GatewayHandle]) -> None:
    handle = start_gateway(limits=Limits(idle_timeout=1.0))

    async def scenario() -> float:
        async with websockets.connect(handle.url + "?token=good") as ws:
            await asyncio.sleep(0.6)
            await ws.send("keepalive")  # activity resets the idle clock
            assert await ws.recv() == "echo:keepalive"
            await asyncio.sleep(0.6)
            assert ws.close_code is None  # 1.2 s after open, 0.6 s idle
            started = time.monotonic()
            await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.close_code == 1001
            return time.monotonic() - started

    assert run(scenario()) < 1.5
    (event,) = wait_until(lambda: events(handle, "disconnect"))
    assert event["requestContext"]["disconnectStatusCode"] == 1001


def test_max_lifetime_closes_busy_connection(start_gateway: Callable[..., GatewayHandle]) -> None:
    handle = start_gateway(limits=Limits(idle_timeout=30, max_lifetime=1.0))

    async def scenario() -> float:
        started = time.monotonic()
        async with websockets.connect(handle.url + "?token=good") as ws:
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.send("busy")
                    await ws.recv()
                    await asyncio.sleep(0.1)
            assert ws.close_code == 1001
        return time.monotonic() - started

    assert 0.9 < run(scenario()) < 3
    (event,) = wait_until(lambda: events(handle, "disconnect"))
    assert event["requestContext"]["disconnectStatusCode"] == 1001


def test_oversize_message_closes_with_1009(start_gateway: Callable[..., GatewayHandle]) -> None:
    handle = start_gateway(limits=Limits(max_message_bytes=1024))

    async def scenario() -> None:
        ws = await websockets.connect(handle.url + "?token=good")
        await ws.send("a" * 1024)  # at the limit: delivered to the handler
        await asyncio.sleep(0.1)
        await send_until_closed(ws, "b" * 1025)
        assert ws.close_code == 1009

    run(scenario())
    (disconnect,) = wait_until(lambda: events(handle, "disconnect"))
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1009
    assert [len(e["body"]) for e in events(handle, "message")] == [1024]


def test_default_limit_is_128_kb(gateway: GatewayHandle) -> None:
    async def scenario() -> None:
        ws = await websockets.connect(gateway.url + "?token=good")
        await send_until_closed(ws, "z" * (128 * 1024 + 1))
        assert ws.close_code == 1009

    run(scenario())


def test_shutdown_disconnects_every_connection(start_gateway: Callable[..., GatewayHandle]) -> None:
    handle = start_gateway()

    async def scenario() -> list[int | None]:
        clients = [await websockets.connect(handle.url + "?token=good") for _ in range(3)]
        await asyncio.to_thread(handle.stop)
        for ws in clients:
            await asyncio.wait_for(ws.wait_closed(), 5)
        return [ws.close_code for ws in clients]

    assert run(scenario()) == [1001, 1001, 1001]
    codes = [e["requestContext"]["disconnectStatusCode"] for e in events(handle, "disconnect")]
    assert codes == [1001, 1001, 1001]


# ------------------------------------------------ one bad client slows nobody
SECRET = "s3cr3t-header-value-"


async def connect_stalled(url: str) -> Any:
    """A real client that stops reading: a tiny socket receive buffer, and
    ``websockets`` stops reading its socket once one frame waits unread."""
    host, port = re.match(r"ws://([^:/]+):(\d+)", url).groups()  # type: ignore[union-attr]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    return await websockets.connect(url, sock=sock, max_queue=1, ping_interval=None, close_timeout=1)


def disconnect_of(handle: GatewayHandle, cid: str) -> list[dict[str, Any]]:
    return [e for e in events(handle, "disconnect") if e["requestContext"]["connectionId"] == cid]


async def timed(awaitable: Any, limit: float = 10) -> tuple[Any, float]:
    started = time.monotonic()
    result = await asyncio.wait_for(awaitable, limit)
    return result, time.monotonic() - started


def test_posts_to_a_client_that_stops_reading_never_wait(start_gateway: Callable[..., GatewayHandle]) -> None:
    """POSTs answer at once (200, then 429 once its queue is full); the client is dropped, then 410."""
    handle = start_gateway(limits=Limits(write_timeout=1.0))
    client = management(handle, retries=False)

    def post(cid: str) -> str:
        try:
            client.post_to_connection(ConnectionId=cid, Data=b"x" * 65536)
        except client.exceptions.LimitExceededException:
            return "limit"
        except client.exceptions.GoneException:
            return "gone"
        return "ok"

    async def scenario() -> None:
        stalled = await connect_stalled(handle.url + "?token=good")
        cid = connection_id(handle)
        outcomes: list[str] = []
        slowest = 0.0
        for _ in range(400):  # 400 x 64 KB: far more than socket buffers plus the 1 MiB queue
            outcome, seconds = await timed(asyncio.to_thread(post, cid))
            outcomes.append(outcome)
            slowest = max(slowest, seconds)
            if outcome != "ok":
                break
        assert outcomes[-1] == "limit", outcomes
        assert slowest < 2, f"a POST waited {slowest:.1f} s on a client that is not reading"
        # Still stalled: after write_timeout the gateway drops it, with $disconnect.
        (event,) = await asyncio.to_thread(wait_until, lambda: disconnect_of(handle, cid), 10)
        assert event["requestContext"]["disconnectStatusCode"] == 1006
        assert await asyncio.to_thread(post, cid) == "gone"
        assert cid not in handle.connection_ids()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stalled.close(), 5)

    run(scenario())


def test_client_that_stops_reading_stalls_no_one(start_gateway: Callable[..., GatewayHandle]) -> None:
    """Every handler thread broadcasting to a stalled client: others' round trips,
    POSTs to others and new connections stay fast; the stalled client is dropped.

    The hostile-client probe's case: POSTs that waited on the stalled socket
    held every handler thread, so acks and new connections waited too.
    """
    workers = 4
    handle = start_gateway(handler_workers=workers, limits=Limits(write_timeout=1.0))
    url = handle.url + "?token=good"
    client = management(handle)

    async def scenario() -> None:
        stalled = await connect_stalled(url)
        stalled_id = connection_id(handle)
        async with websockets.connect(url) as other:
            other_id = connection_id(handle)
            broadcasters = [await websockets.connect(url) for _ in range(workers)]
            # 4 x 40 x 64 KB = 10 MB for a client that takes almost none of it.
            flood = json.dumps({"action": "flood", "target": stalled_id, "count": 40, "size": 65536})
            for ws in broadcasters:
                await ws.send(flood)
            await other.send("ping")
            reply, round_trip = await timed(other.recv())
            assert reply == "echo:ping" and round_trip < 2, round_trip
            _, post_time = await timed(
                asyncio.to_thread(client.post_to_connection, ConnectionId=other_id, Data=b"direct")
            )
            assert await asyncio.wait_for(other.recv(), 5) == "direct" and post_time < 2, post_time
            fresh, connect_time = await timed(websockets.connect(url))
            assert connect_time < 2, connect_time
            await fresh.send("new")
            assert await asyncio.wait_for(fresh.recv(), 5) == "echo:new"
            await fresh.close()
            refused = 0
            for ws in broadcasters:
                text, _ = await timed(ws.recv())
                report = json.loads(text.removeprefix("flood:"))
                assert report["error"] == 0, report
                assert report["delivered"] + report["limit"] + report["gone"] == 40, report
                assert report["seconds"] < 5, report
                refused += report["limit"] + report["gone"]
                await ws.close()
            assert refused > 0  # 10 MB did not fit: refused (429, then 410), never waited on
        (event,) = await asyncio.to_thread(wait_until, lambda: disconnect_of(handle, stalled_id), 10)
        assert event["requestContext"]["disconnectStatusCode"] == 1006
        with pytest.raises(client.exceptions.GoneException):
            await asyncio.to_thread(client.post_to_connection, ConnectionId=stalled_id, Data=b"late")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stalled.close(), 5)

    run(scenario())


def test_slow_message_handlers_do_not_delay_new_connections(
    start_gateway: Callable[..., GatewayHandle],
) -> None:
    """Every message worker busy: the authorizer and $connect have their own pool."""
    handle = start_gateway(handler_workers=2)
    url = handle.url + "?token=good"

    async def scenario() -> float:
        busy = [await websockets.connect(url) for _ in range(2)]
        for ws in busy:
            await ws.send(json.dumps({"action": "sleep", "seconds": 4}))
        await asyncio.to_thread(wait_until, lambda: len(events(handle, "message")) == 2)
        fresh, seconds = await timed(websockets.connect(url))
        await fresh.close()
        for ws in busy:
            await ws.close()
        return seconds

    assert run(scenario()) < 2
    assert len(events(handle, "connect")) == 3


def test_frames_queued_by_a_client_that_left_are_dropped(gateway: GatewayHandle) -> None:
    async def scenario() -> None:
        ws = await websockets.connect(gateway.url + "?token=good")
        for index in range(200):  # 10 s of handler time, queued behind each other
            await ws.send(json.dumps({"action": "sleep", "seconds": 0.05, "n": index}))
        await ws.close()

    run(scenario())
    (event,) = wait_until(lambda: events(gateway, "disconnect"), timeout=3)
    assert event["requestContext"]["disconnectStatusCode"] == 1000
    ran = len(events(gateway, "message"))
    time.sleep(0.5)
    assert len(events(gateway, "message")) == ran <= 5


def test_message_sent_just_before_close_still_runs(gateway: GatewayHandle) -> None:
    """Only a backlog is dropped: a frame that arrived while nothing was running has started."""
    async def scenario() -> None:
        ws = await websockets.connect(gateway.url + "?token=good")
        await ws.send("last words")
        await ws.close()

    run(scenario())
    wait_until(lambda: events(gateway, "disconnect"))
    assert [e["body"] for e in events(gateway, "message")] == ["last words"]


def test_full_incoming_queue_closes_with_1013(start_gateway: Callable[..., GatewayHandle]) -> None:
    handle = start_gateway(limits=Limits(max_inbox_messages=5))

    async def scenario() -> int | None:
        ws = await websockets.connect(handle.url + "?token=good")
        with pytest.raises(ConnectionClosed):
            for _ in range(50):
                await ws.send(json.dumps({"action": "sleep", "seconds": 0.2}))
                await asyncio.sleep(0.01)
            await asyncio.wait_for(ws.recv(), 5)
        return ws.close_code

    assert run(scenario()) == 1013
    (event,) = wait_until(lambda: events(handle, "disconnect"))
    assert event["requestContext"]["disconnectStatusCode"] == 1013
    assert len(events(handle, "message")) <= 3


@pytest.mark.parametrize(
    "case,status",
    [
        ("one-header", 431),  # over the limit alone: refused by the HTTP parser
        ("many-headers", 431),  # each under it, together over it: refused by the gateway
        ("long-url", 414),
    ],
)
def test_oversize_upgrade_headers_refused_without_echo(
    gateway: GatewayHandle, caplog: pytest.LogCaptureFixture, case: str, status: int
) -> None:
    caplog.set_level(logging.DEBUG)
    url = gateway.url + "?token=good"
    headers: list[tuple[str, str]] = []
    if case == "one-header":
        headers = [("Authorization", "Bearer " + SECRET * 600)]
    elif case == "many-headers":
        headers = [(f"X-Part-{index}", SECRET * 40) for index in range(15)]
    else:
        url += "&ID_Token=" + SECRET * 500

    async def scenario() -> Any:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(url, additional_headers=headers):
                pass
        return info.value.response

    response = run(scenario())
    assert response.status_code == status
    assert SECRET.encode() not in response.body
    assert json.loads(response.body)["message"] in ("Request Header Fields Too Large", "Request-URI Too Long")
    formatter = logging.Formatter()
    server_logs = [formatter.format(r) for r in caplog.records if r.name.startswith(("devtools", "aiohttp"))]
    assert server_logs and not any(SECRET in line for line in server_logs)
    assert events(gateway, "authorizer") == []


def test_header_under_the_limit_connects(gateway: GatewayHandle) -> None:
    """10,240 bytes of headers, as API Gateway: more than aiohttp's own 8,190 per header."""
    async def scenario() -> None:
        headers = [("X-Large", "a" * 9000)]
        async with websockets.connect(gateway.url + "?token=good", additional_headers=headers) as ws:
            await ws.send("ok")
            assert await ws.recv() == "echo:ok"

    run(scenario())


# ------------------------------------------------- environment and startup
def test_environment_from_config_and_overrides(start_gateway: Callable[..., GatewayHandle]) -> None:
    assert "TOY_GLOBAL" not in os.environ
    handle = start_gateway(env={"TOY_EXTRA": "extra"})

    async def scenario() -> dict[str, Any]:
        async with websockets.connect(handle.url + "?token=good") as ws:
            await ws.send(json.dumps({"action": "env"}))
            return json.loads(await ws.recv())

    assert run(scenario()) == {
        "TOY_GLOBAL": "global",
        "TOY_SHARED": "from-dev",
        "TOY_EXTRA": "extra",
        "WEBSOCKET_MANAGEMENT_URL": handle.management_url,
        "AWS_REGION": os.environ["AWS_REGION"],
    }
    handle.stop()
    assert "TOY_GLOBAL" not in os.environ
    assert os.environ.get("WEBSOCKET_MANAGEMENT_URL") != handle.management_url


def test_startup_errors_are_clear() -> None:
    with pytest.raises(GatewayConfigError, match="no_such_authorizer"):
        run_in_thread(TOY, authorizer="no_such_authorizer")
    with pytest.raises(GatewayConfigError, match="app module not found"):
        run_in_thread(TOY, app_module="missing")
    with pytest.raises(GatewayConfigError, match="stage 'qa'"):
        run_in_thread(TOY, stage="qa")


def test_each_request_logged_in_one_line_without_secrets(
    gateway: GatewayHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="devtools.gateway")

    async def scenario() -> None:
        url = gateway.url + "?token=good&secret=s3cr3t-value"
        headers = {"Authorization": "Bearer hdr-s3cr3t"}
        async with websockets.connect(url, additional_headers=headers) as ws:
            await ws.send("hello")
            await ws.recv()
        await refused_status(gateway.url + "?token=deny&secret=s3cr3t-value")

    run(scenario())
    wait_until(lambda: events(gateway, "disconnect"))
    lines = [r.getMessage() for r in caplog.records if r.name == "devtools.gateway"]
    cid = events(gateway, "connect")[0]["requestContext"]["connectionId"]
    line = r" \d+\.\dms"
    assert any(re.fullmatch(rf"127\.0\.0\.1 CONNECT \$connect {re.escape(cid)} 200{line}", x) for x in lines)
    assert any(re.fullmatch(rf"127\.0\.0\.1 MESSAGE \$default {re.escape(cid)} 200{line}", x) for x in lines)
    assert any(re.fullmatch(rf"127\.0\.0\.1 POST @connections {re.escape(cid)} 200{line}", x) for x in lines)
    assert any(re.match(rf"127\.0\.0\.1 DISCONNECT \$disconnect {re.escape(cid)} 200{line}", x) for x in lines)
    assert any(re.match(rf"127\.0\.0\.1 CONNECT \$connect \S+ 403{line}", x) for x in lines)
    assert not any("s3cr3t" in x or "token" in x for x in lines)


# ------------------------------------------------------------ unit checks
def test_policy_evaluation_rules() -> None:
    arn = Api(stage="dev").method_arn()

    def policy(*statements: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"principalId": "p", "policyDocument": {"Statement": list(statements)}, **extra}

    allow = {"Effect": "Allow", "Action": ["execute-api:*"], "Resource": ["arn:aws:execute-api:*"]}
    deny = {"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": arn}
    assert evaluate(policy(allow, context={"a": "1"}), arn) == {"a": "1", "principalId": "p"}
    for result, status in [
        (policy(allow, deny), 403),
        (policy({**allow, "Resource": arn.replace("$connect", "$default")}), 403),
        (policy({**allow, "Action": "s3:GetObject"}), 403),
        (policy(allow, context={"nested": {"x": 1}}), 500),
        ({"policyDocument": {"Statement": [allow]}}, 500),
        (policy({"Effect": "Maybe", "Action": "*", "Resource": "*"}), 500),
        ("Allow", 500),
    ]:
        with pytest.raises(AuthorizerRejection) as info:
            evaluate(result, arn)
        assert info.value.status == status


def test_event_builders_are_reusable() -> None:
    api = Api(stage="prod", api_id="abc1234567")
    client = ClientInfo(headers={"Authorization": "x"}, query=[("a", "1"), ("a", "2")])
    event = authorizer_event(api, client)
    assert event["methodArn"].endswith(":abc1234567/prod/$connect")
    assert event["requestContext"]["domainName"] == "abc1234567.execute-api.us-east-1.amazonaws.com"
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
    assert ID_RE.match(client.connection_id)
    assert connect_event(api, ClientInfo())["queryStringParameters"] is None


def test_app_copies_are_isolated() -> None:
    first, _ = load_app(TOY)
    second, _ = load_app(TOY)
    assert first is not second and first.EVENTS is not second.EVENTS


# ------------------------------------------------------------------- load
def test_cli_holds_1000_concurrent_connections(tmp_path: Any) -> None:
    """1,000 clients open at once, each gets its echo through the management API."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    log = open(tmp_path / "gateway.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.gateway", "--project-dir", TOY, "--port", "0", "--quiet"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        match = re.match(r"Serving (ws://\S+) management (http://\S+)", line)
        assert match, f"gateway did not start: {line!r} {(tmp_path / 'gateway.log').read_text()}"
        url = match.group(1) + "?token=good"
        count = 1000

        async def scenario() -> float:
            started = time.monotonic()
            gate = asyncio.Semaphore(100)

            async def open_one() -> Any:
                async with gate:
                    return await websockets.connect(url, open_timeout=30, ping_interval=None)

            clients = await asyncio.gather(*(open_one() for _ in range(count)))

            async def echo(index: int, ws: Any) -> str:
                await ws.send(f"m{index}")
                return await asyncio.wait_for(ws.recv(), 30)

            replies = await asyncio.gather(*(echo(i, ws) for i, ws in enumerate(clients)))
            assert replies == [f"echo:m{i}" for i in range(count)]
            assert all(ws.close_code is None for ws in clients)  # all held open together
            await asyncio.gather(*(ws.close() for ws in clients))
            return time.monotonic() - started

        elapsed = run(scenario())
        assert elapsed < 30
        proc.terminate()  # sent while the 1,000 $disconnect handlers may still be finishing
        try:
            assert proc.wait(timeout=90) == 0
        except subprocess.TimeoutExpired:
            raise AssertionError(
                "gateway ignored SIGTERM: " + (tmp_path / "gateway.log").read_text()[-2000:]
            ) from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()
