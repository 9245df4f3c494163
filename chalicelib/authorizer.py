"""The REQUEST authorizer's decision: policy and context from a verified token.

API Gateway reads three outcomes from a Lambda authorizer: an exception with the
message ``Unauthorized`` (401), a policy that denies ``execute-api:Invoke``
(403), or one that allows it. On Allow, ``context`` is handed to every route of
the connection as ``requestContext.authorizer``; API Gateway rejects the whole
answer if a context value is not a string, number or boolean, or if the answer
is too large, so the context is flattened and capped here.

This module owns the context's format: ``build_context`` writes it and
``read_context`` reads it back for ``$connect``, so the ``query_``/``header_``
prefixes are known in one place.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from .errors import AuthError, Forbidden, Unauthorized
from .logs import log_event
from .settings import Settings
from .tokens import extract_token, header

logger = logging.getLogger("ws.authorizer")

MAX_CONTEXT_VALUE = 1024
MAX_CONTEXT_BYTES = 6144  # the whole answer must stay under 8 KB
QUERY_PREFIX = "query_"
HEADER_PREFIX = "header_"
# Never dropped to make the context fit: without them the connection has no identity.
IDENTITY_KEYS = ("sub", "username", "token_use", "iss", "tokenSource")
# Copied when present; client_id comes from aud for id tokens.
OPTIONAL_CLAIMS = ("client_id", "email", "scope", "auth_time", "exp")
# Added by API Gateway to requestContext.authorizer, not by us.
_GATEWAY_KEYS = frozenset({"principalId", "integrationLatency"})

Scalar = str | int | float | bool
Context = dict[str, Scalar]
Claims = Mapping[str, Any]  # a verified JWT payload: any JSON values
Event = Mapping[str, Any]  # an API Gateway event: nested JSON
Policy = dict[str, Any]  # the authorizer's answer, as API Gateway reads it
DenyHook = Callable[[Claims, Event], str | None]


class Verifier(Protocol):
    """What ``authorize`` needs: the claims of a valid token, ``sub``, ``iss`` and
    ``token_use`` among them as strings, or an ``Unauthorized`` error."""

    def verify(self, token: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ConnectionContext:
    """The authorizer context as ``$connect`` stores it: claims, and the
    client's allow-listed query parameters and headers (with their prefixes)."""

    claims: Context
    client_params: dict[str, str]


def policy(principal_id: str, effect: str, resource: str, context: Context | None = None) -> Policy:
    """An IAM policy answer for API Gateway."""
    answer: Policy = {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
    }
    if context is not None:
        answer["context"] = context
    return answer


def _scalar(value: object) -> Scalar | None:
    """A context value API Gateway accepts, or None (NaN and infinities are not JSON)."""
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value[:MAX_CONTEXT_VALUE]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)[:MAX_CONTEXT_VALUE]
    return None


def _text(value: object) -> str:
    flat = _scalar(value)
    return flat if isinstance(flat, str) else ""


def claim_groups(claims: Claims) -> list[str]:
    groups = claims.get("cognito:groups") or []
    return [g for g in groups if isinstance(g, str)] if isinstance(groups, list) else []


def claim_scopes(claims: Claims) -> list[str]:
    scope = claims.get("scope")
    return scope.split() if isinstance(scope, str) else []


def build_context(claims: Claims, source: str, event: Event, settings: Settings) -> Context:
    """The flat context: identity claims, custom claims and allow-listed request values."""
    context: Context = {
        "sub": claims["sub"],
        "username": _text(claims.get("username") or claims.get("cognito:username")),
        "token_use": _text(claims.get("token_use")),
        "iss": _text(claims.get("iss")),
        "tokenSource": source,
        "groups": ",".join(claim_groups(claims))[:MAX_CONTEXT_VALUE],
    }
    for name in OPTIONAL_CLAIMS:
        value = claims.get(name)
        if value is None and name == "client_id":
            value = claims.get("aud")
        flat = _scalar(value)
        if flat is not None:
            context[name] = flat
    for name, value in claims.items():
        if name.startswith("custom:") or name in settings.context_claims:
            flat = _scalar(value)
            if flat is not None:
                context[name.replace(":", "_")] = flat
    params = event.get("queryStringParameters") or {}
    for name in settings.context_query_params:
        value = params.get(name)
        if isinstance(value, str):
            context[QUERY_PREFIX + name] = value[:MAX_CONTEXT_VALUE]
    for name in settings.context_headers:
        value = header(event, name)
        if value is not None:
            context[HEADER_PREFIX + name] = value[:MAX_CONTEXT_VALUE]
    return _fit(context)


def _size(context: Mapping[str, Scalar]) -> int:
    return len(json.dumps(context))


def _fit(context: Context) -> Context:
    """Drop the largest optional entries until the context fits the answer limit.

    If the identity entries alone do not fit (a subject or username of
    thousands of escaped characters), no answer API Gateway would accept
    exists: that is a Deny (``context_too_large``), not an oversized Allow.
    """
    while _size(context) > MAX_CONTEXT_BYTES:
        optional = [k for k in context if k not in IDENTITY_KEYS]
        if not optional:
            raise Forbidden("the identity claims alone exceed the authorizer context limit",
                            reason="context_too_large")
        largest = max(optional, key=lambda k: _size({k: context[k]}))
        log_event(logger, "context_truncated", logging.WARNING, dropped=largest)
        del context[largest]
    return context


def read_context(authorizer: Mapping[str, object]) -> ConnectionContext:
    """Split ``requestContext.authorizer`` back into claims and client parameters."""
    claims: Context = {}
    client_params: dict[str, str] = {}
    for name, value in authorizer.items():
        if name in _GATEWAY_KEYS:
            continue
        if name.startswith((QUERY_PREFIX, HEADER_PREFIX)):
            client_params[name] = str(value)
        elif isinstance(value, str | int | float | bool):
            claims[name] = value
    return ConnectionContext(claims=claims, client_params=client_params)


def check_permissions(claims: Claims, settings: Settings) -> None:
    """Required groups/scopes are any-of; a miss is a Deny, not a 401."""
    if settings.required_groups and not settings.required_groups.intersection(claim_groups(claims)):
        raise Forbidden("not in a required group", reason="missing_group")
    if settings.required_scopes and not settings.required_scopes.intersection(claim_scopes(claims)):
        raise Forbidden("no required scope", reason="missing_scope")


def _log(decision: str, reason: str, event: Event, source: str | None,
         claims: Claims | None = None) -> None:
    """One JSON line per decision, with its reason; never the token."""
    request = event.get("requestContext") or {}
    log_event(logger, "authorize", decision=decision, reason=reason,
              connectionId=request.get("connectionId"),
              sourceIp=(request.get("identity") or {}).get("sourceIp"), source=source,
              sub=claims.get("sub") if claims else None,
              token_use=claims.get("token_use") if claims else None)


def authorize(event: Event, settings: Settings, verifier: Verifier,
              deny_hook: DenyHook | None = None) -> Policy:
    """Decide on one upgrade request. Raises ``Exception('Unauthorized')`` for 401."""
    source = None
    try:
        found = extract_token(event, settings)
        source = found.source
        claims = verifier.verify(found.token)
    except Unauthorized as error:
        _log("unauthorized", error.reason, event, source)
        raise Exception("Unauthorized") from None
    resource = event.get("methodArn") or "*"
    try:
        check_permissions(claims, settings)
        if deny_hook is not None:
            why = deny_hook(claims, event)
            if why:
                raise Forbidden(why, reason="deny_hook")
        context = build_context(claims, source, event, settings)
    except AuthError as error:
        _log("deny", error.reason, event, source, claims)
        return policy(claims["sub"], "Deny", resource)
    _log("allow", "ok", event, source, claims)
    return policy(claims["sub"], "Allow", resource, context)
