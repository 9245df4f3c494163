"""3. Fan-out: one message to 1,000 and 5,000 connections through the management API.

Three processes, so no two share a GIL: the local gateway (``devtools.gateway``
serving ``bench/fanout_app`` with 20 ms added to every ``@connections`` POST),
a sink (``bench.sink``) holding the real WebSocket connections and counting
what each receives, and this process running the project's ``Broadcaster``
with the lean management client, as ``runtime`` wires it.

Every broadcast also names ``GONE`` ids: connections the sink closed (the
gateway answers 410) and ids that never existed. ``on_gone`` is the real
``Stores.delete_connections`` on DynamoDB Local, where every
id has a record: afterwards exactly the gone ids' records must be gone.

Baseline: the one-by-one way most tutorials use, one boto3 ``post_to_connection`` after another,
timed on a sample of ``SEQUENTIAL_SAMPLE`` posts and extrapolated (stated as
such in the table). Lost messages, a wrong gone set or a wrong table fail the
run; a missed rate goal is reported as MISSED.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any

from bench.audience import open_audience, put_records, stored_ids, use_bench_credentials
from bench.common import Result, check, main, table

SIZES = (1000, 5000)
CLOSED = 50  # sink connections closed before the broadcasts (410 Gone)
UNKNOWN = 50  # ids that never existed (410 Gone)
SEQUENTIAL_SAMPLE = 200
POST_LATENCY_MS = 20.0


def run(sizes: tuple[int, ...] = SIZES) -> Result:
    use_bench_credentials()
    import boto3

    from chalicelib import aws, schema
    from chalicelib.broadcaster import Broadcaster
    from tests.support.dynamodb import Stores
    from devtools.dynamodb_local import DynamoDBLocal

    biggest = max(sizes)
    result = Result(f"3. fan-out ({POST_LATENCY_MS:g} ms added per post)")
    with DynamoDBLocal() as dynamodb:
        ddb = boto3.client("dynamodb", endpoint_url=dynamodb.endpoint_url, region_name="us-east-1")
        table_name = f"bench-fanout-{uuid.uuid4().hex[:8]}"
        schema.create_table(ddb, table_name)
        stores = Stores(table_name, client=ddb)
        with open_audience(ddb, table_name, biggest, closed=CLOSED, unknown=UNKNOWN,
                           post_latency_ms=POST_LATENCY_MS) as audience:
            live, gone = audience.live, audience.gone
            sequential_rate, sequential_seconds = audience.sequential_rate(SEQUENTIAL_SAMPLE)

            broadcaster = Broadcaster(aws.Clients().management(audience.management_url),
                                      on_gone=stores.connections.delete_many)
            broadcaster.send(live[-1], b"warm-up")  # the pool's first thread and connection
            audience.expect([live[-1]])
            rows: list[tuple[Any, ...]] = [(
                f"sequential boto3 loop ({SEQUENTIAL_SAMPLE}-post sample, extrapolated)",
                SEQUENTIAL_SAMPLE, 0, sequential_seconds / SEQUENTIAL_SAMPLE * biggest, sequential_rate, 1.0, "-")]
            rate_at: dict[int, float] = {}
            for size in sizes:
                targets = live[:size]
                ids = audience.with_gone(targets)
                if size != sizes[0]:
                    put_records(ddb, table_name, gone)  # the previous broadcast deleted them
                began = time.perf_counter()
                report = broadcaster.broadcast(ids, json.dumps({"type": "fanout", "size": size}))
                seconds = time.perf_counter() - began
                failed = dict(list(report.failed.items())[:5])
                check(not report.failed, f"broadcast to {size}: failed posts {failed}")
                check(sorted(report.delivered) == sorted(targets), f"broadcast to {size}: delivered set is wrong")
                check(sorted(report.gone) == sorted(gone), f"broadcast to {size}: gone set is wrong")
                stored = stored_ids(ddb, table_name)
                check(not stored & set(gone), f"broadcast to {size}: {len(stored & set(gone))} gone records left")
                check(stored == set(live), f"broadcast to {size}: live records were removed")
                audience.expect(targets)
                rate = len(ids) / seconds
                rate_at[size] = rate
                rows.append((f"Broadcaster, {size:,} live + {len(gone)} gone", len(ids), len(report.gone),
                             seconds, rate, rate / sequential_rate, "removed"))
            broadcaster.close()

            tally = audience.tally()
            result.tables.append(
                f"  {biggest:,} open WebSocket connections in a sink process (+{CLOSED} closed, +{UNKNOWN} "
                f"unknown ids), opened in {audience.connect_seconds:.1f} s; gateway and broadcaster in separate "
                "processes")
            result.tables.append(table(["method", "posts", "gone", "seconds", "posts/s", "x sequential",
                                        "gone records"], rows))
            result.tables.append(f"  {tally.line()}")
            check(tally.lost == 0, f"{tally.lost} messages lost")
            check(tally.duplicates == 0 and tally.to_closed == 0,
                  f"{tally.duplicates} duplicates, {tally.to_closed} to closed connections")
            # Reported, not a goal: on boto3 the figure is what it is (~14-21x); scale past
            # one Lambda comes from the SQS workers (bench.fanout_queued), not a faster client.
            result.notes.append(f"fan-out rate at {biggest:,} / sequential: "
                                f"{rate_at[biggest] / sequential_rate:.2f}x; posts/s at {biggest:,}: "
                                f"{rate_at[biggest]:,.0f} (sequential: {sequential_rate:,.1f})")
    return result


if __name__ == "__main__":
    main(run)
