"""MiniStack, a local AWS emulator that runs the Lambdas, the WebSocket API, CloudFormation and IAM.

``MiniStack().start()`` makes its virtualenv (``.venv-ministack``, from
``requirements.txt`` beside this file; it pins its own botocore, so it cannot
share the project's), then starts it on a free port of 127.0.0.1 with a clean
environment (its Lambdas inherit it), IAM enforced, and the workarounds of
``workarounds.py`` applied. Dev and test support only.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV = ROOT / ".venv-ministack"
REQUIREMENTS = HERE / "requirements.txt"
ACCESS_KEY_ID = SECRET_ACCESS_KEY = "test"  # MiniStack's root credentials (account 000000000000)


def ensure_venv(report: object = print) -> Path:
    """The virtualenv's Python, made (or brought up to date with requirements.txt) first."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".stamp"
    if python.exists() and stamp.exists() and stamp.read_text() == REQUIREMENTS.read_text():
        return python
    if callable(report):
        report(f"==> installing MiniStack into {VENV.name}")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
                    str(REQUIREMENTS)], check=True)
    stamp.write_text(REQUIREMENTS.read_text())
    return python


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _check_free(port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds: TIME_WAIT is no owner
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise RuntimeError(f"port {port} on 127.0.0.1 is in use: stop what holds it, or pick another port") from None


class MiniStack:
    def __init__(self, port: int = 0, extra_env: dict[str, str] | None = None) -> None:
        self.port = port or _free_port()
        self.extra_env = dict(extra_env or {})  # e.g. the tests' loopback guard, inherited by every Lambda
        self.process: subprocess.Popen[bytes] | None = None
        self.state_dir = tempfile.mkdtemp(prefix="ministack-state-")
        self.log_path = Path(self.state_dir) / "ministack.log"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> MiniStack:
        python = ensure_venv()
        _check_free(self.port)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": self.state_dir, "TMPDIR": self.state_dir,
               "GATEWAY_PORT": str(self.port), "BIND_HOST": "127.0.0.1", "IOT_MTLS_ENABLED": "0", "AUTH": "true",
               "STATE_DIR": self.state_dir, "LOG_LEVEL": "INFO", **self.extra_env}
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen([str(python), str(HERE / "launch.py")], env=env, cwd=self.state_dir,
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"MiniStack exited while starting:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/_ministack/health", timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"MiniStack did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.process is None:
            return
        from devtools.processes import stop_process_group

        stop_process_group(self.process, grace=10.0)
        self.process = None

    def __enter__(self) -> MiniStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
