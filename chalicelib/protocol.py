"""The message protocol: incoming frames and the JSON frames we send.

API Gateway would route on ``$request.body.action``; Chalice registers only
``$default``, so we read ``action`` here and clients send the frames they would
send to custom routes. Frames without ``action`` are the ``$default`` route.
"""
from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any, Mapping

MAX_FRAME_BYTES = 128 * 1024  # API Gateway's WebSocket frame limit
ACTIONS = ("sendmessage", "subscribe", "unsubscribe", "publish", "whoami")
DEFAULT_ROUTE = "$default"


class ProtocolError(Exception):
    """Bad input from a client; answered with an error frame, never a crash."""

    def __init__(self, code: str, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True)
class Frame:
    """A parsed client frame: the action to run and its JSON body."""

    action: str
    body: Mapping[str, Any]
    raw: str


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
    """Parse and route one incoming frame; raises ProtocolError for bad input."""
    text = _decode(body, is_base64)
    try:
        parsed = json.loads(text)
    except ValueError:
        raise ProtocolError("invalid_json", "message is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise ProtocolError("invalid_json", "message must be a JSON object")
    action = parsed.get("action")
    if action is None:
        # The seeds' older form: {"message": "sendmessage", "data": ...}
        if parsed.get("message") == "sendmessage":
            return Frame("sendmessage", parsed, text)
        return Frame(DEFAULT_ROUTE, parsed, text)
    if not isinstance(action, str) or action not in ACTIONS:
        raise ProtocolError("unknown_action", f"unknown action {str(action)[:64]!r}; known: {', '.join(ACTIONS)}",
                            parsed.get("id"))
    return Frame(action, parsed, text)


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


def encode(frame: Mapping[str, Any]) -> bytes:
    """Serialise an outgoing frame; refuses what API Gateway would refuse."""
    data = json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(data) > MAX_FRAME_BYTES:
        raise ProtocolError("payload_too_large", f"outgoing message would be {len(data)} bytes; the limit is {MAX_FRAME_BYTES}")
    return data


def error_frame(code: str, message: str, request_id: Any = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if request_id is not None:
        frame["id"] = request_id
    return frame
