"""The WebSocket routes: ``$connect`` stores the connection, ``$default`` runs one frame, ``$disconnect`` cleans up.

Nothing can be posted to a connection during its ``$connect`` (it is not open
yet), and Chalice's ``$default`` has no route response, so every answer to a
client (acks, errors, echoes) goes back through the management API. This is
the WebSocket transport's one mapping of ``AppError``: an error frame.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import actions
from .connections import ConnectionExists, ConnectionGone, TokenRevoked, TooManyConnections
from .errors import AppError, TokenInvalid, classify
from .logs import log_event, log_failure
from .protocol import error_frame, outgoing, parse_frame
from .records import ConnectionRecord
from .tokens import offered_subprotocols, select_subprotocol
from .validation import TextRefused
from .ws_request import WsRequest

if TYPE_CHECKING:
    from .components import Components

logger = logging.getLogger("ws.service")

Response = dict[str, int | dict[str, str]]  # what a route handler returns to API Gateway


def _response(status: int, headers: dict[str, str] | None = None) -> Response:
    answer: Response = {"statusCode": status}
    if headers:
        answer["headers"] = headers
    return answer


def _log(event: str, connection_id: str | None, **fields: str | int | None) -> None:
    log_event(logger, event, connectionId=connection_id[:128] if connection_id else None, **fields)


def _failed(route: str, connection_id: str | None, error: BaseException) -> None:
    log_failure(logger, route, connection_id, error)


def on_connect(request: WsRequest, app: Components) -> Response:
    """Store the connection; refuse it when no authorizer vouched for it.

    Everything is checked before the item is written: the identity (safe text)
    and the subprotocol to select (``tokens.select_subprotocol``), so a refused
    upgrade leaves nothing in DynamoDB. A client that offered subprotocols is
    let in only with one of them selected: browsers fail the handshake otherwise.
    """
    try:
        return _connect(request, app)
    except Exception as error:  # noqa: BLE001 - one log line, no stack trace to the caller
        _failed("$connect", request.connection_id, error)
        return _response(500)


def _connect(request: WsRequest, app: Components) -> Response:
    identity, connection_id = request.identity, request.connection_id
    if identity is None or not connection_id:  # a $connect deployed without the authorizer fails closed
        _log("connect_refused", connection_id or None, reason="no_principal")
        return _response(403)
    try:
        offered = offered_subprotocols({"headers": request.headers})
    except TokenInvalid:
        _log("connect_refused", connection_id, reason="subprotocols_too_large")
        return _response(400)
    selected = select_subprotocol(offered, app.settings.protocol_marker)
    if offered and selected is None:
        _log("connect_refused", connection_id, reason="no_selectable_subprotocol")
        return _response(400)
    connected_at = request.connected_at if request.connected_at is not None else int(app.clock() * 1000)
    record = ConnectionRecord(connection_id=connection_id, identity=identity, connected_at=connected_at,
                              ttl=connected_at // 1000 + app.settings.connection_ttl_seconds,
                              endpoint=request.endpoint, source_ip=request.source_ip, user_agent=request.user_agent)
    try:
        app.connections.put(record, app.settings.max_connections_per_user,
                            checks=app.revocations.connect_checks(identity))
    except ConnectionExists:
        _log("connect_refused", connection_id, reason="duplicate_connection_id")
        return _response(409)
    except ConnectionGone:  # its $disconnect ran first: the client has left
        _log("connect_refused", connection_id, reason="already_disconnected")
        return _response(410)
    except TokenRevoked:
        _log("connect_refused", connection_id, reason="token_revoked", user=identity.sub)
        return _response(403)
    except TooManyConnections as error:
        _log("connect_refused", connection_id, reason="too_many_connections", user=identity.sub, limit=error.limit)
        return _response(429)
    except TextRefused:  # an id or username that is not safe text: checked by the store before it writes
        _log("connect_refused", connection_id, reason="bad_identity")
        return _response(403)
    _log("connect", connection_id, user=identity.sub, source=identity.source)
    return _response(200, {"Sec-WebSocket-Protocol": selected} if selected else None)


def on_disconnect(request: WsRequest, app: Components) -> Response:
    """Remove the connection and its subscriptions; safe to run twice."""
    if request.connection_id:
        try:
            removed = app.connections.delete(request.connection_id)
        except Exception as error:  # noqa: BLE001 - TTL removes what is left; one log line
            _failed("$disconnect", request.connection_id, error)
            return _response(500)
        _log("disconnect", request.connection_id, removed=removed)
    return _response(200)


def on_message(request: WsRequest, app: Components) -> Response:
    """Run one frame; every frame gets a typed answer, never API Gateway's "Internal server error".

    The reply is encoded inside the same guard (an echo can outgrow 128 KB).
    An unexpected failure is logged as one line (type and where, never the
    frame) and answered ``unavailable`` or ``internal_error`` (``errors.classify``).
    Only a failure to reach the management API leaves the client unanswered.
    """
    connection_id = request.connection_id
    if not connection_id:
        _log("bad_event", None, reason="no_connection_id")
        return _response(400)
    try:
        broadcaster = app.management.broadcaster(app.management.endpoint(request.endpoint))
    except Exception as error:  # noqa: BLE001 - nobody can be answered without an endpoint
        _failed("$default", connection_id, error)
        return _response(500)
    request_id = None
    failure: AppError | None = None
    try:
        frame = parse_frame(request.body, request.is_base64)
        request_id = frame.request_id
        data = outgoing(actions.run(actions.Call(frame, connection_id, broadcaster, app)))
    except Exception as error:  # noqa: BLE001 - a typed answer and one log line, not a Lambda error
        failure = classify(error)
        if failure is error:
            _log("bad_message", connection_id, code=failure.code.value)
        else:
            _failed("$default", connection_id, error)
        data = outgoing(error_frame(failure, request_id))
    broadcaster.send(connection_id, data)  # reports, never raises
    if failure is not None and failure.close:  # after the error frame: API Gateway sends it, then closes
        outcome = broadcaster.disconnect(connection_id)
        _log("connection_closed", connection_id, reason="refresh_refused", outcome=outcome)
    # 200 even after internal_error: the client has its answer and the log line
    # is written; API Gateway does nothing with a $default status.
    return _response(200)


__all__ = ["Response", "on_connect", "on_disconnect", "on_message"]
