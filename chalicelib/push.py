"""Pushes from back-end services: who gets a message, read from any entry point.

``notify`` (a Lambda invoke), the REST routes and the EventBridge rule all name
an audience and carry ``data``; this module turns each of their inputs into one
``Push`` (an ``audience`` and validated ``data``) before anything is read or
sent, so the three share one delivery path (``pushes.push``). Pure: no boto3.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .audience import Audience, Everyone, Others, Topic, User
from .errors import AppError, ErrorCode
from .event_contract import EVENT_DETAIL_TYPES
from .validation import check_id, check_json_value, check_topic

JsonValue = object  # any value json.loads produced


@dataclass(frozen=True)
class Push:
    """One message from a back-end to one audience."""

    audience: Audience
    data: JsonValue


def _bad(message: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> AppError:
    return AppError(code, message)


def _data(payload: Mapping[str, object], what: str) -> JsonValue:
    if "data" not in payload:
        raise _bad(f"{what} needs 'data'", ErrorCode.MISSING_FIELD)
    check_json_value(payload["data"], "'data'")
    return payload["data"]


def validate_push(push: Push) -> Push:
    """``push`` if its audience and data are valid, else AppError; before anything is read or sent.

    ``data`` must be strict JSON (``validation.check_json_value``): the callers'
    parsers are lenient (Lambda's runtime and Chalice read NaN, Infinity, 1e400
    and "\\ud800"), and every subscriber's ``JSON.parse`` would choke on them.
    """
    audience = push.audience
    if isinstance(audience, User):
        check_id(audience.name, "'userId'" if audience.by == "sub" else "'username'", ErrorCode.BAD_REQUEST)
    elif isinstance(audience, Topic):
        check_topic(audience.name, ErrorCode.BAD_TOPIC)
    elif not isinstance(audience, Everyone) or isinstance(audience, Others):
        raise _bad("a back-end push goes to a user, a topic or everyone")
    check_json_value(push.data, "'data'")
    return push


# Every key that names an audience: a push states its audience exactly once.
AUDIENCE_KEYS = ("userId", "username", "topic")


def _only(payload: Mapping[str, object], allowed: tuple[str, ...], what: str) -> None:
    """Refuse a payload that also names another audience (``bad_request``): sending it to the
    audience that happened to win would be the worst reading of a mistake upstream."""
    foreign = [key for key in AUDIENCE_KEYS if key in payload and key not in allowed]
    if foreign:
        raise _bad(f"{what} must not also name {', '.join(map(repr, foreign))}: a push names one audience")


def user_push(payload: object, what: str = "notify") -> Push:
    """``{"userId"|"username": ..., "data": ...}``: exactly one of the two names the user."""
    if not isinstance(payload, Mapping):
        raise _bad("payload must be a JSON object")
    _only(payload, ("userId", "username"), what)
    data = _data(payload, what)
    user_id, username = payload.get("userId"), payload.get("username")
    if (user_id is None) == (username is None):
        raise _bad("give exactly one of 'userId' or 'username'")
    if user_id is not None:
        return Push(User(check_id(user_id, "'userId'", ErrorCode.BAD_REQUEST), "sub"), data)
    return Push(User(check_id(username, "'username'", ErrorCode.BAD_REQUEST), "username"), data)


def topic_push(topic: object, payload: object, stated: tuple[str, ...] = ()) -> Push:
    """``{"data": ...}`` to ``topic``; ``stated``: the payload's own keys that name it (EventBridge's
    ``topic``), allowed once. A topic named in the path may not be named again in the body."""
    if not isinstance(payload, Mapping):
        raise _bad("body must be a JSON object")
    _only(payload, stated, "a topic message")
    data = _data(payload, "a topic message")
    return Push(Topic(check_topic(topic, ErrorCode.BAD_TOPIC)), data)


def broadcast_push(payload: object) -> Push:
    if not isinstance(payload, Mapping):
        raise _bad("body must be a JSON object")
    _only(payload, (), "a broadcast")
    return Push(Everyone(), _data(payload, "a broadcast"))


# -- EventBridge ------------------------------------------------------------------------------

def event_push(detail_type: object, detail: object) -> Push:
    """An EventBridge event's ``detail-type`` and ``detail`` -> one ``Push``.

    ``UserNotification``: ``{"userId"|"username": ..., "data": ...}``;
    ``TopicMessage``: ``{"topic": ..., "data": ...}``; ``Broadcast``: ``{"data": ...}``.
    Raises AppError for anything else, so the handler can log and drop it.
    """
    if not isinstance(detail_type, str) or detail_type not in EVENT_DETAIL_TYPES:
        raise _bad(f"detail-type must be one of {', '.join(EVENT_DETAIL_TYPES)}, not {detail_type!r}",
                   ErrorCode.UNKNOWN_DETAIL_TYPE)
    if not isinstance(detail, Mapping):
        raise _bad("detail must be a JSON object")
    kind = EVENT_DETAIL_TYPES[detail_type]
    if kind == "user":
        return user_push(detail, f"a {detail_type} detail")
    if kind == "topic":
        _only(detail, ("topic",), f"a {detail_type} detail")
        if "topic" not in detail:
            raise _bad(f"a {detail_type} needs 'topic'", ErrorCode.MISSING_FIELD)
        return topic_push(detail["topic"], detail, stated=("topic",))
    _only(detail, (), f"a {detail_type} detail")
    return broadcast_push(detail)
