"""The deploy tests' loopback guard refuses, and logs, a reach beyond 127.0.0.1 (so it can fail them)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devtools.deploy_local import guard_env

REACH = """
import socket, urllib.request
for target in ("https://sts.amazonaws.com/", "http://192.0.2.1:80/"):
    try:
        urllib.request.urlopen(target, timeout=2)
    except OSError as error:
        print("refused", target, "guard" in str(error) or "guard" in str(getattr(error, "reason", "")))
with socket.create_connection(("127.0.0.1", int(__import__("sys").argv[1])), timeout=2):
    print("loopback ok")
"""


def test_a_guarded_process_cannot_reach_aws_and_the_attempt_is_logged(tmp_path: Path) -> None:
    log = tmp_path / "guard.log"
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        done = subprocess.run([sys.executable, "-c", REACH, str(server.getsockname()[1])], env=guard_env(str(log)),
                              capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ["refused https://sts.amazonaws.com/ True",
                                        "refused http://192.0.2.1:80/ True", "loopback ok"], done.stderr
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and "'sts.amazonaws.com'" in lines[0] and "'192.0.2.1'" in lines[1], lines
