"""The REQUEST authorizer's decision: policy and context from a verified token.

API Gateway reads three outcomes from a Lambda authorizer: an exception with the
message ``Unauthorized`` (401), a policy that denies ``execute-api:Invoke``
(403), or one that allows it. On Allow, ``context`` is handed to every route of
the connection as ``requestContext.authorizer``; API Gateway rejects the whole
answer if a context value is not a string, number or boolean, or if the answer
is too large, so the context is flattened and capped here.
"""
from __future__ import annotations

import json
import logging
import sys
from typing import Any, Callable, Mapping, Protocol

from .errors import AuthError, Forbidden, Unauthorized
from .settings import Settings
from .tokens import extract_token, header

logger = logging.getLogger("ws.authorizer")

MAX_CONTEXT_VALUE = 1024
MAX_CONTEXT_BYTES = 6144  # the whole answer must stay under 8 KB
QUERY_PREFIX = "query_"
HEADER_PREFIX = "header_"

Scalar = str | int | float | bool
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode  # built once: it is per decision
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
DenyHook = Callable[[Mapping[str, Any], Mapping[str, Any]], str | None]


class Verifier(Protocol):
    def verify(self, token: str) -> dict[str, Any]: ...


def policy(principal_id: str, effect: str, resource: str,
           context: Mapping[str, Scalar] | None = None) -> dict[str, Any]:
    """An IAM policy answer for API Gateway."""
    answer: dict[str, Any] = {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
    }
    if context is not None:
        answer["context"] = dict(context)
    return answer


def _scalar(value: Any) -> Scalar | None:
    # Exact types first: claims come from JSON, and this runs ~10 times per decision.
    kind = type(value)
    if kind is str:
        return value[:MAX_CONTEXT_VALUE]
    if kind is int or kind is float or kind is bool:
        return value
    if kind is list and all(type(v) is str for v in value):
        return ",".join(value)[:MAX_CONTEXT_VALUE]
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        return value[:MAX_CONTEXT_VALUE]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return ",".join(value)[:MAX_CONTEXT_VALUE]
    return None


def claim_groups(claims: Mapping[str, Any]) -> list[str]:
    groups = claims.get("cognito:groups") or []
    return [g for g in groups if isinstance(g, str)] if isinstance(groups, list) else []


def claim_scopes(claims: Mapping[str, Any]) -> list[str]:
    scope = claims.get("scope")
    return scope.split() if isinstance(scope, str) else []


# Claims a Cognito token carries that are neither ``custom:`` nor handled by
# name above: one C-level set difference skips them all, so the per-claim
# Python loop only runs over what is left (usually nothing).
_KNOWN_CLAIMS = frozenset({
    "sub", "iss", "exp", "iat", "nbf", "auth_time", "token_use", "client_id", "aud", "scope",
    "jti", "origin_jti", "event_id", "username", "cognito:username", "cognito:groups", "email",
    "email_verified", "version", "at_hash", "nonce", "device_key", "identities",
    "cognito:roles", "cognito:preferred_role", "phone_number", "phone_number_verified",
})
_OPTIONAL_CLAIMS = ("email", "client_id", "aud", "scope", "auth_time", "exp", "iat")
_plan: tuple[Settings, frozenset[str]] | None = None


def _skippable(settings: Settings) -> frozenset[str]:
    """Claim names that can never add a context entry under these settings (computed once per Settings)."""
    global _plan
    plan = _plan
    if plan is None or plan[0] is not settings:
        plan = _plan = (settings, _KNOWN_CLAIMS.difference(settings.context_claims))
    return plan[1]


def build_context(claims: Mapping[str, Any], source: str, event: Mapping[str, Any],
                  settings: Settings) -> dict[str, Scalar]:
    """The flat context: identity claims, custom claims and allow-listed request values."""
    username = claims.get("username") or claims.get("cognito:username") or ""
    groups = claims.get("cognito:groups")
    context: dict[str, Scalar] = {
        "sub": claims["sub"],
        "username": username,
        "token_use": claims.get("token_use", ""),
        "iss": claims.get("iss", ""),
        "tokenSource": source,
        "groups": ",".join(claim_groups(claims)) if groups else "",
    }
    for name in _OPTIONAL_CLAIMS:
        value = claims.get(name)
        if value is None:
            continue
        # Exact types inline (this loop runs per decision); the rest via _scalar.
        kind = type(value)
        if kind is str:
            context[name] = value[:MAX_CONTEXT_VALUE]
        elif kind is int or kind is float or kind is bool:
            context[name] = value
        else:
            flat = _scalar(value)
            if flat is not None:
                context[name] = flat
    if "client_id" not in context and isinstance(claims.get("aud"), str):
        context["client_id"] = claims["aud"]
    rest = claims.keys() - _skippable(settings)
    if rest:
        wanted = settings.context_claims
        for name in claims:  # claim order, as before
            if name in rest and (name.startswith("custom:") or name in wanted):
                flat = _scalar(claims[name])
                if flat is not None:
                    context[name.replace(":", "_")] = flat
    if settings.context_query_params:
        params = event.get("queryStringParameters") or {}
        for name in settings.context_query_params:
            value = params.get(name)
            if isinstance(value, str):
                context[QUERY_PREFIX + name] = value[:MAX_CONTEXT_VALUE]
    for name in settings.context_headers:
        value = header(event, name)
        if value is not None:
            context[HEADER_PREFIX + name] = value[:MAX_CONTEXT_VALUE]
    return _cap(context)


def _encoded_size(context: Mapping[str, Scalar]) -> int:
    """``len(json.dumps(context))``, without encoding in the usual case.

    Encoding costs about a tenth of a whole decision. When every key and string
    is printable ASCII, JSON (with ``ensure_ascii``) escapes only quotes and
    backslashes, so the size is plain arithmetic; anything else is encoded.
    """
    texts = list(context)
    size = 2 + 6 * len(context) - (2 if context else 0)  # {} + quotes and ': ' per key + ', ' between
    for value in context.values():
        kind = type(value)
        if kind is str:
            texts.append(value)
            size += 2
        elif kind is int:
            size += len(str(value))
        elif kind is bool:
            size += 4 if value else 5
        else:
            return len(json.dumps(context))
    text = "".join(texts)
    if not (text.isascii() and text.isprintable()):
        return len(json.dumps(context))
    return size + len(text) + text.count('"') + text.count("\\")


def _cap(context: dict[str, Scalar]) -> dict[str, Scalar]:
    """Drop the largest optional entries until the context fits the answer limit."""
    if _encoded_size(context) <= MAX_CONTEXT_BYTES:
        return context
    protected = {"sub", "username", "token_use", "iss", "tokenSource"}
    while _encoded_size(context) > MAX_CONTEXT_BYTES:
        optional = [k for k in context if k not in protected]
        if not optional:
            break
        largest = max(optional, key=lambda k: len(str(context[k])))
        logger.warning(json.dumps({"event": "context_truncated", "dropped": largest}))
        del context[largest]
    return context


def check_permissions(claims: Mapping[str, Any], settings: Settings) -> None:
    """Required groups/scopes are any-of; a miss is a Deny, not a 401."""
    if settings.required_groups and not settings.required_groups.intersection(claim_groups(claims)):
        raise Forbidden("not in a required group", reason="missing_group")
    if settings.required_scopes and not settings.required_scopes.intersection(claim_scopes(claims)):
        raise Forbidden("no required scope", reason="missing_scope")


def _json(value: Any) -> str:
    """One JSON value; strings (nearly every field) go straight to the C escaper."""
    return _quote(value) if type(value) is str else _encode(value)


def _log(decision: str, reason: str, event: Mapping[str, Any], **extra: Any) -> None:
    """One JSON line per decision, straight to stdout (CloudWatch on Lambda).

    Going through a logging handler costs more than a third of a decision on
    Lambda (its handler formats a timestamp and the request id per record);
    the level still comes from ``LOG_LEVEL`` through the ``ws`` logger. The
    line is joined from escaped fields rather than encoded from a dict: the
    same bytes as ``_encode(record)``, with no intermediate record.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    request = event.get("requestContext") or {}
    parts = [f'{{"event":"authorize","decision":{_quote(decision)},"reason":{_json(reason)},'
             f'"connectionId":{_json(request.get("connectionId"))},'
             f'"sourceIp":{_json((request.get("identity") or {}).get("sourceIp"))}']
    for name, value in extra.items():
        parts.append(f',{_quote(name)}:{_json(value)}')
    parts.append("}\n")
    sys.stdout.write("".join(parts))


def authorize(event: Mapping[str, Any], settings: Settings, verifier: Verifier,
              deny_hook: DenyHook | None = None) -> dict[str, Any]:
    """Decide on one upgrade request. Raises ``Exception('Unauthorized')`` for 401."""
    method_arn = event.get("methodArn") or "*"
    source = None
    try:
        extracted = extract_token(event, settings)
        source = extracted.source
        claims = verifier.verify(extracted.token)
    except Unauthorized as error:
        _log("unauthorized", error.reason, event, source=source)
        raise Exception("Unauthorized") from None
    sub = claims["sub"]
    try:
        check_permissions(claims, settings)
        if deny_hook is not None:
            why = deny_hook(claims, event)
            if why:
                raise Forbidden(why, reason="deny_hook")
    except AuthError as error:
        _log("deny", error.reason, event, source=source, sub=sub)
        return policy(sub, "Deny", method_arn)
    context = build_context(claims, extracted.source, event, settings)
    _log("allow", "ok", event, source=source, sub=sub, token_use=claims.get("token_use"))
    return policy(sub, "Allow", method_arn, context)
