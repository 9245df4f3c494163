"""The fan-out benchmark's app: only tells which connection id each sink socket got.

Clients connect with ``?n=<index>``; ``$connect``/``$disconnect`` keep the
index -> connection id maps, and the ``ids`` function (called through the
gateway's Lambda Invoke API) returns them. Nothing else runs per message, so
the benchmark measures the broadcaster and the management API only.
"""
from __future__ import annotations

import threading
from typing import Any

from chalice import Chalice
from chalice.app import WebsocketEvent

app = Chalice(app_name="bench-fanout")
_lock = threading.Lock()
OPEN: dict[str, str] = {}
CLOSED: dict[str, str] = {}


def _index(event: WebsocketEvent) -> str:
    return str((event.to_dict().get("queryStringParameters") or {}).get("n", ""))


@app.on_ws_connect()
def connect(event: WebsocketEvent) -> dict[str, Any]:
    with _lock:
        OPEN[_index(event)] = event.connection_id
    return {"statusCode": 200}


@app.on_ws_disconnect()
def disconnect(event: WebsocketEvent) -> dict[str, Any]:
    with _lock:
        for index, connection_id in list(OPEN.items()):
            if connection_id == event.connection_id:
                CLOSED[index] = OPEN.pop(index)
    return {"statusCode": 200}


@app.lambda_function(name="ids")
def ids(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with _lock:
        return {"open": dict(OPEN), "closed": dict(CLOSED)}
