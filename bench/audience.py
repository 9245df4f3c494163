"""The fan-out benchmarks' audience: real WebSocket clients behind a local gateway.

``open_audience`` starts the gateway (``bench/fanout_app``, a fixed latency
added to every ``@connections`` POST) and a sink process holding the
connections, closes some of them again, and writes a record for every id,
gone ones included, to the table. The ``Audience`` then keeps the books:
what each client should have received, and what it did.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.common import (PYTHON, check, gateway_command, raise_nofile, read_line, start_gateway, start_process,
                          stop_process, stop_sink)

APP_DIR = os.path.join(os.path.dirname(__file__), "fanout_app")


def use_bench_credentials() -> None:
    """Dummy AWS settings, so nothing here can reach real AWS by accident."""
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                        ("AWS_REGION", "us-east-1"), ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)


def invoke(base: str, name: str) -> Any:
    """Invoke one of ``fanout_app``'s functions through the gateway's Lambda API."""
    request = urllib.request.Request(f"{base}/2015-03-31/functions/{name}/invocations", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})  # as an SDK sends it
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def put_records(client: Any, table_name: str, ids: list[str]) -> None:
    from chalicelib.items import connection_item
    from tests.support.dynamodb import make_record

    items = [{"PutRequest": {"Item": connection_item(make_record(cid, user_id=f"user-{i % 100}",
                                                                 username=f"user{i % 100}"))}}
             for i, cid in enumerate(ids)]
    for start in range(0, len(items), 25):
        pending = items[start:start + 25]
        while pending:
            answer = client.batch_write_item(RequestItems={table_name: pending})
            pending = (answer.get("UnprocessedItems") or {}).get(table_name) or []


def stored_ids(client: Any, table_name: str) -> set[str]:
    found: set[str] = set()
    paginator = client.get_paginator("scan")
    for page in paginator.paginate(TableName=table_name, ProjectionExpression="connectionId"):
        found.update(item["connectionId"]["S"] for item in page["Items"] if "connectionId" in item)
    return found


@dataclass
class Tally:
    expected: int
    received: int
    lost: int
    duplicates: int
    to_closed: int

    def line(self) -> str:
        return (f"messages expected {self.expected:,}, received {self.received:,}, lost {self.lost}, "
                f"duplicates {self.duplicates}, to closed connections {self.to_closed}")


@dataclass
class Audience:
    gateway: subprocess.Popen[str]
    sink: subprocess.Popen[str]
    management_url: str
    live: list[str]  # open connection ids, in the sink's order
    closed: list[str]  # ids the sink closed again (410)
    gone: list[str]  # the closed ids and ids that never existed: every one answers 410
    connect_seconds: float
    index_of: dict[str, int] = field(default_factory=dict)
    expected: dict[int, int] = field(default_factory=dict)

    def expect(self, ids: Iterable[str]) -> None:
        """Each of these live clients should get one more message."""
        for cid in ids:
            self.expected[self.index_of[cid]] += 1

    def with_gone(self, targets: list[str]) -> list[str]:
        """``targets`` and every gone id, the gone ones spread through the list, as in a real table."""
        ids = targets + self.gone
        return [ids[i] for i in sorted(range(len(ids)), key=lambda i: (i * 7919) % len(ids))]

    @property
    def expected_total(self) -> int:
        return sum(self.expected.values())

    def wait(self, timeout: float = 300) -> float:
        """Until everything expected has arrived; the ``time.monotonic()`` of the last arrival."""
        total = self.expected_total
        self._ask(f"WAIT {total} {timeout}")
        answer = json.loads(read_line(self.sink, "WAITED ", timeout=timeout + 30)[len("WAITED "):])
        check(answer["total"] >= total, f"only {answer['total']} of {total} messages arrived within {timeout:.0f} s")
        return float(answer["last"])

    def tally(self) -> Tally:
        """What each client received against what it should have."""
        self._ask(f"COUNTS {self.expected_total} 30")
        counts = json.loads(read_line(self.sink, "COUNTS ", timeout=60)[len("COUNTS "):])
        closed = {self.index_of[cid] for cid in self.closed}
        return Tally(expected=self.expected_total, received=sum(counts),
                     lost=sum(max(0, want - counts[n]) for n, want in self.expected.items()),
                     duplicates=sum(max(0, counts[n] - want) for n, want in self.expected.items()),
                     to_closed=sum(counts[n] for n in closed))

    def sequential_rate(self, sample: int) -> tuple[float, float]:
        """The one-by-one loop most tutorials use, one boto3 post after another, on ``sample`` clients: (posts/s, seconds)."""
        import boto3

        client = boto3.client("apigatewaymanagementapi", endpoint_url=self.management_url, region_name="us-east-1")
        client.post_to_connection(ConnectionId=self.live[-1], Data=b"warm-up")
        self.expect([self.live[-1]])
        targets = self.live[:sample]
        started = time.perf_counter()
        for cid in targets:
            client.post_to_connection(ConnectionId=cid, Data=b'{"type":"sequential"}')
        seconds = time.perf_counter() - started
        self.expect(targets)
        return len(targets) / seconds, seconds

    def _ask(self, command: str) -> None:
        assert self.sink.stdin is not None
        self.sink.stdin.write(command + "\n")
        self.sink.stdin.flush()


@contextlib.contextmanager
def open_audience(ddb: Any, table_name: str, connections: int, *, closed: int, unknown: int,
                  post_latency_ms: float) -> Iterator[Audience]:
    """``connections`` open clients, ``closed`` closed again and ``unknown`` made-up ids, each in the table."""
    raise_nofile(2 * (connections + closed) + 1024)
    gateway = sink = None
    try:
        gateway, _, management_url = start_gateway(
            gateway_command(APP_DIR, post_latency_ms=post_latency_ms, workers=8))
        base = management_url.rsplit("/", 1)[0]
        started = time.perf_counter()
        sink = start_process([PYTHON, "-m", "bench.sink", "--url", management_url.replace("http://", "ws://"),
                              "--count", str(connections + closed), "--close", str(closed)])
        read_line(sink, "READY ", timeout=300)
        connect_seconds = time.perf_counter() - started
        deadline = time.monotonic() + 30
        while True:  # the gateway may still be running the closed sockets' $disconnect
            known = invoke(base, "ids")
            if len(known["closed"]) >= closed or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        open_ids = {int(n): cid for n, cid in known["open"].items()}
        check(len(open_ids) == connections, f"{len(open_ids)} sink connections open, expected {connections}")
        check(len(known["closed"]) == closed, f"{len(known['closed'])} closed, expected {closed}")
        closed_ids = sorted(known["closed"].values())
        audience = Audience(
            gateway=gateway, sink=sink, management_url=management_url,
            live=[open_ids[n] for n in sorted(open_ids)], closed=closed_ids,
            gone=closed_ids + [f"Unknown{i:05d}AA=" for i in range(unknown)], connect_seconds=connect_seconds,
            index_of={**{cid: n for n, cid in open_ids.items()},
                      **{cid: int(n) for n, cid in known["closed"].items()}},
            expected={n: 0 for n in open_ids})
        put_records(ddb, table_name, audience.live + audience.gone)
        yield audience
    finally:
        stop_sink(sink, timeout=30)
        if gateway is not None:
            stop_process(gateway)
