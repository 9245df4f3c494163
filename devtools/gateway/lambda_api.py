"""Lambda's ``Invoke`` API for the app's pure Lambda functions (``notify``...).

Back-end services reach those functions with ``boto3.client("lambda").invoke``;
pointing that client's ``endpoint_url`` at the gateway runs the same call
locally: ``POST /2015-03-31/functions/<name>/invocations``. The name may be the
short one (``notify``) or the deployed one (``<app>-<stage>-notify``). As Lambda
does, a handler error is a 200 with ``X-Amz-Function-Error: Unhandled``.
"""
from __future__ import annotations

import json
import time
import traceback
from typing import Any, Awaitable, Callable

from aiohttp import web

Call = Callable[[str, Any], Awaitable[Any]]


class LambdaInvokeApi:
    """Routes added before the app is loaded, so the app is looked up per call."""

    def __init__(self, *, stage: str, app: Callable[[], Any], call: Call, log: Any) -> None:
        self._stage = stage
        self._app = app
        self._call = call
        self._log = log

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/2015-03-31/functions/{name}/invocations", self.invoke)]

    def _resolve(self, name: str) -> str | None:
        app = self._app()
        if app is None:
            return None
        name = name.rsplit(":function:", 1)[-1].split(":", 1)[0]
        prefix = f"{app.app_name}-{self._stage}-"
        if name.startswith(prefix):
            name = name[len(prefix):]
        functions = {fn.name for fn in app.pure_lambda_functions}
        return name if name in functions else None

    async def invoke(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        name = self._resolve(request.match_info["name"])
        if name is None:
            body = {"Type": "User", "message": f"Function not found: {request.match_info['name']}"}
            return web.json_response(body, status=404, headers={"x-amzn-ErrorType": "ResourceNotFoundException"})
        raw = await request.read()
        headers = {"X-Amz-Executed-Version": "$LATEST"}
        try:
            event = json.loads(raw) if raw else {}
        except RecursionError:  # valid JSON nested past what the runtime's parser takes: the function's error
            headers["X-Amz-Function-Error"] = "Unhandled"
            payload = {"errorMessage": "Unable to unmarshal input: the event is nested too deeply",
                       "errorType": "Runtime.UnmarshalError", "requestId": "", "stackTrace": []}
            self._log.info("%s INVOKE %s 200 unmarshal error", request.remote, name)
            return web.Response(body=json.dumps(payload).encode(), headers=headers, content_type="application/json")
        except ValueError:
            return web.json_response({"Type": "User", "message": "Could not parse request body into json"},
                                     status=400, headers={"x-amzn-ErrorType": "InvalidRequestContentException"})
        status = 200
        try:
            payload: Any = await self._call(name, event)
        except Exception as error:  # reported to the caller the way Lambda does
            headers["X-Amz-Function-Error"] = "Unhandled"
            payload = {"errorMessage": str(error), "errorType": type(error).__name__,
                       "stackTrace": traceback.format_tb(error.__traceback__)}
        elapsed = (time.perf_counter() - started) * 1000
        self._log.info("%s INVOKE %s %d %.1fms", request.remote, name, status, elapsed)
        return web.Response(body=json.dumps(payload).encode(), status=status, headers=headers,
                            content_type="application/json")
