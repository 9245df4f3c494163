"""Finding the JWT in a WebSocket upgrade request.

Browsers cannot set an ``Authorization`` header on ``new WebSocket(...)``, so a
token can arrive four ways. Each is switchable by ``TOKEN_SOURCES`` and tried in
that order; the first source that carries a token wins:

``header``    ``Authorization: Bearer <jwt>`` (name from ``TOKEN_HEADER``,
              matched case-insensitively; a bare ``<jwt>`` is accepted too).
``query``     ``?access_token=<jwt>`` or ``?ID_Token=<jwt>`` (``TOKEN_QUERY_PARAMS``).
``protocol``  ``Sec-WebSocket-Protocol: cognito-jwt, <jwt>``: the marker
              (``TOKEN_PROTOCOL_MARKER``) followed by the JWT as a second
              subprotocol. The server selects the marker; the JWT is never echoed
              (``select_subprotocol`` is the rule for every token source).
``cookie``    an http-only cookie (``TOKEN_COOKIE``, default ``JWT``) plus the
              double-submit CSRF check: the ``CSRF-TOKEN`` cookie must equal a
              value sent as ``?csrf=<value>`` or as a ``csrf.<value>``
              subprotocol, and ``Origin`` must be in ``ALLOWED_ORIGINS``.
              Browsers attach cookies to cross-site WebSocket upgrades, so
              without both checks any page could open a socket as the user.
"""
from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import CrossSiteRequest, TokenInvalid, TokenMissing
from .settings import Settings

CSRF_PROTOCOL_PREFIX = "csrf."
MAX_HEADER_BYTES = 16384


@dataclass(frozen=True)
class ExtractedToken:
    """A token and where it came from (logged and stored as ``tokenSource``)."""

    token: str
    source: str


def header(event: Mapping[str, Any], name: str) -> str | None:
    """A request header by case-insensitive name (API Gateway keeps the client's case)."""
    wanted = name.lower()
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == wanted:
            return value if isinstance(value, str) else None
    return None


def _query(event: Mapping[str, Any], name: str) -> str | None:
    multi = event.get("multiValueQueryStringParameters") or {}
    values = multi.get(name)
    if isinstance(values, list) and len(values) > 1:
        raise TokenInvalid(f"query parameter {name!r} given more than once", reason="ambiguous_token")
    params = event.get("queryStringParameters") or {}
    value = params.get(name)
    return value if isinstance(value, str) and value else None


def offered_subprotocols(event: Mapping[str, Any]) -> list[str]:
    """The subprotocols the client offered, in order."""
    raw = header(event, "sec-websocket-protocol")
    if not raw:
        return []
    if len(raw) > MAX_HEADER_BYTES:
        raise TokenInvalid("Sec-WebSocket-Protocol header too large", reason="too_large")
    return [item.strip() for item in raw.split(",") if item.strip()]


# RFC 7230 token characters: what a Sec-WebSocket-Protocol value may be made of.
_PROTOCOL_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# A compact JWS (3 parts) or JWE (5 parts): base64url segments joined by dots.
_COMPACT_JWT = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*){2}(?:(?:\.[A-Za-z0-9_-]*){2})?$")


def _looks_like_token(value: str) -> bool:
    """A JWT (or anything shaped like one): never echoed back, whatever source the token came from."""
    return value.startswith("eyJ") or (len(value) >= 64 and _COMPACT_JWT.match(value) is not None)


def select_subprotocol(offered: list[str], marker: str) -> str | None:
    """The subprotocol the ``$connect`` answer selects, or None if nothing offered can be selected.

    Browsers (and ``ws``, wscat's library) fail the handshake when they
    offered subprotocols and the answer selects none, so a client that offered
    any must get one of them back. In order of preference:

    1. the marker (``TOKEN_PROTOCOL_MARKER``), whatever source carried the token;
    2. the first offered value that is not a credential: an application
       protocol the client asked for (the app speaks one JSON protocol, so any
       name the client uses for it is accepted);
    3. the ``csrf.<value>`` item, when it is all the client offered (cookie
       auth without ``?csrf=``). Echoing it is harmless: the value is the
       double-submit copy of a cookie the page can already read, and it only
       goes back to the client that sent it;
    4. None: only token-like values (or values that are not valid
       subprotocol names) were offered. The token is never echoed, so the
       caller refuses the connection rather than let in a client whose
       handshake would fail.
    """
    if not offered:
        return None
    if marker in offered:
        return marker
    candidates = [item for item in offered if _PROTOCOL_TOKEN.match(item) and not _looks_like_token(item)]
    for item in candidates:
        if not item.startswith(CSRF_PROTOCOL_PREFIX):
            return item
    return candidates[0] if candidates else None


def parse_cookies(event: Mapping[str, Any]) -> dict[str, str]:
    """Cookies from every ``Cookie`` header; the first occurrence of a name wins."""
    raw_values: list[str] = []
    multi = event.get("multiValueHeaders") or {}
    for key, values in multi.items():
        if key.lower() == "cookie" and isinstance(values, list):
            raw_values.extend(v for v in values if isinstance(v, str))
    if not raw_values:
        single = header(event, "cookie")
        if single:
            raw_values.append(single)
    cookies: dict[str, str] = {}
    for raw in raw_values:
        if len(raw) > MAX_HEADER_BYTES:
            raise TokenInvalid("Cookie header too large", reason="too_large")
        for part in raw.split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name and name not in cookies:
                cookies[name] = value.strip().strip('"')
    return cookies


def _from_header(event: Mapping[str, Any], settings: Settings) -> str | None:
    value = header(event, settings.token_header)
    if not value:
        return None
    if len(value) > MAX_HEADER_BYTES:
        raise TokenInvalid("authorization header too large", reason="too_large")
    scheme, _, rest = value.strip().partition(" ")
    if not rest:
        return scheme or None
    if scheme.lower() != "bearer":
        return None
    return rest.strip() or None


def _from_query(event: Mapping[str, Any], settings: Settings) -> str | None:
    for name in settings.token_query_params:
        value = _query(event, name)
        if value:
            return value
    return None


def _from_protocol(event: Mapping[str, Any], settings: Settings) -> str | None:
    offered = offered_subprotocols(event)
    if settings.protocol_marker not in offered:
        return None
    for item in offered:
        if item != settings.protocol_marker and not item.startswith(CSRF_PROTOCOL_PREFIX):
            return item
    return None


def _from_cookie(event: Mapping[str, Any], settings: Settings) -> str | None:
    cookies = parse_cookies(event)
    token = cookies.get(settings.token_cookie)
    if not token:
        return None
    origin = (header(event, "origin") or "").rstrip("/")
    if origin not in settings.allowed_origins:
        raise CrossSiteRequest("cookie auth from an origin that is not allowed", reason="origin_not_allowed")
    expected = cookies.get(settings.csrf_cookie, "")
    sent = _query(event, settings.csrf_param)
    if sent is None:
        for item in offered_subprotocols(event):
            if item.startswith(CSRF_PROTOCOL_PREFIX):
                sent = item[len(CSRF_PROTOCOL_PREFIX):]
                break
    if not expected or not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise CrossSiteRequest("CSRF cookie and CSRF value do not match", reason="csrf_mismatch")
    return token


_EXTRACTORS = {
    "header": _from_header,
    "query": _from_query,
    "protocol": _from_protocol,
    "cookie": _from_cookie,
}


def extract_token(event: Mapping[str, Any], settings: Settings) -> ExtractedToken:
    """The token of the first enabled source that carries one, or TokenMissing."""
    for source in settings.token_sources:
        token = _EXTRACTORS[source](event, settings)
        if token:
            return ExtractedToken(token=token, source=source)
    raise TokenMissing("no token in " + ", ".join(settings.token_sources))
