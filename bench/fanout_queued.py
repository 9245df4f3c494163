"""5. Queued fan-out: one broadcast to 10,000 connections, inline and through SQS workers.

The setup of ``bench.fanout`` at 10,000: the local gateway (a subprocess,
``bench/fanout_app``, 20 ms added to every ``@connections`` POST), a sink
process holding 10,000 real WebSocket connections (+100 it closed again:
410), 100 ids that never existed (410), a record for every id in DynamoDB
Local. Measured side by side, in one run:

- the seeds' sequential boto3 loop (a 200-post sample, extrapolated);
- the project's inline ``Broadcaster`` in this one process (what a Lambda
  does for an audience up to ``FANOUT_INLINE_MAX``);
- the queued path: ``ConnectionService.push`` writes the broadcast's work
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

from bench.common import (main, stop_sink, PYTHON, ROOT, Goal, Result, check, gateway_command, raise_nofile, read_line,
                          start_gateway, start_process, stop_process, table)
from bench.fanout import APP_DIR, _invoke, _put_records, _stored_ids

CONNECTIONS = 10_000
CLOSED = 100
UNKNOWN = 100
SEQUENTIAL_SAMPLE = 200
POST_LATENCY_MS = 20.0
SEGMENT_SIZE = 500
WORKERS = (1, 2, 4)


def _wait(sink: Any, total: int, timeout: float = 300) -> float:
    """Until the sink holds ``total`` messages; the monotonic time of the last arrival."""
    sink.stdin.write(f"WAIT {total} {timeout}\n")
    sink.stdin.flush()
    answer = json.loads(read_line(sink, "WAITED ", timeout=timeout + 30)[len("WAITED "):])
    check(answer["total"] >= total, f"only {answer['total']} of {total} messages arrived within {timeout:.0f} s")
    return float(answer["last"])


def run(connections: int = CONNECTIONS, workers: tuple[int, ...] = WORKERS) -> Result:
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                        ("AWS_REGION", "us-east-1"), ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
    import boto3

    from chalicelib import aws, runtime, schema
    from chalicelib.broadcaster import Broadcaster
    from chalicelib.push import Push
    from devtools.dynamodb_local import DynamoDBLocal
    from devtools.gateway.appload import load_app
    from devtools.moto_server import MotoServer
    from devtools.sqs_mapping import SqsEventSourceMapping, create_queues

    raise_nofile(2 * (connections + CLOSED) + 1024)
    result = Result(f"5. queued fan-out ({connections:,} connections, {POST_LATENCY_MS:g} ms added per post)")
    gateway = sink = None
    saved_env = dict(os.environ)
    with DynamoDBLocal() as dynamodb, MotoServer() as moto:
        try:
            ddb = boto3.client("dynamodb", endpoint_url=dynamodb.endpoint_url, region_name="us-east-1")
            table_name = f"bench-queued-{uuid.uuid4().hex[:8]}"
            schema.create_table(ddb, table_name)
            sqs = boto3.client("sqs", endpoint_url=moto.endpoint_url, region_name="us-east-1")
            queues = create_queues(sqs, "bench-fanout", visibility_timeout=120, max_receive_count=3)

            gateway, _, management_url = start_gateway(
                gateway_command(APP_DIR, post_latency_ms=POST_LATENCY_MS, workers=8))
            ws_url = management_url.replace("http://", "ws://")
            base = management_url.rsplit("/", 1)[0]
            began = time.perf_counter()
            sink = start_process([PYTHON, "-m", "bench.sink", "--url", ws_url, "--count",
                                  str(connections + CLOSED), "--close", str(CLOSED)])
            read_line(sink, "READY ", timeout=300)
            connect_seconds = time.perf_counter() - began
            deadline = time.monotonic() + 30
            while True:  # the gateway may still be running the closed sockets' $disconnect
                known = _invoke(base, "ids")
                if len(known["closed"]) >= CLOSED or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            open_ids = {int(n): cid for n, cid in known["open"].items()}
            check(len(open_ids) == connections, f"{len(open_ids)} sink connections open, expected {connections}")
            live = [open_ids[n] for n in sorted(open_ids)]
            gone = sorted(known["closed"].values()) + [f"Unknown{i:05d}AA=" for i in range(UNKNOWN)]
            _put_records(ddb, table_name, live + gone)
            index_of = {cid: n for n, cid in open_ids.items()}
            expected = {n: 0 for n in open_ids}
            total = 0

            # The app (real app.py) as the worker processes and the enqueuer see it.
            os.environ.update({
                "COGNITO_USER_POOL_ID": "us-east-1_Bench0", "COGNITO_APP_CLIENT_IDS": "bench",
                "CONNECTIONS_TABLE": table_name, "AWS_ENDPOINT_URL_DYNAMODB": dynamodb.endpoint_url,
                "AWS_ENDPOINT_URL_SQS": moto.endpoint_url, "WEBSOCKET_MANAGEMENT_URL": management_url,
                "FANOUT_QUEUE_URL": queues["queue_url"], "FANOUT_INLINE_MAX": "100",
                "FANOUT_SEGMENT_SIZE": str(SEGMENT_SIZE), "LOG_LEVEL": "WARNING"})
            runtime.reset()
            aws.reset_clients()
            from chalicelib.logs import configure

            configure("WARNING")  # one line per push and per item otherwise

            # 1. The seeds' loop, one boto3 post after another, on a sample.
            seeds = boto3.client("apigatewaymanagementapi", endpoint_url=management_url, region_name="us-east-1")
            seeds.post_to_connection(ConnectionId=live[-1], Data=b"warm-up")
            sample = live[:SEQUENTIAL_SAMPLE]
            started = time.perf_counter()
            for cid in sample:
                seeds.post_to_connection(ConnectionId=cid, Data=b'{"type":"sequential"}')
            sequential_rate = len(sample) / (time.perf_counter() - started)
            for cid in [live[-1], *sample]:
                expected[index_of[cid]] += 1
            total += len(sample) + 1
            _wait(sink, total)
            everyone = len(live) + len(gone)
            rows: list[tuple[Any, ...]] = [(f"sequential boto3 loop ({len(sample)}-post sample, extrapolated)",
                                            everyone, everyone / sequential_rate, sequential_rate, 1.0, "-")]

            import psutil

            watched = {"gateway": psutil.Process(gateway.pid), "sink": psutil.Process(sink.pid),
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
                cpu_rows.append((label, *(f"{used.get(n, 0.0):.2f}" for n in columns), f"{sum(used.values()):.2f}"))

            def record_run(label: str, seconds: float) -> float:
                for cid in live:
                    expected[index_of[cid]] += 1
                stored = _stored_ids(ddb, table_name)
                check(not stored & set(gone), f"{label}: {len(stored & set(gone))} gone records left")
                check(stored == set(live), f"{label}: live records were removed")
                rate = everyone / seconds
                rows.append((label, everyone, seconds, rate, rate / sequential_rate, f"{len(gone)} removed"))
                _put_records(ddb, table_name, gone)  # for the next run
                return rate

            # 2. The inline broadcaster, in this one process.
            broadcaster = Broadcaster(aws.management_client(management_url), on_gone=runtime.service().repository
                                      .delete_connections)
            broadcaster.send(live[-1], b"warm-up")
            expected[index_of[live[-1]]] += 1
            total += 1
            _wait(sink, total)
            ids = live + gone
            ids = [ids[i] for i in sorted(range(len(ids)), key=lambda i: (i * 7919) % len(ids))]  # gone mixed in
            before = cpu_now()
            started = time.monotonic()
            report = broadcaster.broadcast(ids, json.dumps({"type": "inline"}))
            check(not report.failed, f"inline: failed posts {dict(list(report.failed.items())[:5])}")
            total += len(live)
            seconds = _wait(sink, total) - started
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
                    queued = runtime.service().push(Push("all", {"workers": count}))
                    items = queued.queued
                    check(items > 0, f"the broadcast was not queued: {queued.counts()}")
                    total += len(live)
                    seconds = _wait(sink, total) - started
                    deadline = time.monotonic() + 30
                    while mapping.invocations < items and time.monotonic() < deadline:
                        time.sleep(0.05)  # the last items' gone clean-up
                    check(mapping.failures == 0, f"{mapping.failures} worker invocations failed")
                    record_cpu(f"queued, {count} worker{'s' if count > 1 else ''}", before, cpu_now(pool_pids), seconds)
                finally:
                    mapping.stop()
                rate_at[count] = record_run(f"queued, {count} worker process{'es' if count > 1 else ''} "
                                            f"({items} items)", seconds)

            sink.stdin.write(f"COUNTS {total} 30\n")
            sink.stdin.flush()
            counts = json.loads(read_line(sink, "COUNTS ", timeout=60)[len("COUNTS "):])
            lost = sum(max(0, expected[n] - counts[n]) for n in expected)
            extra = sum(max(0, counts[n] - expected[n]) for n in expected)
            closed_got = sum(counts[int(n)] for n in known["closed"])
            dlq = sqs.get_queue_attributes(QueueUrl=queues["dlq_url"], AttributeNames=["ApproximateNumberOfMessages"])
            result.tables.append(
                f"  {connections:,} open WebSocket connections in a sink process (+{CLOSED} closed, +{UNKNOWN} unknown "
                f"ids), opened in {connect_seconds:.1f} s; gateway, sink, workers, DynamoDB Local and moto: separate "
                f"processes on {os.cpu_count()} CPUs")
            result.tables.append(table(["method", "posts", "push to last delivery s", "posts/s", "x sequential",
                                        "gone records"], rows))
            result.tables.append("  CPU used during each run, in cores (CPU seconds / run seconds; this machine has "
                                 f"{os.cpu_count()}; the system and other jobs use the rest):")
            result.tables.append(table(["run", *columns, "total"], cpu_rows))
            result.tables.append(f"  messages expected {sum(expected.values()):,}, received {sum(counts):,}, lost {lost}, "
                                 f"duplicates {extra}, to closed connections {closed_got}; DLQ "
                                 f"{dlq['Attributes']['ApproximateNumberOfMessages']}")
            check(lost == 0, f"{lost} messages lost")
            check(closed_got == 0, f"{closed_got} messages to closed connections")
            result.goals.append(Goal("queued, 1 worker / sequential", rate_at[workers[0]] / sequential_rate, 10.0,
                                     higher_is_better=True))
            if 2 in rate_at:
                result.goals.append(Goal("queued, 2 workers / (2 x 1 worker)", rate_at[2] / (2 * rate_at[1]), 0.8,
                                         higher_is_better=True))
            result.notes.append(f"posts/s per worker (1 worker): {rate_at[workers[0]]:,.0f}; inline: {inline_rate:,.0f}; "
                                f"sequential: {sequential_rate:,.1f}; duplicates delivered: {extra}")
            for count in workers[1:]:
                result.notes.append(f"{count} workers / 1 worker: {rate_at[count] / rate_at[workers[0]]:.2f}x")
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            runtime.reset()
            stop_sink(sink, timeout=30)
            if gateway is not None:
                stop_process(gateway)
            aws.reset_clients()
    return result


if __name__ == "__main__":
    import sys

    size = int(sys.argv[1]) if len(sys.argv) > 1 else CONNECTIONS
    main(lambda: run(size))
