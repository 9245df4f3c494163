"""The message protocol: incoming frames and the JSON frames we send.

API Gateway would route on ``$request.body.action``; Chalice registers only
``$default``, so the action is read here and ``actions`` dispatches on it.
Frames without ``action`` are the ``$default`` route (an echo). Bad input
raises ``AppError``; every answer is a JSON object, errors included.
"""
from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import AppError, ErrorCode
from .validation import JsonRefused, check_request_id, dumps_strict, loads_strict

MAX_FRAME_BYTES = 128 * 1024  # API Gateway's WebSocket frame limit
DEFAULT_ROUTE = "$default"


@dataclass(frozen=True)
class Frame:
    """A parsed client frame: the action to run and its JSON body."""

    action: object  # the frame's ``action`` as sent (a str for every known action; checked by ``actions``)
    body: Mapping[str, Any]
    raw: str
    request_id: str | int | None = None  # the client's ``id``, validated: safe to copy into any answer


def _decode(body: str | None, is_base64: bool) -> str:
    if body is None:
        raise AppError(ErrorCode.BAD_REQUEST, "empty message")
    if is_base64:
        try:
            data = base64.b64decode(body, validate=True)
        except ValueError:
            raise AppError(ErrorCode.BAD_REQUEST, "binary frame is not valid base64") from None
    else:
        data = body.encode("utf-8", "surrogatepass")
    if len(data) > MAX_FRAME_BYTES:
        raise AppError(ErrorCode.PAYLOAD_TOO_LARGE, f"message is {len(data)} bytes; the limit is {MAX_FRAME_BYTES}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise AppError(ErrorCode.BAD_REQUEST, "message is not UTF-8 text") from None


def parse_frame(body: str | None, is_base64: bool = False) -> Frame:
    """Parse one incoming frame; raises AppError for bad input.

    The whole frame is strict JSON (``validation.loads_strict``: no NaN or
    Infinity, no duplicate key, no lone surrogate, bounded depth and numbers),
    so whatever a handler copies from it (``data`` to every peer, the frame in
    an echo) is encodable, and ``id`` is checked here, before any handler
    runs, so every answer, errors included, can carry it.
    """
    text = _decode(body, is_base64)
    parsed = loads_strict(text)
    if not isinstance(parsed, dict):
        raise JsonRefused("message must be a JSON object")
    request_id = check_request_id(parsed["id"]) if parsed.get("id") is not None else None
    action = parsed.get("action")
    if action is None:
        # The older form some clients send: {"message": "sendmessage", "data": ...}
        action = "sendmessage" if parsed.get("message") == "sendmessage" else DEFAULT_ROUTE
    return Frame(action, parsed, text, request_id)


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
        raise AppError(ErrorCode.INTERNAL_ERROR, f"the answer could not be encoded: {error}") from None
    if len(data) > MAX_FRAME_BYTES:
        raise AppError(ErrorCode.PAYLOAD_TOO_LARGE, f"outgoing message would be {len(data)} bytes; the limit is {MAX_FRAME_BYTES}")
    return data


def outgoing(frame: Mapping[str, Any]) -> bytes:
    """``encode`` with a fresh ``messageId``: the form of every frame the app pushes to a client.

    The id is in the bytes, so a post that botocore retries carries the same
    id, and a fan-out gives every recipient the same id for the same message:
    a client that has seen an id can drop the frame.
    """
    return encode({**frame, "messageId": new_message_id()})


def error_frame(error: AppError, request_id: Any = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": error.code.value, "message": error.message}
    if request_id is not None:
        frame["id"] = request_id
    return frame
