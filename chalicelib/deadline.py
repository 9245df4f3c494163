"""A total time budget for one invocation, across every AWS call and retry it makes.

botocore bounds each attempt (``read_timeout``) and the number of attempts, not
their sum: a frozen DynamoDB once held a frame for 5 s x 4 attempts. Each entry
point sets its budget here (``within``); the hooks ``aws.Clients`` registers on
the DynamoDB and SQS clients refuse a new call, or another retry, once it is
spent, with ``DeadlineExceeded``, which every transport answers ``unavailable``.
A context variable: each invocation (and each test thread) has its own.
Pure: standard library only.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# Budgets, in seconds: what a client waits at most for an answer.
FRAME = 3.0  # a frame's answer, a REST answer, notify
CONNECT = 5.0  # $connect (and $disconnect)
SWEEP = 20.0  # the scheduled sweep, inside the functions' 30 s Lambda timeout
WORKER = 25.0  # a fan-out work item, the same

_ends: ContextVar[float | None] = ContextVar("deadline", default=None)


class DeadlineExceeded(Exception):
    """The invocation's budget is spent: a dependency is too slow (answered ``unavailable``)."""


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Run the block under a budget of ``seconds`` (an inner budget never extends an outer one)."""
    outer = _ends.get()
    ends = time.monotonic() + seconds
    token = _ends.set(min(ends, outer) if outer is not None else ends)
    try:
        yield
    finally:
        _ends.reset(token)


def remaining() -> float | None:
    """Seconds left, or None outside any budget."""
    ends = _ends.get()
    return None if ends is None else ends - time.monotonic()


def refuse_call_when_spent(**_: Any) -> None:
    """botocore's ``before-call`` hook: no new call once the budget is spent."""
    left = remaining()
    if left is not None and left <= 0:
        raise DeadlineExceeded("the time budget was spent before this call")


def refuse_retry_when_spent(caught_exception: BaseException | None = None, attempts: int = 1, **_: Any) -> None:
    """botocore's ``needs-retry`` hook: no retry once the budget is spent (the failure stands)."""
    left = remaining()
    if left is not None and left <= 0:
        if caught_exception is not None:
            raise caught_exception
        raise DeadlineExceeded(f"the time budget was spent after {attempts} attempts")


__all__ = ["CONNECT", "FRAME", "SWEEP", "WORKER", "DeadlineExceeded", "remaining", "within"]
