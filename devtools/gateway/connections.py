"""Per-connection state, owned by the gateway's event loop thread.

Everything here is touched only from the loop, so there are no locks beyond
the one serialising frame writes (two management POSTs may interleave).
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
    opened_at: float = field(default_factory=time.monotonic)
    last_active: float = field(default_factory=time.monotonic)
    last_active_ms: int = field(default_factory=now_ms)
    close_info: CloseInfo | None = None
    inbox: asyncio.Queue[Frame | None] = field(default_factory=asyncio.Queue)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
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

    async def send(self, frame: Frame) -> None:
        """Write one frame to the client, or raise ConnectionGone."""
        ws = self.ws
        if self.state is not State.OPEN or ws is None or ws.closed:
            raise ConnectionGone(self.connection_id)
        async with self.send_lock:
            try:
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
            except (ConnectionError, RuntimeError) as error:
                raise ConnectionGone(self.connection_id) from error
