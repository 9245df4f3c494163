"""The gateway: WebSocket upgrades and the management API on one aiohttp port.

Lifecycle of one connection, as on API Gateway:

1. upgrade request -> REQUEST authorizer (401/403/500 refuse it, pre-upgrade);
2. ``$connect`` (non-2xx or an error refuses it; its ``Sec-WebSocket-Protocol``
   answer header selects the subprotocol); POSTs to the connection get 410
   until ``$connect`` has returned;
3. frames -> route selection -> handler, in order per connection, off the loop;
   an oversize message closes with 1009; idle and lifetime limits close with
   1001; a failing handler makes the gateway send AWS's
   ``{"message": "Internal server error", ...}`` frame;
4. any close -> ``$disconnect`` (exactly once); frames still queued when the
   connection closes are dropped, not run after the client left.

One bad client slows nobody else: the authorizer and ``$connect`` have their
own thread pool (``connect_workers``), so slow message handlers cannot delay
new connections; frames to a client go through its own bounded outgoing
queue and writer task, so a client that stops reading holds no poster and no
other connection (a write stuck for ``Limits.write_timeout`` drops it, with
``$disconnect``; a full queue answers POSTs 429); a client flooding frames
faster than its handler is closed (1013) once its incoming queue is over
``Limits.max_inbox_messages``/``max_inbox_bytes``; an upgrade request's
headers over ``Limits.max_header_bytes`` get a 431 that echoes nothing.

A handler's *return body* is never sent to the client: API Gateway only does
that for two-way routes with a route response, and Chalice's ``$default`` has
none. Apps answer through the management API, as they must on AWS.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

from aiohttp import WSMsgType, web
from chalice import Chalice

from .appload import GatewayConfigError, ProjectConfig, load_app
from .connections import CloseInfo, Connection, ConnectionGone, Frame, OutboxFull, State
from .events import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_API_ID,
    DEFAULT_REGION,
    Api,
    ClientInfo,
    authorizer_event,
    connect_event,
    disconnect_event,
    message_event,
    new_connection_id,
    now_ms,
)
from .httpserver import GatewayRunner, headers_too_large, runner_options
from .invoke import AppInvoker, proxy_headers, proxy_status
from .eventbridge_api import EventBridgeApi
from . import local_only
from .fairness import FairSlots
from .lambda_api import LambdaInvokeApi
from .limits import Limits
from .management import ManagementApi, error_response
from .scheduler import Scheduler, interval_from_env
from .policy import AuthorizerRejection, evaluate, rejection_for_exception

LOG = logging.getLogger("devtools.gateway")

IDLE = CloseInfo(code=1001, reason="Going away", cause="idle timeout")
LIFETIME = CloseInfo(code=1001, reason="Going away", cause="max connection lifetime")
SHUTDOWN = CloseInfo(code=1001, reason="Going away", cause="gateway shutdown")
TOO_BIG = CloseInfo(code=1009, reason="Message too big", cause="message over the size limit")
LOST = CloseInfo(code=1006, reason="Connection lost", cause="connection lost")
# The client took no data for Limits.write_timeout: the socket is aborted (no
# close frame could get through), so the client sees 1006 and so does $disconnect.
WRITE_TIMEOUT = CloseInfo(code=1006, reason="Connection lost", cause="write timeout: client not reading")
INBOX_FULL = CloseInfo(code=1013, reason="Try again later", cause="incoming queue full")
# How long a close handshake may take once the close frame is written.
CLOSE_HANDSHAKE_SECONDS = 5.0

# Off by default. When on, a connection whose upgrade request carried
# LOSE_DISCONNECT_HEADER and that ends without a close frame gets no
# $disconnect: the stale record AWS leaves when its best-effort $disconnect is
# lost, for testing the app's clean-up on 410 Gone.
LOSE_DISCONNECTS_ENV = "LOCAL_GATEWAY_LOSE_DISCONNECTS"
LOSE_DISCONNECT_HEADER = "X-Local-Gateway-Lose-Disconnect"

# Headers of a $connect answer that the WebSocket handshake itself owns.
_HANDSHAKE_HEADERS = frozenset(
    {
        "connection",
        "upgrade",
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "content-length",
        "transfer-encoding",
    }
)


def _offered_protocols(request: web.Request) -> list[str]:
    offered: list[str] = []
    for value in request.headers.getall("Sec-WebSocket-Protocol", []):
        offered.extend(part.strip() for part in value.split(",") if part.strip())
    return offered


class LocalGateway:
    """An API Gateway WebSocket API in front of one Chalice app, on one port.

    ``await start()`` binds, prepares the app's environment, imports the app
    and starts serving; ``await stop()`` closes every connection (running
    ``$disconnect`` for each), stops serving and restores the environment.
    """

    def __init__(
        self,
        project_dir: str = ".",
        *,
        app_module: str = "app",
        app: Chalice | None = None,
        stage: str = "dev",
        host: str = "127.0.0.1",
        port: int = 8000,
        authorizer: str | None = "ws_authorizer",
        limits: Limits | None = None,
        env_from_config: bool = True,
        env: Mapping[str, str] | None = None,
        handler_workers: int = 32,
        connect_workers: int = 16,
        api_id: str = DEFAULT_API_ID,
        account_id: str = DEFAULT_ACCOUNT_ID,
        logger: logging.Logger | None = None,
        lose_disconnects: bool | None = None,
        schedule_interval: float | None = None,
        extra_routes: list[web.RouteDef] | None = None,
    ) -> None:
        self.project_dir = os.path.abspath(project_dir)
        # Routes of a dev-only page served on the gateway's origin (devtools.web), matched first.
        self.extra_routes = list(extra_routes or ())
        self.app_module_name = app_module
        self.stage = stage
        self.host = host
        self.port = port
        self.limits = limits or Limits()
        self.env_from_config = env_from_config
        self.env_overrides = dict(env or {})
        self.handler_workers = handler_workers
        self.connect_workers = connect_workers
        self.api_id = api_id
        self.account_id = account_id
        self.log = logger or LOG
        self.app: Chalice | None = app
        self.app_module: ModuleType | None = None
        self._authorizer_name = authorizer
        self._connections: dict[str, Connection] = {}
        self._runner: web.AppRunner | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._fair = FairSlots(max(1, self.handler_workers))
        self._connect_executor: ThreadPoolExecutor | None = None
        self._invoker: AppInvoker | None = None
        self._saved_env: dict[str, str | None] = {}
        self._applied_env: dict[str, str] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping = False
        if lose_disconnects is None:
            lose_disconnects = os.environ.get(LOSE_DISCONNECTS_ENV, "").strip().lower() in ("1", "true", "yes")
        self.lose_disconnects = lose_disconnects
        # Seconds between runs of every @app.schedule (None: each one's own rate; see scheduler).
        self.schedule_interval = schedule_interval if schedule_interval is not None else interval_from_env()
        self._scheduler: Scheduler | None = None

    # ----------------------------------------------------------------- urls
    @property
    def url(self) -> str:
        """``ws://host:port/stage``: what clients connect to."""
        return f"ws://{self.host}:{self.port}/{self.stage}"

    @property
    def management_url(self) -> str:
        """``http://host:port/stage``: the management API's endpoint_url."""
        return f"http://{self.host}:{self.port}/{self.stage}"

    @property
    def region(self) -> str:
        return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION

    def connection_ids(self) -> list[str]:
        """Ids of connections that are open (postable) right now."""
        return [cid for cid, c in self._connections.items() if c.state is State.OPEN]

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("gateway already started")
        config = ProjectConfig(self.project_dir, self.stage)
        web_app = web.Application(client_max_size=max(8 * self.limits.max_message_bytes, 1 << 20),
                                  middlewares=[local_only.middleware(self.log)])
        management = ManagementApi(
            stage=self.stage,
            connections=self._connections,
            max_message_bytes=self.limits.max_message_bytes,
            close=self._request_close,
            logger=self.log,
            post_latency=self.limits.post_latency,
        )
        web_app.add_routes(management.routes())
        lambda_api = LambdaInvokeApi(stage=self.stage, app=lambda: self.app, call=self._invoke_function,
                                     log=self.log)
        web_app.add_routes(lambda_api.routes())
        web_app.add_routes(EventBridgeApi(app=lambda: self.app, call=self._invoke_function, log=self.log,
                                          account_id=self.account_id, region=lambda: self.region).routes())
        web_app.add_routes(self.extra_routes)
        web_app.add_routes([web.get("/{stage}", self._upgrade), web.route("*", "/{tail:.*}", self._unknown)])
        runner = GatewayRunner(
            web_app, access_log=None, handle_signals=False, **runner_options(self.limits.max_header_bytes)
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=2048, shutdown_timeout=1.0)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        try:
            self._apply_env(config)
            if self.app is None:
                self.app_module, self.app = load_app(self.project_dir, self.app_module_name)
            self._executor = ThreadPoolExecutor(
                max_workers=self.handler_workers, thread_name_prefix="gateway-handler"
            )
            self._fair = FairSlots(self.handler_workers)
            self._connect_executor = ThreadPoolExecutor(
                max_workers=self.connect_workers, thread_name_prefix="gateway-connect"
            )
            self._invoker = AppInvoker(
                self.app,
                stage=self.stage,
                authorizer=self._authorizer_name,
                executor=self._executor,
                connect_executor=self._connect_executor,
                project_config=config,
            )
        except BaseException:
            await self._teardown()
            raise
        self._scheduler = Scheduler(app=lambda: self.app, call=self._invoke_function, log=self.log,
                                    stage=self.stage, account_id=self.account_id, region=lambda: self.region,
                                    interval=self.schedule_interval)
        self._scheduler.start()
        self.log.info(
            "Serving %s on %s (management API %s)", self.app.app_name, self.url, self.management_url
        )

    async def stop(self) -> None:
        """Close all connections (each gets ``$disconnect``), then stop serving."""
        if self._runner is None:
            return
        self._stopping = True
        if self._scheduler is not None:
            await self._scheduler.stop()
        for connection in list(self._connections.values()):
            await self._request_close(connection, SHUTDOWN)
        pending = [c.finished.wait() for c in list(self._connections.values())]
        try:
            if pending:
                await asyncio.wait_for(asyncio.gather(*pending), timeout=30)
            if self._background:
                await asyncio.wait_for(
                    asyncio.gather(*self._background, return_exceptions=True), timeout=30
                )
        except asyncio.TimeoutError:
            self.log.warning("gateway stop: some handlers still running after 30 s; stopping anyway")
            await self._teardown(wait=False)
            return
        await self._teardown()

    async def _teardown(self, wait: bool = True) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for name in ("_executor", "_connect_executor"):
            executor = getattr(self, name)
            if executor is None:
                continue
            setattr(self, name, None)
            if wait:
                await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)
            else:
                executor.shutdown(wait=False, cancel_futures=True)
        self._restore_env()

    # ---------------------------------------------------------- environment
    def _apply_env(self, config: ProjectConfig) -> None:
        """Process env < config.json < gateway defaults < explicit overrides.

        ``WEBSOCKET_MANAGEMENT_URL`` points at this gateway unless it was
        already set in the process environment (not by the config file,
        whose value is usually the deployed API) or given as an override.
        """
        values: dict[str, str] = {}
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            if not os.environ.get(name):
                values[name] = DEFAULT_REGION
        if self.env_from_config:
            values.update(config.environment_variables())
        inherited = os.environ.get("WEBSOCKET_MANAGEMENT_URL")
        if not inherited or inherited in _GATEWAY_URLS:
            values["WEBSOCKET_MANAGEMENT_URL"] = self.management_url
        else:
            values["WEBSOCKET_MANAGEMENT_URL"] = inherited
        values.update(self.env_overrides)
        for name, value in values.items():
            if name not in self._saved_env:
                self._saved_env[name] = os.environ.get(name)
            os.environ[name] = value
        self._applied_env = values
        _GATEWAY_URLS.add(self.management_url)

    def _restore_env(self) -> None:
        """Undo our changes, leaving alone anything someone else changed since."""
        for name, previous in self._saved_env.items():
            if os.environ.get(name) != self._applied_env.get(name):
                continue
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous
        self._saved_env.clear()
        _GATEWAY_URLS.discard(self.management_url)

    # -------------------------------------------------------------- logging
    def _log_line(
        self,
        source_ip: str | None,
        event_type: str,
        route_key: str,
        connection_id: str,
        status: int,
        started: float,
        note: str = "",
    ) -> None:
        elapsed = (time.perf_counter() - started) * 1000
        suffix = f" ({note})" if note else ""
        self.log.info(
            "%s %s %s %s %d %.1fms%s",
            source_ip,
            event_type,
            route_key,
            connection_id,
            status,
            elapsed,
            suffix,
        )

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ------------------------------------------------------------- handlers
    async def _invoke_function(self, name: str, event: Any) -> Any:
        if self._invoker is None:
            raise GatewayConfigError("the gateway is not started")
        return await self._invoker.invoke(name, event)

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        return error_response(403, "ForbiddenException", "Forbidden")

    def _client_info(self, request: web.Request, connection_id: str) -> ClientInfo:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
        present = {name.lower() for name, _ in headers}
        source_ip = request.remote or "127.0.0.1"
        for name, value in (
            ("X-Forwarded-For", source_ip),
            ("X-Forwarded-Port", str(self.port)),
            ("X-Forwarded-Proto", "http"),
        ):
            if name.lower() not in present:
                headers.append((name, value))
        return ClientInfo(
            headers=headers,
            query=list(request.query.items()),
            source_ip=source_ip,
            connection_id=connection_id,
            connected_at_ms=now_ms(),
        )

    def _api(self, request: web.Request) -> Api:
        return Api(
            api_id=self.api_id,
            stage=self.stage,
            region=self.region,
            account_id=self.account_id,
            domain_name=request.host,
        )

    async def _upgrade(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        if request.match_info["stage"] != self.stage:
            return error_response(403, "ForbiddenException", "Forbidden")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.json_response({"message": "Upgrade Required"}, status=426)
        if self._stopping:
            return web.json_response({"message": "Service Unavailable"}, status=503)
        header_bytes = sum(len(name) + len(value) for name, value in request.raw_headers)
        if header_bytes > self.limits.max_header_bytes:
            self._log_line(request.remote, "CONNECT", "-", "-", 431, started,
                           f"request headers over {self.limits.max_header_bytes} bytes")
            return headers_too_large()
        invoker = self._invoker
        assert invoker is not None
        api = self._api(request)
        client = self._client_info(request, new_connection_id())
        cid = client.connection_id

        if invoker.authorizer is not None:
            event = authorizer_event(api, client)
            try:
                result = await invoker.authorize(event)
                client.authorizer = evaluate(result, event["methodArn"])
            except AuthorizerRejection as rejection:
                return self._refuse(request, cid, started, rejection.status, rejection.detail)
            except Exception as error:  # the authorizer Lambda failed
                rejection = rejection_for_exception(error)
                return self._refuse(request, cid, started, rejection.status, rejection.detail)

        connection = Connection(api=api, client=client, max_outbox_bytes=self.limits.max_outbox_bytes)
        self._connections[cid] = connection
        protocols: tuple[str, ...] = ()
        extra_headers: list[tuple[str, str]] = []
        if invoker.has_route("$connect"):
            try:
                result = await invoker.route("$connect", connect_event(api, client))
            except Exception as error:
                self._drop(connection)
                self.log.exception("$connect handler failed for %s", cid)
                return self._refuse(request, cid, started, 500, f"$connect raised {type(error).__name__}")
            status = proxy_status(result)
            if not 200 <= status < 300:
                self._drop(connection)
                return self._refuse(request, cid, started, status, "$connect refused")
            protocols, extra_headers = self._handshake_headers(request, result, cid)
        if self._stopping or connection.close_info is not None:
            self._drop(connection)
            return self._refuse(request, cid, started, 503, "gateway stopping")

        ws = web.WebSocketResponse(
            protocols=protocols,
            # aiohttp refuses a message *equal* to max_msg_size; AWS allows it.
            max_msg_size=self.limits.max_message_bytes + 1,
            compress=False,
            timeout=5.0,
        )
        for name, value in extra_headers:
            ws.headers.add(name, value)
        try:
            await ws.prepare(request)
        except ConnectionError:
            # The client left while $connect ran. $connect succeeded (the app may
            # have stored the connection), so, as on AWS, it is owed a $disconnect.
            self._log_line(request.remote, "CONNECT", "$connect", cid, 200, started, "client left during $connect")
            await self._finish(connection)
            return web.Response(status=400)
        except BaseException:
            self._drop(connection)
            raise
        connection.ws = ws
        connection.transport = request.transport
        connection.state = State.OPEN
        connection.touch()
        self._log_line(request.remote, "CONNECT", "$connect", cid, 200, started)
        try:
            await self._serve(connection)
        finally:
            if not connection.finished.is_set():
                # Cancelled mid-way (server teardown): still owe $disconnect.
                self._spawn(self._finish(connection))
        return ws

    def _drop(self, connection: Connection) -> None:
        """Forget a connection that never opened: it gets no $disconnect, as on AWS."""
        connection.state = State.CLOSED
        self._connections.pop(connection.connection_id, None)
        connection.finished.set()

    def _refuse(
        self, request: web.Request, cid: str, started: float, status: int, note: str
    ) -> web.Response:
        self._log_line(request.remote, "CONNECT", "$connect", cid, status, started, note)
        message = {401: "Unauthorized", 403: "Forbidden"}.get(status, "Internal server error")
        if status < 500 and status not in (401, 403):
            message = "Refused"
        return web.json_response({"message": message}, status=status)

    def _handshake_headers(
        self, request: web.Request, result: Any, cid: str
    ) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
        """Subprotocol and extra headers from the $connect answer.

        Only a protocol the app returned is selected, and only if the client
        offered it (a browser fails the handshake otherwise). Never echo a
        client's offer on our own: clients that smuggle a token in the
        subprotocol list must not get it back.
        """
        protocols: tuple[str, ...] = ()
        extra: list[tuple[str, str]] = []
        offered = _offered_protocols(request)
        for name, value in proxy_headers(result):
            lowered = name.lower()
            if lowered == "sec-websocket-protocol":
                chosen = value.strip()
                if chosen in offered:
                    protocols = (chosen,)
                else:
                    self.log.warning(
                        "%s: $connect returned a Sec-WebSocket-Protocol the client did not offer;"
                        " not selected",
                        cid,
                    )
            elif lowered not in _HANDSHAKE_HEADERS:
                extra.append((name, value))
        return protocols, extra

    # ------------------------------------------------------- open connection
    async def _serve(self, connection: Connection) -> None:
        writer = asyncio.ensure_future(self._write_loop(connection))
        worker = asyncio.ensure_future(self._work(connection))
        try:
            await self._read(connection)
        finally:
            connection.state = State.CLOSED
            self._connections.pop(connection.connection_id, None)
            connection.inbox.put_nowait(None)
            writer.cancel()
            await asyncio.shield(worker)  # drops what is queued; a running handler finishes
            connection.discard_outbox()
        await self._finish(connection)

    async def _read(self, connection: Connection) -> None:
        ws = connection.ws
        assert ws is not None
        limits = self.limits
        while True:
            now = time.monotonic()
            idle_left = connection.last_active + limits.idle_timeout - now
            life_left = connection.opened_at + limits.max_lifetime - now
            if min(idle_left, life_left) <= 0:
                await self._close_now(connection, IDLE if idle_left <= life_left else LIFETIME)
                return
            try:
                msg = await ws.receive(timeout=min(idle_left, life_left))
            except asyncio.TimeoutError:
                continue
            except (ConnectionError, RuntimeError):  # e.g. an automatic pong to a dropped socket
                connection.decide_close(LOST)
                return
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                connection.touch()
                if connection.state is not State.OPEN:
                    continue  # closing: nothing more is run
                queued = connection.inbox.qsize()
                if queued and (
                    queued >= limits.max_inbox_messages
                    or connection.inbox_bytes + len(msg.data) > limits.max_inbox_bytes
                ):
                    await self._close_now(connection, INBOX_FULL)
                    return
                connection.receive(msg.data)
            elif msg.type is WSMsgType.CLOSE:
                code = int(msg.data) if msg.data is not None else 1005
                reason = msg.extra or ""
                connection.decide_close(
                    CloseInfo(
                        code=code,
                        reason=f"Client-side close frame status code '{code}' and reason '{reason}'",
                        cause="client closed",
                    )
                )
            elif msg.type is WSMsgType.ERROR:
                if getattr(msg.data, "code", None) == TOO_BIG.code:
                    connection.decide_close(TOO_BIG)
                else:
                    connection.decide_close(LOST)
                return
            else:  # CLOSING / CLOSED
                connection.decide_close(LOST)
                return

    def _abort(self, connection: Connection, info: CloseInfo) -> None:
        """Drop the socket without a close handshake (the client is not reading one)."""
        connection.decide_close(info)
        transport = connection.transport
        if transport is not None and not transport.is_closing():
            transport.abort()  # the read loop sees the loss and ends; $disconnect follows
        connection.discard_outbox()

    async def _close_now(self, connection: Connection, info: CloseInfo) -> None:
        """Close with a close frame, after what is already queued for the client.

        Bounded: the queued frames get ``write_timeout`` (the writer drops a
        stalled client by itself), the close frame and handshake another
        ``write_timeout`` plus ``CLOSE_HANDSHAKE_SECONDS``; past that the
        socket is aborted.
        """
        connection.decide_close(info)
        ws = connection.ws
        if ws is None or ws.closed:
            return
        chosen = connection.close_info or info
        timeout = self.limits.write_timeout
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(connection.outbox.join(), timeout)
        if ws.closed:
            return
        try:
            await asyncio.wait_for(
                ws.close(code=chosen.code, message=chosen.reason.encode()), timeout + CLOSE_HANDSHAKE_SECONDS
            )
        except asyncio.TimeoutError:
            self._abort(connection, chosen)
        except Exception:  # noqa: BLE001 - the socket is gone already
            pass

    async def _request_close(self, connection: Connection, info: CloseInfo) -> None:
        """Close from outside the read loop (DELETE, shutdown) without waiting for it."""
        if connection.state is State.CONNECTING:
            connection.decide_close(info)  # refused once $connect returns
            return
        if connection.decide_close(info):
            self._spawn(self._close_now(connection, info))

    async def _write_loop(self, connection: Connection) -> None:
        """Write one connection's outgoing frames in order; drop the client if one stalls."""
        while True:
            frame, size = await connection.outbox.get()
            try:
                await asyncio.wait_for(connection.write(frame), self.limits.write_timeout)
            except asyncio.TimeoutError:
                self.log.warning(
                    "%s: a write waited %.1f s (client not reading); connection dropped",
                    connection.connection_id,
                    self.limits.write_timeout,
                )
                self._abort(connection, WRITE_TIMEOUT)
                return
            except (ConnectionError, RuntimeError):  # closing or closed under us
                connection.discard_outbox()
                return
            finally:
                connection.written(size)

    async def _work(self, connection: Connection) -> None:
        """Run one connection's messages in arrival order; once it closes, drop the rest."""
        while True:
            item = await connection.inbox.get()
            if item is None:
                return
            connection.inbox_bytes -= item.size
            if connection.state is not State.OPEN and not item.started:
                connection.dropped += 1
                continue
            connection.handling = True
            try:
                await self._dispatch(connection, item.frame)
            finally:
                connection.handling = False

    async def _dispatch(self, connection: Connection, frame: Frame) -> None:
        started = time.perf_counter()
        invoker = self._invoker
        assert invoker is not None
        route_key = invoker.select_route(frame)
        cid = connection.connection_id
        if route_key is None:
            await self._send_error(connection, "Forbidden")
            self._log_line(connection.client.source_ip, "MESSAGE", "-", cid, 403, started, "no route")
            return
        event = message_event(connection.api, connection.client, frame, route_key=route_key)
        try:
            async with self._fair.slot(_fairness_key(connection)):
                result = await invoker.route(route_key, event)
            status = proxy_status(result)
        except Exception:
            self.log.exception("%s handler failed for %s", route_key, cid)
            status = 500
            await self._send_error(connection, "Internal server error", event)
        self._log_line(connection.client.source_ip, "MESSAGE", route_key, cid, status, started)

    async def _send_error(
        self, connection: Connection, message: str, event: dict[str, Any] | None = None
    ) -> None:
        request_id = (event or {}).get("requestContext", {}).get("requestId")
        body = {"message": message, "connectionId": connection.connection_id, "requestId": request_id}
        with contextlib.suppress(ConnectionGone, OutboxFull):
            connection.offer(json.dumps(body))

    async def _finish(self, connection: Connection) -> None:
        """Run $disconnect once, after the connection's last message."""
        if connection.finished.is_set():
            return
        connection.finished.set()
        connection.state = State.CLOSED
        self._connections.pop(connection.connection_id, None)
        info = connection.close_info or LOST
        invoker = self._invoker
        started = time.perf_counter()
        dropped = f"; {connection.dropped} queued messages dropped" if connection.dropped else ""
        if info == LOST and self._loses_disconnect(connection):
            self._log_line(connection.client.source_ip, "DISCONNECT", "-", connection.connection_id, 0, started,
                           f"{info.code} {info.cause}; $disconnect lost on purpose ({LOSE_DISCONNECT_HEADER})")
            return
        status = 200
        if invoker is not None and invoker.has_route("$disconnect"):
            event = disconnect_event(connection.api, connection.client, info.code, info.reason)
            try:
                status = proxy_status(await invoker.route("$disconnect", event))
            except Exception:
                self.log.exception("$disconnect handler failed for %s", connection.connection_id)
                status = 500
        self._log_line(
            connection.client.source_ip,
            "DISCONNECT",
            "$disconnect",
            connection.connection_id,
            status,
            started,
            f"{info.code} {info.cause}{dropped}",
        )

    def _loses_disconnect(self, connection: Connection) -> bool:
        if not self.lose_disconnects:
            return False
        wanted = LOSE_DISCONNECT_HEADER.lower()
        return any(name.lower() == wanted and value.strip() == "1" for name, value in connection.client.headers)


# Management URLs set by live in-process gateways: a later gateway may
# replace them (unlike a URL someone configured on purpose).
_GATEWAY_URLS: set[str] = set()


class GatewayHandle:
    """A gateway running on its own event loop thread (tests, embedding)."""

    def __init__(self, gateway: LocalGateway, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self.gateway = gateway
        self._loop = loop
        self._thread = thread

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def management_url(self) -> str:
        return self.gateway.management_url

    @property
    def port(self) -> int:
        return self.gateway.port

    @property
    def app_module(self) -> ModuleType | None:
        return self.gateway.app_module

    def call(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the gateway's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def connection_ids(self) -> list[str]:
        async def ids() -> list[str]:
            return self.gateway.connection_ids()

        return list(self.call(ids()))

    def stop(self, timeout: float = 60) -> None:
        if not self._thread.is_alive():
            return
        try:
            self.call(self.gateway.stop(), timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    def __enter__(self) -> GatewayHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_in_thread(project_dir: str = ".", *, port: int = 0, **options: Any) -> GatewayHandle:
    """Start a ``LocalGateway`` on a background thread; returns once it serves.

    ``port=0`` (the default here) picks a free port; read it from the handle.
    Other keyword arguments are ``LocalGateway``'s. Startup errors (missing
    app, unknown authorizer...) are raised here.
    """
    gateway = LocalGateway(project_dir, port=port, **options)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(gateway.start())
        except BaseException as error:  # reported to the caller below
            failure.append(error)
            started.set()
            loop.close()
            return
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    thread = threading.Thread(target=main, name=f"gateway-{gateway.stage}", daemon=True)
    thread.start()
    started.wait()
    if failure:
        thread.join()
        raise failure[0]
    return GatewayHandle(gateway, loop, thread)


__all__ = ["GatewayConfigError", "GatewayHandle", "LocalGateway", "run_in_thread"]


def _fairness_key(connection: Connection) -> str:
    """Who a frame's handler call counts against: the user (the authorizer's principal), else the connection."""
    principal = (connection.client.authorizer or {}).get("principalId")
    return f"user:{principal}" if isinstance(principal, str) and principal else f"connection:{connection.connection_id}"
