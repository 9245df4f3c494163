"""The Chalice app: wiring only. Logic lives in chalicelib/.

Lambdas: ``ws_authorizer`` (the WebSocket API's REQUEST authorizer), the
``$connect``/``$default``/``$disconnect`` handlers, and ``notify`` for other
back-end services. Importing this module must stay cheap and must not import
boto3: the authorizer Lambda imports it on every cold start.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice import Chalice
from chalice.app import WebsocketEvent

from chalicelib import runtime

if TYPE_CHECKING:  # names only: the authorizer's cold start imports nothing it does not run
    from chalicelib.authorizer import Policy
    from chalicelib.service import NotifyResult, Response

app = Chalice(app_name="ws-cognito")
# Chalice 1.x still gates deploying/packaging WebSocket handlers behind this flag.
app.experimental_feature_flags.update(["WEBSOCKETS"])


@app.lambda_function(name="ws_authorizer")
def ws_authorizer(event: dict[str, Any], context: object) -> Policy:
    """REQUEST authorizer: raises Exception('Unauthorized') (401), or returns a Deny/Allow policy."""
    return runtime.authorize(event)


@app.on_ws_connect()
def connect(event: WebsocketEvent) -> Response:
    return runtime.service().on_connect(event.to_dict())


@app.on_ws_message()
def message(event: WebsocketEvent) -> Response:
    """Chalice registers only $default, so the service dispatches on the frame's ``action``."""
    return runtime.service().on_message(event.to_dict())


@app.on_ws_disconnect()
def disconnect(event: WebsocketEvent) -> Response:
    return runtime.service().on_disconnect(event.to_dict())


@app.lambda_function(name="notify")
def notify(event: dict[str, Any], context: object) -> NotifyResult:
    """``{"userId"|"username": ..., "data": ...}`` -> pushed to all that user's connections."""
    return runtime.service().notify(event)
