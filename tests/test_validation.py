"""The pure checks behind "hostile input": strict JSON, safe text, request ids, pushes, subprotocols.

Each case names one way Python's lenient ``json`` (or a caller) lets through
what a peer's ``JSON.parse`` or a UTF-8 encoder would choke on. The same
inputs go over a real WebSocket in ``test_hostile_input.py``.
"""
from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from chalicelib.actions import route
from chalicelib.audience import Everyone, Topic, User
from chalicelib.errors import AppError
from chalicelib.protocol import encode, outgoing, parse_frame
from chalicelib.push import Push, broadcast_push, event_push, topic_push, user_push, validate_push
from chalicelib.tokens import select_subprotocol
from chalicelib.validation import (
    MAX_JSON_DEPTH, MAX_SAFE_INTEGER, JsonRefused, TextRefused, check_id, check_json_value, check_request_id,
    check_text, check_topic, dumps_strict, loads_strict,
)

DEEP_PAST_THE_PARSER = "[" * 50_000 + "]" * 50_000  # RecursionError inside json.loads
DEEP_PAST_OUR_LIMIT = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)


# -- strict JSON in --------------------------------------------------------------------------

@pytest.mark.parametrize("text, reason", [
    ("NaN", "NaN is not JSON"),
    ('{"a": Infinity}', "Infinity is not JSON"),
    ('[-Infinity]', "-Infinity is not JSON"),
    ("1e400", "NaN or an infinite number"),  # float() reads it as inf
    ("-1e400", "NaN or an infinite number"),
    ("9" * 5000, "out of range"),  # past sys.get_int_max_str_digits(): int() would raise ValueError
    ("9" * 400, "out of range"),  # int() reads it; a double (and JSON.parse) cannot
    ('"\\ud800"', "unpaired surrogate"),
    ('{"\\udfff": 1}', "unpaired surrogate"),
    ('["ok", {"deep": ["\\ud83d"]}]', "unpaired surrogate"),
    ('{"action": "whoami", "action": "sendmessage"}', "same key twice"),
    (DEEP_PAST_THE_PARSER, f"deeper than {MAX_JSON_DEPTH}"),
    (DEEP_PAST_OUR_LIMIT, f"deeper than {MAX_JSON_DEPTH}"),
    ("\ufeff{}", "not valid JSON"),
    ("{'a': 1}", "not valid JSON"),
    ('{"a": 1} trailing', "not valid JSON"),
])
def test_loads_strict_refuses_what_python_json_accepts_or_crashes_on(text: str, reason: str) -> None:
    with pytest.raises(JsonRefused, match=reason):
        loads_strict(text)


def test_loads_strict_keeps_every_real_json_value() -> None:
    text = json.dumps({"s": "héllo 🌍 \u2028", "pair": "\ud83d\ude00", "n": [0, -1, 2 ** 63, 1.5e308, -0.0],
                       "b": [True, False, None], "deep": json.loads("[" * (MAX_JSON_DEPTH - 1) + "]" *
                                                                   (MAX_JSON_DEPTH - 1))})
    assert loads_strict(text) == json.loads(text)
    assert loads_strict("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None  # the limit itself is fine


@pytest.mark.parametrize("value, reason", [
    (float("nan"), "NaN"),
    ({"x": [float("inf")]}, "infinite"),
    (10 ** 400, "out of range"),
    ({1: "a"}, "key that is not a string"),
    ({"k": {"\ud800": 1}}, "unpaired surrogate"),
    ({"when": object()}, "not a JSON value"),
    ({"b": b"bytes"}, "not a JSON value"),
])
def test_check_json_value_refuses_what_a_caller_can_hand_over(value: Any, reason: str) -> None:
    with pytest.raises(JsonRefused, match=reason):
        check_json_value(value)


def test_check_json_value_is_iterative() -> None:
    value: Any = []
    for _ in range(sys.getrecursionlimit() * 3):
        value = [value]
    with pytest.raises(JsonRefused, match="deeper"):
        check_json_value(value)
    check_json_value((1, [2, {"a": None}]))  # tuples are JSON arrays


# -- strict JSON out -------------------------------------------------------------------------

@pytest.mark.parametrize("value", [{"x": float("nan")}, {"x": float("-inf")}, {"x": "\udc00"}, {"x": {1, 2}}])
def test_dumps_strict_never_emits_what_json_dumps_would(value: Any) -> None:
    with pytest.raises(JsonRefused):
        dumps_strict(value)


def test_encode_answers_unencodable_frames_with_a_typed_error() -> None:
    for frame in ({"data": float("nan")}, {"data": "\ud800"}):
        with pytest.raises(AppError) as caught:
            encode(frame)
        assert caught.value.code == "internal_error"
    assert dumps_strict({"a": "é"}) == '{"a":"é"}'.encode()


def test_outgoing_adds_a_fresh_message_id() -> None:
    first, second = json.loads(outgoing({"type": "ack"})), json.loads(outgoing({"type": "ack"}))
    assert first["type"] == "ack" and isinstance(first["messageId"], str)
    assert first["messageId"] != second["messageId"]


# -- frames ----------------------------------------------------------------------------------

@pytest.mark.parametrize("body, code", [
    ('{"action": "sendmessage", "data": NaN}', "invalid_json"),
    ('{"action": "sendmessage", "data": 1e999}', "invalid_json"),
    ('{"action": "subscribe", "topic": "\\ud800"}', "invalid_json"),
    ('{"action": "whoami", "action": "sendmessage", "data": 1}', "invalid_json"),
    ('{"action": "whoami", "id": {"nested": 1}}', "bad_field"),
    ('{"action": "whoami", "id": "' + "x" * 129 + '"}', "bad_field"),
    ('{"action": "whoami", "id": "a\\nb"}', "bad_field"),
    ('{"action": "whoami", "id": 1.5}', "bad_field"),
    ('{"action": "whoami", "id": true}', "bad_field"),
    ('{"action": "whoami", "id": ' + str(MAX_SAFE_INTEGER + 1) + '}', "bad_field"),
    ('{"action": ["sendmessage"]}', "unknown_action"),
])
def test_parse_frame_refuses_hostile_frames(body: str, code: str) -> None:
    request_id = "none"
    with pytest.raises(AppError) as caught:
        frame = parse_frame(body)
        request_id = frame.request_id
        route(frame)
    assert caught.value.code == code
    assert request_id in ("none", None)  # a bad id is never echoed


def test_parse_frame_keeps_good_ids_for_every_answer() -> None:
    assert parse_frame('{"action": "whoami", "id": "req-1"}').request_id == "req-1"
    assert parse_frame('{"action": "whoami", "id": -7}').request_id == -7
    frame = parse_frame('{"action": "fly", "id": 9}')
    with pytest.raises(AppError) as caught:
        route(frame)
    assert (caught.value.code, frame.request_id) == ("unknown_action", 9)


# -- safe text ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value, reason", [
    ("", "1-10 characters"),
    ("x" * 11, "1-10 characters"),
    ("a\tb", "control characters"),
    ("\x85", "control characters"),  # C1
    ("a\ud800", "unpaired surrogate"),
    ("\udfffz", "unpaired surrogate"),
    (7, "must be a string"),
])
def test_check_text(value: Any, reason: str) -> None:
    with pytest.raises(TextRefused, match=reason):
        check_text(value, "name", 10)


def test_text_checks_accept_real_names_and_refuse_the_rest() -> None:
    assert check_topic("scores/é-🌍") == "scores/é-🌍"
    assert check_id("alice@example.com", "username") == "alice@example.com"
    with pytest.raises(TextRefused, match="non-empty"):
        check_id("", "username")
    assert check_request_id("r" * 128) == "r" * 128
    assert check_request_id(MAX_SAFE_INTEGER) == MAX_SAFE_INTEGER
    for bad in ("", "r" * 129, "\x00", 2 ** 60, False, None, [1]):
        with pytest.raises(TextRefused):
            check_request_id(bad)


# -- pushes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, code", [
    (lambda: user_push({"userId": "u", "data": float("nan")}), "invalid_json"),
    (lambda: user_push({"userId": "u", "data": {"x": "\ud800"}}), "invalid_json"),
    (lambda: user_push({"username": "bad\nname", "data": 1}), "bad_request"),
    (lambda: user_push({"userId": "u" * 1025, "data": 1}), "bad_request"),
    (lambda: user_push({"username": "\udc00", "data": 1}), "bad_request"),
    (lambda: topic_push("t\x00", {"data": 1}), "bad_topic"),
    (lambda: topic_push("t" * 129, {"data": 1}), "bad_topic"),
    (lambda: broadcast_push({"data": [float("-inf")]}), "invalid_json"),
    (lambda: validate_push(Push(Topic("\ud800"), 1)), "bad_topic"),
    (lambda: validate_push(Push(Everyone(), {"a": float("nan")})), "invalid_json"),
    (lambda: validate_push(Push(User(""), 1)), "bad_request"),
    (lambda: event_push("Broadcast", {"data": {"n": float("nan")}}), "invalid_json"),
    (lambda: event_push("TopicMessage", {"topic": "\ud800", "data": 1}), "bad_topic"),
])
def test_push_input_is_validated_before_anything_is_read(make: Any, code: str) -> None:
    with pytest.raises(AppError) as caught:
        make()
    assert caught.value.code == code


# -- subprotocol selection -------------------------------------------------------------------------

JWT = "eyJhbGciOiJSUzI1NiJ9." + "e" * 80 + "." + "s" * 86
OPAQUE_JWT = "a" * 30 + "." + "b" * 30 + "." + "c" * 30  # no eyJ prefix, still token-shaped


@pytest.mark.parametrize("offered, selected", [
    ([], None),
    (["cognito-jwt", JWT], "cognito-jwt"),
    ([JWT, "cognito-jwt"], "cognito-jwt"),
    (["cognito-jwt", JWT, "chat.v1"], "cognito-jwt"),
    (["csrf.c5rf"], "csrf.c5rf"),  # cookie auth: the double-submit value is all that was offered
    (["csrf.c5rf", "chat.v1"], "chat.v1"),  # an application protocol is preferred to the csrf item
    (["cognito-jwt", "csrf.c5rf"], "cognito-jwt"),
    (["chat.v1", "chat.v2"], "chat.v1"),
    ([JWT], None),  # only the token: never echoed, the caller refuses the connection
    ([OPAQUE_JWT], None),
    (["bad value"], None),  # not an RFC 7230 token
])
def test_select_subprotocol(offered: list[str], selected: str | None) -> None:
    assert select_subprotocol(offered, "cognito-jwt") == selected


# -- the subscription limit's setting ---------------------------------------------------------------

def test_max_subscriptions_per_connection_setting() -> None:
    from chalicelib.settings import SettingsError, load_settings

    env = {"COGNITO_USER_POOL_ID": "us-east-1_Test1", "COGNITO_APP_CLIENT_IDS": "client",
           "CONNECTIONS_TABLE": "connections"}
    assert load_settings(env).max_subscriptions_per_connection == 100
    assert load_settings({**env, "MAX_SUBSCRIPTIONS_PER_CONNECTION": "5"}).max_subscriptions_per_connection == 5
    for bad in ("0", "10001", "many"):
        with pytest.raises(SettingsError, match="MAX_SUBSCRIPTIONS_PER_CONNECTION"):
            load_settings({**env, "MAX_SUBSCRIPTIONS_PER_CONNECTION": bad})
