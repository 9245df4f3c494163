"""Posting one message to many WebSocket connections through the management API.

Each ``post_to_connection`` is one HTTPS round trip (tens of ms), so fan-out runs
on a bounded thread pool: the work is I/O bound and boto3 clients are
thread-safe. The pool is created on first use and kept for the container's
life; ``ThreadPoolExecutor`` only starts a thread when no idle one exists, so a
small fan-out never spawns more threads than it needs, and a fan-out of one
runs inline.

Ids are streamed into the pool with a bounded number in flight, so an id
source that pages through a table is read only as fast as posts complete.

Retrying is the client's job, not this module's: the boto3 client built by
``aws.management_client`` retries throttling, 5xx and connection errors with
botocore's ``standard`` retry mode (jittered exponential backoff, a retry
quota shared by every post on that client). What reaches this module is
final, so each id gets exactly one outcome: ``delivered``; ``gone`` (410: the
client left, the caller should forget the id); or ``failed`` with the error
code.

No boto3/botocore import, here or lazily: errors are classified by the
``response`` dict botocore attaches to a ``ClientError``, so this module stays
importable (and testable) without them.
"""
from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from .faults import error_code, http_status

logger = logging.getLogger("ws.broadcaster")

# Threads posting at once. ``aws.management_client`` sizes the client's HTTP
# connection pool with the same number: fewer connections than workers and
# urllib3 would open and throw away a connection per post beyond the pool.
BROADCAST_WORKERS: Final = 64

Outcome = Literal["delivered", "gone", "failed"]
DELIVERED: Final = "delivered"
GONE: Final = "gone"
FAILED: Final = "failed"

# Called once per broadcast with the gone ids (the runtime deletes them from
# DynamoDB); whatever it returns is ignored.
OnGone = Callable[[list[str]], object]


class ManagementClient(Protocol):
    """The calls made on a boto3 ``apigatewaymanagementapi`` client (posts, and closes).

    Structural, so tests and other transports can stand in without boto3.
    Failures must raise an exception carrying botocore's ``response`` dict
    (``{"Error": {"Code": ...}, "ResponseMetadata": {"HTTPStatusCode": ...}}``).
    """

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> object:  # noqa: N803 - boto3's names
        ...

    def delete_connection(self, *, ConnectionId: str) -> object:  # noqa: N803 - boto3's names
        ...


@dataclass
class DeliveryReport:
    """What happened to each id of one broadcast.

    Kept per id, not as counts, so callers can act on exactly the ids that
    need it: forget the gone ones, log or retry later the failed ones.
    """

    delivered: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # connection id -> error code

    @property
    def total(self) -> int:
        return len(self.delivered) + len(self.gone) + len(self.failed)

    def to_dict(self) -> dict[str, int | list[str] | dict[str, str]]:
        """JSON shape: counts first, then the ids that need attention (sorted, so
        the same outcomes always serialise the same whatever the completion order)."""
        return {
            "delivered": len(self.delivered),
            "gone": len(self.gone),
            "failed": len(self.failed),
            "goneIds": sorted(self.gone),
            "failedIds": dict(sorted(self.failed.items())),
        }

    def _add(self, connection_id: str, outcome: Outcome, code: str | None) -> None:
        if outcome == DELIVERED:
            self.delivered.append(connection_id)
        elif outcome == GONE:
            self.gone.append(connection_id)
        else:
            self.failed[connection_id] = code or "Unknown"


def _encode(data: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"data must be bytes or str, not {type(data).__name__}")


def _outcome_of(error: BaseException) -> tuple[Outcome, str]:
    """Gone or failed, with the code to report, for an error the client gave up on."""
    if not isinstance(getattr(error, "response", None), dict):  # a transport error botocore ran out of retries for
        return FAILED, type(error).__name__
    code, status = error_code(error), http_status(error) or 0
    if code == "GoneException" or status == 410:
        return GONE, code or "GoneException"
    return FAILED, code or (f"HTTP{status}" if status else type(error).__name__)


class Broadcaster:
    """Sends to one management API endpoint through ``client``; thread-safe.

    Keep one Broadcaster per endpoint for the container's life so its threads
    (and the client's HTTP connections) are reused across invocations.
    """

    def __init__(self, client: ManagementClient, *, on_gone: OnGone | None = None,
                 max_workers: int = BROADCAST_WORKERS) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.client = client
        self.on_gone = on_gone
        self.max_workers = max_workers
        # Queued-but-not-started posts beyond the workers keep them busy
        # between completions without reading the id source far ahead.
        self.max_in_flight = max_workers * 2
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def send(self, connection_id: str, data: bytes | str) -> Outcome:
        """Post to one connection: ``delivered``, ``gone`` or ``failed``.

        Does not call ``on_gone``: a caller replying to one client decides itself.
        """
        return self._post(connection_id, _encode(data))[0]

    def disconnect(self, connection_id: str) -> Outcome:
        """Close one connection (``DELETE @connections/{id}``): ``delivered`` (closed), ``gone`` or ``failed``.

        API Gateway then runs the connection's ``$disconnect``. Used when a
        connection may no longer stay open (its token expired, or a refresh
        named another user); like ``send``, it reports and never raises.
        """
        try:
            self.client.delete_connection(ConnectionId=connection_id)
        except Exception as error:  # noqa: BLE001 - every failure is an outcome, not a crash
            return _outcome_of(error)[0]
        return DELIVERED

    def broadcast(self, connection_ids: Iterable[str], data: bytes | str, *,
                  exclude: Collection[str] = ()) -> DeliveryReport:
        """Post ``data`` to every distinct id not in ``exclude``; report per-id outcomes.

        ``on_gone`` is called once, after all posts, with every id that was
        gone: one batched delete instead of one per id, and never a delete
        racing a post still in flight.
        """
        payload = _encode(data)
        ids = _unique(connection_ids, exclude)
        report = DeliveryReport()
        head = list(itertools.islice(ids, 2))
        if len(head) == 1:  # one id: no pool, no threads
            report._add(head[0], *self._post(head[0], payload))
        elif head:
            self._fan_out(itertools.chain(head, ids), payload, report)
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

    def close(self) -> None:
        """Stop the pool's threads (tests; Lambda simply freezes the container)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _post(self, connection_id: str, payload: bytes) -> tuple[Outcome, str | None]:
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=payload)
        except Exception as error:  # noqa: BLE001 - every failure is an outcome, not a crash
            return _outcome_of(error)
        return DELIVERED, None

    def _fan_out(self, ids: Iterator[str], payload: bytes, report: DeliveryReport) -> None:
        pool = self._executor()
        slots = threading.BoundedSemaphore(self.max_in_flight)
        lock = threading.Lock()

        def task(connection_id: str) -> None:
            try:
                outcome, code = self._post(connection_id, payload)
            except BaseException as error:  # noqa: BLE001 - never lose a slot
                outcome, code = FAILED, type(error).__name__
            try:
                with lock:
                    report._add(connection_id, outcome, code)
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

    def _executor(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=self.max_workers,
                                                    thread_name_prefix="broadcast")
                pool = self._pool
        return pool


def _unique(connection_ids: Iterable[str], exclude: Collection[str]) -> Iterator[str]:
    seen = set(exclude)
    for connection_id in connection_ids:
        if connection_id and connection_id not in seen:
            seen.add(connection_id)
            yield connection_id
