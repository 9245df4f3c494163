"""SIGINT/SIGTERM for the dev servers' event loops, without losing a signal.

``loop.add_signal_handler`` carries the signal number through the loop's
self-pipe, the same socket ``call_soon_threadsafe`` writes a byte to. When
hundreds of executor threads finish at once (1,000 ``$disconnect`` handlers,
say), that small socket fills, the signal's byte is dropped with "Exception
ignored when trying to write to the signal wakeup fd", and the handler never
runs: the server ignores the SIGTERM and has to be killed (CPython issue
#74224). Here the signal is remembered by Python's own per-signal flag (a
``signal.signal`` handler, which always runs in the main thread), and a
socket of our own, written to only by signals, wakes the loop.
"""
from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_event(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[asyncio.Event]:
    """An event set on the running loop when one of ``signals`` arrives.

    Call from the main thread inside a running loop; the previous handlers
    and wakeup fd are put back on exit.
    """
    loop = asyncio.get_running_loop()
    event = asyncio.Event()
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)

    def drain() -> None:
        with contextlib.suppress(OSError):
            reader.recv(4096)

    def handle(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(event.set)

    loop.add_reader(reader.fileno(), drain)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous = {signum: signal.signal(signum, handle) for signum in signals}
    try:
        yield event
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_fd)
        loop.remove_reader(reader.fileno())
        reader.close()
        writer.close()


__all__ = ["STOP_SIGNALS", "stop_event"]
