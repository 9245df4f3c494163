"""aiohttp's server with request-size errors answered as API Gateway would, echoing nothing.

aiohttp rejects a request whose request line or one header is over
``max_line_size`` / ``max_field_size`` while parsing it, before any route or
middleware runs: a 400 whose text body quotes the first 100 bytes of the
offending line (an ``Authorization`` header's token, a ``?ID_Token=`` URL),
and the same bytes in a traceback on the ``aiohttp.server`` logger.
``GatewayRunner`` answers those parser errors itself, with fixed JSON bodies
and one log line that quotes nothing of the request:

* a header (name plus value) over ``max_field_size``, or more than
  ``max_headers`` headers: 431 ``{"message": "Request Header Fields Too Large"}``;
* a request line (URL) over ``max_line_size``: 414 ``{"message": "Request-URI Too Long"}``;
* any other unparsable request: 400 ``{"message": "Bad Request"}``.

The upgrade route checks the headers' combined size itself (``LocalGateway``);
this covers the single headers too large to reach it.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import HttpVersion11, web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

HEADERS_TOO_LARGE = "Request Header Fields Too Large"

LOG = logging.getLogger("devtools.gateway")


def headers_too_large() -> web.Response:
    """API Gateway-style 431; the connection is closed after it."""
    response = web.json_response({"message": HEADERS_TOO_LARGE}, status=431)
    response.force_close()
    return response


class _GatewayRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol, with parser errors answered without echo."""

    __slots__ = ()  # same layout as RequestHandler: instances are re-classed, not built

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        status, text, note = self._classify(exc)
        LOG.info("%s HTTP - - %d (%s)", request.remote, status, note)
        if request.writer.output_size > 0:  # as aiohttp: too late for an answer
            raise ConnectionError("response already started")
        # The request never parsed, so aiohttp's placeholder request says
        # HTTP/1.0 and the answer's status line would too, which strict clients
        # (``websockets``) refuse. aiohttp keeps the version in private
        # attributes; should they change, the answer stays HTTP/1.0.
        with contextlib.suppress(AttributeError, TypeError, ValueError):
            request._message = request._message._replace(version=HttpVersion11)
            request._version = HttpVersion11
            request._cache.pop("version", None)
        response = web.json_response({"message": text}, status=status)
        response.force_close()
        return response

    def _classify(self, exc: HttpProcessingError) -> tuple[int, str, str]:
        if isinstance(exc, LineTooLong):
            limit = exc.args[1] if len(exc.args) > 1 else None
            if limit == self.max_field_size:
                return 431, HEADERS_TOO_LARGE, f"a request header is over {self.max_field_size} bytes"
            return 414, "Request-URI Too Long", f"request line over {self.max_line_size} bytes"
        if "too many headers" in (exc.message or "").lower():
            return 431, HEADERS_TOO_LARGE, f"more than {self.max_headers} request headers"
        return 400, "Bad Request", f"malformed request: {type(exc).__name__}"


class GatewayRunner(web.AppRunner):
    """``web.AppRunner`` whose connections use ``_GatewayRequestHandler``.

    Sites take their protocol factory from ``runner.server``; this wraps it
    and re-classes each handler aiohttp builds (the class only overrides
    ``handle_error``), so aiohttp's own construction logic stays in charge.
    """

    @property
    def server(self) -> Callable[[], RequestHandler] | None:  # type: ignore[override]
        server = super().server
        if server is None:
            return None

        def factory() -> RequestHandler:
            handler = server()
            handler.__class__ = _GatewayRequestHandler
            return handler

        return factory


def runner_options(max_header_bytes: int) -> dict[str, Any]:
    """aiohttp parser limits: one header may use the whole header budget.

    The request line keeps aiohttp's 8190 bytes; it must differ from the
    header limit, which is how ``_classify`` tells the two errors apart.
    """
    line = 8190 if max_header_bytes != 8190 else 8191
    return {"max_field_size": max_header_bytes, "max_line_size": line}
