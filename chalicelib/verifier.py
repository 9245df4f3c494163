"""Verification of Cognito access and ID tokens (RS256 JWTs) for the authorizer.

Why not ``jwt.decode``: the authorizer runs on every WebSocket upgrade and its
budget is about one RSA verify. PyJWT spends ~4x that, mostly in per-character
base64url checks in Python; importing it also costs ~110 ms of cold start. The
compact serialization is simple enough to parse here with C-speed byte
operations (memchr scans find the dots and refuse ``+``, ``/`` and ``=``),
``pybase64`` (SIMD, url-safe alphabet, strict), ``orjson`` (strict, and ~2.5x
faster than ``json`` on a Cognito payload) and the cached ``cryptography`` key.
Headers of verified tokens are remembered (Cognito uses one header per key),
so the warm path parses only the payload.

Order of checks, and why:
1. size, ASCII and shape (three strict base64url segments) - cheap, before any decoding;
2. header: ``alg`` must be exactly RS256 (no ``none``, HMAC, PSS or other hashes,
   so key confusion is impossible), ``kid`` a string, no ``crit``;
3. payload JSON and ``iss`` exactly one configured issuer - before any key is
   looked up, so a token naming an untrusted issuer never causes a JWKS fetch;
4. the signature against that issuer's key for ``kid``;
5. time and audience claims - only after the signature, so unsigned input never
   learns more than "bad signature".

ID tokens carry the app client in ``aud``. Cognito always writes a string; if a
list is ever seen, it is accepted when any entry is a configured client
(RFC 7519 semantics).
"""
from __future__ import annotations

import hashlib
import math
import threading
import time
from typing import Any, Callable, Collection, Mapping

import orjson
import pybase64
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .errors import TokenInvalid
from .jwks import Fetch, JwksCache

__all__ = ["CognitoJwtVerifier"]

TOKEN_USES = frozenset({"access", "id"})
# For a canonical encoding the unused low bits of the last character are zero
# (keyed by segment length % 4; a remainder of 1 is never valid).
_CANONICAL_LAST = {2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}
_PLUS, _SLASH, _EQUALS = b"+/="
_PAD = {0: b"", 2: b"==", 3: b"="}
_PADDING = PKCS1v15()
# DER of DigestInfo{sha256, NULL} without the digest (RFC 8017 section 9.2, note 1).
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
_sha256 = hashlib.sha256
HEADER_CACHE_SIZE = 32
_loads = orjson.loads
_b64decode = pybase64.b64decode  # SIMD; ~3x binascii.a2b_base64 on a token's segments


def _invalid(reason: str, message: str) -> TokenInvalid:
    return TokenInvalid(message, reason=reason)


def _segment(segment: bytes) -> bytes:
    """Decode one base64url segment of a token that holds no ``+``, ``/`` or ``=``.

    pybase64 with the url-safe alphabet and ``validate`` refuses every other
    byte outside the alphabet (whitespace, dots, controls); what is left here
    is the length and the canonical last character, so one token has exactly
    one spelling.
    """
    rest = len(segment) % 4
    if rest and (rest == 1 or segment[-1] not in _CANONICAL_LAST[rest]):
        raise _invalid("malformed", "token segment is not canonical base64url")
    try:
        return _b64decode(segment + _PAD[rest], b"-_", True)  # altchars, validate
    except ValueError:  # pybase64 raises binascii.Error, a ValueError
        raise _invalid("malformed", "token segment is not base64url") from None


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    """One JSON object, strictly: orjson rejects NaN/Infinity, invalid UTF-8,
    lone surrogates, trailing data and nesting past 1,024 levels."""
    try:
        value = _loads(raw)
    except ValueError:  # orjson.JSONDecodeError is a ValueError
        raise _invalid("malformed", f"token {what} is not JSON") from None
    if type(value) is not dict:
        raise _invalid("malformed", f"token {what} is not a JSON object")
    return value


def rsa_sha256_verify(key: RSAPublicKey, signature: bytes, message: bytes) -> bool:
    """RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 section 8.2.2), for RS256.

    The steps of the RFC's verification: the signature must be exactly as
    long as the modulus; OpenSSL applies the public exponent (refusing values
    not below the modulus) and checks the 00 01 FF..FF 00 padding; what is
    left must equal, byte for byte, the DER DigestInfo of SHA-256 followed by
    the message's digest - the RFC's "encode and compare", so nothing in the
    signature is parsed. Same checks as ``key.verify(..., PKCS1v15(),
    SHA256())``; about 1-2 us cheaper per token because the digest comes from
    hashlib instead of cryptography's hash objects.
    """
    if len(signature) != (key.key_size + 7) >> 3:
        return False
    try:
        recovered = key.recover_data_from_signature(signature, _PADDING, None)
    except InvalidSignature:
        return False
    return recovered == _SHA256_DIGEST_INFO + _sha256(message).digest()


def _number(value: Any) -> bool:
    kind = type(value)  # exact: a bool is not a number here
    return kind is int or (kind is float and math.isfinite(value))


class CognitoJwtVerifier:
    """Verifies tokens of a fixed set of Cognito pools and app clients."""

    def __init__(self, *, issuers: Mapping[str, str], client_ids: Collection[str],
                 token_uses: Collection[str] = ("access", "id"), leeway: int = 0,
                 max_token_bytes: int = 8192, jwks_timeout: float = 2.0,
                 jwks_cooldown: float = 60.0, clock: Callable[[], float] = time.time,
                 jwks_fetch: Fetch | None = None) -> None:
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
        self._clock = clock
        self._jwks_fetch = jwks_fetch
        self._caches: dict[str, JwksCache] = {}
        # header segment -> kid, for headers already seen on a verified token:
        # Cognito reuses one header per key, so parsing it again is wasted time.
        self._headers: dict[str, str] = {}
        self._lock = threading.Lock()

    def jwks(self, issuer: str) -> JwksCache:
        """The key cache of a configured issuer, created at first use."""
        cache = self._caches.get(issuer)
        if cache is None:
            with self._lock:
                cache = self._caches.get(issuer)
                if cache is None:
                    cache = JwksCache(self.issuers[issuer], timeout=self.jwks_timeout,
                                      cooldown=self.jwks_cooldown, fetch=self._jwks_fetch)
                    self._caches[issuer] = cache
        return cache

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; raises TokenInvalid (with a reason) or JwksUnavailable."""
        if type(token) is not str:
            raise _invalid("malformed", "token is not a string")
        if len(token) > self.max_token_bytes:
            raise _invalid("too_large", "token exceeds the size limit")
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            raise _invalid("malformed", "token is not ASCII") from None
        # At least two dots (find/rfind are memchr-fast; count is a slow byte
        # loop). A third dot can only sit in the middle segment, which the
        # strict decoder then refuses: "a.b.c.d" is malformed all the same.
        first = raw.find(b".")
        last = raw.rfind(b".")
        if first == last:
            raise _invalid("malformed", "token is not three base64url segments")
        if first == 0 or last == first + 1 or last == len(raw) - 1:
            raise _invalid("malformed", "token has an empty segment")
        # The standard alphabet's two letters and padding: the url-safe decoder
        # below would take them, JWTs never carry them. Three memchr passes;
        # the needles are ints because ``bytes in bytes`` first tries the
        # needle as an int and formats a TypeError it then throws away.
        if _PLUS in raw or _SLASH in raw or _EQUALS in raw:
            raise _invalid("malformed", "token is not base64url")

        header_text = token[:first]
        kid = self._headers.get(header_text)
        new_header = kid is None
        if new_header:
            kid = self._header_kid(raw[:first])
        claims = _json_object(_segment(raw[first + 1:last]), "payload")
        issuer = claims.get("iss")
        if type(issuer) is not str or issuer not in self.issuers:
            raise _invalid("bad_issuer", "token issuer is not trusted")

        key = (self._caches.get(issuer) or self.jwks(issuer)).get_key(kid)
        if not rsa_sha256_verify(key, _segment(raw[last + 1:]), raw[:last]):
            raise _invalid("bad_signature", "token signature does not verify")
        if new_header and len(self._headers) < HEADER_CACHE_SIZE:
            # Only headers of genuinely signed tokens are remembered, so forged
            # headers cannot crowd out the real ones.
            self._headers[header_text] = kid

        self._check_claims(claims)
        return claims

    def _check_claims(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        leeway = self.leeway
        exp = claims.get("exp")
        if exp is None:
            raise _invalid("missing_exp", "token has no expiry")
        if type(exp) is not int and not _number(exp):  # ints, the usual case, without a call
            raise _invalid("bad_exp", "token expiry is not a number")
        if exp <= now - leeway:
            raise _invalid("expired", "token has expired")
        nbf = claims.get("nbf")
        if nbf is not None:
            if type(nbf) is not int and not _number(nbf):
                raise _invalid("bad_nbf", "token not-before is not a number")
            if nbf > now + leeway:
                raise _invalid("not_yet_valid", "token is not valid yet")
        iat = claims.get("iat")
        if iat is not None and type(iat) is not int and not _number(iat):
            raise _invalid("bad_iat", "token issued-at is not a number")
        token_use = claims.get("token_use")
        if type(token_use) is not str or token_use not in self.token_uses:
            raise _invalid("bad_token_use", "token_use is not accepted")
        if token_use == "access":
            client_id = claims.get("client_id")
            if type(client_id) is not str or client_id not in self.client_ids:
                raise _invalid("bad_client", "access token is for another app client")
        else:
            aud = claims.get("aud")
            if type(aud) is str:
                ok = aud in self.client_ids
            elif type(aud) is list:
                ok = any(type(a) is str and a in self.client_ids for a in aud)
            else:
                ok = False
            if not ok:
                raise _invalid("bad_audience", "id token is for another app client")
        sub = claims.get("sub")
        if type(sub) is not str or not sub:
            raise _invalid("bad_sub", "token has no subject")

    @staticmethod
    def _header_kid(segment: bytes) -> str:
        """The kid of a header that passes the checks (Cognito: just kid and alg)."""
        header = _json_object(_segment(segment), "header")
        alg = header.get("alg")
        if type(alg) is not str or alg != "RS256":
            raise _invalid("bad_alg", "token algorithm is not RS256")
        if "crit" in header:
            raise _invalid("bad_header", "token header has critical extensions")
        kid = header.get("kid")
        if type(kid) is not str or not kid:
            raise _invalid("missing_kid", "token header has no key id")
        return kid
