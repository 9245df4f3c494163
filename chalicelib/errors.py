"""Typed errors of the authorization path.

API Gateway maps an authorizer outcome to an HTTP status: an exception whose
message is exactly ``Unauthorized`` becomes 401, a Deny policy becomes 403.
The classes below carry that mapping, plus a short machine-readable ``reason``
that is logged (never the token itself).
"""
from __future__ import annotations


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
