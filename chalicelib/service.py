"""Connection lifecycle and messaging: what $connect, $default, $disconnect and
``notify`` do, with the repository and the broadcaster injected.

Nothing can be posted to a connection during its ``$connect`` (it is not open
yet), and Chalice's ``$default`` has no route response, so every answer to a
client (acks, errors, echoes) goes back through the management API.
"""
from __future__ import annotations

import itertools
import logging
import os
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence

from .authorizer import check_permissions, read_context
from .broadcaster import Broadcaster, DeliveryReport
from .errors import Forbidden, JwksUnavailable, TokenInvalid, Unauthorized
from .expiry import SweepReport, sweep
from .fanout import (
    WorkItem, WorkItemError, broadcast_slices, segment_count, should_queue, topic_slices, user_slice, work_items,
)
from .faults import is_unavailable
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
Verify = Callable[[str], Mapping[str, Any]]  # a token -> its verified claims, or raises Unauthorized


def _response(status: int, headers: Mapping[str, str] | None = None) -> Response:
    answer: Response = {"statusCode": status}
    if headers:
        answer["headers"] = dict(headers)
    return answer


class ConnectionService:
    def __init__(self, settings: Settings, repository: ConnectionRepository,
                 broadcaster_for: BroadcasterFactory, endpoint_for: EndpointResolver,
                 clock: Callable[[], float] = time.time, verify: Verify | None = None,
                 fanout_queue: FanoutSender | None = None,
                 worker_broadcaster_for: BroadcasterFactory | None = None) -> None:
        # fanout_queue: where audiences over FANOUT_INLINE_MAX go (None: everything inline);
        # worker_broadcaster_for: the fan-out worker's broadcasters (adaptive retries).
        self._fanout_queue = fanout_queue
        self._worker_broadcaster_for = worker_broadcaster_for or broadcaster_for
        self.settings = settings
        self.repository = repository
        self._broadcaster_for = broadcaster_for
        self._endpoint_for = endpoint_for
        self._clock = clock
        # The authorizer's verifier (runtime.verifier), for {"action": "refresh"}; None: refresh refused.
        self._verify = verify

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
            token_exp=_epoch_seconds(context.claims.get("exp")),
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
        close = False
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
            close = error.close
        except Exception as error:  # noqa: BLE001 - a typed answer and one log line, not a Lambda error
            self._log_failure("$default", connection_id, error)
            if is_unavailable(error):  # DynamoDB down, throttled or timing out: the client may retry
                data = outgoing(error_frame("unavailable", "a service this needs is unavailable; try again later",
                                            request_id))
            else:
                data = outgoing(error_frame("internal_error", "the message could not be handled", request_id))
        if data is not None:
            broadcaster.send(connection_id, data)  # reports, never raises
        if close:  # after the error frame: API Gateway sends what was posted, then closes
            outcome = broadcaster.disconnect(connection_id)
            self._log("connection_closed", connection_id, reason="refresh_refused", outcome=outcome)
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

    def _ack(self, frame: Frame, result: PushResult, **extra: str) -> Reply:
        ack = {"type": "ack", "action": frame.action, **extra, **result.counts(connections=False)}
        if frame.request_id is not None:
            ack["id"] = frame.request_id  # validated and capped (128 characters): the ack stays small
        return ack

    def _action_sendmessage(self, frame: Frame, connection_id: str, broadcaster: Broadcaster) -> Reply:
        data = require(frame, "data", object)
        sender = self._sender(connection_id)
        message = outgoing({"type": "message", "from": _who(sender), "data": data, "timestamp": now_ms()})
        result = self._fan_out("all", "", message, exclude=(connection_id,), broadcaster=broadcaster,
                               endpoint=self._endpoint_of(sender))
        return self._ack(frame, result)

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
            result = self._fan_out("topic", topic, message, exclude=(connection_id,), broadcaster=broadcaster,
                                   endpoint=self._endpoint_of(sender))
        except ValueError as error:
            raise ProtocolError("bad_field", str(error)) from None
        return self._ack(frame, result, topic=topic)

    def _action_refresh(self, frame: Frame, connection_id: str, broadcaster: Broadcaster) -> Reply:
        """Re-authenticate on the open socket: a fresh token moves the connection's expiry.

        API Gateway authorizes only at ``$connect``, so without this a
        connection is closed once its token expires (``expiry.sweep``). The
        token is verified by the authorizer's verifier and permission checks.
        A token that does not verify is answered ``invalid_token`` and changes
        nothing (the current one still holds until it expires; a JWKS outage
        is ``unavailable``). One for another user (``sub``) is answered
        ``token_mismatch``, one without a required group or scope
        ``forbidden``, and the connection is closed after either: the socket
        is being handed to someone it was not authorized for.
        """
        token = require(frame, "token", str)
        if self._verify is None:
            raise ProtocolError("internal_error", "refresh is not available")
        record = self._sender(connection_id)
        try:
            claims = self._verify(token)
        except JwksUnavailable:
            raise ProtocolError("unavailable", "the signing keys cannot be fetched; try again later") from None
        except Unauthorized as error:
            self._log("refresh_refused", connection_id, reason=error.reason)
            raise ProtocolError("invalid_token", "the token was refused") from None
        if claims.get("sub") != record.user_id:
            self._log("refresh_refused", connection_id, reason="other_subject")
            raise ProtocolError("token_mismatch", "the token is for another user; closing the connection",
                                close=True)
        try:
            check_permissions(claims, self.settings)
        except Forbidden as error:
            self._log("refresh_refused", connection_id, reason=error.reason)
            raise ProtocolError("forbidden", "the token lacks a required group or scope; closing the connection",
                                close=True) from None
        token_exp = _epoch_seconds(claims.get("exp"))
        if token_exp is None:  # the verifier requires exp: not reached with a real verifier
            raise ProtocolError("invalid_token", "the token has no expiry")
        try:
            self.repository.set_token_expiry(connection_id, token_exp)
        except ConnectionNotFound:
            raise ProtocolError("not_connected", "this connection is not registered") from None
        self._log("refresh", connection_id, exp=token_exp)
        reply: Reply = {"type": "refreshed", "expiresAt": token_exp}
        if frame.request_id is not None:
            reply["id"] = frame.request_id
        return reply

    def _action_whoami(self, frame: Frame, connection_id: str, broadcaster: Broadcaster) -> Reply:
        return {"type": "whoami", "identity": self._sender(connection_id).identity()}

    def _action_default(self, frame: Frame, connection_id: str, broadcaster: Broadcaster) -> Reply:
        """The seeds' $default: echo the message with the data stored for the connection."""
        return {"type": "echo", "message": frame.body, "connection": self._sender(connection_id).identity()}

    # -- pushes from back-end services (notify, REST, EventBridge) ---------------

    def notify(self, payload: Mapping[str, Any]) -> NotifyResult:
        """Deliver ``data`` to every connection of one user (by sub or username).

        Always answers its documented shape: ``{"ok": false, "error": {...}}``
        for bad input (PushError) and, with one log line, ``unavailable``
        (DynamoDB down or throttling: retry later) or ``internal_error`` for
        anything else, never a Lambda error with a stack trace to the invoking
        service.
        """
        try:
            result = self.push(user_push(payload))
        except PushError as error:
            return _notify_error(error.code, error.message)
        except Exception as error:  # noqa: BLE001 - the caller gets the documented shape
            self._log_failure("notify", None, error)
            if is_unavailable(error):  # DynamoDB down or throttling: the caller may retry
                return _notify_error("unavailable", "a dependency is unavailable; try again later")
            return _notify_error("internal_error", "the notification could not be delivered")
        return {"ok": True, **result.counts()}

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
            result = self._fan_out(push.kind, push.value, message)
        except ValueError as error:
            raise PushError("bad_topic" if push.kind == "topic" else "bad_request", str(error)) from None
        self._log("push", None, audience=push.kind, target=push.value, **result.counts())
        return result

    # -- fan-out: inline, or queued as work items (chalicelib/fanout.py) ----------

    def _audience_ids(self, kind: str, value: str, first_page: int | None = None) -> Iterator[str]:
        """Every connection id of the audience, streamed (ValueError for a bad name, before any read).

        ``first_page``: read a topic or the table in pages of that many items, one
        scan segment, when only the first few ids are likely to be needed (the
        queued path's decision), instead of 1,000-item pages from four segments.
        """
        if kind == "user":
            return iter(self.repository.connection_ids_for_user(value))
        if kind == "username":
            return iter(self.repository.connection_ids_for_username(value))
        if kind == "topic":
            check_topic(value)
            return _flatten(ids for ids, _ in self.repository.topic_pages(value, first_page or 1000))
        if first_page:
            return _flatten(self.repository.iter_connection_ids(segments=1, page_size=first_page))
        return _flatten(self.repository.iter_connection_ids())

    def _fan_out(self, kind: str, value: str, message: bytes, *, exclude: tuple[str, ...] = (),
                 broadcaster: Broadcaster | None = None, endpoint: str | None = None) -> PushResult:
        """Post ``message`` to the audience inline, or enqueue it when the audience is over the limit.

        With a queue, at most ``FANOUT_INLINE_MAX + 1`` ids are read to decide
        (the sender, excluded, is not counted); without one, everything is
        inline and streamed, as before. ``exclude`` goes into every work item
        too: "every other connection" leaves the sender out on both paths.
        """
        queue, limit = self._fanout_queue, self.settings.fanout_inline_max
        ids = self._audience_ids(kind, value, first_page=limit + 1 if queue is not None else None)
        head: list[str] = []
        if queue is not None:
            seen = set(exclude)
            for connection_id in ids:
                if connection_id not in seen:
                    seen.add(connection_id)
                    head.append(connection_id)
                    if len(head) > limit:
                        break
            if should_queue(len(head), limit, queue_configured=True):
                close = getattr(ids, "close", None)
                if close is not None:
                    close()  # stops the parallel scan's threads
                return self._enqueue(kind, value, message, exclude, head,
                                     endpoint or self._endpoint_and_ids(head)[0])
        audience: Iterable[str] = head if queue is not None else ids
        if broadcaster is None:
            target, audience = self._endpoint_and_ids(i for i in audience if i not in exclude)
            if target is None:
                return PushResult(0, DeliveryReport())
            broadcaster = self._broadcaster_for(target)
        report = broadcaster.broadcast(audience, message, exclude=exclude)
        return PushResult(report.total, report)

    def _enqueue(self, kind: str, value: str, message: bytes, exclude: tuple[str, ...], head: list[str],
                 endpoint: str | None) -> PushResult:
        """Write the push's work items (one per scan segment, topic page or user) to the queue."""
        assert self._fanout_queue is not None
        if endpoint is None:  # none of the first ids is stored any more: nobody to reach
            return PushResult(0, DeliveryReport())
        if kind == "all":
            segments = segment_count(self.repository.approximate_item_count(), len(head),
                                     self.settings.fanout_segment_size)
            slices = broadcast_slices(segments)
        elif kind == "topic":
            slices = topic_slices(value, self.repository.topic_page_bounds(value, self.settings.fanout_segment_size))
        else:
            slices = [user_slice("user" if kind == "user" else "username", value)]
        items = work_items(str(uuid.uuid4()), endpoint, message, slices, exclude)
        self._fanout_queue.send([item.encode() for item in items])
        self._log("fanout_queued", exclude[0] if exclude else None, audience=kind, target=value,
                  items=len(items), push=items[0].push_id if items else "",
                  messageId=items[0].message_id if items else "")
        return PushResult(0, DeliveryReport(), queued=len(items))

    def run_work_item(self, body: str) -> dict[str, Any]:
        """The fan-out worker: post one work item's frame to its slice of the audience.

        410s are deleted (the broadcaster's ``on_gone``). Posts that still fail
        after botocore's adaptive retries raise FanoutItemFailed: Lambda then
        leaves the message on the queue, it is received again after the
        visibility timeout (the same frame, the same ``messageId``: clients
        drop what they already have) and, after maxReceiveCount, it moves to
        the dead-letter queue. A body that is not a work item is logged and
        dropped: no retry could make it one.
        """
        try:
            item = WorkItem.decode(body)
        except WorkItemError as error:
            log_event(logger, "fanout_item_dropped", logging.WARNING, reason=str(error))
            return {"ok": False, "error": "bad_work_item"}
        report = self._worker_broadcaster_for(item.endpoint).broadcast(self._slice_ids(item), item.frame,
                                                                       exclude=item.exclude)
        self._log("fanout_item", None, push=item.push_id, messageId=item.message_id, slice=_slice_text(item),
                  **_counts(report))
        if report.failed:
            raise FanoutItemFailed(item.push_id, report)
        return {"ok": True, **_counts(report)}

    def _slice_ids(self, item: WorkItem) -> Iterable[str]:
        piece = item.slice
        if piece.kind == "all":
            return _flatten(self.repository.segment_connection_ids(piece.segment, piece.segments))
        if piece.kind == "topic":
            return self.repository.topic_page_ids(piece.topic, piece.after, piece.through)
        return self._audience_ids(piece.kind, piece.user)

    def _endpoint_of(self, record: ConnectionRecord) -> str:
        """The management endpoint of a stored connection (the sender's, for its peers)."""
        return self._endpoint_for(record.domain, record.stage, record.api_id)

    def sweep_expired_tokens(self) -> SweepReport:
        """The scheduled sweep (``expiry.sweep``) with this service's repository and management clients."""
        return sweep(self.settings, self.repository, self._broadcaster_for, self._endpoint_for, self._clock)

    def connections_of(self, user_id: str) -> list[ConnectionRecord]:
        """The user's open connections, read through the user index (``GET /me``)."""
        records = (self.repository.get_connection(i) for i in self.repository.connection_ids_for_user(user_id))
        return [record for record in records if record is not None]

    def _endpoint_and_ids(self, ids: Iterable[str]) -> tuple[str | None, Iterator[str]]:
        """The endpoint of the first stored connection among ``ids``, and ``ids`` again, whole.

        Reads only as far as that first stored record, so a streamed audience
        stays streamed: the ids read on the way are put back in front.
        """
        pending = iter(ids)
        read: list[str] = []
        endpoint = self.settings.management_url or None
        if endpoint is None:
            for connection_id in pending:
                read.append(connection_id)
                record = self.repository.get_connection(connection_id)
                if record is not None:
                    endpoint = self._endpoint_for(record.domain, record.stage, record.api_id)
                    break
        return endpoint, itertools.chain(read, pending)

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


def _epoch_seconds(value: object) -> int | None:
    """A token's ``exp`` as whole epoch seconds: a number, or digits (a context value may come back as text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value == value and abs(value) < 1e12:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 12:
        return int(value.strip())
    return None


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


class FanoutItemFailed(RuntimeError):
    """Some posts of a work item failed for good: the item goes back to the queue (redelivered whole)."""

    def __init__(self, push_id: str, report: DeliveryReport) -> None:
        codes = sorted(set(report.failed.values()))
        super().__init__(f"work item of push {push_id}: {len(report.failed)} posts failed ({', '.join(codes)})")
        self.report = report


class FanoutSender(Protocol):
    """What the service needs of the queue (``fanout_queue.FanoutQueue``)."""

    def send(self, bodies: Sequence[str]) -> int:
        ...


def _slice_text(item: WorkItem) -> str:
    """A work item's slice for a log line: ``all 3/16``, ``topic news``, ``user <sub>``."""
    piece = item.slice
    if piece.kind == "all":
        return f"all {piece.segment}/{piece.segments}"
    return f"{piece.kind} {piece.topic or piece.user}"


@dataclass(frozen=True)
class PushResult:
    """A push's outcome: how many connections the audience had, and what happened to each.

    ``queued`` > 0: the audience was over ``FANOUT_INLINE_MAX`` and went to the
    queue as that many work items; this Lambda posted nothing.
    """

    connections: int
    report: DeliveryReport
    queued: int = 0

    def counts(self, connections: bool = True) -> dict[str, int]:
        """What reports (and, without ``connections``, acks) show: the counts, or ``{"queued": items}``."""
        if self.queued:
            return {"queued": self.queued}
        return {**({"connections": self.connections} if connections else {}), **_counts(self.report)}


def _notify_error(code: str, message: str) -> NotifyResult:
    return {"ok": False, "error": {"code": code, "message": message}}


__all__ = ["ConnectionService", "DEFAULT_ROUTE"]
