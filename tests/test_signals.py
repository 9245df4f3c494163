"""devtools.signals: a SIGTERM is never lost, even while threads flood the loop."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The loop is held busy while 40 threads each call call_soon_threadsafe 500
# times (enough to fill the loop's self-pipe many times over); SIGTERM arrives
# in the middle of that burst, as it did when 1,000 $disconnect handlers
# finished just before a test stopped the gateway.
SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys, threading, time
    from devtools.signals import stop_event

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with stop_event() as stop:
            def flood() -> None:
                for _ in range(500):
                    loop.call_soon_threadsafe(lambda: None)

            threads = [threading.Thread(target=flood) for _ in range(40)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            os.kill(os.getpid(), signal.SIGTERM)  # the loop is not reading: it is running this
            time.sleep(0.2)
            await asyncio.wait_for(stop.wait(), 10)
        print("stopped", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)

    asyncio.run(main())
    """
)


def test_sigterm_during_a_burst_of_thread_callbacks_still_stops_the_loop() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["stopped", "True"]  # and the default handler is back
    assert "wakeup fd" not in result.stderr
