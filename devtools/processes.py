"""Child processes of the dev tools: each in its own process group, ended as a whole.

DynamoDB Local, moto's server, the local stack and benchmark children all spawn
helpers of their own (a JVM, werkzeug's threads, ...); ending only the direct
child can leave those behind, so they are started with ``start_new_session``
and stopped by group: SIGTERM first, SIGKILL if the group outlives ``grace``.
"""
from __future__ import annotations

import os
import signal
import subprocess
from typing import Any


def stop_process_group(process: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """End ``process`` and its group; a no-op when it has already exited."""
    if process.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
    process.wait(timeout=grace)
