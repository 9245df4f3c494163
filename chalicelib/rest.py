"""The REST API: its TOKEN authorizer's decision, and what its routes read and answer.

The REST routes are for back-end services and for a user's own checks (``GET
/me``); they use the verifier and the settings the WebSocket authorizer uses, so
the rules are the same (RS256, ``iss``, ``token_use``, app client, ``exp``,
``REQUIRED_GROUPS``/``REQUIRED_SCOPES``). Only the answer's shape differs:

* the token comes from ``Authorization: Bearer <jwt>`` (Chalice's TOKEN
  authorizer hands over that header's value);
* a missing or bad token is an error whose message is exactly
  ``Unauthorized``, which API Gateway's REST API answers with 401;
* a valid token gets a policy naming the routes it may call, built from the
  request's method ARN. The policy depends on the token only, never on the
  route called: API Gateway may cache it (per token) and apply it to the next
  route. A token without a required group/scope gets a Deny (403 everywhere);
  one without a push permission (``PUSH_GROUPS``/``PUSH_SCOPES``) gets ``GET
  /me`` only, so the push routes answer it 403 and nothing is sent.

Push permission is any-of: a configured group (a user in, say, ``publishers``)
or a configured scope (a client-credentials access token of a machine client,
which carries ``client_id`` and ``scope`` and no user at all: its ``sub`` is the
client id). Both lists empty, the default: nobody may push over REST.

The routes check the permission again from the authorizer's context and refuse
a request that no authorizer vouched for, so a route deployed without the
authorizer fails closed. Bad input is a 400 with a JSON error; nothing is read
from the table or sent before the input is valid (``ConnectionService.push``).

The management endpoint of a push cannot come from a REST request (it carries
no WebSocket event, Chalice issue #1357): ``ConnectionService.push`` reads it
from the stored connections (each record keeps the domain, stage and API id of
its ``$connect``), or takes ``WEBSOCKET_MANAGEMENT_URL`` when that is set.

This module is on the authorizer's path, which must not import boto3: the
service is only named for type checking, and ``runtime`` hands it in.
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from chalice.app import AuthRequest, AuthResponse, AuthRoute, Request, Response

from .authorizer import Claims, Policy, Verifier, build_context, check_permissions, claim_groups, claim_scopes
from .authorizer import policy as iam_policy
from .faults import is_unavailable
from .errors import AuthError, TokenMissing, Unauthorized
from .logs import log_event
from .push import Push, PushError, broadcast_push, topic_push, user_push
from .settings import Settings, SettingsError
from .validation import JsonRefused, loads_strict

if TYPE_CHECKING:  # the authorizer imports this module: no boto3 behind it at run time
    from .service import ConnectionService

logger = logging.getLogger("ws.rest")

TOKEN_SOURCE = "header"
# Bodies larger than this are refused unread. A message's frame is checked
# against API Gateway's 128 KB when it is encoded (ConnectionService.push); a
# JSON body may be larger than its frame (escapes, whitespace), hence the margin.
MAX_BODY_BYTES = 1024 * 1024
JSON_HEADERS = {"Content-Type": "application/json"}

# What any verified caller may call, and what only a caller with push permission may.
# ``*`` stands for one path parameter (IAM wildcards in the method ARN).
READ_ROUTES = (AuthRoute("/me", ["GET"]),)
PUSH_ROUTES = (
    AuthRoute("/users/*/messages", ["POST"]),
    AuthRoute("/topics/*/messages", ["POST"]),
    AuthRoute("/messages", ["POST"]),
)
# ``POST /users/{userId}/messages?by=...``: how the path names the user (notify's two keys).
USER_KEYS = {"sub": "userId", "username": "username"}


# -- the authorizer -----------------------------------------------------------------


def bearer_token(header_value: object) -> str:
    """The JWT of an ``Authorization: Bearer <jwt>`` value; TokenMissing otherwise."""
    if not isinstance(header_value, str):
        raise TokenMissing("no Authorization header", reason="token_missing")
    scheme, _, token = header_value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenMissing("Authorization is not 'Bearer <token>'", reason="token_missing")
    return token.strip()


def may_push(groups: list[str], scopes: list[str], settings: Settings) -> bool:
    """Any-of ``PUSH_GROUPS`` or ``PUSH_SCOPES``; both unset: nobody (fail closed)."""
    return bool(settings.push_groups.intersection(groups) or settings.push_scopes.intersection(scopes))


def api_wide_arn(method_arn: str) -> str:
    """``arn:...:<api>/<stage>/*``: every route of the stage the request came to."""
    prefix, _, resource = method_arn.rpartition(":")
    api_and_stage = resource.split("/")[:2]
    return f"{prefix}:{'/'.join(api_and_stage)}/*" if prefix and len(api_and_stage) == 2 else "*"


def _gateway_error(kind: str) -> Exception:
    """What an authorizer raises for API Gateway's 401 (``kind="unauthorized"``) or 500.

    On Lambda, API Gateway reads the error's message: exactly ``Unauthorized``
    is a 401; anything else is a 500. Chalice's local API Gateway
    (``chalice local``, ``chalice.test.Client``, the REST server of ``make
    run``) turns only its own exception classes into HTTP answers and drops the
    connection on any other, so where it runs (its module is loaded already;
    nothing is imported here, and Lambda's package has no ``chalice.local``)
    the same error is raised as its class for that answer, with the message
    ``Unauthorized`` still.
    """
    local = sys.modules.get("chalice.local")
    if local is None:
        return Exception("Unauthorized" if kind == "unauthorized" else "authorizer error")
    if kind == "unauthorized":
        error: Exception = local.NotAuthorizedError(
            {"x-amzn-ErrorType": "UnauthorizedException"}, b'{"message":"Unauthorized"}')
        error.args = ("Unauthorized",)
    else:
        error = local.InvalidAuthorizerError(
            {"x-amzn-ErrorType": "AuthorizerConfigurationException"}, b'{"message":null}')
        error.args = ("authorizer error",)
    return error


def _log(decision: str, reason: str, method_arn: str, claims: Claims | None = None) -> None:
    """One JSON line per decision, with its reason and route; never the token."""
    route = "/".join(method_arn.rpartition(":")[2].split("/")[2:]) or None
    log_event(logger, "authorize_rest", decision=decision, reason=reason, route=route,
              sub=claims.get("sub") if claims else None,
              token_use=claims.get("token_use") if claims else None)


def authorize(request: AuthRequest, settings: Callable[[], Settings],
              verifier: Callable[[], Verifier]) -> AuthResponse | Policy:
    """The REST authorizer's answer: raises for 401 (or 500), a Deny for 403, else the routes allowed.

    ``settings`` and ``verifier`` are the container's (``runtime``), called
    here so that a stage that fails to load its settings is answered like any
    failing authorizer (500), locally too, and never lets a request in.
    """
    method_arn = request.method_arn or "*"
    try:
        current = settings()
        claims = verifier().verify(bearer_token(request.token))
    except Unauthorized as error:
        _log("unauthorized", error.reason, method_arn)
        raise _gateway_error("unauthorized") from None
    except Exception as error:  # noqa: BLE001 - API Gateway's 500; one log line
        # The type, and a settings error's text (it names the variable); never another
        # error's message, which may quote the token.
        log_event(logger, "authorizer_error", logging.ERROR, error=type(error).__name__,
                  message=str(error) if isinstance(error, SettingsError) else None)
        raise _gateway_error("error") from None
    try:
        check_permissions(claims, current)
        context = build_context(claims, TOKEN_SOURCE, {}, current)
    except AuthError as error:
        _log("deny", error.reason, method_arn, claims)
        return iam_policy(claims["sub"], "Deny", api_wide_arn(method_arn))
    routes = list(READ_ROUTES)
    if may_push(claim_groups(claims), claim_scopes(claims), current):
        routes += PUSH_ROUTES
    _log("allow", "ok" if len(routes) > len(READ_ROUTES) else "read_only", method_arn, claims)
    return AuthResponse(routes=list(routes), principal_id=claims["sub"], context=context)


# -- the routes ---------------------------------------------------------------------


class RestError(Exception):
    """A request the route refuses: HTTP ``status`` with a JSON error ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Caller:
    """Who the authorizer said is calling, read back from ``requestContext.authorizer``.

    On AWS a REST API hands the context's values to the handler as strings;
    ``chalice local`` keeps their types. Both read the same here.
    """

    sub: str
    username: str
    token_use: str
    groups: list[str]
    scopes: list[str]

    def identity(self) -> dict[str, str | list[str]]:
        return {"sub": self.sub, "username": self.username, "token_use": self.token_use,
                "groups": self.groups, "scopes": self.scopes}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def caller(request: Request) -> Caller:
    """The verified caller; 401 when no authorizer vouched for the request (fail closed)."""
    context = (request.context or {}).get("authorizer") or {}
    principal = context.get("principalId") if isinstance(context, Mapping) else None
    if not isinstance(principal, str) or not principal:
        raise RestError(401, "unauthorized", "no verified caller (is the route deployed without its authorizer?)")
    return Caller(
        sub=principal,
        username=_text(context.get("username")),
        token_use=_text(context.get("token_use")),
        groups=[g for g in _text(context.get("groups")).split(",") if g],
        scopes=_text(context.get("scope")).split(),
    )


def json_body(raw: str | bytes | None) -> dict[str, Any]:
    """The request body as a strict JSON object (``validation.loads_strict``, the rules frames
    follow); a 400 with the reason otherwise."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else (raw or b"")
    if len(data) > MAX_BODY_BYTES:
        raise RestError(400, "payload_too_large", f"body is {len(data)} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RestError(400, "invalid_json", "the body is not UTF-8 text") from None
    if not text.strip():
        raise RestError(400, "invalid_json", 'the body must be a JSON object like {"data": ...}')
    try:
        parsed = loads_strict(text, "the body")
    except JsonRefused as error:
        raise RestError(400, "invalid_json", str(error)) from None
    if not isinstance(parsed, dict):
        raise RestError(400, "bad_request", 'the body must be a JSON object like {"data": ...}')
    return parsed


def _answer(status: int, body: Mapping[str, object]) -> Response:
    return Response(body=json.dumps(body, separators=(",", ":")),
                    headers=dict(JSON_HEADERS), status_code=status)


def _error(error: RestError) -> Response:
    return _answer(error.status, {"ok": False, "error": {"code": error.code, "message": error.message}})


def me(request: Request, service: ConnectionService) -> Response:
    """``GET /me``: the verified identity and the caller's own open connections."""
    try:
        who = caller(request)
    except RestError as error:
        return _error(error)
    try:
        records = service.connections_of(who.sub)
    except Exception as error:  # noqa: BLE001 - a JSON answer and one log line, not Chalice's stack trace
        return _internal_error("/me", error)
    connections = [{"connectionId": r.connection_id, "connectedAt": r.connected_at, "tokenSource": r.token_source}
                   for r in records]
    return _answer(200, {**who.identity(), "connections": connections})


def _internal_error(route: str, error: BaseException) -> Response:
    """503 ``unavailable`` when a dependency is down or throttling (retry later), else 500
    ``internal_error``; logged as one line with the exception's type (never its message:
    it may quote the payload)."""
    log_event(logger, "rest_error", logging.ERROR, route=route, error=type(error).__name__)
    if is_unavailable(error):
        return _error(RestError(503, "unavailable", "a dependency is unavailable; try again later"))
    return _error(RestError(500, "internal_error", "the request could not be handled"))


def _user_push(request: Request, user: str, body: Mapping[str, Any]) -> Push:
    by = (request.query_params or {}).get("by", "sub")
    if by not in USER_KEYS:
        raise RestError(400, "bad_request", f"'by' must be one of {', '.join(USER_KEYS)}")
    if "userId" in body or "username" in body:
        raise RestError(400, "bad_request", "the path names the user; the body carries only 'data'")
    return user_push({**body, USER_KEYS[by]: user}, "a message")


def push(request: Request, service: ConnectionService, kind: str, target: str = "") -> Response:
    """A push route: ``kind`` is ``user`` (``target`` a sub or, ``?by=username``, a username),
    ``topic`` (``target`` the topic) or ``all``. Answers notify's delivery report."""
    try:
        who = caller(request)
        if not may_push(who.groups, who.scopes, service.settings):
            _log_refusal(who, kind)
            raise RestError(403, "forbidden", "pushing needs a group in PUSH_GROUPS or a scope in PUSH_SCOPES")
        body = json_body(request.raw_body)
        try:
            if kind == "user":
                message = _user_push(request, target, body)
            elif kind == "topic":
                message = topic_push(target, body)
            else:
                message = broadcast_push(body)
            result = service.push(message)
        except PushError as error:
            raise RestError(400, error.code, error.message) from None
    except RestError as error:
        return _error(error)
    except Exception as error:  # noqa: BLE001 - DynamoDB down...: a JSON 500, as notify answers internal_error
        return _internal_error(kind, error)
    return _answer(200, {"ok": True, **result.counts()})


def _log_refusal(who: Caller, kind: str) -> None:
    log_event(logger, "push_refused", logging.WARNING, reason="no_push_permission", sub=who.sub, audience=kind)
