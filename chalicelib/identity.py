"""The verified identity, and the authorizer context that carries it.

The authorizer verifies a token once; API Gateway then hands the Allow's
``context`` to every route of the connection (WebSocket) or request (REST) as
``requestContext.authorizer``. ``Identity`` is the only code that writes that
context (``Identity.to_context``) and the only code that reads it back
(``Identity.from_context``), so its format is known in one place:

- ``sub``, ``username``, ``token_use``, ``iss``, ``tokenSource``, ``exp``;
- ``groups`` (comma-joined) and ``scope`` (space-joined);
- other allow-listed claims (``client_id``, ``email``, ``auth_time``,
  ``custom:*`` as ``custom_*``, ``CONTEXT_CLAIMS``);
- the client's allow-listed query parameters and headers, as ``query_<name>``
  and ``header_<name>``.

API Gateway refuses a context value that is not a string, number or boolean,
and an answer over about 8 KB. What a later check depends on (the identity,
groups, scopes, ``exp``) is never cut: if it cannot fit, the authorizer denies
with ``context_too_large``, so an Allow is never followed by a route refusing
the same caller for a group it lost on the way. Informational values are cut at
1,024 characters and, if the context is still too large, dropped largest first,
with a log line. Pure, and on the authorizer path: no boto3.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import Forbidden
from .logs import log_event

logger = logging.getLogger("ws.identity")

MAX_CONTEXT_VALUE = 1024  # informational values only
MAX_CONTEXT_BYTES = 6144  # the whole answer must stay under API Gateway's 8 KB
QUERY_PREFIX = "query_"
HEADER_PREFIX = "header_"
# Never cut nor dropped: later checks (connect, routes, refresh, expiry) read them.
PROTECTED_KEYS = ("sub", "username", "token_use", "iss", "tokenSource", "groups", "scope", "exp", "iat")
# Copied when present, informational; client_id comes from aud for id tokens.
INFO_CLAIMS = ("client_id", "email", "auth_time")
# Added by API Gateway to requestContext.authorizer, not by us.
GATEWAY_KEYS = frozenset({"principalId", "integrationLatency"})

Scalar = str | int | float | bool
Context = dict[str, Scalar]
Claims = Mapping[str, Any]  # a verified JWT payload: any JSON values


@dataclass(frozen=True)
class Identity:
    """Who is calling, as verified by the authorizer."""

    sub: str
    username: str = ""
    token_use: str = ""
    issuer: str = ""
    source: str = ""  # where the token came from: header, query, protocol, cookie
    groups: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    expires_at: int | None = None  # the token's exp, epoch seconds
    issued_at: int | None = None  # the token's iat: a revocation refuses tokens issued before it
    claims: Mapping[str, Scalar] = field(default_factory=dict)  # the other allow-listed claims
    client_params: Mapping[str, str] = field(default_factory=dict)  # query_*/header_* values

    # -- from a token (the authorizer) ------------------------------------------------

    @classmethod
    def from_claims(cls, claims: Claims, source: str, *, extra_claims: tuple[str, ...] = (),
                    query: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None) -> Identity:
        """The identity of verified ``claims``; ``query``/``headers``: the allow-listed request values."""
        info: dict[str, Scalar] = {}
        for name in INFO_CLAIMS:
            value = claims.get(name)
            if value is None and name == "client_id":
                value = claims.get("aud")
            flat = _info(value)
            if flat is not None:
                info[name] = flat
        for name, value in claims.items():
            if name.startswith("custom:") or name in extra_claims:
                flat = _info(value)
                if flat is not None:
                    info[name.replace(":", "_")] = flat
        params = {QUERY_PREFIX + k: v[:MAX_CONTEXT_VALUE] for k, v in (query or {}).items()}
        params.update({HEADER_PREFIX + k: v[:MAX_CONTEXT_VALUE] for k, v in (headers or {}).items()})
        return cls(sub=claims["sub"], username=_claim_text(claims.get("username") or claims.get("cognito:username")),
                   token_use=_claim_text(claims.get("token_use")), issuer=_claim_text(claims.get("iss")), source=source,
                   groups=tuple(claim_groups(claims)), scopes=tuple(claim_scopes(claims)),
                   expires_at=epoch_seconds(claims.get("exp")), issued_at=epoch_seconds(claims.get("iat")),
                   claims=info, client_params=params)

    def to_context(self) -> Context:
        """The flat context for API Gateway; Forbidden(context_too_large) when the protected part cannot fit."""
        context = self.flat_claims()
        context.update(self.client_params)
        return _fit(context)

    def flat_claims(self) -> Context:
        """The context without the client's values: what ``whoami`` shows as ``claims``."""
        context: Context = {"sub": self.sub, "username": self.username, "token_use": self.token_use,
                            "iss": self.issuer, "tokenSource": self.source, "groups": ",".join(self.groups)}
        if self.scopes:
            context["scope"] = " ".join(self.scopes)
        if self.expires_at is not None:
            context["exp"] = self.expires_at
        if self.issued_at is not None:
            context["iat"] = self.issued_at
        context.update(self.claims)
        return context

    # -- from the context (every route) -----------------------------------------------

    @classmethod
    def from_context(cls, context: Mapping[str, object], principal: object = None) -> Identity | None:
        """The identity an authorizer put in ``requestContext.authorizer``; None when none vouched for it.

        The subject is ``principalId`` (API Gateway sets it from the Allow), or
        ``principal`` when given (a stored record's ``userId``). On AWS a REST API
        hands every value over as a string; both read the same here.
        """
        principal = principal if principal is not None else context.get("principalId")
        if not isinstance(principal, str) or not principal:
            return None
        info: dict[str, Scalar] = {}
        params: dict[str, str] = {}
        for name, value in context.items():
            if name in GATEWAY_KEYS or name in PROTECTED_KEYS:
                continue
            if name.startswith((QUERY_PREFIX, HEADER_PREFIX)):
                params[name] = str(value)
            elif isinstance(value, str | int | float | bool):
                info[name] = value
        return cls(sub=principal, username=_text(context.get("username")), token_use=_text(context.get("token_use")),
                   issuer=_text(context.get("iss")), source=_text(context.get("tokenSource")),
                   groups=tuple(g for g in _text(context.get("groups")).split(",") if g),
                   scopes=tuple(_text(context.get("scope")).split()),
                   expires_at=epoch_seconds(context.get("exp")), issued_at=epoch_seconds(context.get("iat")),
                   claims=info, client_params=params)

    def public(self) -> dict[str, str | list[str]]:
        """What ``GET /me`` shows of the caller."""
        return {"sub": self.sub, "username": self.username, "token_use": self.token_use,
                "groups": list(self.groups), "scopes": list(self.scopes)}


def claim_groups(claims: Claims) -> list[str]:
    groups = claims.get("cognito:groups") or []
    return [g for g in groups if isinstance(g, str)] if isinstance(groups, list) else []


def claim_scopes(claims: Claims) -> list[str]:
    scope = claims.get("scope")
    return scope.split() if isinstance(scope, str) else []


def epoch_seconds(value: object) -> int | None:
    """A token's ``exp`` as whole epoch seconds: a number, or digits (a context value may come back as text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value == value and abs(value) < 1e12:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 12:
        return int(value.strip())
    return None


def _info(value: object) -> Scalar | None:
    """An informational context value API Gateway accepts, or None (NaN and infinities are not JSON)."""
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value[:MAX_CONTEXT_VALUE]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)[:MAX_CONTEXT_VALUE]
    return None


def _claim_text(value: object) -> str:
    """A claim as text, whole: a string, or a list of strings joined with commas; else ''."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    return _text(value)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _size(context: Mapping[str, Scalar]) -> int:
    return len(json.dumps(context))


def _fit(context: Context) -> Context:
    """Drop the largest informational entries until the context fits; Forbidden if the protected ones alone
    do not (no answer API Gateway would accept exists: a Deny, not an oversized or truncated Allow)."""
    while _size(context) > MAX_CONTEXT_BYTES:
        optional = [k for k in context if k not in PROTECTED_KEYS]
        if not optional:
            raise Forbidden("the identity, groups and scopes exceed the authorizer context limit",
                            reason="context_too_large")
        largest = max(optional, key=lambda k: _size({k: context[k]}))
        log_event(logger, "context_truncated", logging.WARNING, dropped=largest)
        del context[largest]
    return context


__all__ = ["Identity", "MAX_CONTEXT_BYTES", "claim_groups", "claim_scopes", "epoch_seconds"]
