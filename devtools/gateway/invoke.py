"""Call the app's Lambda handlers off the event loop, as Lambda would call them.

Each call gets a fresh ``chalice.local.LambdaContext`` with the function's
configured memory size and timeout. Timeouts are reported by the context
(``get_remaining_time_in_millis``) but not enforced: a handler that overruns
keeps its worker thread.

Two thread pools: the authorizer and ``$connect`` run on ``connect_executor``,
everything else (``$default`` and custom routes, ``$disconnect``, Lambda
Invoke) on ``executor``. On AWS each is its own Lambda function with its own
concurrency, so a flood of slow message handlers never queues a new
connection's authorizer behind it; the separate pool keeps that true here.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chalice import Chalice
from chalice.local import LambdaContext

from .appload import FunctionSettings, GatewayConfigError, ProjectConfig

RESERVED_ROUTES = ("$connect", "$disconnect", "$default")


class AppInvoker:
    """The app's WebSocket routes and authorizer, callable from the event loop."""

    def __init__(
        self,
        app: Chalice,
        *,
        stage: str,
        authorizer: str | None,
        executor: ThreadPoolExecutor,
        project_config: ProjectConfig | None = None,
        connect_executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.app = app
        self.stage = stage
        self.executor = executor
        self.connect_executor = connect_executor or executor
        self._config = project_config
        self._settings: dict[str, FunctionSettings] = {}
        self.routes: dict[str, str] = {
            route_key: handler.name for route_key, handler in app.websocket_handlers.items()
        }
        for route_key, name in self.routes.items():
            if name not in app.handler_map:
                raise GatewayConfigError(f"route {route_key} handler {name!r} is not in handler_map")
        self.authorizer = authorizer or None
        if self.authorizer is not None and self.authorizer not in app.handler_map:
            known = sorted(
                fn.name for fn in getattr(app, "pure_lambda_functions", [])
            )
            raise GatewayConfigError(
                f"authorizer {self.authorizer!r} is not a function of app {app.app_name!r} "
                f"(lambda functions: {known}); pass authorizer='' to run without one"
            )
        self.custom_routes = frozenset(k for k in self.routes if k not in RESERVED_ROUTES)

    def has_route(self, route_key: str) -> bool:
        return route_key in self.routes

    def select_route(self, frame: str | bytes) -> str | None:
        """``$request.body.action`` over the app's route keys, else ``$default`` (or None)."""
        if isinstance(frame, str) and self.custom_routes:
            try:
                body = json.loads(frame)
            except ValueError:
                body = None
            if isinstance(body, dict):
                action = body.get("action")
                if isinstance(action, str) and action in self.custom_routes:
                    return action
        return "$default" if "$default" in self.routes else None

    def _function_settings(self, name: str) -> FunctionSettings:
        settings = self._settings.get(name)
        if settings is None:
            if self._config is not None:
                settings = self._config.function_settings(name)
            else:
                settings = FunctionSettings(memory_size=128, timeout_seconds=60)
            self._settings[name] = settings
        return settings

    def _context(self, name: str) -> LambdaContext:
        return self._function_settings(name).context(self.app.app_name, self.stage, name)

    async def _call(
        self, name: str, event: dict[str, Any], executor: ThreadPoolExecutor | None = None
    ) -> Any:
        handler = self.app.handler_map[name]
        context = self._context(name)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor or self.executor, handler, event, context)

    async def invoke(self, name: str, event: Any) -> Any:
        """Any function of the app by its handler_map name (Lambda's Invoke API)."""
        return await self._call(name, event)

    async def authorize(self, event: dict[str, Any]) -> Any:
        assert self.authorizer is not None
        return await self._call(self.authorizer, event, self.connect_executor)

    async def route(self, route_key: str, event: dict[str, Any]) -> Any:
        executor = self.connect_executor if route_key == "$connect" else self.executor
        return await self._call(self.routes[route_key], event, executor)


def proxy_status(result: Any) -> int:
    """statusCode of a Lambda proxy answer; Chalice's wrapper defaults it to 200."""
    if isinstance(result, Mapping):
        code = result.get("statusCode", 200)
        try:
            return int(code)
        except (TypeError, ValueError):
            return 500
    return 200


def proxy_headers(result: Any) -> list[tuple[str, str]]:
    """``headers`` then ``multiValueHeaders`` of a proxy answer, as pairs."""
    pairs: list[tuple[str, str]] = []
    if not isinstance(result, Mapping):
        return pairs
    headers = result.get("headers") or {}
    if isinstance(headers, Mapping):
        pairs.extend((str(k), str(v)) for k, v in headers.items())
    multi = result.get("multiValueHeaders") or {}
    if isinstance(multi, Mapping):
        for key, values in multi.items():
            for value in values if isinstance(values, list) else [values]:
                pairs.append((str(key), str(value)))
    return pairs
