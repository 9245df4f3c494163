"""The errors of the app: the authorizer's decisions, and the one application error.

The authorizer path raises ``AuthError`` subclasses. API Gateway maps their outcome
to a status: an exception whose message is exactly ``Unauthorized`` becomes 401, a
Deny policy 403. Each carries a short ``reason`` that is logged, never the token.

Everything after authentication raises ``AppError`` with a code from ``ErrorCode``.
Each transport maps it once: an error frame on the WebSocket (``messages``), a
status and JSON body on REST (``rest``), ``{"ok": false, "error": ...}`` for
``notify`` (``pushes``), and a log line and a drop for EventBridge
(``push_events``). ``classify`` turns any other exception into ``unavailable`` (a
dependency is down: retry later) or ``internal_error`` (a bug), in one place.
Pure: standard library only.
"""
from __future__ import annotations

from enum import Enum


class AuthError(Exception):
    """Base class: the request must not be let in."""

    reason: str = "auth_error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class Unauthorized(AuthError):
    """No usable credentials: API Gateway answers 401."""

    reason = "unauthorized"


class TokenMissing(Unauthorized):
    """None of the enabled token sources carried a token."""

    reason = "token_missing"


class TokenInvalid(Unauthorized):
    """A token was found but failed a check (signature, claims, format...)."""

    reason = "token_invalid"


class JwksUnavailable(Unauthorized):
    """Signing keys could not be fetched: we fail closed."""

    reason = "jwks_unavailable"


class CrossSiteRequest(Unauthorized):
    """Cookie auth without a matching CSRF value or from a foreign Origin."""

    reason = "cross_site"


class Forbidden(AuthError):
    """Authenticated but not permitted (groups, scopes, deny hook): a Deny policy, 403."""

    reason = "forbidden"


class ErrorCode(str, Enum):
    """Every code a client or a back-end can be answered with; the value is what goes on the wire."""

    BAD_REQUEST = "bad_request"
    INVALID_JSON = "invalid_json"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    MISSING_FIELD = "missing_field"
    BAD_FIELD = "bad_field"
    BAD_TOPIC = "bad_topic"
    UNKNOWN_ACTION = "unknown_action"
    UNKNOWN_DETAIL_TYPE = "unknown_detail_type"
    NOT_CONNECTED = "not_connected"
    NOT_FOUND = "not_found"
    PRESENCE_FULL = "presence_full"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    UNAUTHORIZED = "unauthorized"
    INVALID_TOKEN = "invalid_token"
    TOKEN_MISMATCH = "token_mismatch"
    FORBIDDEN = "forbidden"
    UNAVAILABLE = "unavailable"
    MISCONFIGURED = "misconfigured"
    INTERNAL_ERROR = "internal_error"

    @property
    def http_status(self) -> int:
        """The REST status for this code (400 unless listed)."""
        return _HTTP_STATUS.get(self, 400)


_HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.UNAUTHORIZED: 401, ErrorCode.INVALID_TOKEN: 401, ErrorCode.FORBIDDEN: 403,
    ErrorCode.TOKEN_MISMATCH: 403, ErrorCode.NOT_CONNECTED: 404, ErrorCode.NOT_FOUND: 404, ErrorCode.UNAVAILABLE: 503,
    ErrorCode.MISCONFIGURED: 500, ErrorCode.INTERNAL_ERROR: 500, ErrorCode.TOO_MANY_CONNECTIONS: 429,
}


class AppError(Exception):
    """A request refused after authentication: a code, a message for the caller, and whether to close.

    The message never quotes the input (it may be a token or a payload).
    ``close``: after the error frame the WebSocket connection is closed (a
    ``refresh`` that hands the socket to someone else).
    """

    def __init__(self, code: ErrorCode, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close = close

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}


UNAVAILABLE = AppError(ErrorCode.UNAVAILABLE, "a service this needs is unavailable; try again later")
INTERNAL = AppError(ErrorCode.INTERNAL_ERROR, "the request could not be handled")


def classify(error: BaseException) -> AppError:
    """``error`` itself if it is an AppError; ``misconfigured`` naming the setting a stage lacks (no
    region, no table, no queue: ``faults.missing_configuration``); ``unavailable`` for a dependency
    that is down, throttling or timing out (``faults.is_unavailable``); else ``internal_error``."""
    if isinstance(error, AppError):
        return error
    from .deadline import DeadlineExceeded
    from .faults import is_unavailable, missing_configuration

    if isinstance(error, DeadlineExceeded):
        return UNAVAILABLE
    missing = missing_configuration(error)
    if missing is not None:
        return AppError(ErrorCode.MISCONFIGURED, f"the stage is misconfigured: {missing}")
    return UNAVAILABLE if is_unavailable(error) else INTERNAL
