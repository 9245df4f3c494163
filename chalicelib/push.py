"""Pushes from back-end services: who gets a message, read from any entry point.

``notify`` (a Lambda invoke), the REST routes and the EventBridge rule all name
an audience and carry ``data``; this module turns each of their inputs into one
``Push`` (validated before anything is read or sent), so the three share one
delivery path in ``ConnectionService.push``. Pure: no boto3.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping

from .event_contract import EVENT_DETAIL_TYPES
from .validation import JsonRefused, TextRefused, check_id, check_json_value, check_topic

Kind = Literal["user", "username", "topic", "all"]
# What each audience's clients receive as ``type``.
FRAME_TYPES: dict[str, str] = {"user": "notification", "username": "notification", "topic": "publish",
                               "all": "broadcast"}
JsonValue = object  # any value json.loads produced


class PushError(ValueError):
    """Bad push input; ``code`` is the error code callers answer with (HTTP 400, ok: false)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Push:
    """One message to one audience: a user (by sub or username), a topic's subscribers, or everyone."""

    kind: Kind
    data: JsonValue
    value: str = ""  # the sub, username or topic; "" for everyone

    @property
    def frame_type(self) -> str:
        return FRAME_TYPES[self.kind]


def _data(payload: Mapping[str, object], what: str) -> JsonValue:
    if "data" not in payload:
        raise PushError("missing_field", f"{what} needs 'data'")
    return _strict_data(payload["data"])


def _strict_data(data: JsonValue) -> JsonValue:
    """``data`` if it is strict JSON (``validation.check_json_value``), else PushError ``invalid_json``.

    The callers' parsers are lenient (Lambda's runtime and Chalice read NaN,
    Infinity, 1e400 and "\\ud800"), and every subscriber's ``JSON.parse`` would
    choke on what they let through.
    """
    try:
        check_json_value(data, "'data'")
    except JsonRefused as error:
        raise PushError("invalid_json", str(error)) from None
    return data


def _user_name(value: object, what: str) -> str:
    try:
        return check_id(value, what)
    except TextRefused as error:
        raise PushError("bad_request", str(error)) from None


def _topic(value: object) -> str:
    try:
        return check_topic(value)
    except TextRefused as error:
        raise PushError("bad_topic", str(error)) from None


def validate_push(push: Push) -> Push:
    """``push`` if its audience and data are valid (as the ``*_push`` readers make them), else PushError.

    ``ConnectionService.push`` calls it, so a Push built directly by a caller
    is held to the same rules before anything is read or sent.
    """
    if push.kind not in FRAME_TYPES:
        raise PushError("bad_request", "unknown audience kind")
    if push.kind in ("user", "username"):
        _user_name(push.value, "'userId'" if push.kind == "user" else "'username'")
    elif push.kind == "topic":
        _topic(push.value)
    elif push.value:
        raise PushError("bad_request", "a broadcast names no audience")
    _strict_data(push.data)
    return push


def user_push(payload: object, what: str = "notify") -> Push:
    """``{"userId"|"username": ..., "data": ...}``: exactly one of the two names the user."""
    if not isinstance(payload, Mapping):
        raise PushError("bad_request", "payload must be a JSON object")
    data = _data(payload, what)
    user_id, username = payload.get("userId"), payload.get("username")
    if (user_id is None) == (username is None):
        raise PushError("bad_request", "give exactly one of 'userId' or 'username'")
    value = _user_name(user_id if user_id is not None else username,
                       "'userId'" if user_id is not None else "'username'")
    return Push("user" if user_id is not None else "username", data, value)


def topic_push(topic: object, payload: object) -> Push:
    if not isinstance(payload, Mapping):
        raise PushError("bad_request", "body must be a JSON object")
    return Push("topic", _data(payload, "a topic message"), _topic(topic))


def broadcast_push(payload: object) -> Push:
    if not isinstance(payload, Mapping):
        raise PushError("bad_request", "body must be a JSON object")
    return Push("all", _data(payload, "a broadcast"))


# -- EventBridge ------------------------------------------------------------------------------

# A detail may only carry the keys of its own audience (EVENT_DETAIL_TYPES: detail-type
# -> audience): a Broadcast that also says "userId" is a mistake somewhere upstream,
# and sending it to everyone would be the worst reading.
_AUDIENCE_KEYS: dict[str, frozenset[str]] = {
    "user": frozenset({"userId", "username"}), "topic": frozenset({"topic"}), "all": frozenset()}


def event_push(detail_type: object, detail: object) -> Push:
    """An EventBridge event's ``detail-type`` and ``detail`` -> one ``Push``.

    ``UserNotification``: ``{"userId"|"username": ..., "data": ...}``;
    ``TopicMessage``: ``{"topic": ..., "data": ...}``; ``Broadcast``: ``{"data": ...}``.
    Raises PushError for anything else, so the handler can log and drop it.
    """
    if not isinstance(detail_type, str) or detail_type not in EVENT_DETAIL_TYPES:
        raise PushError("unknown_detail_type",
                        f"detail-type must be one of {', '.join(EVENT_DETAIL_TYPES)}, not {detail_type!r}")
    if not isinstance(detail, Mapping):
        raise PushError("bad_request", "detail must be a JSON object")
    kind = EVENT_DETAIL_TYPES[detail_type]
    foreign = sorted(key for keys in _AUDIENCE_KEYS.values() for key in keys
                     if key in detail and key not in _AUDIENCE_KEYS[kind])
    if foreign:
        raise PushError("bad_request", f"a {detail_type} detail must not name {', '.join(map(repr, foreign))}")
    if kind == "user":
        return user_push(detail, f"a {detail_type}")
    if kind == "topic":
        if "topic" not in detail:
            raise PushError("missing_field", f"a {detail_type} needs 'topic'")
        return topic_push(detail["topic"], detail)
    return broadcast_push(detail)
