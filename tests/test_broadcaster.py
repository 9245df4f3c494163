"""Broadcaster against a real HTTP management API, through both real clients.

Every test runs with the boto3 client and with the lean SigV4 client, so the
retry/gone/failed classification is checked on the exceptions each one really
raises for the same wire responses.
"""
from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib import aws
from chalicelib.broadcaster import Broadcaster, DeliveryReport, classify
from tests.support.management_api import ManagementApiServer


class _Ceiling(random.Random):
    """random() == 1.0: backoff delays equal their ceilings, so growth is assertable."""

    def random(self) -> float:
        return 1.0


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture(params=["boto3", "lean"])
def client_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    aws.reset_clients()
    yield request.param
    aws.reset_clients()


def make_client(kind: str, endpoint_url: str) -> Any:
    if kind == "boto3":
        return aws.management_client(endpoint_url)
    return aws.lean_management_client(endpoint_url)


@pytest.fixture
def make_broadcaster(client_kind: str, management_api: ManagementApiServer) -> Iterator[Any]:
    made: list[Broadcaster] = []

    def factory(endpoint_url: str | None = None, **options: Any) -> Broadcaster:
        options.setdefault("sleep", SleepRecorder())
        broadcaster = Broadcaster(make_client(client_kind, endpoint_url or management_api.endpoint_url), **options)
        made.append(broadcaster)
        return broadcaster

    yield factory
    for broadcaster in made:
        broadcaster.close()


def test_delivers_bytes_text_and_large_payloads_intact(management_api: ManagementApiServer,
                                                       make_broadcaster: Any) -> None:
    management_api.add("a", "b", "c=")
    broadcaster = make_broadcaster()
    binary = bytes(range(256)) * 4
    text = "héllo ✓ 🌍 \"quoted\""
    large = ("x" * 1023 + "\n").encode() * 100  # ~100 KB, under API Gateway's 128 KB frame limit

    for payload in (binary, text, large):
        report = broadcaster.broadcast(["a", "b", "c="], payload)
        assert sorted(report.delivered) == ["a", "b", "c="]
        assert report.gone == [] and report.failed == {}

    expected = [binary, text.encode("utf-8"), large]
    assert management_api.received == {"a": expected, "b": expected, "c=": expected}


def test_unknown_ids_are_gone_and_on_gone_is_called_once(management_api: ManagementApiServer,
                                                         make_broadcaster: Any) -> None:
    management_api.add("a", "b")
    calls: list[list[str]] = []
    broadcaster = make_broadcaster(on_gone=calls.append)

    report = broadcaster.broadcast(["a", "x", "b", "y"], b"hi")

    assert sorted(report.delivered) == ["a", "b"]
    assert sorted(report.gone) == ["x", "y"]
    assert len(calls) == 1 and sorted(calls[0]) == ["x", "y"]
    assert management_api.attempts == {"a": 1, "b": 1, "x": 1, "y": 1}  # 410 is final: no retry

    broadcaster.broadcast(["a"], b"again")
    assert len(calls) == 1  # nothing gone, no call


def test_on_gone_failure_does_not_lose_the_report(management_api: ManagementApiServer,
                                                  make_broadcaster: Any) -> None:
    def broken(ids: list[str]) -> None:
        raise RuntimeError("table unavailable")

    report = make_broadcaster(on_gone=broken).broadcast(["x", "y"], b"hi")
    assert sorted(report.gone) == ["x", "y"]


def test_throttled_twice_then_delivered_with_backoff(management_api: ManagementApiServer,
                                                     make_broadcaster: Any) -> None:
    management_api.add("a", "b")
    management_api.throttle("a", 2)
    sleep = SleepRecorder()
    broadcaster = make_broadcaster(sleep=sleep, rng=_Ceiling(), backoff_base=0.05)

    report = broadcaster.broadcast(["a", "b"], b"hi")

    assert sorted(report.delivered) == ["a", "b"]
    assert management_api.attempts == {"a": 3, "b": 1}
    assert management_api.received["a"] == [b"hi"]
    assert sleep.delays == pytest.approx([0.05, 0.1])


def test_backoff_grows_exponentially_caps_and_gives_up(management_api: ManagementApiServer,
                                                       make_broadcaster: Any) -> None:
    management_api.add("a")
    management_api.fail("a", 503)
    sleep = SleepRecorder()
    broadcaster = make_broadcaster(sleep=sleep, rng=_Ceiling(), max_attempts=7, backoff_base=0.05,
                                   backoff_cap=0.3)

    report = broadcaster.broadcast(["a", "b"], b"hi")  # "b" unknown: gone, unaffected

    assert report.failed == {"a": "ServiceUnavailableException"}
    assert report.gone == ["b"]
    assert management_api.attempts["a"] == 7
    assert sleep.delays == pytest.approx([0.05, 0.1, 0.2, 0.3, 0.3, 0.3])


def test_jittered_delays_stay_under_their_ceilings(management_api: ManagementApiServer,
                                                   make_broadcaster: Any) -> None:
    management_api.add("a")
    management_api.throttle("a", 100)
    sleep = SleepRecorder()
    broadcaster = make_broadcaster(sleep=sleep, rng=random.Random(7), max_attempts=6, backoff_base=0.1,
                                   backoff_cap=0.5)

    assert broadcaster.send("a", b"hi") == "failed"
    ceilings = [0.1, 0.2, 0.4, 0.5, 0.5]
    assert len(sleep.delays) == 5
    assert all(0 <= d <= c for d, c in zip(sleep.delays, ceilings))
    assert len(set(sleep.delays)) == 5  # really jittered, not the ceilings
    assert management_api.attempts["a"] == 6


@pytest.mark.parametrize("status, code", [(403, "ForbiddenException"), (400, "BadRequestException")])
def test_permanent_errors_fail_without_retry(management_api: ManagementApiServer, make_broadcaster: Any,
                                             status: int, code: str) -> None:
    management_api.add("a", "b")
    management_api.fail("a", status)
    sleep = SleepRecorder()

    report = make_broadcaster(sleep=sleep).broadcast(["a", "b"], b"hi")

    assert report.failed == {"a": code}
    assert report.delivered == ["b"]
    assert management_api.attempts["a"] == 1
    assert sleep.delays == []


def test_payload_too_large_fails_without_retry(management_api: ManagementApiServer,
                                               make_broadcaster: Any) -> None:
    management_api.add("a")
    broadcaster = make_broadcaster()
    assert broadcaster.send("a", b"x" * (130 * 1024)) == "failed"
    report = broadcaster.broadcast(["a", "b"], b"x" * (130 * 1024))
    assert report.failed == {"a": "PayloadTooLargeException"}
    assert management_api.attempts["a"] == 2


def test_connection_errors_are_retried_then_failed(make_broadcaster: Any, client_kind: str) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleep = SleepRecorder()
    broadcaster = make_broadcaster(f"http://127.0.0.1:{port}/dev", sleep=sleep, max_attempts=3)

    report = broadcaster.broadcast(["a", "b"], b"hi")

    expected = "EndpointConnectionError" if client_kind == "boto3" else "ManagementConnectionError"
    assert report.failed == {"a": expected, "b": expected}
    assert len(sleep.delays) == 4  # 2 retries for each id


def test_send_reports_outcome_without_calling_on_gone(management_api: ManagementApiServer,
                                                      make_broadcaster: Any) -> None:
    management_api.add("a", "f")
    management_api.fail("f", 403)
    calls: list[list[str]] = []
    broadcaster = make_broadcaster(on_gone=calls.append)

    assert broadcaster.send("a", "text") == "delivered"
    assert broadcaster.send("zz", b"x") == "gone"
    assert broadcaster.send("f", b"x") == "failed"
    assert calls == []
    assert management_api.received == {"a": [b"text"]}


def test_exclude_and_dedup(management_api: ManagementApiServer, make_broadcaster: Any) -> None:
    management_api.add("a", "b", "c")

    report = make_broadcaster().broadcast(iter(["a", "b", "a", "c", "b", "", "a"]), b"m", exclude=("c",))

    assert sorted(report.delivered) == ["a", "b"]
    assert management_api.attempts == {"a": 1, "b": 1}
    assert "c" not in management_api.received


def test_small_fan_outs_use_few_threads_and_the_pool_is_reused(management_api: ManagementApiServer,
                                                               make_broadcaster: Any) -> None:
    management_api.add("a", "b", "c")
    broadcaster = make_broadcaster(max_workers=64)

    def pool_threads() -> int:  # the server's handler threads are not ours
        return sum(1 for t in threading.enumerate() if t.name.startswith("broadcast"))

    before = pool_threads()
    broadcaster.broadcast(["a"], b"1")
    assert broadcaster._pool is None  # one id: posted inline
    broadcaster.broadcast(["a", "b", "c"], b"2")
    pool = broadcaster._pool
    assert pool is not None and 1 <= len(pool._threads) <= 3
    assert pool_threads() - before <= 3
    broadcaster.broadcast(["a", "b", "c"], b"3")
    assert broadcaster._pool is pool and len(pool._threads) <= 3
    assert management_api.received["c"] == [b"2", b"3"]


def test_streams_a_large_generator_concurrently_within_bounds(management_api: ManagementApiServer,
                                                              make_broadcaster: Any, client_kind: str) -> None:
    count, workers, latency = 2000, 32, 0.005
    ids = [f"conn-{i:05d}" for i in range(count)]
    management_api.add(*ids)
    management_api.latency(latency)
    broadcaster = make_broadcaster(max_workers=workers)
    # Sequential estimate from a real sequential sample with the same client and server.
    sample = 40
    started = time.perf_counter()
    for connection_id in ids[:sample]:
        assert broadcaster.send(connection_id, b"warm") == "delivered"
    sequential_estimate = (time.perf_counter() - started) / sample * count
    management_api.reset_stats()

    ahead: list[int] = []

    def source() -> Iterator[str]:
        for index, connection_id in enumerate(ids):
            ahead.append(index - management_api.total_posts)  # ids taken but not yet posted
            yield connection_id

    started = time.perf_counter()
    report = broadcaster.broadcast(source(), b'{"type":"message"}')
    elapsed = time.perf_counter() - started

    assert len(report.delivered) == count and not report.gone and not report.failed
    assert management_api.total_posts == count
    assert 2 <= management_api.peak_concurrency <= workers
    assert max(ahead) <= broadcaster.max_in_flight  # the generator is never read far ahead
    # boto3's ~1-2 ms of CPU per post, sharing the GIL with this in-process server, caps
    # its speed-up on 2 cores; the lean client must be much faster than sequential.
    divisor = 5 if client_kind == "lean" else 2
    print(f"{client_kind}: {count} posts in {elapsed:.2f}s, sequential ~{sequential_estimate:.2f}s")
    assert elapsed < sequential_estimate / divisor, (elapsed, sequential_estimate)


# -- pure pieces ----------------------------------------------------------------------------


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": ""},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PostToConnection")


@pytest.mark.parametrize("error, outcome, retry", [
    (_client_error("GoneException", 410), "gone", False),
    (_client_error("", 410), "gone", False),
    (_client_error("LimitExceededException", 429), "failed", True),
    (_client_error("TooManyRequestsException", 429), "failed", True),
    (_client_error("ThrottlingException", 400), "failed", True),
    (_client_error("InternalServerErrorException", 500), "failed", True),
    (_client_error("ForbiddenException", 403), "failed", False),
    (_client_error("PayloadTooLargeException", 413), "failed", False),
    (ConnectionResetError("reset"), "failed", True),
    (ValueError("bug"), "failed", False),
])
def test_classify(error: Exception, outcome: str, retry: bool) -> None:
    verdict = classify(error)
    assert (verdict.outcome, verdict.retry) == (outcome, retry)


def test_report_dict_and_merge() -> None:
    first = DeliveryReport(delivered=["a"], gone=["z"], failed={"f": "ForbiddenException"})
    second = DeliveryReport(delivered=["b"], gone=["y"], failed={})
    merged = first.merge(second)
    assert merged is first
    assert merged.to_dict() == {"delivered": 2, "gone": 2, "failed": 1, "goneIds": ["y", "z"],
                                "failedIds": {"f": "ForbiddenException"}}
    assert DeliveryReport().to_dict() == {"delivered": 0, "gone": 0, "failed": 0, "goneIds": [],
                                          "failedIds": {}}
