"""Per-connection state, owned by the gateway's event loop thread.

Everything here is touched only from the loop, so there are no locks. Each
open connection has two bounded queues (see ``Limits``):

* ``inbox``: frames received and not yet handed to a handler; one worker
  task per connection takes them in order. Once the connection is closing,
  queued frames are dropped instead of run (``Inbound.started`` marks the
  one frame that arrived while the worker was idle: it counts as started,
  as it would have on API Gateway, which invokes a message as it arrives).
* ``outbox``: frames to send (management POSTs, the gateway's error frames);
  one writer task per connection writes them in order, each write bounded
  by ``write_timeout``. Nobody else waits on a client's socket, so a client
  that stops reading stalls nothing but its own writer.
"""
from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field
from typing import Union

from aiohttp import web

from .events import Api, ClientInfo, now_ms

Frame = Union[str, bytes]


class State(enum.Enum):
    CONNECTING = "connecting"  # authorizer passed, $connect running: not yet postable
    OPEN = "open"
    CLOSING = "closing"  # close decided (by either side); $disconnect pending
    CLOSED = "closed"


class ConnectionGone(Exception):
    """The connection is not open: the management API answers 410."""


class OutboxFull(Exception):
    """The connection's outgoing queue is full: the management API answers 429."""


@dataclass(frozen=True)
class Inbound:
    """One received frame; ``started`` if it arrived while the worker was idle."""

    frame: Frame
    size: int
    started: bool = False


def frame_size(frame: Frame) -> int:
    return len(frame) if isinstance(frame, bytes) else len(frame.encode("utf-8"))


@dataclass(frozen=True)
class CloseInfo:
    """Why a connection ended: the close frame's code and reason, and a log note."""

    code: int
    reason: str
    cause: str


@dataclass(eq=False)
class Connection:
    api: Api
    client: ClientInfo
    state: State = State.CONNECTING
    ws: web.WebSocketResponse | None = None
    transport: asyncio.BaseTransport | None = None  # the socket, to abort a stalled client
    opened_at: float = field(default_factory=time.monotonic)
    last_active: float = field(default_factory=time.monotonic)
    last_active_ms: int = field(default_factory=now_ms)
    close_info: CloseInfo | None = None
    max_outbox_bytes: int = 1024 * 1024
    inbox: asyncio.Queue[Inbound | None] = field(default_factory=asyncio.Queue)
    inbox_bytes: int = 0
    handling: bool = False  # the worker is running (or about to run) a frame
    dropped: int = 0  # queued frames not run because the connection closed
    outbox: asyncio.Queue[tuple[Frame, int]] = field(default_factory=asyncio.Queue)
    outbox_bytes: int = 0  # queued plus being written
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def connection_id(self) -> str:
        return self.client.connection_id

    def touch(self) -> None:
        self.last_active = time.monotonic()
        self.last_active_ms = now_ms()

    def decide_close(self, info: CloseInfo) -> bool:
        """Record the first reason the connection ends; later ones are ignored."""
        if self.close_info is not None:
            return False
        self.close_info = info
        if self.state in (State.CONNECTING, State.OPEN):
            self.state = State.CLOSING
        return True

    def receive(self, frame: Frame) -> None:
        """Queue a received frame for the worker (bounds are the caller's job).

        Sizes are ``len(frame)``: bytes for binary, characters for text.
        """
        size = len(frame)
        started = not self.handling and self.inbox.empty()
        self.inbox_bytes += size
        self.inbox.put_nowait(Inbound(frame, size, started))

    def offer(self, frame: Frame, size: int | None = None) -> None:
        """Queue one frame for the client, or raise ConnectionGone / OutboxFull.

        Never waits for the client: the writer task sends it. ``size`` is the
        frame's length in bytes (computed if not given). An empty queue always
        takes the frame, whatever its size.
        """
        ws = self.ws
        if self.state is not State.OPEN or ws is None or ws.closed:
            raise ConnectionGone(self.connection_id)
        if size is None:
            size = frame_size(frame)
        if self.outbox_bytes and self.outbox_bytes + size > self.max_outbox_bytes:
            raise OutboxFull(self.connection_id)
        self.outbox_bytes += size
        self.outbox.put_nowait((frame, size))

    async def write(self, frame: Frame) -> None:
        """Write one frame to the socket (the writer task's job; may wait on a slow client)."""
        ws = self.ws
        assert ws is not None
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)

    def written(self, size: int) -> None:
        """The writer is done with a frame of ``size`` bytes (sent or discarded)."""
        self.outbox_bytes -= size
        self.outbox.task_done()

    def discard_outbox(self) -> int:
        """Forget every frame not yet written; returns how many."""
        count = 0
        while not self.outbox.empty():
            _, size = self.outbox.get_nowait()
            self.written(size)
            count += 1
        return count
