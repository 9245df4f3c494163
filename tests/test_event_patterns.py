"""The local gateway's EventBridge pattern matcher (``devtools.gateway.event_patterns``)."""
from __future__ import annotations

from typing import Any

import pytest

from devtools.gateway.event_patterns import InvalidPattern, UnsupportedPattern, check_pattern, matches


def _event(detail: Any = None, **fields: Any) -> dict[str, Any]:
    event = {"version": "0", "id": "1", "detail-type": "Order", "source": "shop.orders", "account": "123456789012",
             "time": "2026-01-01T00:00:00Z", "region": "us-east-1", "resources": ["arn:aws:s3:::bucket"],
             "detail": {} if detail is None else detail}
    event.update(fields)
    return event


APP_PATTERN = {"source": ["ws-cognito.push"], "detail-type": ["UserNotification", "TopicMessage", "Broadcast"]}


@pytest.mark.parametrize("source, detail_type, expected", [
    ("ws-cognito.push", "UserNotification", True),
    ("ws-cognito.push", "Broadcast", True),
    ("ws-cognito.push", "broadcast", False),  # exact, case-sensitive
    ("ws-cognito.push2", "Broadcast", False),
    ("other.push", "TopicMessage", False),
])
def test_the_apps_pattern_exact_top_level_lists(source: str, detail_type: str, expected: bool) -> None:
    assert matches(APP_PATTERN, _event(source=source, **{"detail-type": detail_type})) is expected


def test_a_field_the_pattern_names_must_be_present() -> None:
    event = _event()
    del event["detail-type"]
    assert not matches(APP_PATTERN, dict(event, source="ws-cognito.push"))


def test_nested_fields_and_fields_the_pattern_does_not_name() -> None:
    pattern = {"source": ["shop.orders"], "detail": {"status": ["paid", "refunded"], "order": {"region": ["eu"]}}}
    assert matches(pattern, _event({"status": "paid", "order": {"region": "eu", "id": 7}, "other": True}))
    assert matches(pattern, _event({"status": "refunded", "order": {"region": "eu"}}))
    assert not matches(pattern, _event({"status": "paid", "order": {"region": "us"}}))
    assert not matches(pattern, _event({"status": "paid"}))  # order.region missing
    assert not matches(pattern, _event({"status": "paid", "order": "eu"}))  # not an object
    assert not matches(pattern, _event({"status": "open", "order": {"region": "eu"}}))


def test_exact_values_are_type_strict_and_numbers_compare_by_value() -> None:
    assert matches({"detail": {"n": [5]}}, _event({"n": 5.0}))
    assert not matches({"detail": {"n": [5]}}, _event({"n": "5"}))
    assert not matches({"detail": {"n": ["5"]}}, _event({"n": 5}))
    assert not matches({"detail": {"flag": [True]}}, _event({"flag": 1}))
    assert not matches({"detail": {"n": [1]}}, _event({"n": True}))
    assert matches({"detail": {"flag": [False]}}, _event({"flag": False}))
    assert matches({"detail": {"gone": [None]}}, _event({"gone": None}))
    assert not matches({"detail": {"gone": [None]}}, _event({}))  # null matches a null, not a missing field
    assert matches({"detail": {"s": [""]}}, _event({"s": ""}))


def test_an_array_in_the_event_matches_when_any_element_does() -> None:
    assert matches({"resources": ["arn:aws:s3:::bucket"]}, _event())
    assert matches({"detail": {"tags": ["b", "z"]}}, _event({"tags": ["a", "b"]}))
    assert not matches({"detail": {"tags": ["z"]}}, _event({"tags": ["a", "b"]}))
    assert not matches({"detail": {"tags": ["a"]}}, _event({"tags": []}))
    items = {"items": [{"sku": "x", "qty": 1}, {"sku": "y", "qty": 2}]}
    assert matches({"detail": {"items": {"sku": ["y"]}}}, _event(items))
    assert not matches({"detail": {"items": {"sku": ["z"]}}}, _event(items))


def test_content_filters() -> None:
    assert matches({"source": [{"prefix": "shop."}]}, _event())
    assert not matches({"source": [{"prefix": "Shop."}]}, _event())
    assert matches({"source": [{"suffix": ".orders"}]}, _event())
    assert matches({"source": [{"equals-ignore-case": "SHOP.Orders"}]}, _event())
    assert not matches({"detail": {"n": [{"prefix": "1"}]}}, _event({"n": 12}))  # strings only
    assert matches({"source": [{"anything-but": ["a", "b"]}]}, _event())
    assert not matches({"source": [{"anything-but": "shop.orders"}]}, _event())
    assert not matches({"detail": {"x": [{"anything-but": "a"}]}}, _event({}))  # needs the field
    assert matches({"detail": {"total": [{"numeric": [">", 100, "<=", 200]}]}}, _event({"total": 150}))
    assert not matches({"detail": {"total": [{"numeric": [">", 100, "<=", 200]}]}}, _event({"total": 250}))
    assert not matches({"detail": {"total": [{"numeric": [">", 100]}]}}, _event({"total": "150"}))
    assert matches({"detail": {"total": [{"numeric": ["=", 3]}]}}, _event({"total": 3.0}))
    # One entry of the list is enough: a filter or an exact value.
    assert matches({"source": ["nope", {"prefix": "shop"}]}, _event())


def test_exists() -> None:
    assert matches({"detail": {"id": [{"exists": True}]}}, _event({"id": "x"}))
    assert matches({"detail": {"id": [{"exists": True}]}}, _event({"id": None}))
    assert not matches({"detail": {"id": [{"exists": True}]}}, _event({}))
    assert not matches({"detail": {"id": [{"exists": True}]}}, _event({"id": {"nested": 1}}))  # leaves only
    assert matches({"detail": {"id": [{"exists": False}]}}, _event({}))
    assert matches({"detail": {"deep": {"id": [{"exists": False}]}}}, _event({}))
    assert not matches({"detail": {"id": [{"exists": False}]}}, _event({"id": "x"}))


@pytest.mark.parametrize("pattern", [
    {"source": [{"wildcard": "shop.*"}]},
    {"detail": {"ip": [{"cidr": "10.0.0.0/24"}]}},
    {"$or": [{"source": ["a"]}, {"source": ["b"]}]},
    {"source": [{"anything-but": {"prefix": "shop"}}]},
    {"source": [{"prefix": {"equals-ignore-case": "shop"}}]},
    {"source": [{"something-new": 1}]},
])
def test_unsupported_filters_are_refused_not_silently_mismatched(pattern: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedPattern):
        matches(pattern, _event())


@pytest.mark.parametrize("pattern", [
    {},
    {"source": "shop.orders"},          # a bare value, not an array
    {"source": []},
    {"source": [["nested"]]},
    {"source": [{"prefix": 1}]},
    {"source": [{"prefix": "a", "suffix": "b"}]},
    {"detail": {"n": [{"numeric": [">"]}]}},
    {"detail": {"n": [{"numeric": ["~", 1]}]}},
    {"detail": {"n": [{"exists": "yes"}]}},
    {"source": [{"anything-but": []}]},
])
def test_patterns_eventbridge_would_reject(pattern: dict[str, Any]) -> None:
    with pytest.raises(InvalidPattern) as raised:
        check_pattern(pattern)
    assert not isinstance(raised.value, UnsupportedPattern)
