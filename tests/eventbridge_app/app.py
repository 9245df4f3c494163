"""Toy Chalice app for the local gateway's EventBridge (``PutEvents``) tests only.

Its rules record every event they are invoked with in ``EVENTS`` (``(rule,
event dict)`` pairs), so a test sees exactly what the gateway delivered:

- ``paid_orders``: ``shop.orders`` events whose detail has ``status`` paid and
  ``order.region`` eu (exact values, nested);
- ``audit``: any source starting ``audit.`` (prefix);
- ``big_orders``: ``shop.orders`` with ``detail.total`` over 100 (numeric);
- ``boom``: ``toy.boom`` events; raises after recording.
"""
from __future__ import annotations

import threading
from typing import Any

from chalice import Chalice
from chalice.app import CloudWatchEvent

app = Chalice(app_name="eventbridge-toy")

EVENTS: list[tuple[str, dict[str, Any]]] = []
_lock = threading.Lock()


def _record(rule: str, event: CloudWatchEvent) -> None:
    with _lock:
        EVENTS.append((rule, event.to_dict()))


@app.on_cw_event({"source": ["shop.orders"], "detail": {"status": ["paid"], "order": {"region": ["eu"]}}})
def paid_orders(event: CloudWatchEvent) -> None:
    _record("paid_orders", event)


@app.on_cw_event({"source": [{"prefix": "audit."}]})
def audit(event: CloudWatchEvent) -> None:
    _record("audit", event)


@app.on_cw_event({"source": ["shop.orders"], "detail": {"total": [{"numeric": [">", 100]}]}})
def big_orders(event: CloudWatchEvent) -> None:
    _record("big_orders", event)


@app.on_cw_event({"source": ["toy.boom"]})
def boom(event: CloudWatchEvent) -> None:
    _record("boom", event)
    raise RuntimeError("the toy handler failed on purpose")
