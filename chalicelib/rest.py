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
authorizer fails closed. Every refusal is an ``AppError``, answered here once
with its status and ``{"ok": false, "error": {...}}``; nothing is read from the
table or sent before the input is valid (``pushes.push``).

The management endpoint of a push cannot come from a REST request (it carries
no WebSocket event, Chalice issue #1357): ``delivery`` reads it from the stored
connections (each record keeps the domain, stage and API id of its
``$connect``), or takes ``WEBSOCKET_MANAGEMENT_URL`` when that is set.

This module is on the authorizer's path, which must not import boto3: the
components are only named for type checking, and ``runtime`` hands them in.
"""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Callable, Mapping

from chalice.app import AuthRequest, AuthResponse, AuthRoute, Request, Response

from .authorizer import Policy, Verifier, check_permissions
from .authorizer import policy as iam_policy
from .errors import AppError, AuthError, ErrorCode, TokenMissing, Unauthorized, classify
from .identity import Claims, Identity
from .logs import log_event
from .push import AUDIENCE_KEYS, Push, broadcast_push, topic_push, user_push
from .settings import Settings, SettingsError
from .validation import loads_strict

if TYPE_CHECKING:  # the authorizer imports this module: no boto3 behind it at run time
    from .components import Components

logger = logging.getLogger("ws.rest")

TOKEN_SOURCE = "header"
# Bodies larger than this are refused unread. A message's frame is checked
# against API Gateway's 128 KB when it is encoded (pushes.push); a
# JSON body may be larger than its frame (escapes, whitespace), hence the margin.
MAX_BODY_BYTES = 1024 * 1024
JSON_HEADERS = {"Content-Type": "application/json"}

# What any verified caller may call, and what only a caller with push permission may.
# ``*`` stands for one path parameter (IAM wildcards in the method ARN).
READ_ROUTES = (AuthRoute("/me", ["GET"]), AuthRoute("/topics/*/members", ["GET"]))
PUSH_ROUTES = (
    AuthRoute("/users/*/messages", ["POST"]),
    AuthRoute("/topics/*/messages", ["POST"]),
    AuthRoute("/messages", ["POST"]),
)
ADMIN_ROUTES = (AuthRoute("/users/*/disconnect", ["POST"]),)
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


def may_admin(identity: Identity, settings: Settings) -> bool:
    """Any-of ``ADMIN_GROUPS`` or ``ADMIN_SCOPES``; both unset: nobody."""
    return bool(settings.admin_groups.intersection(identity.groups)
                or settings.admin_scopes.intersection(identity.scopes))


def may_push(identity: Identity, settings: Settings) -> bool:
    """Any-of ``PUSH_GROUPS`` or ``PUSH_SCOPES``; both unset: nobody (fail closed)."""
    return bool(settings.push_groups.intersection(identity.groups) or settings.push_scopes.intersection(identity.scopes))


def api_wide_arn(method_arn: str) -> str:
    """``arn:...:<api>/<stage>/*``: every route of the stage the request came to."""
    prefix, _, resource = method_arn.rpartition(":")
    api_and_stage = resource.split("/")[:2]
    return f"{prefix}:{'/'.join(api_and_stage)}/*" if prefix and len(api_and_stage) == 2 else "*"


def _gateway_error(kind: str) -> Exception:
    """What an authorizer raises for API Gateway's 401 (``kind="unauthorized"``: the message is exactly
    ``Unauthorized``) or 500 (anything else)."""
    return Exception("Unauthorized" if kind == "unauthorized" else "authorizer error")


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
        identity = Identity.from_claims(claims, TOKEN_SOURCE, extra_claims=current.context_claims)
        context = identity.to_context()
    except AuthError as error:
        _log("deny", error.reason, method_arn, claims)
        return iam_policy(claims["sub"], "Deny", api_wide_arn(method_arn))
    routes = list(READ_ROUTES)
    if may_push(identity, current):
        routes += PUSH_ROUTES
    if may_admin(identity, current):
        routes += ADMIN_ROUTES
    _log("allow", "ok" if len(routes) > len(READ_ROUTES) else "read_only", method_arn, claims)
    return AuthResponse(routes=list(routes), principal_id=claims["sub"], context=context)


# -- the routes: REST's one mapping of AppError (a status and a JSON body) --------------------


def caller(request: Request) -> Identity:
    """The verified caller; 401 when no authorizer vouched for the request (fail closed)."""
    context = (request.context or {}).get("authorizer")
    identity = Identity.from_context(context) if isinstance(context, Mapping) else None
    if identity is None:
        raise AppError(ErrorCode.UNAUTHORIZED, "no verified caller (is the route deployed without its authorizer?)")
    return identity


def unrevoked_caller(request: Request, app: Components) -> Identity:
    """The caller, unless a kick with ``revoke`` came after their token was issued (401 then)."""
    who = caller(request)
    if app.revocations.is_revoked(who):
        log_event(logger, "rest_refused", logging.WARNING, reason="token_revoked", sub=who.sub)
        raise AppError(ErrorCode.UNAUTHORIZED, "this token was revoked; sign in again")
    return who


def json_body(raw: str | bytes | None) -> dict[str, Any]:
    """The request body as a strict JSON object (``validation.loads_strict``, the rules frames
    follow); a 400 with the reason otherwise."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else (raw or b"")
    if len(data) > MAX_BODY_BYTES:
        raise AppError(ErrorCode.PAYLOAD_TOO_LARGE, f"body is {len(data)} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise AppError(ErrorCode.INVALID_JSON, "the body is not UTF-8 text") from None
    if not text.strip():
        raise AppError(ErrorCode.INVALID_JSON, 'the body must be a JSON object like {"data": ...}')
    parsed = loads_strict(text, "the body")
    if not isinstance(parsed, dict):
        raise AppError(ErrorCode.BAD_REQUEST, 'the body must be a JSON object like {"data": ...}')
    return parsed


def _answer(status: int, body: Mapping[str, object]) -> Response:
    return Response(body=json.dumps(body, separators=(",", ":")), headers=dict(JSON_HEADERS), status_code=status)


def _refused(route: str, error: Exception) -> Response:
    """The error's status and ``{"ok": false, "error": ...}``; an unexpected one is logged as one line
    with its type (never its message: it may quote the payload) and answered 503 or 500."""
    failure = classify(error)
    if failure is not error:
        log_event(logger, "rest_error", logging.ERROR, route=route, error=type(error).__name__)
    return _answer(failure.code.http_status, {"ok": False, "error": failure.to_dict()})


def me(request: Request, app: Components) -> Response:
    """``GET /me``: the verified identity and the caller's own open connections."""
    try:
        who = unrevoked_caller(request, app)
        records = app.connections_of(who.sub)
    except Exception as error:  # noqa: BLE001 - a JSON answer, not Chalice's stack trace
        return _refused("/me", error)
    connections = [{"connectionId": r.connection_id, "connectedAt": r.connected_at, "tokenSource": r.identity.source}
                   for r in records]
    return _answer(200, {**who.public(), "connections": connections})


def _user_push(request: Request, user: str, body: Mapping[str, Any]) -> Push:
    by = (request.query_params or {}).get("by", "sub")
    if by not in USER_KEYS:
        raise AppError(ErrorCode.BAD_REQUEST, f"'by' must be one of {', '.join(USER_KEYS)}")
    stated = [key for key in AUDIENCE_KEYS if key in body]
    if stated:
        raise AppError(ErrorCode.BAD_REQUEST, f"the path names the user; the body must not name {stated[0]!r}")
    return user_push({**body, USER_KEYS[by]: user}, "a message")


def push(request: Request, app: Components, kind: str, target: str = "") -> Response:
    """A push route: ``kind`` is ``user`` (``target`` a sub or, ``?by=username``, a username),
    ``topic`` (``target`` the topic) or ``all``. Answers notify's delivery report."""
    from .pushes import push as deliver

    try:
        who = unrevoked_caller(request, app)
        if not may_push(who, app.settings):
            log_event(logger, "push_refused", logging.WARNING, reason="no_push_permission", sub=who.sub, audience=kind)
            raise AppError(ErrorCode.FORBIDDEN, "pushing needs a group in PUSH_GROUPS or a scope in PUSH_SCOPES")
        body = json_body(request.raw_body)
        if kind == "user":
            message = _user_push(request, target, body)
        elif kind == "topic":
            message = topic_push(target, body)
        else:
            message = broadcast_push(body)
        result = deliver(message, app, who)
    except Exception as error:  # noqa: BLE001 - a JSON answer, not Chalice's stack trace
        return _refused(kind, error)
    return _answer(200, {"ok": True, **result.counts()})


def disconnect(request: Request, app: Components, user: str) -> Response:
    """``POST /users/{userId}/disconnect`` (``?by=username``), body ``{"revoke": bool}`` or empty: a kick."""
    from .kicks import kick, kick_request

    try:
        who = unrevoked_caller(request, app)
        if not may_admin(who, app.settings):
            log_event(logger, "kick_refused", logging.WARNING, reason="no_admin_permission", sub=who.sub)
            raise AppError(ErrorCode.FORBIDDEN, "kicking needs a group in ADMIN_GROUPS or a scope in ADMIN_SCOPES")
        body = json_body(request.raw_body) if request.raw_body else {}
        by = (request.query_params or {}).get("by", "sub")
        if by not in USER_KEYS:
            raise AppError(ErrorCode.BAD_REQUEST, f"'by' must be one of {', '.join(USER_KEYS)}")
        if set(body) - {"revoke"}:
            raise AppError(ErrorCode.BAD_REQUEST, "the body takes 'revoke' only; the path names the user")
        result = kick(kick_request({**body, USER_KEYS[by]: user}), app)
    except Exception as error:  # noqa: BLE001 - a JSON answer, not Chalice's stack trace
        return _refused("disconnect", error)
    return _answer(200, result)


def members(request: Request, app: Components, topic: str) -> Response:
    """``GET /topics/{topic}/members``: a presence topic's members, for a caller who may subscribe to it."""
    from .channels import channel_decision
    from .validation import check_topic

    try:
        who = unrevoked_caller(request, app)
        check_topic(topic, ErrorCode.BAD_TOPIC)
        if not channel_decision(app.settings.channel_rules, who, topic, "subscribe").allowed:
            raise AppError(ErrorCode.FORBIDDEN, f"subscribe is not allowed on {topic!r}, nor reading its members")
        if not app.settings.channel_rules.is_presence(topic):
            raise AppError(ErrorCode.BAD_REQUEST, f"{topic!r} keeps no presence")
        found = app.presence.members(topic, app.settings.max_presence_members)
    except Exception as error:  # noqa: BLE001 - a JSON answer, not Chalice's stack trace
        return _refused("members", error)
    return _answer(200, {"topic": topic, "members": found})
