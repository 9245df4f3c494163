"""Verification of Cognito access and ID tokens (RS256 JWTs) for the authorizer.

PyJWT does the JWS/JWT work: the signature with the algorithm pinned to RS256,
``exp`` (required), ``nbf``, ``iat``, the leeway and ``iss``. This module adds
only what PyJWT does not check, in this order:

1. size, and the shape of the compact serialization: three non-empty ASCII
   segments without padding. PyJWT checks each segment's alphabet and that it
   is the one canonical spelling of its bytes, but accepts trailing ``=``,
   which Cognito never writes: one token, one spelling;
2. the unverified header, before any key is looked up: ``alg`` exactly RS256
   (so ``none``/HMAC/PSS tokens never cause a fetch), no ``crit``, a ``kid``;
3. the key: with one configured pool whose keys already hold the ``kid``, that
   pool is the issuer. Otherwise the unverified payload's ``iss`` must be
   exactly one configured issuer before that pool's JWKS is fetched: a token
   naming an untrusted issuer never causes a fetch;
4. ``jwt.decode`` with that key and issuer. Its payload hook refuses time
   claims of the wrong type before PyJWT reads them with ``int()``, which
   would take ``"1700000000"`` or ``" 9_999 "``;
5. Cognito's own claims: ``token_use`` in the allowed set, ``client_id``
   (access tokens) or ``aud`` (id tokens) a configured app client, ``sub``.

Payload JSON is strict: ``NaN``, ``Infinity`` and numbers that overflow a
double are refused as malformed. ID tokens carry the app client in ``aud``;
Cognito always writes a string, and a list is accepted when any entry is a
configured client (RFC 7519 semantics).
"""
from __future__ import annotations

import json
import math
import threading
from typing import Any, Collection, Mapping

import jwt
from jwt import PyJWK

from .errors import TokenInvalid
from .jwks import Fetch, JwksCache

__all__ = ["CognitoJwtVerifier", "Claims"]

TOKEN_USES = frozenset({"access", "id"})
ALGORITHM = "RS256"
Claims = dict[str, Any]  # a JWT payload: JSON values keyed by claim name


def _invalid(reason: str, message: str) -> TokenInvalid:
    return TokenInvalid(message, reason=reason)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows a double")
    return value


def _is_number(value: object) -> bool:
    """An int or a finite float; a bool is not a number here."""
    return type(value) is int or (type(value) is float and math.isfinite(value))


def _check_time_types(claims: Mapping[str, Any]) -> None:
    """Refuse what PyJWT's ``int()`` would take: ``"1700000000"``, ``" 9_999 "``, ``true``."""
    if claims.get("exp") is None:
        raise _invalid("missing_exp", "token has no expiry")
    for name in ("exp", "nbf", "iat"):
        if name in claims and not _is_number(claims[name]):
            raise _invalid(f"bad_{name}", f"token {name} is not a number")


class _StrictJWT(jwt.PyJWT):
    """PyJWT with a strict payload decoder, the hook PyJWT documents for this.

    PyJWT calls it after the signature check and before its own claim checks,
    so the time claims' types are refused before PyJWT reads them with ``int()``.
    """

    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        try:
            payload = json.loads(decoded["payload"].decode("utf-8"), parse_constant=_refuse_constant,
                                 parse_float=_finite_float)
        except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
            raise jwt.DecodeError(f"Invalid payload string: {error}") from None
        if not isinstance(payload, dict):
            raise jwt.DecodeError("Invalid payload string: must be a json object")
        _check_time_types(payload)
        return payload


# PyJWT exception -> (reason, message); the first matching class wins (subclasses first).
_PYJWT_REASONS: tuple[tuple[type[jwt.PyJWTError], str, str], ...] = (
    (jwt.ExpiredSignatureError, "expired", "token has expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid", "token is not valid yet"),
    (jwt.InvalidSignatureError, "bad_signature", "token signature does not verify"),
    (jwt.InvalidAlgorithmError, "bad_alg", "token algorithm is not RS256"),
    (jwt.InvalidIssuerError, "bad_issuer", "token issuer is not trusted"),
    (jwt.InvalidIssuedAtError, "bad_iat", "token issued-at is not a number"),
    (jwt.MissingRequiredClaimError, "missing_claim", "token lacks a required claim"),
    (jwt.exceptions.InvalidSubjectError, "bad_sub", "token has no subject"),
    (jwt.InvalidTokenError, "malformed", "token is not a valid JWT"),
)


def _refusal(error: jwt.PyJWTError) -> TokenInvalid:
    for kind, reason, message in _PYJWT_REASONS:
        if isinstance(error, kind):
            return _invalid(reason, message)
    return _invalid("malformed", "token is not a valid JWT")


class CognitoJwtVerifier:
    """Verifies tokens of a fixed set of Cognito pools and app clients."""

    def __init__(self, *, issuers: Mapping[str, str], client_ids: Collection[str],
                 token_uses: Collection[str] = ("access", "id"), leeway: int = 0,
                 max_token_bytes: int = 8192, jwks_timeout: float = 2.0,
                 jwks_cooldown: float = 60.0, jwks_fetch: Fetch | None = None) -> None:
        if not issuers:
            raise ValueError("at least one issuer is required")
        for issuer, url in issuers.items():
            if not isinstance(issuer, str) or not issuer or not isinstance(url, str) or not url:
                raise ValueError(f"bad issuer/JWKS URL pair: {issuer!r} -> {url!r}")
        self.client_ids = frozenset(client_ids)
        if not self.client_ids or not all(isinstance(c, str) and c for c in self.client_ids):
            raise ValueError("client_ids must be non-empty strings, at least one")
        self.token_uses = frozenset(token_uses)
        if not self.token_uses or not self.token_uses <= TOKEN_USES:
            raise ValueError(f"token_uses must be a non-empty subset of {sorted(TOKEN_USES)}")
        if leeway < 0 or max_token_bytes <= 0 or jwks_timeout <= 0 or jwks_cooldown < 0:
            raise ValueError("leeway, max_token_bytes, jwks_timeout, jwks_cooldown out of range")
        self.issuers: dict[str, str] = dict(issuers)
        self.leeway = leeway
        self.max_token_bytes = max_token_bytes
        self.jwks_timeout = jwks_timeout
        self.jwks_cooldown = jwks_cooldown
        self._jwks_fetch = jwks_fetch
        self._jwt = _StrictJWT()
        self._caches: dict[str, JwksCache] = {}
        self._lock = threading.Lock()

    def jwks(self, issuer: str) -> JwksCache:
        """The key cache of a configured issuer, created at first use."""
        with self._lock:
            cache = self._caches.get(issuer)
            if cache is None:
                cache = JwksCache(self.issuers[issuer], timeout=self.jwks_timeout,
                                  cooldown=self.jwks_cooldown, fetch=self._jwks_fetch)
                self._caches[issuer] = cache
            return cache

    def verify(self, token: str) -> Claims:
        """The claims of a valid token; raises TokenInvalid (with a reason) or JwksUnavailable."""
        if not isinstance(token, str):
            raise _invalid("malformed", "token is not a string")
        if len(token) > self.max_token_bytes:
            raise _invalid("too_large", "token exceeds the size limit")
        segments = token.split(".")
        if len(segments) != 3 or not all(segments) or not token.isascii() or "=" in token:
            raise _invalid("malformed", "token is not three unpadded base64url segments")
        issuer, key = self._issuer_and_key(token)
        try:
            claims: Claims = self._jwt.decode(
                token, key, algorithms=[ALGORITHM], issuer=issuer, leeway=self.leeway,
                options={"require": ["exp", "iss"], "verify_aud": False})
        except jwt.PyJWTError as error:
            raise _refusal(error) from None
        self._check_cognito_claims(claims)
        return claims

    def _issuer_and_key(self, token: str) -> tuple[str, PyJWK]:
        """The issuer whose key signed ``token`` (by ``kid``), and that key.

        With one configured pool (the usual stage) whose keys hold ``kid``, the
        issuer is known without reading the payload, and ``jwt.decode`` checks
        ``iss`` against it. Otherwise (several pools, or a kid not held yet)
        the unverified payload names the issuer, which must be a configured
        pool before that pool's JWKS is fetched: an untrusted issuer never
        causes a fetch.
        """
        try:
            kid = self._check_header(jwt.get_unverified_header(token))
        except jwt.PyJWTError as error:
            raise _refusal(error) from None
        if len(self.issuers) == 1:
            (issuer,) = self.issuers
            key = self.jwks(issuer).peek(kid)
            if key is not None:
                return issuer, key
        try:
            unverified = self._jwt.decode_complete(token, options={"verify_signature": False})
        except jwt.PyJWTError as error:
            raise _refusal(error) from None
        issuer = unverified["payload"].get("iss")
        if not isinstance(issuer, str) or issuer not in self.issuers:
            raise _invalid("bad_issuer", "token issuer is not trusted")
        return issuer, self.jwks(issuer).get_key(kid)

    @staticmethod
    def _check_header(header: Mapping[str, Any]) -> str:
        """The kid of a header Cognito could have written (just kid and alg)."""
        if header.get("alg") != ALGORITHM:
            raise _invalid("bad_alg", "token algorithm is not RS256")
        if "crit" in header:
            raise _invalid("bad_header", "token header has critical extensions")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _invalid("missing_kid", "token header has no key id")
        return kid

    def _check_cognito_claims(self, claims: Mapping[str, Any]) -> None:
        token_use = claims.get("token_use")
        if not isinstance(token_use, str) or token_use not in self.token_uses:
            raise _invalid("bad_token_use", "token_use is not accepted")
        if token_use == "access":
            client_id = claims.get("client_id")
            if not isinstance(client_id, str) or client_id not in self.client_ids:
                raise _invalid("bad_client", "access token is for another app client")
        else:
            aud = claims.get("aud")
            audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
            if not any(isinstance(a, str) and a in self.client_ids for a in audiences):
                raise _invalid("bad_audience", "id token is for another app client")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise _invalid("bad_sub", "token has no subject")
