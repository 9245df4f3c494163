"""The message protocol: incoming frames and the JSON frames we send.

API Gateway would route on ``$request.body.action``; Chalice registers only
``$default``, so we read ``action`` here and clients send the frames they would
send to custom routes. Frames without ``action`` are the ``$default`` route.
"""
from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from .validation import JsonRefused, TextRefused, check_request_id, dumps_strict, loads_strict

MAX_FRAME_BYTES = 128 * 1024  # API Gateway's WebSocket frame limit
ACTIONS = ("sendmessage", "subscribe", "unsubscribe", "publish", "whoami", "refresh")
DEFAULT_ROUTE = "$default"


class ProtocolError(Exception):
    """Bad input from a client; answered with an error frame, never a crash."""

    def __init__(self, code: str, message: str, request_id: Any = None, *, close: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        # After the error frame, close the connection (a refresh with another user's token).
        self.close = close


@dataclass(frozen=True)
class Frame:
    """A parsed client frame: the action to run and its JSON body."""

    action: str
    body: Mapping[str, Any]
    raw: str
    request_id: str | int | None = None  # the client's ``id``, validated: safe to copy into any answer


def _decode(body: str | None, is_base64: bool) -> str:
    if body is None:
        raise ProtocolError("bad_request", "empty message")
    if is_base64:
        try:
            data = base64.b64decode(body, validate=True)
        except ValueError:
            raise ProtocolError("bad_request", "binary frame is not valid base64") from None
    else:
        data = body.encode("utf-8", "surrogatepass")
    if len(data) > MAX_FRAME_BYTES:
        raise ProtocolError("payload_too_large", f"message is {len(data)} bytes; the limit is {MAX_FRAME_BYTES}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("bad_request", "message is not UTF-8 text") from None


def parse_frame(body: str | None, is_base64: bool = False) -> Frame:
    """Parse and route one incoming frame; raises ProtocolError for bad input.

    The whole frame is strict JSON (``validation.loads_strict``: no NaN or
    Infinity, no duplicate key, no lone surrogate, bounded depth and numbers),
    so whatever a handler copies from it (``data`` to every peer, the frame in
    an echo) is encodable, and ``id`` is checked here, before any handler
    runs, so every answer, errors included, can carry it.
    """
    text = _decode(body, is_base64)
    try:
        parsed = loads_strict(text)
    except JsonRefused as error:
        raise ProtocolError("invalid_json", str(error)) from None
    if not isinstance(parsed, dict):
        raise ProtocolError("invalid_json", "message must be a JSON object")
    request_id = None
    if parsed.get("id") is not None:
        try:
            request_id = check_request_id(parsed["id"])
        except TextRefused as error:
            raise ProtocolError("bad_field", str(error)) from None
    action = parsed.get("action")
    if action is None:
        # The seeds' older form: {"message": "sendmessage", "data": ...}
        if parsed.get("message") == "sendmessage":
            return Frame("sendmessage", parsed, text, request_id)
        return Frame(DEFAULT_ROUTE, parsed, text, request_id)
    if not isinstance(action, str) or action not in ACTIONS:
        shown = repr(action[:64]) if isinstance(action, str) else f"of type {type(action).__name__}"
        raise ProtocolError("unknown_action", f"unknown action {shown}; known: {', '.join(ACTIONS)}", request_id)
    return Frame(action, parsed, text, request_id)


def require(frame: Frame, name: str, kind: type | tuple[type, ...] = str) -> Any:
    """A required field of the frame, of the given type."""
    if name not in frame.body:
        raise ProtocolError("missing_field", f"{frame.action} needs {name!r}")
    value = frame.body[name]
    if not isinstance(value, kind) or (isinstance(value, str) and not value):
        raise ProtocolError("bad_field", f"{name!r} has the wrong type or is empty")
    return value


def now_ms() -> int:
    return int(time.time() * 1000)


def new_message_id() -> str:
    """A fresh ``messageId``: random (uuid4), so ids never repeat across containers."""
    return str(uuid.uuid4())


def encode(frame: Mapping[str, Any]) -> bytes:
    """Serialise an outgoing frame as strict UTF-8 JSON; refuses what API Gateway or a peer would refuse.

    ``allow_nan=False`` and a strict UTF-8 encode: no ``NaN``/``Infinity``, no
    lone surrogate ever leaves (input is refused earlier; this catches what
    came from elsewhere, answered as ``internal_error``). Over 128 KB is
    ``payload_too_large``, as API Gateway would refuse the post.
    """
    try:
        data = dumps_strict(frame)
    except JsonRefused as error:
        raise ProtocolError("internal_error", f"the answer could not be encoded: {error}") from None
    if len(data) > MAX_FRAME_BYTES:
        raise ProtocolError("payload_too_large", f"outgoing message would be {len(data)} bytes; the limit is {MAX_FRAME_BYTES}")
    return data


def outgoing(frame: Mapping[str, Any]) -> bytes:
    """``encode`` with a fresh ``messageId``: the form of every frame the app pushes to a client.

    The id is in the bytes, so a post that botocore retries carries the same
    id, and a fan-out gives every recipient the same id for the same message:
    a client that has seen an id can drop the frame.
    """
    return encode({**frame, "messageId": new_message_id()})


def error_frame(code: str, message: str, request_id: Any = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if request_id is not None:
        frame["id"] = request_id
    return frame
