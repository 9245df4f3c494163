"""Connection lifecycle and messaging: what $connect, $default, $disconnect and
``notify`` do, with the repository and the broadcaster injected.

Nothing can be posted to a connection during its ``$connect`` (it is not open
yet), and Chalice's ``$default`` has no route response, so every answer to a
client (acks, errors, echoes) goes back through the management API.
"""
from __future__ import annotations

import logging
import os
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from .authorizer import read_context
from .broadcaster import Broadcaster, DeliveryReport
from .errors import TokenInvalid
from .logs import Field, log_event
from .push import Push, PushError, user_push, validate_push
from .protocol import DEFAULT_ROUTE, Frame, ProtocolError, error_frame, now_ms, outgoing, parse_frame, require
from .repository import (
    ConnectionExists, ConnectionNotFound, ConnectionRecord, ConnectionRepository, SubscriptionLimitReached,
)
from .settings import Settings
from .tokens import offered_subprotocols, select_subprotocol
from .validation import TextRefused, check_topic

logger = logging.getLogger("ws.service")

BroadcasterFactory = Callable[[str], Broadcaster]  # management endpoint -> Broadcaster
EndpointResolver = Callable[[str, str, str], str]  # domain, stage, api id -> endpoint
Event = Mapping[str, Any]  # an API Gateway WebSocket event: nested JSON
Response = dict[str, int | dict[str, str]]  # what a route handler returns to API Gateway
Reply = dict[str, Any]  # an outgoing JSON frame
NotifyResult = dict[str, Any]  # notify's JSON answer


def _response(status: int, headers: Mapping[str, str] | None = None) -> Response:
    answer: Response = {"statusCode": status}
    if headers:
        answer["headers"] = dict(headers)
    return answer


class ConnectionService:
    def __init__(self, settings: Settings, repository: ConnectionRepository,
                 broadcaster_for: BroadcasterFactory, endpoint_for: EndpointResolver,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.repository = repository
        self._broadcaster_for = broadcaster_for
        self._endpoint_for = endpoint_for
        self._clock = clock

    # -- $connect -----------------------------------------------------------------

    def on_connect(self, event: Event) -> Response:
        """Store the connection; refuse it when no authorizer vouched for it.

        Everything is checked before the item is written: the identity (safe
        text, see ``validation``) and the subprotocol to select
        (``tokens.select_subprotocol``), so a refused upgrade leaves nothing
        in DynamoDB. A client that offered subprotocols is let in only with
        one of them selected: browsers fail the handshake otherwise.
        """
        request = event.get("requestContext") or {}
        connection_id = request.get("connectionId")
        try:
            return self._connect(event, request, connection_id)
        except Exception as error:  # noqa: BLE001 - one log line, no stack trace to the caller
            self._log_failure("$connect", connection_id, error)
            return _response(500)

    def _connect(self, event: Event, request: Mapping[str, Any], connection_id: object) -> Response:
        authorizer = request.get("authorizer") or {}
        principal = authorizer.get("principalId")
        if not isinstance(principal, str) or not principal or not isinstance(connection_id, str) or not connection_id:
            # A $connect route deployed without the authorizer must fail closed.
            self._log("connect_refused", _loggable(connection_id), reason="no_principal")
            return _response(403)
        try:
            offered = offered_subprotocols(event)
        except TokenInvalid:
            self._log("connect_refused", connection_id, reason="subprotocols_too_large")
            return _response(400)
        selected = select_subprotocol(offered, self.settings.protocol_marker)
        if offered and selected is None:
            self._log("connect_refused", connection_id, reason="no_selectable_subprotocol")
            return _response(400)
        record = self._record(event, request, authorizer, principal)
        try:
            self.repository.put_connection(record)
        except ConnectionExists:
            self._log("connect_refused", connection_id, reason="duplicate_connection_id")
            return _response(409)
        except TextRefused:  # an id or username that is not safe text: checked before the write
            self._log("connect_refused", connection_id, reason="bad_identity")
            return _response(403)
        self._log("connect", connection_id, user=principal, source=record.token_source)
        return _response(200, {"Sec-WebSocket-Protocol": selected} if selected else None)

    def _record(self, event: Event, request: Mapping[str, Any],
                authorizer: Mapping[str, object], principal: str) -> ConnectionRecord:
        connected_at = request.get("connectedAt")
        if not isinstance(connected_at, int):
            connected_at = int(self._clock() * 1000)
        context = read_context(authorizer)
        identity = request.get("identity") or {}
        return ConnectionRecord(
            connection_id=request["connectionId"],
            user_id=principal,
            username=str(authorizer.get("username") or ""),
            claims=context.claims,
            connected_at=connected_at,
            source_ip=str(identity.get("sourceIp") or ""),
            user_agent=str(identity.get("userAgent") or ""),
            stage=str(request.get("stage") or ""),
            domain=str(request.get("domainName") or ""),
            api_id=str(request.get("apiId") or ""),
            client_params=context.client_params,
            token_source=str(authorizer.get("tokenSource") or ""),
            ttl=connected_at // 1000 + self.settings.connection_ttl_seconds,
        )

    # -- $disconnect --------------------------------------------------------------

    def on_disconnect(self, event: Event) -> Response:
        """Remove the connection and its subscriptions; safe to run twice."""
        connection_id = (event.get("requestContext") or {}).get("connectionId")
        if connection_id:
            try:
                removed = self.repository.delete_connection(connection_id)
            except Exception as error:  # noqa: BLE001 - TTL removes what is left; one log line
                self._log_failure("$disconnect", connection_id, error)
                return _response(500)
            self._log("disconnect", connection_id, removed=removed)
        return _response(200)

    # -- $default (all actions) ---------------------------------------------------

    def on_message(self, event: Event) -> Response:
        """Run one frame; every frame gets a typed answer, never API Gateway's "Internal server error".

        Bad input is a ProtocolError, answered with its error frame. The reply
        is encoded inside the same guard (an echo can outgrow 128 KB). Anything
        else a handler raises is logged as one line (exception type, where,
        connection id; never the frame) and answered ``internal_error``.
        Only a failure to reach the management API leaves the client unanswered.
        """
        request = event.get("requestContext") or {}
        connection_id = request.get("connectionId")
        if not isinstance(connection_id, str) or not connection_id:
            self._log("bad_event", None, reason="no_connection_id")
            return _response(400)
        request_id = None
        try:
            broadcaster = self._broadcaster_for(self._endpoint_for(
                request.get("domainName", ""), request.get("stage", ""), request.get("apiId", "")))
        except Exception as error:  # noqa: BLE001 - nobody can be answered without an endpoint
            self._log_failure("$default", connection_id, error)
            return _response(500)
        try:
            frame = parse_frame(event.get("body"), bool(event.get("isBase64Encoded")))
            request_id = frame.request_id
            reply = self._dispatch(frame, connection_id, broadcaster)
            data = outgoing(reply) if reply is not None else None
        except ProtocolError as error:
            self._log("bad_message", connection_id, code=error.code)
            data = outgoing(error_frame(error.code, error.message,
                                        request_id if request_id is not None else error.request_id))
        except Exception as error:  # noqa: BLE001 - a typed answer and one log line, not a Lambda error
            self._log_failure("$default", connection_id, error)
            data = outgoing(error_frame("internal_error", "the message could not be handled", request_id))
        if data is not None:
            broadcaster.send(connection_id, data)  # reports, never raises
        # 200 even after internal_error: the client has its answer and the log
        # line is written; API Gateway does nothing with a $default status.
        return _response(200)

    def _dispatch(self, frame: Frame, connection_id: str, broadcaster: Broadcaster) -> Reply | None:
        handler = getattr(self, "_action_" + frame.action.lstrip("$"))
        return handler(frame, connection_id, broadcaster)

    def _sender(self, connection_id: str) -> ConnectionRecord:
        record = self.repository.get_connection(connection_id)
        if record is None:
            raise ProtocolError("not_connected", "this connection is not registered")
        return record

    def _ack(self, frame: Frame, report: DeliveryReport, **extra: str) -> Reply:
        ack = {"type": "ack", "action": frame.action, **extra, **_counts(report)}
        if frame.request_id is not None:
            ack["id"] = frame.request_id  # validated and capped (128 characters): the ack stays small
        return ack

    def _action_sendmessage(self, frame: Frame, connection_id: str, broadcaster: Broadcaster) -> Reply:
        data = require(frame, "data", object)
        sender = self._sender(connection_id)
        message = outgoing({"type": "message", "from": _who(sender), "data": data, "timestamp": now_ms()})
        report = broadcaster.broadcast(_flatten(self.repository.iter_connection_ids()), message,
                                       exclude=(connection_id,))
        return self._ack(frame, report)

    def _action_subscribe(self, frame: Frame, connection_id: str, broadcaster: Broadcaster) -> Reply:
        topic = _topic(frame)
        limit = self.settings.max_subscriptions_per_connection
        try:
            self.repository.subscribe(connection_id, topic, max_subscriptions=limit)
        except ValueError as error:
            raise ProtocolError("bad_field", str(error)) from None
        except ConnectionNotFound:
            raise ProtocolError("not_connected", "this connection is not registered") from None
        except SubscriptionLimitReached:
            raise ProtocolError("too_many_subscriptions",
                                f"a connection may hold at most {limit} subscriptions; unsubscribe first") from None
        return {"type": "subscribed", "topic": topic}

    def _action_unsubscribe(self, frame: Frame, connection_id: str, broadcaster: Broadcaster) -> Reply:
        topic = _topic(frame)
        try:
            existed = self.repository.unsubscribe(connection_id, topic)
        except ValueError as error:
            raise ProtocolError("bad_field", str(error)) from None
        return {"type": "unsubscribed", "topic": topic, "wasSubscribed": existed}

    def _action_publish(self, frame: Frame, connection_id: str, broadcaster: Broadcaster) -> Reply:
        topic = _topic(frame)
        data = require(frame, "data", object)
        sender = self._sender(connection_id)
        message = outgoing({"type": "publish", "topic": topic, "from": _who(sender), "data": data,
                            "timestamp": now_ms()})
        try:
            subscribers = self.repository.subscriber_ids(topic)
        except ValueError as error:
            raise ProtocolError("bad_field", str(error)) from None
        report = broadcaster.broadcast(subscribers, message, exclude=(connection_id,))
        return self._ack(frame, report, topic=topic)

    def _action_whoami(self, frame: Frame, connection_id: str, broadcaster: Broadcaster) -> Reply:
        return {"type": "whoami", "identity": self._sender(connection_id).identity()}

    def _action_default(self, frame: Frame, connection_id: str, broadcaster: Broadcaster) -> Reply:
        """The seeds' $default: echo the message with the data stored for the connection."""
        return {"type": "echo", "message": frame.body, "connection": self._sender(connection_id).identity()}

    # -- pushes from back-end services (notify, REST, EventBridge) ---------------

    def notify(self, payload: Mapping[str, Any]) -> NotifyResult:
        """Deliver ``data`` to every connection of one user (by sub or username).

        Always answers its documented shape: ``{"ok": false, "error": {...}}``
        for bad input (PushError) and, with one log line, ``internal_error``
        for anything else (DynamoDB down...), never a Lambda error with a
        stack trace to the invoking service.
        """
        try:
            result = self.push(user_push(payload))
        except PushError as error:
            return _notify_error(error.code, error.message)
        except Exception as error:  # noqa: BLE001 - the caller gets the documented shape
            self._log_failure("notify", None, error)
            return _notify_error("internal_error", "the notification could not be delivered")
        return {"ok": True, "connections": result.connections, **_counts(result.report)}

    def push(self, push: Push) -> PushResult:
        """Deliver one back-end message to its audience; raises PushError for bad input.

        The push is validated (``push.validate_push``: safe names, strict JSON
        data) and the frame encoded, with its ``messageId`` (over 128 KB is
        refused, as API Gateway would), before anything is read or sent.
        """
        validate_push(push)
        try:
            frame: Reply = {"type": push.frame_type, "data": push.data, "timestamp": now_ms()}
            if push.kind == "topic":
                frame["topic"] = push.value
            message = outgoing(frame)
        except ProtocolError as error:
            raise PushError(error.code, error.message) from None  # not encodable, or over 128 KB
        try:
            ids = self._audience(push)
        except ValueError as error:
            raise PushError("bad_topic" if push.kind == "topic" else "bad_request", str(error)) from None
        endpoint = self._endpoint_for_connections(ids) if ids else None
        if endpoint is None:
            return PushResult(0, DeliveryReport())
        report = self._broadcaster_for(endpoint).broadcast(ids, message)
        self._log("push", None, audience=push.kind, target=push.value, **_counts(report))
        return PushResult(len(ids), report)

    def _audience(self, push: Push) -> list[str]:
        if push.kind == "user":
            return self.repository.connection_ids_for_user(push.value)
        if push.kind == "username":
            return self.repository.connection_ids_for_username(push.value)
        if push.kind == "topic":
            return self.repository.subscriber_ids(push.value)
        return list(_flatten(self.repository.iter_connection_ids()))

    def connections_of(self, user_id: str) -> list[ConnectionRecord]:
        """The user's open connections, read through the user index (``GET /me``)."""
        records = (self.repository.get_connection(i) for i in self.repository.connection_ids_for_user(user_id))
        return [record for record in records if record is not None]

    def _endpoint_for_connections(self, ids: Iterable[str]) -> str | None:
        if self.settings.management_url:
            return self.settings.management_url
        for connection_id in ids:
            record = self.repository.get_connection(connection_id)
            if record is not None:
                return self._endpoint_for(record.domain, record.stage, record.api_id)
        return None

    @staticmethod
    def _log(event: str, connection_id: str | None, **fields: Field) -> None:
        log_event(logger, event, connectionId=connection_id, **fields)

    @staticmethod
    def _log_failure(route: str, connection_id: object, error: BaseException) -> None:
        """One ERROR line for an unexpected failure: the exception's type and where it was raised.

        Not its message nor a traceback's locals: either may quote the frame,
        a payload or a token.
        """
        log_event(logger, "handler_error", logging.ERROR, route=route, connectionId=_loggable(connection_id),
                  error=type(error).__name__, where=_raised_at(error))


def _topic(frame: Frame) -> str:
    """The frame's ``topic``, checked (``validation.check_topic``) before any DynamoDB call."""
    try:
        return check_topic(require(frame, "topic"))
    except TextRefused as error:
        raise ProtocolError("bad_field", str(error)) from None


def _loggable(connection_id: object) -> str | None:
    """A connection id fit for a log line (API Gateway's ids are short; anything else is cut)."""
    return connection_id[:128] if isinstance(connection_id, str) else None


def _raised_at(error: BaseException) -> str:
    """``file:line`` of the innermost frame that raised ``error`` (code location only, no values)."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f"{os.path.basename(last.filename)}:{last.lineno}"


def _who(record: ConnectionRecord) -> dict[str, str]:
    return {"userId": record.user_id, "username": record.username}


def _counts(report: DeliveryReport) -> dict[str, int]:
    return {"delivered": len(report.delivered), "gone": len(report.gone), "failed": len(report.failed)}


def _flatten(pages: Iterable[list[str]]) -> Iterable[str]:
    for page in pages:
        yield from page


@dataclass(frozen=True)
class PushResult:
    """A push's outcome: how many connections the audience had, and what happened to each."""

    connections: int
    report: DeliveryReport

    def to_dict(self) -> dict[str, int | list[str] | dict[str, str]]:
        return {"connections": self.connections, **self.report.to_dict()}


def _notify_error(code: str, message: str) -> NotifyResult:
    return {"ok": False, "error": {"code": code, "message": message}}


__all__ = ["ConnectionService", "DEFAULT_ROUTE"]
