"""The gateway's AWS API stand-ins answer SDKs only, never a web page.

Any page a developer visits can send a "simple" cross-site request to
127.0.0.1: a POST with a ``text/plain``, form or multipart body needs no CORS
preflight, so the browser sends it and only hides the answer. Unchecked, such a
POST to the local Lambda Invoke API makes ``notify`` deliver, and the
``@connections`` and ``PutEvents`` stand-ins are as open. SDKs (boto3, the AWS
CLI) send no ``Origin`` and none of those content types; browsers send an
``Origin`` with every cross-site POST and DELETE. So those endpoints refuse a
request that carries an ``Origin`` (403) or a CORS-safelisted content type (415).
The browser client's page never calls them; its own ``/_web/*`` endpoints need
headers (``X-Amz-Target``, ``Authorization``) or methods a page cannot send
cross-site without a preflight, which is never granted.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

# What a browser may send cross-site without asking first (the Fetch standard's CORS-safelisted types).
SIMPLE_CONTENT_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_aws_api(request: web.Request) -> bool:
    """The Lambda Invoke, ``@connections`` and ``PutEvents`` stand-ins."""
    path = request.path
    return (path.startswith("/2015-03-31/functions/") or "/@connections/" in path
            or (path == "/" and request.method == "POST"))


def refusal(request: web.Request) -> tuple[int, str] | None:
    """(status, reason) when a browser could have sent ``request``; None for an SDK's request."""
    if not is_aws_api(request):
        return None
    if "Origin" in request.headers:
        return 403, "a request with an Origin: this local AWS endpoint takes SDK requests only, not a web page's"
    content_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if content_type in SIMPLE_CONTENT_TYPES:
        return 415, f"Content-Type {content_type} is what a web page can send cross-site; SDKs never do"
    return None


def middleware(log: logging.Logger) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def refuse_browsers(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = refusal(request)
        if refused is None:
            return await handler(request)
        status, reason = refused
        log.warning("%s %s %s refused (%d): %s", request.remote, request.method, request.path, status, reason)
        return web.json_response({"message": reason}, status=status,
                                 headers={"x-amzn-ErrorType": "AccessDeniedException"})

    return refuse_browsers
