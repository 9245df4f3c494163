"""6. One user's fair share: a polite user's round trips, alone and beside a noisy neighbour.

The local gateway (a subprocess) serves the real ``app.py`` on DynamoDB Local.
A polite user sends ``whoami`` frames one after another over one connection
and times each answer: first alone, then while a noisy user keeps 100
connections busy (each sends ``whoami`` again as soon as it is answered).
The gateway hands its handler slots out round-robin by user
(``devtools/gateway/fairness.py``), so the polite user's p50 should stay
within 3x its quiet value. Reported: p50 and p99 in both phases, the ratio,
and the noisy user's answered frames (all of them must come back).
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
import uuid

from bench.common import ROOT, Goal, Result, check, gateway_command, main, start_gateway, stop_process, table

NOISY_CONNECTIONS = 100
POLITE_FRAMES = 60
GOAL = 3.0


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


async def _polite(url: str, token: str, frames: int) -> list[float]:
    import websockets

    waits: list[float] = []
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        for n in range(frames):
            started = time.perf_counter()
            await ws.send(json.dumps({"action": "whoami", "id": n}))
            while json.loads(await asyncio.wait_for(ws.recv(), 30)).get("id") != n:
                pass
            waits.append(time.perf_counter() - started)
            await asyncio.sleep(0.01)
    return waits


async def _noisy(url: str, token: str, stop: asyncio.Event, answered: list[int]) -> None:
    import websockets

    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        while not stop.is_set():
            await ws.send(json.dumps({"action": "whoami"}))
            await asyncio.wait_for(ws.recv(), 60)
            answered[0] += 1


async def _phases(url: str, polite_token: str, noisy_token: str) -> tuple[list[float], list[float], int]:
    quiet = await _polite(url, polite_token, POLITE_FRAMES)
    stop, answered = asyncio.Event(), [0]
    noise = [asyncio.create_task(_noisy(url, noisy_token, stop, answered)) for _ in range(NOISY_CONNECTIONS)]
    await asyncio.sleep(2.0)  # every noisy connection open and busy
    busy = await _polite(url, polite_token, POLITE_FRAMES)
    stop.set()
    await asyncio.gather(*noise)
    return quiet, busy, answered[0]


def run() -> Result:
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                        ("AWS_REGION", "us-east-1"), ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
    import boto3

    from chalicelib import schema
    from devtools.dynamodb_local import DynamoDBLocal
    from tests.support.jwt_factory import CLIENT_ID, ISSUER, POOL_ID, JwksServer, KeyPair, TokenFactory

    key = KeyPair.generate("k1")
    tokens = TokenFactory(ISSUER, CLIENT_ID, key)
    result = Result(f"6. one user's fair share ({NOISY_CONNECTIONS} busy connections of one user beside a polite one)")
    with DynamoDBLocal() as dynamodb, JwksServer([key]) as jwks:
        ddb = boto3.client("dynamodb", endpoint_url=dynamodb.endpoint_url, region_name="us-east-1")
        table_name = f"bench-fair-{uuid.uuid4().hex[:8]}"
        schema.create_table(ddb, table_name)
        overrides = {"COGNITO_USER_POOL_ID": POOL_ID, "COGNITO_APP_CLIENT_IDS": CLIENT_ID, "COGNITO_JWKS_URL": jwks.url,
                     "CONNECTIONS_TABLE": table_name, "AWS_ENDPOINT_URL_DYNAMODB": dynamodb.endpoint_url,
                     "MAX_CONNECTIONS_PER_USER": "0"}
        gateway, ws_url, _ = start_gateway(gateway_command(ROOT, authorizer="ws_authorizer", workers=32,
                                                           overrides=overrides))
        try:
            quiet, busy, answered = asyncio.run(_phases(
                ws_url, tokens.access_token(sub="polite", username="polite"),
                tokens.access_token(sub="noisy", username="noisy")))
        finally:
            stop_process(gateway)
    check(len(quiet) == len(busy) == POLITE_FRAMES, "a polite frame was not answered")
    check(answered > NOISY_CONNECTIONS, f"the noisy user's frames were not answered ({answered})")
    rows = [(label, f"{statistics.median(w) * 1000:.1f}", f"{_percentile(w, 0.99) * 1000:.1f}")
            for label, w in (("polite user alone", quiet), ("polite user, noisy neighbour", busy))]
    result.tables.append(table(["phase", "p50 ms", "p99 ms"], rows))
    result.tables.append(f"  noisy user: {answered:,} frames answered on {NOISY_CONNECTIONS} connections")
    ratio = statistics.median(busy) / statistics.median(quiet)
    result.goals.append(Goal("polite p50 beside a noisy neighbour / alone", ratio, GOAL))
    return result


if __name__ == "__main__":
    main(run)
