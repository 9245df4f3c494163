"""Pushes from back-end services: who gets a message, read from any entry point.

``notify`` (a Lambda invoke), the REST routes and the EventBridge rule all name
an audience and carry ``data``; this module turns each of their inputs into one
``Push`` (validated before anything is read or sent), so the three share one
delivery path in ``ConnectionService.push``. Pure: no boto3.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping

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
    return payload["data"]


def user_push(payload: object, what: str = "notify") -> Push:
    """``{"userId"|"username": ..., "data": ...}``: exactly one of the two names the user."""
    if not isinstance(payload, Mapping):
        raise PushError("bad_request", "payload must be a JSON object")
    data = _data(payload, what)
    user_id, username = payload.get("userId"), payload.get("username")
    if (user_id is None) == (username is None):
        raise PushError("bad_request", "give exactly one of 'userId' or 'username'")
    value = user_id if user_id is not None else username
    if not isinstance(value, str) or not value:
        raise PushError("bad_request", "'userId' or 'username' must be a non-empty string")
    return Push("user" if user_id is not None else "username", data, value)


def topic_push(topic: object, payload: object) -> Push:
    if not isinstance(payload, Mapping):
        raise PushError("bad_request", "body must be a JSON object")
    if not isinstance(topic, str) or not topic:
        raise PushError("bad_topic", "the topic must be a non-empty string")
    return Push("topic", _data(payload, "a topic message"), topic)


def broadcast_push(payload: object) -> Push:
    if not isinstance(payload, Mapping):
        raise PushError("bad_request", "body must be a JSON object")
    return Push("all", _data(payload, "a broadcast"))
