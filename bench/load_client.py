"""1,000 authenticated WebSocket clients in one process (a benchmark child).

``python -m bench.load_client --url ws://... --tokens FILE --messages 20``:
FILE holds ``[[username, token], ...]``. All clients connect at once (token
in ``Authorization: Bearer``), then each sends ``{"action": "whoami"}``
``--messages`` times, one after another, waiting for its reply (timeout
``--timeout``; a reply that never comes counts as lost). Prints
``RESULT {json}`` with connect times, round-trip times and counts.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import aiohttp


async def client(session: aiohttp.ClientSession, url: str, username: str, token: str, messages: int,
                 timeout: float, start_messages: asyncio.Event, stats: dict[str, Any]) -> None:
    began = time.perf_counter()
    try:
        ws = await session.ws_connect(url, headers={"Authorization": f"Bearer {token}"}, autoping=True,
                                      heartbeat=None)
    except aiohttp.ClientError as error:
        stats["connect_errors"].append(type(error).__name__ + ": " + str(error)[:100])
        return
    stats["connect"].append(time.perf_counter() - began)
    try:
        await start_messages.wait()
        for _ in range(messages):
            sent = time.perf_counter()
            await ws.send_str('{"action": "whoami"}')
            stats["sent"] += 1
            try:
                reply = await ws.receive(timeout=timeout)
            except asyncio.TimeoutError:
                stats["lost"] += 1
                continue
            if reply.type is not aiohttp.WSMsgType.TEXT:
                stats["lost"] += 1
                stats["errors"].append(f"{username}: {reply.type.name}")
                break
            body = json.loads(reply.data)
            if body.get("type") != "whoami" or body["identity"]["username"] != username:
                stats["wrong"] += 1
                stats["errors"].append(f"{username}: unexpected reply {reply.data[:120]}")
                continue
            stats["received"] += 1
            stats["rtt"].append(time.perf_counter() - sent)
    finally:
        await ws.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))]


async def main(args: argparse.Namespace) -> None:
    with open(args.tokens, encoding="utf-8") as handle:
        users = json.load(handle)
    stats: dict[str, Any] = {"connect": [], "rtt": [], "sent": 0, "received": 0, "lost": 0, "wrong": 0,
                             "errors": [], "connect_errors": []}
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    start_messages = asyncio.Event()
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        began = time.perf_counter()
        tasks = [asyncio.ensure_future(client(session, args.url, name, token, args.messages, args.timeout,
                                              start_messages, stats)) for name, token in users]
        while len(stats["connect"]) + len(stats["connect_errors"]) < len(users):
            await asyncio.sleep(0.01)
            if all(task.done() for task in tasks):
                break
        all_connected = time.perf_counter() - began
        began = time.perf_counter()
        start_messages.set()
        await asyncio.gather(*tasks)
        exchange = time.perf_counter() - began
    ms = 1000.0
    print("RESULT " + json.dumps({
        "clients": len(users),
        "connected": len(stats["connect"]),
        "connect_errors": stats["connect_errors"][:5],
        "connect_error_count": len(stats["connect_errors"]),
        "all_connected_s": all_connected,
        "connect_p50_ms": percentile(stats["connect"], 50) * ms,
        "connect_p99_ms": percentile(stats["connect"], 99) * ms,
        "connect_max_ms": max(stats["connect"], default=float("nan")) * ms,
        "exchange_s": exchange,
        "sent": stats["sent"],
        "received": stats["received"],
        "lost": stats["lost"],
        "wrong": stats["wrong"],
        "errors": stats["errors"][:5],
        "rtt_p50_ms": percentile(stats["rtt"], 50) * ms,
        "rtt_p99_ms": percentile(stats["rtt"], 99) * ms,
        "rtt_max_ms": max(stats["rtt"], default=float("nan")) * ms,
    }), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=30.0)
    from bench.common import raise_nofile

    arguments = parser.parse_args()
    raise_nofile(4096)
    asyncio.run(main(arguments))
