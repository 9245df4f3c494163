"""5. Queued fan-out: one broadcast to 10,000 connections, inline and through SQS workers.

The setup of ``bench.fanout`` at 10,000: the local gateway (a subprocess,
``bench/fanout_app``, 20 ms added to every ``@connections`` POST), a sink
process holding 10,000 real WebSocket connections (+100 it closed again:
410), 100 ids that never existed (410), a record for every id in DynamoDB
Local. Measured side by side, in one run:

- the one-by-one boto3 loop most tutorials use (a 200-post sample, extrapolated);
- the project's inline ``Broadcaster`` in this one process (what a Lambda
  does for an audience up to ``FANOUT_INLINE_MAX``);
- the queued path: ``pushes.push`` writes the broadcast's work
  items (one per scan segment, ``FANOUT_SEGMENT_SIZE`` = 500) to moto's SQS
  queue, and ``devtools.sqs_mapping`` (the local event source mapping) runs
  the real ``app.fanout_worker`` with 1, 2 and 4 worker processes.

Timed: from the push to the sink's last arrival (one monotonic clock for
every process). Checked: no message lost, no duplicate, every gone record
removed and no live one; duplicates are reported (a redelivered item would
show here), not allowed.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

from bench.audience import open_audience, put_records, stored_ids, use_bench_credentials
from bench.common import ROOT, Goal, Result, check, main, table

CONNECTIONS = 10_000
CLOSED = 100
UNKNOWN = 100
SEQUENTIAL_SAMPLE = 200
POST_LATENCY_MS = 20.0
SEGMENT_SIZE = 500
WORKERS = (1, 2, 4)


def run(connections: int = CONNECTIONS, workers: tuple[int, ...] = WORKERS) -> Result:
    use_bench_credentials()
    import boto3
    import psutil

    from chalicelib import aws, pushes, runtime, schema
    from chalicelib.audience import Everyone
    from chalicelib.broadcaster import Broadcaster
    from chalicelib.logs import configure
    from chalicelib.push import Push
    from devtools.dynamodb_local import DynamoDBLocal
    from devtools.gateway.appload import load_app
    from devtools.moto_server import MotoServer
    from devtools.sqs_mapping import SqsEventSourceMapping, create_queues

    result = Result(f"5. queued fan-out ({connections:,} connections, {POST_LATENCY_MS:g} ms added per post)")
    saved_env = dict(os.environ)
    with DynamoDBLocal() as dynamodb, MotoServer() as moto:
        ddb = boto3.client("dynamodb", endpoint_url=dynamodb.endpoint_url, region_name="us-east-1")
        table_name = f"bench-queued-{uuid.uuid4().hex[:8]}"
        schema.create_table(ddb, table_name)
        sqs = boto3.client("sqs", endpoint_url=moto.endpoint_url, region_name="us-east-1")
        queues = create_queues(sqs, "bench-fanout", visibility_timeout=120, max_receive_count=3)
        try:
            with open_audience(ddb, table_name, connections, closed=CLOSED, unknown=UNKNOWN,
                               post_latency_ms=POST_LATENCY_MS) as audience:
                live, gone = audience.live, audience.gone
                # The app (real app.py) as the worker processes and the enqueuer see it.
                os.environ.update({
                    "COGNITO_USER_POOL_ID": "us-east-1_Bench0", "COGNITO_APP_CLIENT_IDS": "bench",
                    "CONNECTIONS_TABLE": table_name, "AWS_ENDPOINT_URL_DYNAMODB": dynamodb.endpoint_url,
                    "AWS_ENDPOINT_URL_SQS": moto.endpoint_url, "WEBSOCKET_MANAGEMENT_URL": audience.management_url,
                    "FANOUT_QUEUE_URL": queues["queue_url"], "FANOUT_INLINE_MAX": "100",
                    "FANOUT_SEGMENT_SIZE": str(SEGMENT_SIZE), "LOG_LEVEL": "WARNING"})
                runtime.rebuild()
                configure("WARNING")  # one line per push and per item otherwise

                # 1. The one-by-one loop, one boto3 post after another, on a sample.
                sequential_rate, _ = audience.sequential_rate(SEQUENTIAL_SAMPLE)
                audience.wait()
                everyone = len(live) + len(gone)
                rows: list[tuple[Any, ...]] = [(f"sequential boto3 loop ({SEQUENTIAL_SAMPLE}-post sample, "
                                                "extrapolated)", everyone, everyone / sequential_rate,
                                                sequential_rate, 1.0, "-")]

                watched = {"gateway": psutil.Process(audience.gateway.pid), "sink": psutil.Process(audience.sink.pid),
                           "this process": psutil.Process(), "DynamoDB Local": psutil.Process(dynamodb.process.pid),
                           "moto": psutil.Process(moto.pid)}
                columns = ("gateway", "sink", "this process", "DynamoDB Local", "moto", "workers")
                cpu_rows: list[tuple[Any, ...]] = []

                def cpu_now(extra: dict[str, list[int]] | None = None) -> dict[str, float]:
                    """CPU seconds (user + system) so far of each watched process and of ``extra``."""
                    seen = {name: sum(p.cpu_times()[:2]) for name, p in watched.items()}
                    for name, pids in (extra or {}).items():
                        seen[name] = sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)
                    return seen

                def record_cpu(label: str, before: dict[str, float], after: dict[str, float], seconds: float) -> None:
                    used = {name: (after[name] - before[name]) / seconds for name in after}
                    cpu_rows.append((label, *(f"{used.get(n, 0.0):.2f}" for n in columns),
                                     f"{sum(used.values()):.2f}"))

                def record_run(label: str, seconds: float) -> float:
                    stored = stored_ids(ddb, table_name)
                    check(not stored & set(gone), f"{label}: {len(stored & set(gone))} gone records left")
                    check(stored == set(live), f"{label}: live records were removed")
                    rate = everyone / seconds
                    rows.append((label, everyone, seconds, rate, rate / sequential_rate, f"{len(gone)} removed"))
                    put_records(ddb, table_name, gone)  # for the next run
                    return rate

                # 2. The inline broadcaster, in this one process.
                broadcaster = Broadcaster(aws.Clients().management(audience.management_url),
                                          on_gone=runtime.current().components.connections.delete_many)
                broadcaster.send(live[-1], b"warm-up")
                audience.expect([live[-1]])
                audience.wait()
                ids = audience.with_gone(live)
                before = cpu_now()
                started = time.monotonic()
                report = broadcaster.broadcast(ids, json.dumps({"type": "inline"}))
                check(not report.failed, f"inline: failed posts {dict(list(report.failed.items())[:5])}")
                audience.expect(live)
                seconds = audience.wait() - started
                record_cpu("inline Broadcaster", before, cpu_now(), seconds)
                inline_rate = record_run("inline Broadcaster, one process", seconds)
                broadcaster.close()

                # 3. Queued: the real push path enqueues; N worker processes run app.fanout_worker.
                _, app = load_app(str(ROOT))
                rate_at: dict[int, float] = {}
                items = 0
                for count in workers:
                    mapping = SqsEventSourceMapping(app, str(ROOT), "dev", sqs, workers=count)
                    mapping.start()  # processes spawned and the app imported before the clock starts
                    pool_pids = {"workers": mapping.worker_pids()}
                    try:
                        before = cpu_now(pool_pids)
                        started = time.monotonic()
                        queued = pushes.push(Push(Everyone(), {"workers": count}), runtime.current().components)
                        items = queued.queued
                        check(items > 0, f"the broadcast was not queued: {queued.counts()}")
                        audience.expect(live)
                        seconds = audience.wait() - started
                        deadline = time.monotonic() + 30
                        while mapping.invocations < items and time.monotonic() < deadline:
                            time.sleep(0.05)  # the last items' gone clean-up
                        check(mapping.failures == 0, f"{mapping.failures} worker invocations failed")
                        record_cpu(f"queued, {count} worker{'s' if count > 1 else ''}", before, cpu_now(pool_pids),
                                   seconds)
                    finally:
                        mapping.stop()
                    rate_at[count] = record_run(f"queued, {count} worker process{'es' if count > 1 else ''} "
                                                f"({items} items)", seconds)

                tally = audience.tally()
                dlq = sqs.get_queue_attributes(QueueUrl=queues["dlq_url"],
                                               AttributeNames=["ApproximateNumberOfMessages"])
                result.tables.append(
                    f"  {connections:,} open WebSocket connections in a sink process (+{CLOSED} closed, +{UNKNOWN} "
                    f"unknown ids), opened in {audience.connect_seconds:.1f} s; gateway, sink, workers, DynamoDB "
                    f"Local and moto: separate processes on {os.cpu_count()} CPUs")
                result.tables.append(table(["method", "posts", "push to last delivery s", "posts/s", "x sequential",
                                            "gone records"], rows))
                result.tables.append("  CPU used during each run, in cores (CPU seconds / run seconds; this machine "
                                     f"has {os.cpu_count()}; the system and other jobs use the rest):")
                result.tables.append(table(["run", *columns, "total"], cpu_rows))
                result.tables.append(f"  {tally.line()}; DLQ {dlq['Attributes']['ApproximateNumberOfMessages']}")
                check(tally.lost == 0, f"{tally.lost} messages lost")
                check(tally.to_closed == 0, f"{tally.to_closed} messages to closed connections")
                result.goals.append(Goal("queued, 1 worker / sequential", rate_at[workers[0]] / sequential_rate, 10.0,
                                         higher_is_better=True))
                if 2 in rate_at:
                    result.goals.append(Goal("queued, 2 workers / (2 x 1 worker)", rate_at[2] / (2 * rate_at[1]),
                                             0.8, higher_is_better=True))
                result.notes.append(f"posts/s per worker (1 worker): {rate_at[workers[0]]:,.0f}; inline: "
                                    f"{inline_rate:,.0f}; sequential: {sequential_rate:,.1f}; duplicates delivered: "
                                    f"{tally.duplicates}")
                for count in workers[1:]:
                    result.notes.append(f"{count} workers / 1 worker: {rate_at[count] / rate_at[workers[0]]:.2f}x")
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            runtime.rebuild()
    return result


if __name__ == "__main__":
    import sys

    size = int(sys.argv[1]) if len(sys.argv) > 1 else CONNECTIONS
    main(lambda: run(size))
