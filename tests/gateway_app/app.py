"""Toy Chalice app for the local gateway's tests only.

Records every event it receives in ``EVENTS`` (``(kind, event)`` pairs) so a
test can inspect exactly what the gateway sent, and answers through the
management API at ``WEBSOCKET_MANAGEMENT_URL``, as a deployed app would.

Authorizer (``?token=``): ``good`` allows, ``deny`` denies, ``boom`` crashes,
``malformed`` returns a non-policy, anything else is ``Unauthorized``.
$connect: ``?reject=1`` answers 403; ``?post_during_connect=1`` tries to post
to itself; offers of ``chat.v1`` are selected; ``?header=1`` adds a header.
$default frames (JSON ``{"action": ...}`` or plain text):
``sleep`` (``seconds``), ``info`` (GET own connection), ``close`` (DELETE
self), ``boom`` (raise), ``env`` (report env), ``flood`` (POST ``count``
frames of ``size`` bytes to connection ``target``, then answer
``flood:{"delivered": n, "limit": n, "gone": n, "error": n, "seconds": s}``,
the outcomes of those POSTs and how long they took); everything else is
echoed back as ``echo:<body>``.
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from chalice import Chalice
from chalice.app import WebsocketEvent

app = Chalice(app_name="gateway-toy")

EVENTS: list[tuple[str, dict[str, Any]]] = []
NOTES: dict[str, Any] = {}
_client_lock = threading.Lock()
_clients: dict[str, Any] = {}


def management(retries: bool = True) -> Any:
    """One boto3 client per endpoint (botocore clients are thread-safe).

    ``retries=False``: a client that never retries (each call's own outcome,
    a 429 included, reaches the caller at once).
    """
    endpoint = os.environ["WEBSOCKET_MANAGEMENT_URL"]
    key = endpoint if retries else f"{endpoint} no-retries"
    with _client_lock:
        client = _clients.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            policy = {"max_attempts": 1} if retries else {"total_max_attempts": 1}
            client = boto3.client(
                "apigatewaymanagementapi",
                endpoint_url=endpoint,
                region_name=os.environ.get("AWS_REGION", "us-east-1"),
                config=Config(max_pool_connections=64, retries=policy),
            )
            _clients[key] = client
        return client


def _policy(effect: str, resource: str) -> dict[str, Any]:
    return {
        "principalId": "user-123",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
        "context": {"username": "alice", "scope": "read write", "level": 3, "admin": False},
    }


@app.lambda_function(name="ws_authorizer")
def ws_authorizer(event: dict[str, Any], context: Any) -> dict[str, Any]:
    EVENTS.append(("authorizer", event))
    token = (event.get("queryStringParameters") or {}).get("token")
    if token == "good":
        return _policy("Allow", event["methodArn"])
    if token == "wildcard":
        return _policy("Allow", "arn:aws:execute-api:*:*:*/*/*")
    if token == "deny":
        return _policy("Deny", event["methodArn"])
    if token == "other-arn":
        return _policy("Allow", "arn:aws:execute-api:us-east-1:123456789012:otherapi/dev/$connect")
    if token == "boom":
        raise RuntimeError("authorizer crashed")
    if token == "malformed":
        return {"principalId": "x"}
    raise Exception("Unauthorized")


@app.on_ws_connect()
def connect(event: WebsocketEvent) -> dict[str, Any]:
    raw = event.to_dict()
    EVENTS.append(("connect", raw))
    query = raw.get("queryStringParameters") or {}
    if query.get("reject") == "1":
        return {"statusCode": 403}
    if query.get("slow_connect"):
        time.sleep(float(query["slow_connect"]))
    if query.get("post_during_connect") == "1":
        client = management()
        try:
            client.post_to_connection(ConnectionId=event.connection_id, Data=b"too early")
            NOTES["post_during_connect"] = "delivered"
        except client.exceptions.GoneException:
            NOTES["post_during_connect"] = "GoneException"
    headers = {}
    offered = [p.strip() for p in (raw["headers"].get("Sec-WebSocket-Protocol") or "").split(",")]
    if "chat.v1" in offered:
        headers["Sec-WebSocket-Protocol"] = "chat.v1"
    if query.get("wrong_protocol") == "1":
        headers["Sec-WebSocket-Protocol"] = "never-offered"
    if query.get("header") == "1":
        headers["X-Toy"] = "hello"
    return {"statusCode": 200, "headers": headers} if headers else {"statusCode": 200}


@app.on_ws_message()
def message(event: WebsocketEvent) -> dict[str, Any]:
    raw = event.to_dict()
    EVENTS.append(("message", raw))
    try:
        body = json.loads(event.body)
    except ValueError:
        body = None
    action = body.get("action") if isinstance(body, dict) else None
    client = management()
    if action == "sleep":
        time.sleep(float(body.get("seconds", 1)))
    elif action == "boom":
        raise RuntimeError("handler crashed")
    elif action == "close":
        client.delete_connection(ConnectionId=event.connection_id)
        return {"statusCode": 200}
    elif action == "info":
        info = client.get_connection(ConnectionId=event.connection_id)
        reply = {
            "connectedAt": info["ConnectedAt"].isoformat(),
            "lastActiveAt": info["LastActiveAt"].isoformat(),
            "identity": info["Identity"],
        }
        client.post_to_connection(ConnectionId=event.connection_id, Data=json.dumps(reply).encode())
        return {"statusCode": 200}
    elif action == "flood":
        flooder = management(retries=False)
        outcomes = {"delivered": 0, "limit": 0, "gone": 0, "error": 0}
        payload = b"f" * int(body.get("size", 1024))
        started = time.monotonic()
        for _ in range(int(body.get("count", 1))):
            try:
                flooder.post_to_connection(ConnectionId=body["target"], Data=payload)
                outcomes["delivered"] += 1
            except flooder.exceptions.LimitExceededException:
                outcomes["limit"] += 1
            except flooder.exceptions.GoneException:
                outcomes["gone"] += 1
            except Exception:  # noqa: BLE001 - a timeout: what a stalled gateway gives
                outcomes["error"] += 1
        reply = {**outcomes, "seconds": round(time.monotonic() - started, 3)}
        client.post_to_connection(ConnectionId=event.connection_id, Data=f"flood:{json.dumps(reply)}".encode())
        return {"statusCode": 200}
    elif action == "env":
        names = ("TOY_GLOBAL", "TOY_SHARED", "TOY_EXTRA", "WEBSOCKET_MANAGEMENT_URL", "AWS_REGION")
        reply = {name: os.environ.get(name) for name in names}
        client.post_to_connection(ConnectionId=event.connection_id, Data=json.dumps(reply).encode())
        return {"statusCode": 200}
    client.post_to_connection(ConnectionId=event.connection_id, Data=f"echo:{event.body}".encode())
    return {"statusCode": 200, "body": "never sent to the client"}


@app.on_ws_disconnect()
def disconnect(event: WebsocketEvent) -> dict[str, Any]:
    EVENTS.append(("disconnect", event.to_dict()))
    return {"statusCode": 200}
