"""Strict JSON and safe text: the one place that decides what input is acceptable.

Every frame a client sends, every push a back-end service asks for, and every
topic, username or id the app stores or echoes is checked here, before
anything is read, written or sent. Two rules:

* **Strict JSON.** Python's ``json`` module accepts more than JSON: ``NaN``,
  ``Infinity`` and ``-Infinity``; ``1e400`` (read as ``inf``); duplicate keys
  (the last one silently wins, while API Gateway's route selection may read
  another); ``"\\ud800"`` (a lone surrogate, which cannot be encoded as UTF-8
  on the way out); nesting that ends in ``RecursionError``; integers that
  ``int()`` refuses (``sys.set_int_max_str_digits``) or that every JavaScript
  peer reads as ``Infinity``. Each of them is refused with a ``JsonRefused``
  that says which, so a peer's ``JSON.parse`` never sees what we let through.
* **Safe text.** A topic, a username or an id is a non-empty string of
  bounded length with no control character (C0, DEL, C1) and no unpaired
  surrogate: valid UTF-8 text that is safe in a DynamoDB key, a log line and
  an echoed frame.

Pure: standard library only, no boto3.
"""
from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from .errors import AppError, ErrorCode

# Containers inside containers. Deep enough for any real message, and far from
# the depth where the C parser or encoder raise RecursionError.
MAX_JSON_DEPTH = 64
# The longest integer literal read: every finite double fits in 309 digits (and
# a sign), so anything longer is refused before int() spends time on it.
_MAX_INT_LITERAL = 310
MAX_TOPIC_LENGTH = 128
MAX_ID_LENGTH = 1024  # connection ids, subs, usernames: DynamoDB keys are capped at 2048 bytes
# Echoed request ids: bounded, so an ack or an error frame stays far under 128 KB.
MAX_REQUEST_ID_LENGTH = 128
MAX_SAFE_INTEGER = 2 ** 53 - 1  # JavaScript's Number.MAX_SAFE_INTEGER: ids must survive JSON.parse

_UNSAFE_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonRefused(AppError):
    """A value that is not strict JSON (``invalid_json``); the message says why, never echoing the value."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INVALID_JSON, message)


class TextRefused(AppError):
    """A topic, name or id that is not safe text; the message says why, never echoing it.

    The code is the caller's: ``bad_field`` in a frame, ``bad_topic`` or
    ``bad_request`` in a back-end push.
    """

    def __init__(self, message: str, code: ErrorCode = ErrorCode.BAD_FIELD) -> None:
        super().__init__(code, message)


# -- text ---------------------------------------------------------------------------------

def check_text(value: object, what: str, max_length: int, code: ErrorCode = ErrorCode.BAD_FIELD) -> str:
    """``value`` if it is 1..max_length characters of safe text, else TextRefused naming ``what``.

    Lengths are in characters (code points): 128 of them are at most 512 bytes
    of UTF-8, well inside DynamoDB's 1,024-byte sort key.
    """
    if not isinstance(value, str):
        raise TextRefused(f"{what} must be a string", code)
    if not 1 <= len(value) <= max_length:
        raise TextRefused(f"{what} must be 1-{max_length} characters long (got {len(value)})", code)
    match = _UNSAFE_TEXT.search(value)
    if match is not None:
        if _SURROGATE.match(match.group()):
            raise TextRefused(f"{what} must be valid UTF-8 text (it holds an unpaired surrogate)", code)
        raise TextRefused(f"{what} must not contain control characters", code)
    return value


def check_topic(value: object, code: ErrorCode = ErrorCode.BAD_FIELD) -> str:
    """A topic name: 1-128 characters of safe text."""
    return check_text(value, "topic", MAX_TOPIC_LENGTH, code)


def check_id(value: object, what: str, code: ErrorCode = ErrorCode.BAD_FIELD) -> str:
    """A connection id, a sub or a username: 1-1024 characters of safe text."""
    if not isinstance(value, str) or not value:
        raise TextRefused(f"{what} must be a non-empty string", code)
    return check_text(value, what, MAX_ID_LENGTH, code)


def check_request_id(value: object) -> str | int:
    """A client's ``id`` (copied into answers): short safe text, or an integer JSON.parse keeps exact."""
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > MAX_SAFE_INTEGER:
            raise TextRefused(f"'id' must be an integer of at most {MAX_SAFE_INTEGER} in magnitude")
        return value
    if not isinstance(value, str):
        raise TextRefused(f"'id' must be a string of 1-{MAX_REQUEST_ID_LENGTH} characters or an integer")
    return check_text(value, "'id'", MAX_REQUEST_ID_LENGTH)


# -- JSON ---------------------------------------------------------------------------------

def _refuse_constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not JSON")


def _parse_int(text: str) -> int:
    if len(text) > _MAX_INT_LITERAL:
        raise JsonRefused("a number is out of range (larger than a double)")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise JsonRefused("an object has the same key twice")
    return result


def loads_strict(text: str, what: str = "message") -> Any:
    """Parse ``text`` as strict JSON (see the module docstring); JsonRefused says what is wrong.

    A plain syntax error reads ``"<what> is not valid JSON"``; the parser's own
    message (positions, excerpts of the input) is never passed on.
    """
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_int=_parse_int,
                           object_pairs_hook=_unique_keys)
    except JsonRefused:
        raise
    except RecursionError:
        raise JsonRefused(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:  # JSONDecodeError, and int() past sys.get_int_max_str_digits()
        raise JsonRefused(f"{what} is not valid JSON") from None
    check_json_value(value, what)
    return value


def check_json_value(value: object, what: str = "message") -> None:
    """Refuse (JsonRefused) a Python value that would not encode to strict, portable JSON.

    For values parsed by ``loads_strict`` and for values handed over by code
    (a Lambda payload read by the runtime's lenient parser, a REST body, an
    EventBridge detail): only dicts with string keys, lists (and tuples),
    strings without lone surrogates, finite floats, integers within the
    double range, booleans and None; at most ``MAX_JSON_DEPTH`` levels of
    containers. Iterative, so depth itself cannot exhaust the stack.
    """
    pending: list[tuple[object, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                raise JsonRefused(f"{what} holds a string that is not valid UTF-8 (an unpaired surrogate)")
            continue
        if isinstance(item, int):
            if abs(item) > sys.float_info.max:
                raise JsonRefused(f"{what} holds a number out of range (larger than a double)")
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise JsonRefused(f"{what} holds NaN or an infinite number, which JSON cannot carry")
            continue
        if isinstance(item, (dict, list, tuple)):
            if depth >= MAX_JSON_DEPTH:
                raise JsonRefused(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise JsonRefused(f"{what} holds an object key that is not a string")
                    if not key.isascii() and _SURROGATE.search(key):
                        raise JsonRefused(f"{what} holds a key that is not valid UTF-8 (an unpaired surrogate)")
                    pending.append((child, depth + 1))
            else:
                pending.extend((child, depth + 1) for child in item)
            continue
        raise JsonRefused(f"{what} holds a {type(item).__name__}, which is not a JSON value")


def dumps_strict(value: object) -> bytes:
    """Compact UTF-8 JSON, or JsonRefused: no NaN/Infinity, no lone surrogate, nothing but JSON types."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except RecursionError:
        raise JsonRefused("the value is nested too deeply to encode") from None
    except UnicodeEncodeError:
        raise JsonRefused("the value holds a string that is not valid UTF-8 (an unpaired surrogate)") from None
    except (ValueError, TypeError) as error:
        raise JsonRefused(f"the value is not strict JSON ({type(error).__name__})") from None
