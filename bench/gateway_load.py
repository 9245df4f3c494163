"""4. Gateway load: 1,000 authenticated clients, 20 round trips each, through the real app.

The local gateway (a subprocess) serves the real ``app.py``: every upgrade
runs ``ws_authorizer`` (JWKS from a real HTTP server in this process), every
``$connect`` writes to DynamoDB Local, every ``whoami`` reads the record and
answers through the management API. The clients (``bench.load_client``) are
one more process: all connect at once, then each sends ``whoami`` 20 times,
one after another, checking every reply names its own user.

Reported: time for all to connect, connect p50/p99, round-trip p50/p99,
messages lost (must be 0: a failed check), peak RSS of the gateway process
(psutil, sampled every 50 ms), and that DynamoDB holds no connection after
everyone left.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import (main, PYTHON, ROOT, Result, check, gateway_command, read_line,
                          start_gateway, start_process, stop_process, table)

CLIENTS = 1000
MESSAGES = 20


class _PeakRss:
    """Samples one process's RSS on a thread until stopped."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        import psutil

        self._process = psutil.Process(pid)
        self.start_rss = self._process.memory_info().rss
        self.peak = self.start_rss
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.peak = max(self.peak, self._process.memory_info().rss)
            except Exception:  # noqa: BLE001 - the process ended
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def run(clients: int = CLIENTS, messages: int = MESSAGES) -> Result:
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                        ("AWS_REGION", "us-east-1"), ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
    import boto3

    from chalicelib import schema
    from devtools.dynamodb_local import DynamoDBLocal
    from tests.support.jwt_factory import CLIENT_ID, ISSUER, POOL_ID, JwksServer, KeyPair, TokenFactory

    key = KeyPair.generate("k1")
    factory = TokenFactory(ISSUER, CLIENT_ID, key)
    users = [(f"load{i}", factory.access_token(sub=f"load-user-{i}", username=f"load{i}")) for i in range(clients)]
    result = Result(f"4. gateway load ({clients:,} clients x {messages} whoami round trips, real app)")
    gateway = None
    with DynamoDBLocal() as dynamodb, JwksServer([key]) as jwks, \
            tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        try:
            ddb = boto3.client("dynamodb", endpoint_url=dynamodb.endpoint_url, region_name="us-east-1")
            table_name = f"bench-load-{uuid.uuid4().hex[:8]}"
            schema.create_table(ddb, table_name)
            overrides = {"COGNITO_USER_POOL_ID": POOL_ID, "COGNITO_APP_CLIENT_IDS": CLIENT_ID,
                         "COGNITO_JWKS_URL": jwks.url, "CONNECTIONS_TABLE": table_name,
                         "AWS_ENDPOINT_URL_DYNAMODB": dynamodb.endpoint_url}
            gateway, ws_url, _ = start_gateway(gateway_command(ROOT, authorizer="ws_authorizer", workers=32,
                                                               overrides=overrides))
            rss = _PeakRss(gateway.pid)
            tokens = Path(tmp) / "tokens.json"
            tokens.write_text(json.dumps(users))
            began = time.perf_counter()
            load = start_process([PYTHON, "-m", "bench.load_client", "--url", ws_url, "--tokens", str(tokens),
                                  "--messages", str(messages)], stdin=None)
            try:
                line = read_line(load, "RESULT ", timeout=240)
            finally:
                stop_process(load)
            wall = time.perf_counter() - began
            rss.stop()
            stats: dict[str, Any] = json.loads(line[len("RESULT "):])
            deadline = time.monotonic() + 30
            while True:  # $disconnect removes every record once the clients are gone
                left = ddb.scan(TableName=table_name, Select="COUNT", ConsistentRead=True,
                                FilterExpression="sk = :meta OR begins_with(sk, :topic)",
                                ExpressionAttributeValues={":meta": {"S": "META"}, ":topic": {"S": "TOPIC#"}},
                                )["Count"]  # tombstones and users' counts are bookkeeping, not leftovers
                if left == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        finally:
            if gateway is not None:
                stop_process(gateway)

    expected = clients * messages
    rows = [
        ("clients connected", f"{stats['connected']:,} / {clients:,}"),
        ("all connected in", f"{stats['all_connected_s']:.2f} s"),
        ("connect p50 / p99 / max", f"{stats['connect_p50_ms']:.0f} / {stats['connect_p99_ms']:.0f} / "
                                    f"{stats['connect_max_ms']:.0f} ms"),
        ("round trips", f"{stats['received']:,} / {expected:,} in {stats['exchange_s']:.1f} s "
                        f"({stats['received'] / stats['exchange_s']:,.0f}/s)"),
        ("round trip p50 / p99 / max", f"{stats['rtt_p50_ms']:.1f} / {stats['rtt_p99_ms']:.1f} / "
                                       f"{stats['rtt_max_ms']:.1f} ms"),
        ("messages lost", f"{stats['lost']}"),
        ("gateway RSS start / peak", f"{rss.start_rss / 2**20:.0f} / {rss.peak / 2**20:.0f} MiB"),
        ("records left after all left", f"{left}"),
        ("whole run", f"{wall:.1f} s"),
    ]
    result.tables.append(table(["measure", "value"], rows))
    check(stats["connected"] == clients, f"only {stats['connected']} of {clients} connected: "
                                         f"{stats['connect_errors']}")
    check(stats["lost"] == 0 and stats["received"] == expected,
          f"{stats['lost']} lost, {stats['received']}/{expected} replies: {stats['errors']}")
    check(stats["wrong"] == 0, f"{stats['wrong']} replies named another user: {stats['errors']}")
    check(left == 0, f"{left} connection records left after every client disconnected")
    return result


if __name__ == "__main__":
    main(run)
