"""A local stand-in for API Gateway's WebSocket management API (``@connections``).

It speaks the same wire protocol as the real service (rest-json, errors named by
the ``x-amzn-ErrorType`` header), so a real boto3 ``apigatewaymanagementapi``
client pointed at ``endpoint_url`` raises the same ``ClientError`` codes it
would in AWS: unknown ids give 410 ``GoneException``, throttling gives 429
``LimitExceededException``, and so on.

Test knobs: ``throttle`` (429 n times), ``fail`` (any status, forever or n
times), ``latency`` (sleep per post). It records what it received, how many
posts each id got, and the peak number of posts in flight at once.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

ERROR_TYPES: dict[int, str] = {
    400: "BadRequestException",
    403: "ForbiddenException",
    404: "NotFoundException",
    410: "GoneException",
    413: "PayloadTooLargeException",
    429: "LimitExceededException",
    500: "InternalServerErrorException",
    502: "BadGatewayException",
    503: "ServiceUnavailableException",
    504: "GatewayTimeoutException",
}

MAX_PAYLOAD = 128 * 1024  # API Gateway's frame limit for post_to_connection


class _Connection:
    def __init__(self, connection_id: str) -> None:
        self.id = connection_id
        self.connected_at = datetime.now(timezone.utc)
        self.last_active_at = self.connected_at


class ManagementApiServer:
    """Threaded HTTP server on 127.0.0.1:<free port>; ``endpoint_url`` includes the stage."""

    def __init__(self, stage: str = "dev", source_ip: str = "127.0.0.1",
                 user_agent: str = "pytest-client") -> None:
        self.stage = stage
        self.source_ip = source_ip
        self.user_agent = user_agent
        self._lock = threading.Lock()
        self._connections: dict[str, _Connection] = {}
        self._received: dict[str, list[bytes]] = {}
        self._attempts: dict[str, int] = {}
        self._throttles: dict[str, int] = {}
        self._failures: dict[str, tuple[int, int | None]] = {}
        self._latency = 0.0
        self._in_flight = 0
        self._peak = 0
        self._total_posts = 0
        self.deleted: list[str] = []
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.api = self
        self.port: int = self._httpd.server_address[1]
        self.endpoint_url = f"http://127.0.0.1:{self.port}/{stage}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"management-api-{self.port}", daemon=True)
        self._thread.start()

    # -- configuration -------------------------------------------------------------

    def add(self, *connection_ids: str) -> None:
        with self._lock:
            for connection_id in connection_ids:
                self._connections[connection_id] = _Connection(connection_id)

    def remove(self, connection_id: str) -> None:
        with self._lock:
            self._connections.pop(connection_id, None)

    def throttle(self, connection_id: str, times: int) -> None:
        """Answer the next ``times`` posts to this id with 429 LimitExceededException."""
        with self._lock:
            self._throttles[connection_id] = times

    def fail(self, connection_id: str, status: int, times: int | None = None) -> None:
        """Answer posts to this id with ``status`` (forever, or the next ``times`` posts)."""
        with self._lock:
            self._failures[connection_id] = (status, times)

    def heal(self, connection_id: str) -> None:
        """Forget any throttling or failure scripted for this id."""
        with self._lock:
            self._throttles.pop(connection_id, None)
            self._failures.pop(connection_id, None)

    def latency(self, seconds: float) -> None:
        with self._lock:
            self._latency = seconds

    def reset_stats(self) -> None:
        with self._lock:
            self._received.clear()
            self._attempts.clear()
            self._peak = 0
            self._total_posts = 0

    # -- observations --------------------------------------------------------------

    @property
    def received(self) -> dict[str, list[bytes]]:
        """Bodies delivered per id (a snapshot; only successful posts)."""
        with self._lock:
            return {k: list(v) for k, v in self._received.items()}

    @property
    def attempts(self) -> dict[str, int]:
        """Posts seen per id, whatever the answer."""
        with self._lock:
            return dict(self._attempts)

    @property
    def total_posts(self) -> int:
        with self._lock:
            return self._total_posts

    @property
    def peak_concurrency(self) -> int:
        with self._lock:
            return self._peak

    @property
    def connections(self) -> set[str]:
        with self._lock:
            return set(self._connections)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ManagementApiServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- request handling (called from handler threads) ----------------------------

    def _post(self, connection_id: str, body: bytes) -> tuple[int, dict[str, Any] | None]:
        with self._lock:
            self._attempts[connection_id] = self._attempts.get(connection_id, 0) + 1
            self._total_posts += 1
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            latency = self._latency
        try:
            if latency:
                time.sleep(latency)
            with self._lock:
                status = self._scripted_status(connection_id)
                if status is not None:
                    return status, None
                connection = self._connections.get(connection_id)
                if connection is None:
                    return 410, None
                if len(body) > MAX_PAYLOAD:
                    return 413, None
                connection.last_active_at = datetime.now(timezone.utc)
                self._received.setdefault(connection_id, []).append(body)
                return 200, None
        finally:
            with self._lock:
                self._in_flight -= 1

    def _scripted_status(self, connection_id: str) -> int | None:
        remaining = self._throttles.get(connection_id, 0)
        if remaining > 0:
            self._throttles[connection_id] = remaining - 1
            return 429
        failure = self._failures.get(connection_id)
        if failure is not None:
            status, times = failure
            if times is None:
                return status
            if times > 0:
                self._failures[connection_id] = (status, times - 1)
                return status
        return None

    def _get(self, connection_id: str) -> tuple[int, dict[str, Any] | None]:
        with self._lock:
            connection = self._connections.get(connection_id)
            if connection is None:
                return 410, None
            return 200, {
                "connectedAt": _iso(connection.connected_at),
                "lastActiveAt": _iso(connection.last_active_at),
                "identity": {"sourceIp": self.source_ip, "userAgent": self.user_agent},
            }

    def _delete(self, connection_id: str) -> tuple[int, dict[str, Any] | None]:
        with self._lock:
            if self._connections.pop(connection_id, None) is None:
                return 410, None
            self.deleted.append(connection_id)
            return 204, None


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A broadcast opens up to max_pool_connections sockets at once; the default
    # backlog of 5 would drop SYNs and add 1 s retransmits.
    request_queue_size = 256
    api: ManagementApiServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3's urllib3 pool expects
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _connection_id(self) -> str | None:
        path = urlsplit(self.path).path
        prefix = f"/{self.server.api.stage}/@connections/"
        if not path.startswith(prefix) or len(path) == len(prefix):
            return None
        connection_id = path[len(prefix):]
        return None if "/" in connection_id else unquote(connection_id)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        body = self._body()
        api = self.server.api
        connection_id = self._connection_id()
        if connection_id is None:
            self._answer(404, None, error_type="NotFoundException")
            return
        if method == "POST":
            status, payload = api._post(connection_id, body)
        elif method == "GET":
            status, payload = api._get(connection_id)
        else:
            status, payload = api._delete(connection_id)
        self._answer(status, payload)

    def _answer(self, status: int, payload: dict[str, Any] | None, error_type: str | None = None) -> None:
        headers = {"x-amzn-RequestId": f"req-{threading.get_ident()}-{time.monotonic_ns()}"}
        if status >= 400:
            error_type = error_type or ERROR_TYPES.get(status, "InternalServerErrorException")
            headers["x-amzn-ErrorType"] = error_type
            data = json.dumps({"message": _MESSAGES.get(error_type)}).encode()
        elif payload is not None:
            data = json.dumps(payload).encode()
        else:
            data = b""
        self.send_response(status)
        if data:
            headers["Content-Type"] = "application/json"
        headers["Content-Length"] = str(len(data))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if data:
            self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("POST")

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")


_MESSAGES: dict[str, str | None] = {
    "GoneException": None,  # what API Gateway actually returns for a gone connection
    "LimitExceededException": "Rate exceeded",
    "ForbiddenException": "Forbidden",
    "PayloadTooLargeException": "Payload too large",
}


@pytest.fixture
def management_api() -> Iterator[ManagementApiServer]:
    """A fresh management API for stage ``dev``; stopped after the test."""
    server = ManagementApiServer(stage="dev")
    try:
        yield server
    finally:
        server.stop()
