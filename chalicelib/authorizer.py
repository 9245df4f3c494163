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
import math
import sys
from typing import Any, Callable, Mapping, Protocol

from .errors import AuthError, Forbidden, Unauthorized
from .settings import Settings
from .tokens import find_token, header

logger = logging.getLogger("ws.authorizer")
_INFO = logging.INFO

MAX_CONTEXT_VALUE = 1024
MAX_CONTEXT_BYTES = 6144  # the whole answer must stay under 8 KB
QUERY_PREFIX = "query_"
HEADER_PREFIX = "header_"

Scalar = str | int | float | bool
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode  # built once: it is per decision
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
DenyHook = Callable[[Mapping[str, Any], Mapping[str, Any]], str | None]


class Verifier(Protocol):
    """What ``authorize`` needs: the claims of a valid token, ``sub``, ``iss`` and
    ``token_use`` among them as strings (CognitoJwtVerifier checks all three), or
    an ``Unauthorized`` error. The claims are the token's own payload: the
    context's size bound counts on their text fitting in the token."""

    def verify(self, token: str) -> dict[str, Any]: ...


def policy(principal_id: str, effect: str, resource: str,
           context: dict[str, Scalar] | None = None) -> dict[str, Any]:
    """An IAM policy answer for API Gateway."""
    answer: dict[str, Any] = {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
    }
    if context is not None:
        answer["context"] = context  # built for this answer alone: no copy
    return answer


def _scalar(value: Any) -> Scalar | None:
    # Exact types first: claims come from JSON, and this runs ~10 times per decision.
    kind = type(value)
    if kind is str:
        return value[:MAX_CONTEXT_VALUE]
    if kind is int or kind is bool:
        return value
    if kind is float:
        return value if math.isfinite(value) else None  # NaN and infinities are not JSON
    if kind is list and all(type(v) is str for v in value):
        return ",".join(value)[:MAX_CONTEXT_VALUE]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, int)):
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
# name above: one C-level subset test skips them all, so the per-claim
# Python loop only runs when something else is there (usually nothing).
_KNOWN_CLAIMS = frozenset({
    "sub", "iss", "exp", "iat", "nbf", "auth_time", "token_use", "client_id", "aud", "scope",
    "jti", "origin_jti", "event_id", "username", "cognito:username", "cognito:groups", "email",
    "email_verified", "version", "at_hash", "nonce", "device_key", "identities",
    "cognito:roles", "cognito:preferred_role", "phone_number", "phone_number_verified",
})
_OPTIONAL = ("client_id", "email", "scope", "auth_time", "exp")  # client_id: or aud (id tokens)
_ALWAYS = ("sub", "username", "token_use", "iss", "tokenSource", "groups")
# Upper bound of everything in the encoded context that is not the text of a
# claim: braces, each possible fixed key with its quotes and ", " / ": "
# separators, the quotes of its value, and the longest token source name.
_FIXED_JSON = 2 + sum(len(k) + 8 for k in _ALWAYS + _OPTIONAL) + len("protocol")
_plan: tuple[Settings, frozenset[str]] | None = None


def _skippable(settings: Settings) -> frozenset[str]:
    """Claim names that can never add a context entry under these settings (computed once per Settings)."""
    global _plan
    plan = _plan
    if plan is None or plan[0] is not settings:
        plan = _plan = (settings, _KNOWN_CLAIMS.difference(settings.context_claims))
    return plan[1]


def _text(value: Any) -> str:
    flat = value if type(value) is str else _scalar(value)
    return flat[:MAX_CONTEXT_VALUE] if type(flat) is str else ""


def build_context(claims: Mapping[str, Any], source: str, event: Mapping[str, Any],
                  settings: Settings, token_length: int | None = None) -> dict[str, Scalar]:
    """The flat context: identity claims, custom claims and allow-listed request values.

    API Gateway refuses an answer whose context is too large, so the context
    is measured and trimmed when it might not fit. Measuring costs a tenth
    of a decision, so the usual case is settled from ``token_length``, the
    length of the token the claims were verified from: every string or int
    copied here is the value of a different claim, so their JSON text all
    fits in the payload's ``token_length * 3 / 4`` bytes, and ``json.dumps``
    writes at most 3 ASCII characters per UTF-8 byte (a non-BMP character:
    4 bytes, two 6-character escapes). Everything else (floats, custom
    claims, request values, no ``token_length``) is measured exactly.
    ``sub``, ``iss`` and ``token_use`` are strings: the verifier checked them.
    """
    get = claims.get
    sub = claims["sub"]
    username = get("username") or get("cognito:username") or ""
    if type(username) is not str or len(username) > MAX_CONTEXT_VALUE:
        username = _text(username)
    groups = get("cognito:groups") or ""
    if groups:
        groups = _joined(groups) if type(groups) is list else ""
    context: dict[str, Scalar] = {
        "sub": sub, "username": username, "token_use": get("token_use", ""), "iss": get("iss", ""),
        "tokenSource": source, "groups": groups,
    }
    exact = token_length is None or _FIXED_JSON + (9 * token_length >> 2) > MAX_CONTEXT_BYTES
    for name in _OPTIONAL:
        value = get(name)
        if value is None:
            if name != "client_id":
                continue
            value = get("aud")  # id tokens name the app client in aud
            if value is None:
                continue
        # Exact types inline (this runs per decision); the rest via _scalar.
        kind = type(value)
        if kind is int or (kind is str and len(value) <= MAX_CONTEXT_VALUE):
            context[name] = value
        else:
            flat = _scalar(value)
            if flat is not None:
                context[name] = flat
                exact = True
    plan = _plan
    skippable = plan[1] if plan is not None and plan[0] is settings else _skippable(settings)
    if not skippable.issuperset(claims):
        wanted = settings.context_claims
        for name in claims:  # claim order, as before
            if name not in skippable and (name.startswith("custom:") or name in wanted):
                flat = _scalar(claims[name])
                if flat is not None:
                    context[name.replace(":", "_")] = flat
                    exact = True
    if settings.context_query_params:
        params = event.get("queryStringParameters") or {}
        for name in settings.context_query_params:
            value = params.get(name)
            if isinstance(value, str):
                context[QUERY_PREFIX + name] = value[:MAX_CONTEXT_VALUE]
                exact = True
    for name in settings.context_headers:
        value = header(event, name)
        if value is not None:
            context[HEADER_PREFIX + name] = value[:MAX_CONTEXT_VALUE]
            exact = True
    return _cap(context) if exact else context


def _joined(values: list[Any]) -> str:
    """A list of strings as one comma-separated value (non-strings dropped)."""
    try:
        joined = ",".join(values)
    except TypeError:
        joined = ",".join(v for v in values if type(v) is str)
    return joined[:MAX_CONTEXT_VALUE]


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
    """Drop the largest optional entries until the context fits the answer limit.

    If the identity entries alone do not fit (a subject or username of
    thousands of escaped characters), no answer API Gateway would accept
    exists: that is a Deny (``context_too_large``), not an oversized Allow.
    """
    if _encoded_size(context) <= MAX_CONTEXT_BYTES:
        return context
    protected = {"sub", "username", "token_use", "iss", "tokenSource"}
    while _encoded_size(context) > MAX_CONTEXT_BYTES:
        optional = [k for k in context if k not in protected]
        if not optional:
            raise Forbidden("the identity claims alone exceed the authorizer context limit",
                            reason="context_too_large")
        largest = max(optional, key=lambda k: len(k) + len(json.dumps(context[k])))
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


def _log(decision: str, reason: str, event: Mapping[str, Any], source: str | None,
         sub: str | None = None, token_use: str | None = None) -> None:
    """One JSON line per decision, straight to stdout (CloudWatch on Lambda).

    Going through a logging handler costs more than a third of a decision on
    Lambda (its handler formats a timestamp and the request id per record);
    the level still comes from ``LOG_LEVEL`` through the ``ws`` logger. The
    line is one f-string of C-escaped fields, never a record dict to encode.
    ``decision`` is one of this module's literals and needs no escaping.
    """
    if not logger.isEnabledFor(_INFO):
        return
    request = event.get("requestContext") or {}
    connection_id = request.get("connectionId")
    source_ip = (request.get("identity") or {}).get("sourceIp")
    line = (f'{{"event":"authorize","decision":"{decision}","reason":{_json(reason)},'
            f'"connectionId":{_json(connection_id)},"sourceIp":{_json(source_ip)},"source":{_json(source)}')
    if sub is not None:
        line += f',"sub":{_json(sub)}'
        if token_use is not None:
            line += f',"token_use":{_json(token_use)}'
    sys.stdout.write(line + "}\n")


def _log_allow(event: Mapping[str, Any], source: str, sub: str, token_use: Any) -> None:
    """``_log("allow", "ok", ...)``, specialised: the one line written on every
    successful upgrade, with ``source`` and ``sub`` known to be strings."""
    if not logger.isEnabledFor(_INFO):
        return
    request = event.get("requestContext") or {}
    connection_id = request.get("connectionId")
    source_ip = (request.get("identity") or {}).get("sourceIp")
    sys.stdout.write(
        f'{{"event":"authorize","decision":"allow","reason":"ok",'
        f'"connectionId":{_quote(connection_id) if type(connection_id) is str else _encode(connection_id)},'
        f'"sourceIp":{_quote(source_ip) if type(source_ip) is str else _encode(source_ip)},'
        f'"source":{_quote(source)},"sub":{_quote(sub)},'
        f'"token_use":{_quote(token_use) if type(token_use) is str else _encode(token_use)}}}\n')


def authorize(event: Mapping[str, Any], settings: Settings, verifier: Verifier,
              deny_hook: DenyHook | None = None) -> dict[str, Any]:
    """Decide on one upgrade request. Raises ``Exception('Unauthorized')`` for 401."""
    source = None
    try:
        token, source = find_token(event, settings)
        claims = verifier.verify(token)
    except Unauthorized as error:
        _log("unauthorized", error.reason, event, source)
        raise Exception("Unauthorized") from None
    sub = claims["sub"]
    resource = event.get("methodArn") or "*"
    if settings.required_groups or settings.required_scopes or deny_hook is not None:
        try:
            check_permissions(claims, settings)
            if deny_hook is not None:
                why = deny_hook(claims, event)
                if why:
                    raise Forbidden(why, reason="deny_hook")
        except AuthError as error:
            _log("deny", error.reason, event, source, sub)
            return policy(sub, "Deny", resource)
    try:
        context = build_context(claims, source, event, settings, len(token))
    except Forbidden as error:
        _log("deny", error.reason, event, source, sub)
        return policy(sub, "Deny", resource)
    _log_allow(event, source, sub, claims.get("token_use"))
    return policy(sub, "Allow", resource, context)
