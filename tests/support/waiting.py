"""Waiting for something another thread or process does: ``wait_until``."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 5.0,
               what: str | Callable[[], str] = "condition", interval: float = 0.02) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    After ``timeout`` seconds it raises AssertionError naming ``what`` (a text,
    or a function giving one, called only then, e.g. to show the latest output).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout}s waiting for {described}")
        time.sleep(interval)
