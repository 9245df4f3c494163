"""The ``@connections`` management API, answering as API Gateway does.

``POST|GET|DELETE /<stage>/@connections/<id>`` on the gateway's own port, so
a boto3 ``apigatewaymanagementapi`` client with
``endpoint_url=WEBSOCKET_MANAGEMENT_URL`` works unchanged. Errors carry
``x-amzn-ErrorType`` and a JSON ``{"message": ...}`` body, which botocore turns
into ``client.exceptions.GoneException``, ``PayloadTooLargeException``...

Requests are not SigV4-verified: any credentials are accepted. POSTed data is
sent as a text frame when it is valid UTF-8, else as a binary frame.

A POST never waits on the client's socket: it queues the frame on the
connection's outgoing queue and answers 200, so a client that stops reading
cannot hold the poster (a handler thread) hostage. A full queue answers 429
``LimitExceededException`` ("the WebSocket client side buffer is full", in
API Gateway's words) and the frame is not sent; a connection dropped for not
reading (``Limits.write_timeout``) answers 410 from then on.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .connections import CloseInfo, Connection, ConnectionGone, OutboxFull, State
from .events import iso8601, new_request_id

CloseFn = Callable[[Connection, CloseInfo], Awaitable[None]]

DELETED = CloseInfo(code=1000, reason="", cause="deleted via @connections")

# Off by default. When on, a connection whose upgrade request sent
# FAIL_POSTS_HEADER: N (or "K,N": after K POSTs that succeed) gets N POSTs answered 500
# InternalServerErrorException (nothing is sent): a management API that fails
# for a while, for tests of the fan-out worker's redelivery (botocore retries
# a 5xx, so N = the attempts of one invocation fails that invocation once).
FAIL_POSTS_ENV = "LOCAL_GATEWAY_FAIL_POSTS"
FAIL_POSTS_HEADER = "X-Local-Gateway-Fail-Posts"


def error_response(status: int, error_type: str, message: str | None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"message": message}).encode(),
        content_type="application/json",
        headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": new_request_id()},
    )


def gone(connection_id: str) -> web.Response:
    return error_response(410, "GoneException", None)


class ManagementApi:
    """aiohttp handlers over the gateway's connection registry."""

    def __init__(
        self,
        *,
        stage: str,
        connections: dict[str, Connection],
        max_message_bytes: int,
        close: CloseFn,
        logger: logging.Logger,
        post_latency: float = 0.0,
    ) -> None:
        self.stage = stage
        self.connections = connections
        self.max_message_bytes = max_message_bytes
        self._close = close
        self._log = logger
        self.post_latency = post_latency
        self.fail_posts = os.environ.get(FAIL_POSTS_ENV, "").strip().lower() in ("1", "true", "yes")
        self._failed_posts: dict[str, int] = {}

    def _fails(self, connection: Connection) -> bool:
        """True while the connection's FAIL_POSTS_HEADER budget of failed POSTs lasts (see above)."""
        if not self.fail_posts:
            return False
        wanted = FAIL_POSTS_HEADER.lower()
        value = next((v.strip() for name, v in connection.client.headers if name.lower() == wanted), "")
        skip, _, fail = value.rpartition(",")
        if not fail.isdigit() or (skip and not skip.isdigit()):
            return False
        seen = self._failed_posts.get(connection.connection_id, 0)
        self._failed_posts[connection.connection_id] = seen + 1
        return int(skip or 0) <= seen < int(skip or 0) + int(fail)

    def routes(self) -> list[web.RouteDef]:
        path = "/{stage}/@connections/{connection_id}"
        return [
            web.post(path, self.post),
            web.get(path, self.get),
            web.delete(path, self.delete),
        ]

    def _open(self, request: web.Request) -> Connection | None:
        connection = self.connections.get(request.match_info["connection_id"])
        if connection is None or connection.state is not State.OPEN:
            return None
        return connection

    def _logged(self, request: web.Request, started: float, response: web.StreamResponse) -> Any:
        elapsed = (time.perf_counter() - started) * 1000
        self._log.info(
            "%s %s @connections %s %d %.1fms",
            request.remote,
            request.method,
            request.match_info.get("connection_id", "-"),
            response.status,
            elapsed,
        )
        return response

    def _wrong_stage(self, request: web.Request) -> web.Response | None:
        if request.match_info["stage"] != self.stage:
            return error_response(403, "ForbiddenException", "Forbidden")
        return None

    async def post(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        refused = self._wrong_stage(request)
        if refused is not None:
            return self._logged(request, started, refused)
        data = await request.read()
        if self.post_latency:
            # A benchmark's stand-in for a real API round trip; awaited, never blocking the loop.
            await asyncio.sleep(self.post_latency)
        if len(data) > self.max_message_bytes:
            return self._logged(
                request,
                started,
                error_response(413, "PayloadTooLargeException", "Request entity too large"),
            )
        connection = self._open(request)
        if connection is None:
            return self._logged(request, started, gone(request.match_info["connection_id"]))
        if self._fails(connection):
            return self._logged(request, started, error_response(500, "InternalServerErrorException",
                                                                 f"failing on purpose ({FAIL_POSTS_HEADER})"))
        try:
            frame: str | bytes = data.decode("utf-8")
        except UnicodeDecodeError:
            frame = data
        try:
            connection.offer(frame, len(data))
        except ConnectionGone:
            return self._logged(request, started, gone(connection.connection_id))
        except OutboxFull:
            return self._logged(
                request, started, error_response(429, "LimitExceededException", "Limit Exceeded")
            )
        return self._logged(request, started, web.Response(status=200))

    def _target(self, request: web.Request) -> Connection | web.Response:
        """The open connection a GET/DELETE names, or API Gateway's refusal (403 stage, 410 gone)."""
        refused = self._wrong_stage(request)
        if refused is not None:
            return refused
        connection = self._open(request)
        if connection is None:
            return gone(request.match_info["connection_id"])
        return connection

    async def get(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        connection = self._target(request)
        if isinstance(connection, web.Response):
            return self._logged(request, started, connection)
        body = {
            "connectedAt": iso8601(connection.client.connected_at_ms),
            "identity": {
                "sourceIp": connection.client.source_ip,
                "userAgent": connection.client.user_agent,
            },
            "lastActiveAt": iso8601(connection.last_active_ms),
        }
        return self._logged(request, started, web.json_response(body))

    async def delete(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        connection = self._target(request)
        if isinstance(connection, web.Response):
            return self._logged(request, started, connection)
        await self._close(connection, DELETED)
        return self._logged(request, started, web.Response(status=204))
