"""Handler slots shared fairly: one user's backlog never starves another user.

The gateway runs message handlers on one thread pool. Each connection already
runs its own frames one at a time, but a user with 100 busy connections would
still fill every slot, and a quiet user's handler would then share the one
interpreter lock with all of them. ``FairSlots`` bounds what one key (the
connection's principal, else its id) may hold at once (``per_key``) and hands
free slots out round-robin by key, so a waiting call is at most one turn per
other busy key away from running, beside at most ``per_key`` calls of any one
other key. On AWS every invocation is its own Lambda; this keeps the local
gateway's latency honest for everyone else while one client floods it.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

PER_KEY = 2  # slots one user's handlers may hold at once


class FairSlots:
    """At most ``slots`` holders at once and ``per_key`` per key; waiters served round-robin by key."""

    def __init__(self, slots: int, per_key: int = PER_KEY) -> None:
        if slots < 1 or per_key < 1:
            raise ValueError("slots and per_key must be at least 1")
        self._free = slots
        self._per_key = per_key
        self._held: defaultdict[str, int] = defaultdict(int)
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}
        self._ring: deque[str] = deque()  # keys with waiters, in turn order

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        if self._free > 0 and self._held[key] < self._per_key and key not in self._waiting:
            self._take(key)
        else:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            queue = self._waiting.get(key)
            if queue is None:
                queue = self._waiting[key] = deque()
                self._ring.append(key)
            queue.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._give_back(key)  # handed a slot, then cancelled: pass it on
                raise
        try:
            yield
        finally:
            self._give_back(key)

    def _take(self, key: str) -> None:
        self._free -= 1
        self._held[key] += 1

    def _give_back(self, key: str) -> None:
        self._free += 1
        self._held[key] -= 1
        if not self._held[key]:
            del self._held[key]
        self._grant()

    def _grant(self) -> None:
        """Free slots to the first waiters of the next keys in turn that are under ``per_key``."""
        while self._free > 0 and self._ring:
            for _ in range(len(self._ring)):
                key = self._ring.popleft()
                if self._held[key] < self._per_key:
                    break
                self._ring.append(key)  # at its share: its turn passes
            else:
                return
            queue = self._waiting[key]
            waiter = queue.popleft()
            if queue:
                self._ring.append(key)
            else:
                del self._waiting[key]
            if not waiter.cancelled():
                self._take(key)
                waiter.set_result(None)
