"""EventBridge event-pattern matching, for the rules a Chalice app registers with ``on_cw_event``.

A pattern is a JSON object whose keys name event fields: an object value
matches a nested object field, an array value lists what a leaf may be. An
event matches when every field the pattern names matches; fields the pattern
does not name are ignored. A leaf matches when its value (or, when the event's
value is an array, any element of it) matches any entry of the list.

Supported, with EventBridge's meaning:

- exact values: strings, numbers (compared as numbers: ``5`` matches ``5.0``),
  ``true``/``false`` and ``null``, type-strict (``"5"`` never matches ``5``,
  ``true`` never matches ``1``); on top-level and nested fields;
- ``{"prefix": "s"}``, ``{"suffix": "s"}``, ``{"equals-ignore-case": "s"}`` on strings;
- ``{"anything-but": v}`` / ``{"anything-but": [v, ...]}`` with exact values
  (the field must be present);
- ``{"numeric": [">", 0, "<=", 5]}`` (operators ``<``, ``<=``, ``=``, ``>``, ``>=``) on numbers;
- ``{"exists": true}`` (a leaf is present) and ``{"exists": false}`` (it is absent).

Not supported: ``wildcard``, ``cidr``, ``$or``, ``anything-but`` over another
filter (``{"anything-but": {"prefix": ...}}``), ``prefix``/``suffix`` over
``equals-ignore-case``, and any filter not named above. A pattern using one
raises ``UnsupportedPattern`` instead of silently matching wrongly; a pattern
EventBridge would reject (a bare value instead of an array, an empty array, a
filter with the wrong operand) raises ``InvalidPattern``. One simplification:
for an array of objects in the event, a nested pattern must match one element
as a whole (EventBridge flattens the array and may combine fields of
different elements).
"""
from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any, Callable

_NUMERIC_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, "=": operator.eq, ">": operator.gt, ">=": operator.ge}
_UNSUPPORTED = frozenset({"wildcard", "cidr", "$or"})
_ABSENT = object()


class InvalidPattern(ValueError):
    """EventBridge would refuse this pattern (PutRule: InvalidEventPatternException)."""


class UnsupportedPattern(InvalidPattern):
    """A valid EventBridge pattern using a filter this matcher does not implement."""


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_exact(value: object) -> bool:
    return value is None or isinstance(value, (str, bool)) or _is_number(value)


def _same(a: object, b: object) -> bool:
    """EventBridge's exact match: same JSON type, equal value (numbers by value)."""
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    return type(a) is type(b) and a == b


def _check_filter(path: str, matcher: Mapping[str, Any]) -> None:
    if len(matcher) != 1:
        raise InvalidPattern(f"{path}: a filter object has exactly one key, got {sorted(matcher)}")
    (name, operand), = matcher.items()
    if name in _UNSUPPORTED:
        raise UnsupportedPattern(f"{path}: the {name!r} filter is not supported by the local gateway")
    if name in ("prefix", "suffix", "equals-ignore-case"):
        if isinstance(operand, Mapping):
            raise UnsupportedPattern(f"{path}: {name!r} over another filter is not supported by the local gateway")
        if not isinstance(operand, str):
            raise InvalidPattern(f"{path}: {name!r} takes a string")
    elif name == "anything-but":
        values = operand if isinstance(operand, list) else [operand]
        if isinstance(operand, Mapping):
            raise UnsupportedPattern(f"{path}: 'anything-but' over another filter is not supported "
                                     "by the local gateway")
        if not values or not all(_is_exact(v) for v in values):
            raise InvalidPattern(f"{path}: 'anything-but' takes a value or a non-empty list of values")
    elif name == "numeric":
        if not isinstance(operand, list) or len(operand) not in (2, 4):
            raise InvalidPattern(f"{path}: 'numeric' takes [op, number] or [op, number, op, number]")
        for op, number in zip(operand[::2], operand[1::2]):
            if op not in _NUMERIC_OPS or not _is_number(number):
                raise InvalidPattern(f"{path}: bad 'numeric' comparison {op!r} {number!r}")
    elif name == "exists":
        if not isinstance(operand, bool):
            raise InvalidPattern(f"{path}: 'exists' takes true or false")
    else:
        raise UnsupportedPattern(f"{path}: unknown filter {name!r} (not supported by the local gateway)")


def check_pattern(pattern: object, path: str = "") -> None:
    """Raise InvalidPattern/UnsupportedPattern unless ``pattern`` is one this module can match."""
    if not isinstance(pattern, Mapping) or (not pattern and not path):
        raise InvalidPattern(f"{path or 'pattern'}: must be a non-empty JSON object")
    for key, value in pattern.items():
        where = f"{path}.{key}" if path else str(key)
        if key in _UNSUPPORTED:
            raise UnsupportedPattern(f"{where}: {key!r} is not supported by the local gateway")
        if isinstance(value, Mapping):
            check_pattern(value, where)
        elif isinstance(value, list):
            if not value:
                raise InvalidPattern(f"{where}: an empty array matches nothing")
            for matcher in value:
                if isinstance(matcher, Mapping):
                    _check_filter(where, matcher)
                elif not _is_exact(matcher):
                    raise InvalidPattern(f"{where}: {matcher!r} is neither a value nor a filter")
        else:
            raise InvalidPattern(f"{where}: must be an array of values or filters, or an object")


def _leaf_matches(matcher: object, value: object) -> bool:
    if not isinstance(matcher, Mapping):
        return _same(matcher, value)
    (name, operand), = matcher.items()
    if name == "exists":
        return bool(operand)  # the value is here; {"exists": false} is settled by the caller
    if name == "prefix":
        return isinstance(value, str) and value.startswith(operand)
    if name == "suffix":
        return isinstance(value, str) and value.endswith(operand)
    if name == "equals-ignore-case":
        return isinstance(value, str) and value.casefold() == operand.casefold()
    if name == "anything-but":
        excluded = operand if isinstance(operand, list) else [operand]
        return not any(_same(e, value) for e in excluded)
    if name == "numeric":
        return _is_number(value) and all(_NUMERIC_OPS[op](value, number)
                                         for op, number in zip(operand[::2], operand[1::2]))
    raise UnsupportedPattern(f"unknown filter {name!r}")  # check_pattern keeps this unreachable


def _field_matches(matchers: Sequence[object], value: object) -> bool:
    if value is _ABSENT or isinstance(value, Mapping):  # no leaf here
        return any(isinstance(m, Mapping) and m.get("exists") is False for m in matchers)
    values = value if isinstance(value, list) else [value]
    return any(_leaf_matches(m, v) for m in matchers for v in values if not isinstance(v, (Mapping, list)))


def _object_matches(pattern: Mapping[str, Any], event: object) -> bool:
    if isinstance(event, list):  # an array of objects: one element must match (see the module doc)
        return any(_object_matches(pattern, element) for element in event if isinstance(element, Mapping))
    fields: Mapping[str, Any] = event if isinstance(event, Mapping) else {}
    for key, sub in pattern.items():
        value = fields.get(key, _ABSENT)
        if isinstance(sub, Mapping):
            if not _object_matches(sub, value if value is not _ABSENT else {}):
                return False
        elif not _field_matches(sub, value):
            return False
    return True


def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Whether ``event`` (EventBridge's event, top-level fields and ``detail``) matches ``pattern``."""
    check_pattern(pattern)
    return _object_matches(pattern, event)
