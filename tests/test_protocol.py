from __future__ import annotations

import base64
import json

import pytest

from chalicelib.actions import route
from chalicelib.errors import AppError
from chalicelib.protocol import MAX_FRAME_BYTES, encode, parse_frame


@pytest.mark.parametrize("action", ["sendmessage", "subscribe", "unsubscribe", "publish", "whoami"])
def test_known_actions(action: str) -> None:
    frame = parse_frame(json.dumps({"action": action, "topic": "t"}))
    assert frame.action == action
    assert frame.body["topic"] == "t"


def test_no_action_is_default_route() -> None:
    assert parse_frame('{"hello": 1}').action == "$default"


def test_legacy_sendmessage_form() -> None:
    frame = parse_frame('{"message": "sendmessage", "data": "hello world"}')
    assert frame.action == "sendmessage"
    assert frame.body["data"] == "hello world"


def test_binary_frame_is_decoded() -> None:
    body = base64.b64encode(b'{"action": "whoami"}').decode()
    assert parse_frame(body, is_base64=True).action == "whoami"


@pytest.mark.parametrize("body, code", [
    ("not json", "invalid_json"),
    ("[1, 2]", "invalid_json"),
    ('{"action": "fly"}', "unknown_action"),
    ('{"action": 3}', "unknown_action"),
    (None, "bad_request"),
    ("x" * (MAX_FRAME_BYTES + 1), "payload_too_large"),
])
def test_bad_frames(body: str | None, code: str) -> None:
    with pytest.raises(AppError) as info:
        route(parse_frame(body))  # parsed, then looked up in the action table, as every frame is
    assert info.value.code == code


def test_bad_base64_and_bad_utf8() -> None:
    with pytest.raises(AppError):
        parse_frame("%%%", is_base64=True)
    with pytest.raises(AppError):
        parse_frame(base64.b64encode(b"\xff\xfe").decode(), is_base64=True)


def test_encode_refuses_oversize() -> None:
    assert json.loads(encode({"data": "é"})) == {"data": "é"}
    with pytest.raises(AppError) as info:
        encode({"data": "x" * MAX_FRAME_BYTES})
    assert info.value.code == "payload_too_large"
