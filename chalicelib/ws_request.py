"""The WebSocket event as one typed request, read once at the edge (``app.py``).

API Gateway's event is nested JSON whose parts may be missing; everything
after this module reads typed fields instead of ``.get(...) or {}`` chains.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .identity import Identity
from .records import Endpoint


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class WsRequest:
    """One ``$connect``, ``$default`` or ``$disconnect`` invocation."""

    connection_id: str  # "" when the event had none (refused by every route)
    endpoint: Endpoint
    identity: Identity | None  # None: no authorizer vouched for the connection
    connected_at: int | None = None
    source_ip: str = ""
    user_agent: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    is_base64: bool = False

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> WsRequest:
        context = event.get("requestContext")
        request: Mapping[str, Any] = context if isinstance(context, Mapping) else {}
        authorizer = request.get("authorizer")
        identity_info = request.get("identity")
        who: Mapping[str, Any] = identity_info if isinstance(identity_info, Mapping) else {}
        headers = event.get("headers")
        connected_at = request.get("connectedAt")
        body = event.get("body")
        return cls(
            connection_id=_text(request.get("connectionId")),
            endpoint=Endpoint(_text(request.get("domainName")), _text(request.get("stage")),
                              _text(request.get("apiId"))),
            identity=Identity.from_context(authorizer) if isinstance(authorizer, Mapping) else None,
            connected_at=connected_at if isinstance(connected_at, int) and not isinstance(connected_at, bool) else None,
            source_ip=_text(who.get("sourceIp")), user_agent=_text(who.get("userAgent")),
            headers={k: v for k, v in headers.items() if isinstance(k, str) and isinstance(v, str)}
            if isinstance(headers, Mapping) else {},
            body=body if isinstance(body, str) else None,
            is_base64=bool(event.get("isBase64Encoded")),
        )


__all__ = ["WsRequest"]
