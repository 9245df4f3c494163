"""The WebSocket actions: one small function each, registered in one table with the fields it needs.

A frame's ``action`` picks the entry; ``run`` checks the entry's fields (type,
then the field's own check) in order, then calls the function. Each function
returns the answer frame or raises ``AppError``; ``messages`` encodes either.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from .audience import Others, Topic
from .authorizer import check_permissions
from .broadcaster import Broadcaster
from .history import numbered
from .resumes import catch_up, join, leave, resume, since_value
from .channels import Operation, channel_decision
from .errors import AppError, ErrorCode, Forbidden, JwksUnavailable, Unauthorized
from .identity import Identity, epoch_seconds
from .logs import log_event
from .protocol import DEFAULT_ROUTE, Frame, now_ms, outgoing
from .settings import Settings
from .validation import check_topic

if TYPE_CHECKING:  # types only: the stores import boto3
    from .connections import ConnectionStore
    from .delivery import Delivery, PushResult
    from .expiries import TokenExpiries
    from .history import HistoryStore
    from .presence import PresenceStore
    from .tombstones import Tombstones
    from .revocations import Revocations
    from .records import ConnectionRecord
    from .subscriptions import SubscriptionStore

logger = logging.getLogger("ws.actions")

Reply = dict[str, Any]


class Services(Protocol):
    """What actions use (``components.Components``)."""

    settings: Settings
    connections: ConnectionStore
    subscriptions: SubscriptionStore
    expiries: TokenExpiries
    delivery: Delivery
    revocations: Revocations
    history: HistoryStore
    presence: PresenceStore
    tombstones: Tombstones

    def verify(self, token: str) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Call:
    """One frame to run: who sent it, how to answer them, and the app's services."""

    frame: Frame
    connection_id: str
    broadcaster: Broadcaster
    services: Services

    def field(self, name: str) -> Any:
        return self.frame.body[name]

    def sender(self) -> ConnectionRecord:
        return self.services.connections.require(self.connection_id)

    def authorize_channel(self, topic: str, operation: Operation, identity: Identity) -> None:
        """Forbidden unless the stage's channel rules let ``identity`` (the stored one: a refresh updates it)
        ``operation`` ``topic``; before any write."""
        decision = channel_decision(self.services.settings.channel_rules, identity, topic, operation)
        if not decision.allowed:
            log_event(logger, "channel_refused", connectionId=self.connection_id, operation=operation,
                      rule=decision.rule.index if decision.rule else None)
            raise AppError(ErrorCode.FORBIDDEN, f"{operation} is not allowed on {topic!r}")


Handler = Callable[[Call], Reply]


@dataclass(frozen=True)
class Field:
    """A required field: its JSON type, and a check of its value (raises AppError)."""

    name: str
    kind: type | tuple[type, ...] = str
    check: Callable[[Any], object] | None = None


@dataclass(frozen=True)
class Action:
    handler: Handler
    fields: tuple[Field, ...] = ()


def _ack(call: Call, result: PushResult, **extra: str) -> Reply:
    return {"type": "ack", "action": call.frame.action, **extra, **result.counts(connections=False)}


def sendmessage(call: Call) -> Reply:
    """``data`` to every other connection."""
    sender = call.sender()
    audience = Others.than(call.connection_id)
    message = outgoing({**audience.frame(call.field("data"), sender.who()), "timestamp": now_ms()})
    result = call.services.delivery.deliver(audience, message, broadcaster=call.broadcaster,
                                            endpoint=call.services.delivery.management.endpoint(sender.endpoint))
    return _ack(call, result)


def subscribe(call: Call) -> Reply:
    """Subscribe; with ``since``, then replay what the topic kept after it (``history.py``)."""
    topic = call.field("topic")
    since = _since(call, topic)
    subscriber: list[Identity] = []

    def authorize(identity: Identity) -> None:
        call.authorize_channel(topic, "subscribe", identity)
        subscriber.append(identity)

    stored = call.services.subscriptions.subscribe(
        call.connection_id, topic, max_subscriptions=call.services.settings.max_subscriptions_per_connection,
        authorize=authorize)
    answer: Reply = {"type": "subscribed", "topic": topic}
    if call.services.settings.channel_rules.is_presence(topic):
        answer["members"] = join(call, topic, subscriber[0], stored)
    if since is None:
        return answer
    return {**answer, **catch_up(call, topic, since)}


def _since(call: Call, topic: str) -> int | None:
    """``since``, checked before anything is written: a whole number >= 0, on a topic that keeps history."""
    if "since" not in call.frame.body:
        return None
    since = since_value(call.frame.body["since"])
    if call.services.settings.channel_rules.history_seconds(topic) is None:
        raise AppError(ErrorCode.BAD_FIELD, f"{topic!r} keeps no history: subscribe without 'since'")
    return since


def unsubscribe(call: Call) -> Reply:
    topic = call.field("topic")
    existed = call.services.subscriptions.unsubscribe(call.connection_id, topic)
    if existed and call.services.settings.channel_rules.is_presence(topic):
        leave(call, topic)
    return {"type": "unsubscribed", "topic": topic, "wasSubscribed": existed}


def publish(call: Call) -> Reply:
    """``data`` to the topic's other subscribers."""
    topic = call.field("topic")
    sender = call.sender()
    call.authorize_channel(topic, "publish", sender.identity)
    audience = Topic(topic, exclude=(call.connection_id,))
    frame = {**audience.frame(call.field("data"), sender.who()), "timestamp": now_ms()}
    message = numbered(frame, topic, call.services.settings.channel_rules.history_seconds(topic),
                       call.services.history)
    result = call.services.delivery.deliver(audience, message, broadcaster=call.broadcaster,
                                            endpoint=call.services.delivery.management.endpoint(sender.endpoint))
    return _ack(call, result, topic=topic)


def refresh(call: Call) -> Reply:
    """Re-authenticate on the open socket: a fresh token moves the connection's expiry.

    API Gateway authorizes only at ``$connect``, so without this a connection
    is closed once its token expires (``expiry.sweep``). A token that does not
    verify is ``invalid_token`` and changes nothing (a JWKS outage is
    ``unavailable``). One for another user is ``token_mismatch``, one without a
    required group or scope ``forbidden``, and the connection is closed after
    either: the socket is being handed to someone it was not authorized for.
    """
    record = call.sender()
    try:
        claims = call.services.verify(call.field("token"))
    except JwksUnavailable:
        raise AppError(ErrorCode.UNAVAILABLE, "the signing keys cannot be fetched; try again later") from None
    except Unauthorized as error:
        log_event(logger, "refresh_refused", connectionId=call.connection_id, reason=error.reason)
        raise AppError(ErrorCode.INVALID_TOKEN, "the token was refused") from None
    if claims.get("sub") != record.user_id:
        log_event(logger, "refresh_refused", connectionId=call.connection_id, reason="other_subject")
        raise AppError(ErrorCode.TOKEN_MISMATCH, "the token is for another user; closing the connection", close=True)
    try:
        check_permissions(claims, call.services.settings)
    except Forbidden as error:
        log_event(logger, "refresh_refused", connectionId=call.connection_id, reason=error.reason)
        raise AppError(ErrorCode.FORBIDDEN, "the token lacks a required group or scope; closing the connection",
                       close=True) from None
    token_exp = epoch_seconds(claims.get("exp"))
    if token_exp is None:  # the verifier requires exp: not reached with a real verifier
        raise AppError(ErrorCode.INVALID_TOKEN, "the token has no expiry")
    identity = Identity.from_claims(claims, record.identity.source)
    if call.services.revocations.is_revoked(identity):
        log_event(logger, "refresh_refused", connectionId=call.connection_id, reason="token_revoked")
        raise AppError(ErrorCode.FORBIDDEN, "the token was revoked; closing the connection", close=True)
    call.services.expiries.set_token_expiry(call.connection_id, token_exp, identity.groups, identity.scopes)
    changed = (identity.groups, identity.scopes) != (record.identity.groups, record.identity.scopes)
    dropped = _drop_forbidden(call, identity) if changed else []
    log_event(logger, "refresh", connectionId=call.connection_id, exp=token_exp, unsubscribed=len(dropped))
    return {"type": "refreshed", "expiresAt": token_exp}


def _drop_forbidden(call: Call, identity: Identity) -> list[str]:
    """A refresh changed the groups or scopes: unsubscribe from every topic the new identity may not read,
    each answered ``{"type": "unsubscribed", "topic": ..., "reason": "forbidden"}`` before ``refreshed``."""
    rules = call.services.settings.channel_rules
    subscriptions = call.services.subscriptions
    dropped = [topic for topic in subscriptions.topics_for(call.connection_id)
               if not channel_decision(rules, identity, topic, "subscribe").allowed]
    for topic in dropped:
        subscriptions.unsubscribe(call.connection_id, topic)
        call.broadcaster.send(call.connection_id, outgoing({"type": "unsubscribed", "topic": topic,
                                                            "reason": "forbidden"}))
    return dropped


def whoami(call: Call) -> Reply:
    return {"type": "whoami", "identity": call.sender().describe()}


def echo(call: Call) -> Reply:
    """A frame without ``action``: echoed with what is stored about the connection."""
    return {"type": "echo", "message": call.frame.body, "connection": call.sender().describe()}


TOPIC = Field("topic", str, check_topic)
DATA = Field("data", object)

ACTIONS: dict[str, Action] = {
    "sendmessage": Action(sendmessage, (DATA,)),
    "subscribe": Action(subscribe, (TOPIC,)),
    "unsubscribe": Action(unsubscribe, (TOPIC,)),
    "publish": Action(publish, (TOPIC, DATA)),
    "whoami": Action(whoami),
    "refresh": Action(refresh, (Field("token", str),)),
    "resume": Action(resume, (Field("connectionId", str),)),
}
ROUTES: dict[str, Action] = {**ACTIONS, DEFAULT_ROUTE: Action(echo)}


def route(frame: Frame) -> Action:
    """The frame's entry in the table; ``unknown_action`` when there is none."""
    action = frame.action
    entry = ROUTES.get(action) if isinstance(action, str) else None
    if entry is None:
        shown = repr(action[:64]) if isinstance(action, str) else f"of type {type(action).__name__}"
        raise AppError(ErrorCode.UNKNOWN_ACTION, f"unknown action {shown}; known: {', '.join(ACTIONS)}")
    return entry


def run(call: Call) -> Reply:
    """Check the frame against its action's entry, run it, and copy the frame's ``id`` into the answer."""
    action = call.frame.action
    entry = route(call.frame)
    for spec in entry.fields:
        if spec.name not in call.frame.body:
            raise AppError(ErrorCode.MISSING_FIELD, f"{action} needs {spec.name!r}")
        value = call.frame.body[spec.name]
        if not isinstance(value, spec.kind) or (isinstance(value, str) and not value):
            raise AppError(ErrorCode.BAD_FIELD, f"{spec.name!r} has the wrong type or is empty")
        if spec.check is not None:
            spec.check(value)
    reply = entry.handler(call)
    if call.frame.request_id is not None:
        reply["id"] = call.frame.request_id
    return reply


__all__ = ["ACTIONS", "Action", "Call", "Field", "Services", "route", "run"]
