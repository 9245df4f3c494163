"""A moto server in its own process: local stand-ins for the AWS APIs the project uses.

Tests and the local stack talk to it through ``endpoint_url`` (or
``AWS_ENDPOINT_URL``) with the ordinary boto3/botocore clients, so the code
under test makes the same calls it makes against AWS.

The server runs in a child process (its own process group, so ``stop()`` ends
it and anything it spawned) rather than a thread of the caller: moto's state
then belongs to that process alone and an in-process ``mock_aws`` elsewhere
cannot see or disturb it.

Run by hand: ``python -m devtools.moto_server --port 5000``.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Sequence

ROOT = Path(__file__).resolve().parent.parent
READY_PREFIX = "MOTO_SERVER_READY "


class MotoServerError(RuntimeError):
    """The moto server did not start (or died while starting)."""


class MotoServer:
    """Start ``python -m devtools.moto_server`` and wait until it answers.

    ``port=0`` lets the child bind a free port and report it, so two servers
    never race for one port.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 startup_timeout: float = 30.0, log_path: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.log_path = log_path
        self._process: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None

    @property
    def endpoint_url(self) -> str:
        if self._process is None:
            raise MotoServerError("the moto server is not running; call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def exited(self) -> bool:
        """True once the started server process has ended (killed, crashed)."""
        return self._process is not None and self._process.poll() is not None

    def start(self) -> "MotoServer":
        if self._process is not None:
            return self
        command = [sys.executable, "-m", "devtools.moto_server", "--host", self.host,
                   "--port", str(self.port)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        # The child must never reach real AWS by accident either.
        env.pop("AWS_ENDPOINT_URL", None)
        stderr: IO[str] | int = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "a", encoding="utf-8")
            stderr = self._log
        self._process = subprocess.Popen(
            command, cwd=str(ROOT), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=stderr, text=True, start_new_session=True)
        try:
            self.port = self._read_port(self._process)
            self._wait_until_answering()
        except BaseException:
            self.stop()
            raise
        return self

    def _read_port(self, process: subprocess.Popen[str]) -> int:
        """The child prints one ready line with its port; read it with a deadline."""
        assert process.stdout is not None
        result: list[str] = []

        def read() -> None:
            for line in process.stdout:  # type: ignore[union-attr]
                if line.startswith(READY_PREFIX):
                    result.append(line[len(READY_PREFIX):].strip())
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        if not result:
            code = process.poll()
            state = f"exited with code {code}" if code is not None else "did not report ready"
            hint = f"; see {self.log_path}" if self.log_path else ""
            raise MotoServerError(f"moto server {state} within {self.startup_timeout:.0f} s{hint}")
        return int(result[0])

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"http://{self.host}:{self.port}/moto-api/"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except OSError:
                if time.monotonic() >= deadline:
                    raise MotoServerError(f"moto server on port {self.port} does not answer") from None
                time.sleep(0.05)

    def reset(self) -> None:
        """Forget every resource (moto's ``POST /moto-api/reset``)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(timeout=10)
        if process is not None and process.stdout is not None:
            process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def serve(host: str, port: int) -> None:
    """Run in the child: serve, report the port, sleep until killed."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    _, bound = server.get_host_and_port()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"{READY_PREFIX}{bound}", flush=True)
    print(f"moto server on http://{host}:{bound}", file=sys.stderr, flush=True)
    stop.wait()
    server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a moto server (local AWS API stand-ins).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    args = parser.parse_args(argv)
    serve(args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
