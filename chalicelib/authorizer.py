"""The REQUEST authorizer's decision: a policy, and the identity as its context.

API Gateway reads three outcomes from a Lambda authorizer: an exception with the
message ``Unauthorized`` (401), a policy that denies ``execute-api:Invoke``
(403), or one that allows it. On Allow, ``context`` is handed to every route of
the connection as ``requestContext.authorizer``; ``identity.Identity`` writes
it and reads it back.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Protocol

from .errors import AuthError, Forbidden, Unauthorized
from .identity import Claims, Context, Identity, claim_groups, claim_scopes
from .logs import log_event
from .settings import Settings
from .tokens import extract_token, header

logger = logging.getLogger("ws.authorizer")

Event = Mapping[str, Any]  # an API Gateway event: nested JSON
Policy = dict[str, Any]  # the authorizer's answer, as API Gateway reads it
DenyHook = Callable[[Claims, Event], str | None]


class Verifier(Protocol):
    """What ``authorize`` needs: the claims of a valid token, ``sub``, ``iss`` and
    ``token_use`` among them as strings, or an ``Unauthorized`` error."""

    def verify(self, token: str) -> dict[str, Any]: ...


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


def identity_of(claims: Claims, source: str, event: Event, settings: Settings) -> Identity:
    """The verified identity, with the request's allow-listed query parameters and headers."""
    params = event.get("queryStringParameters") or {}
    query = {n: params[n] for n in settings.context_query_params if isinstance(params.get(n), str)}
    headers = {n: v for n in settings.context_headers if (v := header(event, n)) is not None}
    return Identity.from_claims(claims, source, extra_claims=settings.context_claims, query=query, headers=headers)


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
        context = identity_of(claims, source, event, settings).to_context()
    except AuthError as error:
        _log("deny", error.reason, event, source, claims)
        return policy(claims["sub"], "Deny", resource)
    _log("allow", "ok", event, source, claims)
    return policy(claims["sub"], "Allow", resource, context)
