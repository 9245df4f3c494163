"""Posting one message to many WebSocket connections through the management API.

Each ``post_to_connection`` is one HTTPS round trip (tens of ms), so fan-out runs
on a bounded thread pool: the work is I/O bound and boto3 clients are
thread-safe. The pool is created on first use and kept for the container's
life; ``ThreadPoolExecutor`` only starts a thread when no idle one exists, so a
small fan-out never spawns more threads than it needs, and a fan-out of one
runs inline.

Ids are streamed into the pool with a bounded number in flight, so an id
source that pages through a table is read only as fast as posts complete.

Outcomes per id: ``delivered``; ``gone`` (410: the client left, the caller
should forget the id); ``failed`` with an error code. Throttling, 5xx and
connection errors are retried with capped exponential backoff and full jitter
(botocore's own retries are off on the client, see ``aws.management_client``);
anything else (403, 413, 400...) will not get better by retrying.

No boto3/botocore import at module level: errors are classified by their
``response`` dict, and botocore's exception classes are looked up only when an
exception without one shows up.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("ws.broadcaster")

DELIVERED = "delivered"
GONE = "gone"
FAILED = "failed"

GONE_CODES = frozenset({"GoneException"})
THROTTLE_CODES = frozenset({
    "LimitExceededException", "TooManyRequestsException", "ThrottlingException", "Throttling",
    "ThrottledException", "RequestLimitExceeded", "SlowDown",
})

OnGone = Callable[[list[str]], Any]


@dataclass
class DeliveryReport:
    """What happened to each id of one broadcast (or of several, merged)."""

    delivered: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # connection id -> error code

    @property
    def total(self) -> int:
        return len(self.delivered) + len(self.gone) + len(self.failed)

    def to_dict(self) -> dict[str, Any]:
        """JSON shape: counts first, then the ids that need attention."""
        return {
            "delivered": len(self.delivered),
            "gone": len(self.gone),
            "failed": len(self.failed),
            "goneIds": sorted(self.gone),
            "failedIds": dict(sorted(self.failed.items())),
        }

    def merge(self, other: DeliveryReport) -> DeliveryReport:
        """Add ``other``'s outcomes to this report (in place) and return it."""
        self.delivered.extend(other.delivered)
        self.gone.extend(other.gone)
        self.failed.update(other.failed)
        return self


@dataclass(frozen=True)
class _Verdict:
    outcome: str  # DELIVERED / GONE / FAILED
    code: str | None = None
    retry: bool = False


def _encode(data: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"data must be bytes or str, not {type(data).__name__}")


def _connection_error_types() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(retryable transport errors, transport errors retrying cannot fix)."""
    import ssl

    retryable: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    permanent: tuple[type[BaseException], ...] = (ssl.SSLError,)
    try:
        from botocore import exceptions as boto
    except ImportError:  # a fake client in an environment without botocore
        return retryable, permanent
    return retryable + (boto.ConnectionError, boto.HTTPClientError), permanent + (boto.SSLError,)


def classify(error: BaseException) -> _Verdict:
    """Map an exception from ``post_to_connection`` to an outcome and retry decision."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = str((response.get("Error") or {}).get("Code") or "")
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        status = status if isinstance(status, int) else 0
        code = code or (f"HTTP{status}" if status else type(error).__name__)
        if code in GONE_CODES or status == 410:
            return _Verdict(GONE, code)
        if code in THROTTLE_CODES or status == 429 or status >= 500:
            return _Verdict(FAILED, code, retry=True)
        return _Verdict(FAILED, code)
    retryable, permanent = _connection_error_types()
    if isinstance(error, retryable) and not isinstance(error, permanent):
        return _Verdict(FAILED, type(error).__name__, retry=True)
    return _Verdict(FAILED, type(error).__name__)


class Broadcaster:
    """Sends to one management API endpoint through ``client`` (thread-safe).

    ``client`` is a boto3 ``apigatewaymanagementapi`` client or anything with
    ``post_to_connection(ConnectionId=, Data=)`` that raises botocore-style
    ``ClientError``. Keep one Broadcaster per endpoint for the container's life
    so its pool (and the client's HTTP connections) are reused.
    """

    def __init__(self, client: Any, *, on_gone: OnGone | None = None, max_workers: int = 64,
                 max_attempts: int = 5, backoff_base: float = 0.05, backoff_cap: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
                 max_in_flight: int | None = None) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.client = client
        self.on_gone = on_gone
        self.max_workers = max_workers
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        # Queued-but-not-started posts beyond the workers keep them busy
        # between completions without reading the id source far ahead.
        self.max_in_flight = max_in_flight or max_workers * 2
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # -- single post ------------------------------------------------------------------

    def send(self, connection_id: str, data: bytes | str) -> str:
        """Post to one connection (with retries); ``delivered``, ``gone`` or ``failed``.

        Does not call ``on_gone``: a caller replying to one client decides itself.
        """
        return self._deliver(connection_id, _encode(data)).outcome

    def backoff_delay(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**retry)] for the ``retry``-th retry (0-based)."""
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** retry))
        return ceiling * self._rng.random()

    def _deliver(self, connection_id: str, payload: bytes) -> _Verdict:
        verdict = _Verdict(FAILED, "NotAttempted")
        for attempt in range(self.max_attempts):
            if attempt:
                self._sleep(self.backoff_delay(attempt - 1))
            try:
                self.client.post_to_connection(ConnectionId=connection_id, Data=payload)
            except Exception as error:  # noqa: BLE001 - every failure is an outcome, not a crash
                verdict = classify(error)
                if not verdict.retry:
                    return verdict
                continue
            return _Verdict(DELIVERED)
        return verdict

    # -- fan-out ------------------------------------------------------------------------

    def broadcast(self, connection_ids: Iterable[str], data: bytes | str, *,
                  exclude: Collection[str] = ()) -> DeliveryReport:
        """Post ``data`` to every distinct id not in ``exclude``; report per-id outcomes.

        ``on_gone`` is called once, after all posts, with every id that was gone.
        """
        payload = _encode(data)
        ids = _unique(connection_ids, exclude)
        report = DeliveryReport()
        first = next(ids, None)
        if first is not None:
            second = next(ids, None)
            if second is None:
                self._record(report, first, self._deliver(first, payload), None)
            else:
                self._fan_out(_chain(first, second, ids), payload, report)
        if report.failed:
            logger.warning("broadcast: %d delivered, %d gone, %d failed (codes: %s)",
                           len(report.delivered), len(report.gone), len(report.failed),
                           sorted(set(report.failed.values())))
        if report.gone and self.on_gone is not None:
            try:
                self.on_gone(list(report.gone))
            except Exception:  # noqa: BLE001 - pruning is best effort; TTL removes them anyway
                logger.exception("on_gone failed for %d gone connections", len(report.gone))
        return report

    def _fan_out(self, ids: Iterator[str], payload: bytes, report: DeliveryReport) -> None:
        pool = self._executor()
        slots = threading.BoundedSemaphore(self.max_in_flight)
        lock = threading.Lock()

        def task(connection_id: str) -> None:
            try:
                verdict = self._deliver(connection_id, payload)
            except BaseException as error:  # noqa: BLE001 - never lose a slot
                verdict = _Verdict(FAILED, type(error).__name__)
            try:
                self._record(report, connection_id, verdict, lock)
            finally:
                slots.release()

        for connection_id in ids:
            slots.acquire()
            try:
                pool.submit(task, connection_id)
            except BaseException:
                slots.release()
                raise
        # Every task releases its slot when done: holding all slots means all finished.
        for _ in range(self.max_in_flight):
            slots.acquire()

    @staticmethod
    def _record(report: DeliveryReport, connection_id: str, verdict: _Verdict,
                lock: threading.Lock | None) -> None:
        if lock is not None:
            with lock:
                Broadcaster._record(report, connection_id, verdict, None)
            return
        if verdict.outcome == DELIVERED:
            report.delivered.append(connection_id)
        elif verdict.outcome == GONE:
            report.gone.append(connection_id)
        else:
            report.failed[connection_id] = verdict.code or "Unknown"

    def _executor(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=self.max_workers,
                                                    thread_name_prefix="broadcast")
                pool = self._pool
        return pool

    def close(self) -> None:
        """Stop the pool's threads (tests; Lambda simply freezes the container)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def _unique(connection_ids: Iterable[str], exclude: Collection[str]) -> Iterator[str]:
    seen = set(exclude)
    for connection_id in connection_ids:
        if connection_id and connection_id not in seen:
            seen.add(connection_id)
            yield connection_id


def _chain(first: str, second: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield second
    yield from rest
