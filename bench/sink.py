"""Holds many WebSocket connections and counts what each receives (a benchmark child).

``python -m bench.sink --url ws://... --count N [--close K]`` opens N
connections (``?n=0..N-1``), closes the first K again, prints ``READY <open>``,
then answers commands on stdin, one per line:

* ``COUNTS <expected_total> <timeout_s>``: waits until that many messages
  arrived in total (or the timeout), then prints ``COUNTS <json list>``, the
  number of messages each connection received, by index;
* ``WAIT <expected_total> <timeout_s>``: the same wait, then prints ``WAITED
  <json>``: ``{"total": n, "last": t}``, ``t`` the ``time.monotonic()`` of the
  last arrival (one clock for every process on the machine: the benchmark
  times "push to last delivery" with it);
* ``QUIT``: closes everything and exits.

One process, one event loop: the sockets cost the benchmark's broadcaster no CPU.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiohttp


async def main(args: argparse.Namespace) -> None:
    counts = [0] * args.count
    arrived = asyncio.Event()
    total = 0
    last = 0.0
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))
    sockets: dict[int, aiohttp.ClientWebSocketResponse] = {}
    readers: list[asyncio.Task[None]] = []

    async def read(index: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        nonlocal total, last
        async for message in ws:
            if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                counts[index] += 1
                total += 1
                last = time.monotonic()
                arrived.set()

    gate = asyncio.Semaphore(args.concurrency)

    async def open_one(index: int) -> None:
        async with gate:
            for attempt in range(5):
                try:
                    ws = await session.ws_connect(f"{args.url}?n={index}", autoping=True, heartbeat=None,
                                                  max_msg_size=0)
                    break
                except aiohttp.ClientError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.2 * (attempt + 1))
            sockets[index] = ws
            readers.append(asyncio.ensure_future(read(index, ws)))

    await asyncio.gather(*(open_one(i) for i in range(args.count)))
    for index in range(args.close):
        await sockets.pop(index).close()
    print(f"READY {len(sockets)}", flush=True)

    loop = asyncio.get_running_loop()

    async def wait_total(expected: int, timeout: float) -> None:
        """Until ``expected`` messages arrived in all, or ``timeout`` seconds passed."""
        deadline = loop.time() + timeout
        while total < expected and loop.time() < deadline:
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), timeout=max(0.01, deadline - loop.time()))
            except asyncio.TimeoutError:
                break

    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        words = line.split()
        if not words or words[0] == "QUIT":
            break
        if words[0] == "WAIT":
            await wait_total(int(words[1]), float(words[2]))
            print("WAITED " + json.dumps({"total": total, "last": last}), flush=True)
        elif words[0] == "COUNTS":
            await wait_total(int(words[1]), float(words[2]))
            await asyncio.sleep(0.2)  # late duplicates would show up here
            print("COUNTS " + json.dumps(counts), flush=True)
    await asyncio.gather(*(ws.close() for ws in sockets.values()), return_exceptions=True)
    for task in readers:
        task.cancel()
    await session.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--close", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=100)
    from bench.common import raise_nofile

    raise_nofile(parser.parse_args().count + 512)
    asyncio.run(main(parser.parse_args()))
