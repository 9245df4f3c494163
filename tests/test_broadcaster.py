"""Broadcaster with the real boto3 client, against a real HTTP management API.

The client is the one the runtime wires (``aws.Clients.management``), so the
retries seen here are botocore's own, and the outcomes are classified on the
exceptions boto3 really raises for each wire response.
"""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chalicelib import aws
from chalicelib.broadcaster import BROADCAST_WORKERS, Broadcaster, DeliveryReport
from tests.support.management_api import ManagementApiServer

MakeBroadcaster = Callable[..., Broadcaster]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def make_broadcaster(management_api: ManagementApiServer) -> Iterator[MakeBroadcaster]:
    clients = aws.Clients()
    made: list[Broadcaster] = []

    def factory(endpoint_url: str | None = None, **options: Any) -> Broadcaster:
        client = clients.management(endpoint_url or management_api.endpoint_url)
        broadcaster = Broadcaster(client, **options)
        made.append(broadcaster)
        return broadcaster

    yield factory
    for broadcaster in made:
        broadcaster.close()


def _pool_threads() -> set[int]:
    """The broadcaster's worker threads (the server's handler threads are not ours)."""
    return {t.ident or 0 for t in threading.enumerate() if t.name.startswith("broadcast")}


def test_delivers_bytes_text_and_large_payloads_intact(management_api: ManagementApiServer,
                                                       make_broadcaster: MakeBroadcaster) -> None:
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


def test_report_has_each_outcome(management_api: ManagementApiServer,
                                 make_broadcaster: MakeBroadcaster) -> None:
    management_api.add("a", "b", "f")
    management_api.fail("f", 403)

    report = make_broadcaster().broadcast(["a", "x", "f", "b"], b"hi")

    assert report.to_dict() == {"delivered": 2, "gone": 1, "failed": 1, "goneIds": ["x"],
                                "failedIds": {"f": "ForbiddenException"}}
    assert sorted(report.delivered) == ["a", "b"] and report.total == 4


def test_gone_ids_go_to_on_gone_once_without_retry(management_api: ManagementApiServer,
                                                   make_broadcaster: MakeBroadcaster) -> None:
    management_api.add("a", "b")
    calls: list[list[str]] = []
    broadcaster = make_broadcaster(on_gone=calls.append)

    report = broadcaster.broadcast(["a", "x", "b", "y"], b"hi")

    assert sorted(report.delivered) == ["a", "b"]
    assert sorted(report.gone) == ["x", "y"]
    assert len(calls) == 1 and sorted(calls[0]) == ["x", "y"]
    assert management_api.attempts == {"a": 1, "b": 1, "x": 1, "y": 1}  # 410 is final

    broadcaster.broadcast(["a"], b"again")
    assert len(calls) == 1  # nothing gone, no call


def test_a_single_gone_id_also_reaches_on_gone(management_api: ManagementApiServer,
                                               make_broadcaster: MakeBroadcaster) -> None:
    calls: list[list[str]] = []
    report = make_broadcaster(on_gone=calls.append).broadcast(["x"], b"hi")
    assert report.gone == ["x"] and calls == [["x"]]


def test_on_gone_failure_does_not_lose_the_report(management_api: ManagementApiServer,
                                                  make_broadcaster: MakeBroadcaster) -> None:
    def broken(ids: list[str]) -> None:
        raise RuntimeError("table unavailable")

    report = make_broadcaster(on_gone=broken).broadcast(["x", "y"], b"hi")
    assert sorted(report.gone) == ["x", "y"]


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_throttling_and_5xx_are_retried_then_delivered(management_api: ManagementApiServer,
                                                       make_broadcaster: MakeBroadcaster, status: int) -> None:
    management_api.add("a", "b")
    management_api.fail("a", status, times=2)

    report = make_broadcaster().broadcast(["a", "b"], b"hi")

    assert sorted(report.delivered) == ["a", "b"] and not report.failed
    assert management_api.attempts == {"a": 3, "b": 1}
    assert management_api.received == {"a": [b"hi"], "b": [b"hi"]}  # delivered once, not once per try


def test_a_reply_is_retried_too(management_api: ManagementApiServer,
                                make_broadcaster: MakeBroadcaster) -> None:
    management_api.add("a")
    management_api.fail("a", 503, times=1)
    assert make_broadcaster().send("a", b"reply") == "delivered"
    assert management_api.attempts == {"a": 2}


def test_persistent_5xx_fails_after_the_configured_attempts(management_api: ManagementApiServer,
                                                            make_broadcaster: MakeBroadcaster) -> None:
    management_api.add("a", "b")
    management_api.fail("a", 503)

    report = make_broadcaster().broadcast(["a", "b", "z"], b"hi")  # "z" unknown: gone, unaffected

    assert report.failed == {"a": "ServiceUnavailableException"}
    assert report.delivered == ["b"] and report.gone == ["z"]
    assert management_api.attempts["a"] == aws.MANAGEMENT_MAX_ATTEMPTS


@pytest.mark.parametrize("status, code", [(403, "ForbiddenException"), (400, "BadRequestException"),
                                          (404, "NotFoundException")])
def test_client_errors_fail_without_retry(management_api: ManagementApiServer,
                                          make_broadcaster: MakeBroadcaster, status: int, code: str) -> None:
    management_api.add("a", "b")
    management_api.fail("a", status)

    report = make_broadcaster().broadcast(["a", "b"], b"hi")

    assert report.failed == {"a": code}
    assert report.delivered == ["b"]
    assert management_api.attempts == {"a": 1, "b": 1}


def test_payload_too_large_fails_without_retry(management_api: ManagementApiServer,
                                               make_broadcaster: MakeBroadcaster) -> None:
    management_api.add("a")
    broadcaster = make_broadcaster()
    too_large = b"x" * (130 * 1024)
    assert broadcaster.send("a", too_large) == "failed"
    report = broadcaster.broadcast(["a", "b"], too_large)
    assert report.failed == {"a": "PayloadTooLargeException"} and report.gone == ["b"]
    assert management_api.attempts["a"] == 2


def test_unreachable_endpoint_fails_every_id(make_broadcaster: MakeBroadcaster) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    calls: list[list[str]] = []
    broadcaster = make_broadcaster(f"http://127.0.0.1:{port}/dev", on_gone=calls.append)

    report = broadcaster.broadcast(["a", "b"], b"hi")

    assert report.failed == {"a": "EndpointConnectionError", "b": "EndpointConnectionError"}
    assert broadcaster.send("a", b"hi") == "failed"
    assert calls == []  # unreachable is not gone: the ids are kept


def test_send_reports_outcome_without_calling_on_gone(management_api: ManagementApiServer,
                                                      make_broadcaster: MakeBroadcaster) -> None:
    management_api.add("a", "f")
    management_api.fail("f", 403)
    calls: list[list[str]] = []
    broadcaster = make_broadcaster(on_gone=calls.append)

    assert broadcaster.send("a", "text") == "delivered"
    assert broadcaster.send("zz", b"x") == "gone"
    assert broadcaster.send("f", b"x") == "failed"
    assert calls == []
    assert management_api.received == {"a": [b"text"]}


def test_exclude_and_dedup(management_api: ManagementApiServer, make_broadcaster: MakeBroadcaster) -> None:
    management_api.add("a", "b", "c")

    report = make_broadcaster().broadcast(iter(["a", "b", "a", "c", "b", "", "a"]), b"m", exclude=("c",))

    assert sorted(report.delivered) == ["a", "b"]
    assert management_api.attempts == {"a": 1, "b": 1}
    assert "c" not in management_api.received


def test_small_fan_outs_use_few_threads_and_reuse_them(management_api: ManagementApiServer,
                                                       make_broadcaster: MakeBroadcaster) -> None:
    management_api.add("a", "b", "c")
    broadcaster = make_broadcaster()
    before = _pool_threads()

    broadcaster.broadcast(["a"], b"1")
    assert _pool_threads() == before  # one id: posted inline
    broadcaster.broadcast(["a", "b", "c"], b"2")
    first = _pool_threads() - before
    assert 1 <= len(first) <= 3
    broadcaster.broadcast(["a", "b", "c"], b"3")
    second = _pool_threads() - before
    assert first <= second and len(second) <= 3  # kept and reused, never more than the ids in flight
    assert management_api.received["c"] == [b"2", b"3"]

    broadcaster.close()
    assert not _pool_threads() & second


def test_fan_out_is_concurrent_streamed_and_reuses_connections(
        management_api: ManagementApiServer, make_broadcaster: MakeBroadcaster,
        caplog: pytest.LogCaptureFixture) -> None:
    count, latency = 600, 0.05
    ids = [f"conn-{i:05d}" for i in range(count)]
    management_api.add(*ids)
    management_api.latency(latency)
    broadcaster = make_broadcaster()
    ahead: list[int] = []

    def source() -> Iterator[str]:
        for index, connection_id in enumerate(ids):
            ahead.append(index - management_api.total_posts)  # ids taken but not yet posted
            yield connection_id

    caplog.set_level(logging.WARNING, logger="urllib3")
    started = time.perf_counter()
    report = broadcaster.broadcast(source(), b'{"type":"message"}')
    elapsed = time.perf_counter() - started

    assert len(report.delivered) == count and not report.gone and not report.failed
    assert management_api.total_posts == count
    assert 8 <= management_api.peak_concurrency <= BROADCAST_WORKERS
    assert max(ahead) <= broadcaster.max_in_flight  # the id source is never read far ahead
    # One post after another cannot take less than count * latency (30 s). The
    # margin leaves room for boto3's CPU per post, which shares this process's
    # GIL with the server on 2 cores.
    sequential_floor = count * latency
    print(f"{count} posts in {elapsed:.2f}s, sequential >= {sequential_floor:.0f}s")
    assert elapsed < sequential_floor / 5, (elapsed, sequential_floor)
    # As many pooled HTTP connections as workers: none opened and thrown away.
    assert not [r for r in caplog.records if "Connection pool is full" in r.getMessage()]


def test_importing_the_broadcaster_does_not_import_boto3() -> None:
    code = ("import sys; import chalicelib.broadcaster, chalicelib.aws; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))")
    found = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                           check=True, timeout=60).stdout.strip()
    assert found == "[]"


def test_report_dict() -> None:
    report = DeliveryReport(delivered=["a", "b"], gone=["z", "y"], failed={"f": "ForbiddenException"})
    assert report.to_dict() == {"delivered": 2, "gone": 2, "failed": 1, "goneIds": ["y", "z"],
                                "failedIds": {"f": "ForbiddenException"}}
    assert DeliveryReport().to_dict() == {"delivered": 0, "gone": 0, "failed": 0, "goneIds": [],
                                          "failedIds": {}}
