"""A Cognito user pool's signing keys, fetched once and kept for the container.

Why it looks like this:

* The JWKS is the only source of trust. A key is never made up, guessed or
  kept from a failed download: any doubt ends in ``JwksUnavailable`` (the
  authorizer answers 401, i.e. fail closed).
* Cognito rotates keys rarely, so a kid we have not seen may be a new key: it
  triggers a refetch, but at most one per ``cooldown`` seconds, so tokens
  with forged kids cannot turn the authorizer into a request storm against
  the JWKS endpoint.
* Public key objects are prepared once per kid; the hot path is a lock-free
  dict lookup (the dict is replaced as a whole, never mutated in place).
* The download uses ``http.client`` (imported at the first fetch): ``requests``
  cost ~70 ms of import on the cold-start path for one GET of a 1 KB document
  (measured by ``bench.cold_start``), more than the whole rest of the fetch.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey, RSAPublicNumbers

from .errors import JwksUnavailable, TokenInvalid

logger = logging.getLogger("ws.jwks")

Fetch = Callable[[str, float], Mapping[str, Any]]

MAX_JWKS_BYTES = 256 * 1024  # a Cognito JWKS is ~1 KB; anything this big is not one
MAX_KEYS = 100
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


class _FetchFailed(Exception):
    """Internal: why a download did not produce a usable JWKS (logged, not shown)."""


def _b64url_uint(value: Any) -> int:
    if not isinstance(value, str) or len(value) > MAX_RSA_BITS // 4 or not _B64URL.fullmatch(value):
        raise ValueError("not a base64url string")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("bad base64url") from exc
    return int.from_bytes(raw, "big")


def rsa_key_from_jwk(jwk: Mapping[str, Any]) -> RSAPublicKey | None:
    """The public key of one JWK, or None if it is not an RS256 signing key we accept."""
    if jwk.get("kty") != "RSA":
        return None
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", "RS256") != "RS256":
        return None
    try:
        n = _b64url_uint(jwk.get("n"))
        e = _b64url_uint(jwk.get("e"))
    except ValueError:
        return None
    if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS or e < 3 or e % 2 == 0 or e >= n:
        return None
    try:
        return RSAPublicNumbers(e, n).public_key()
    except ValueError:
        return None


def parse_jwks(document: Any, previous: Mapping[str, tuple[str, str, RSAPublicKey]] | None = None
               ) -> dict[str, tuple[str, str, RSAPublicKey]]:
    """kid -> (n, e, key) for every acceptable key; raises _FetchFailed if there is none.

    ``previous`` lets an unchanged key keep its prepared object across refetches.
    A kid that appears twice is dropped: which of the two is meant is unknowable.
    """
    if not isinstance(document, Mapping):
        raise _FetchFailed("JWKS is not a JSON object")
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise _FetchFailed("JWKS has no 'keys' list")
    if len(keys) > MAX_KEYS:
        raise _FetchFailed(f"JWKS has {len(keys)} keys (max {MAX_KEYS})")
    previous = previous or {}
    result: dict[str, tuple[str, str, RSAPublicKey]] = {}
    duplicates: set[str] = set()
    for jwk in keys:
        if not isinstance(jwk, Mapping):
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        if kid in result or kid in duplicates:
            result.pop(kid, None)
            duplicates.add(kid)
            continue
        old = previous.get(kid)
        if old is not None and (old[0], old[1]) == (jwk.get("n"), jwk.get("e")) \
                and jwk.get("kty") == "RSA" and jwk.get("use", "sig") == "sig" \
                and jwk.get("alg", "RS256") == "RS256":
            result[kid] = old
            continue
        key = rsa_key_from_jwk(jwk)
        if key is not None:
            result[kid] = (jwk["n"], jwk["e"], key)
    if duplicates:
        logger.warning(json.dumps({"event": "jwks_duplicate_kid", "kids": sorted(duplicates)}))
    if not result:
        raise _FetchFailed("JWKS holds no usable RS256 signing key")
    return result


def _unknown_kid() -> TokenInvalid:
    return TokenInvalid("token signed with an unknown key", reason="unknown_kid")


def http_fetch(url: str, timeout: float) -> Mapping[str, Any]:
    """GET the JWKS; the whole download must finish within ``timeout``.

    No redirects are followed (a non-200 answer fails closed). HTTPS verifies
    the server against certifi's bundle when it is installed (what requests
    used), else the system's. The socket timeout bounds each wait; the
    deadline, re-applied before every read, bounds a server dribbling bytes.
    """
    import http.client  # lazy: only the first fetch of a container pays for it

    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise _FetchFailed("JWKS URL is not an http(s) URL")
    deadline = time.monotonic() + timeout
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                                 context=_ssl_context())
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Accept": "application/json", "Accept-Encoding": "identity",
                                                 "User-Agent": "ws-cognito-authorizer"})
        response = connection.getresponse()
        if response.status != 200:
            raise _FetchFailed(f"JWKS answered HTTP {response.status}")
        declared = response.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_JWKS_BYTES:
            raise _FetchFailed("JWKS too large")
        body = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _FetchFailed("JWKS download exceeded the timeout")
            if connection.sock is not None:
                connection.sock.settimeout(left)
            chunk = response.read1(16384)
            if not chunk:
                break
            body += chunk
            if len(body) > MAX_JWKS_BYTES:
                raise _FetchFailed("JWKS too large")
    except (OSError, http.client.HTTPException) as exc:
        raise _FetchFailed(f"JWKS request failed: {type(exc).__name__}") from exc
    finally:
        connection.close()
    try:
        return json.loads(bytes(body).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _FetchFailed("JWKS is not JSON") from exc


# The former name (the download used requests); kept for callers of the old API.
requests_fetch = http_fetch

_ssl_lock = threading.Lock()
_ssl: Any = None


def _ssl_context() -> Any:
    global _ssl
    with _ssl_lock:
        if _ssl is None:
            import ssl

            try:
                import certifi

                cafile: str | None = certifi.where()
            except ImportError:
                cafile = None
            _ssl = ssl.create_default_context(cafile=cafile)
        return _ssl


class JwksCache:
    """Keys of one issuer, by kid. Thread safe; at most one fetch runs at a time.

    Refetch policy: the first ``get_key`` loads the set. After that, an unknown
    kid refetches only if no other unknown-kid refetch (successful or not)
    started within the last ``cooldown`` seconds; the initial load does not
    count, so a key rotated just after a cold start is still picked up. While
    no key set has ever been obtained, every call may try again (there is
    nothing to serve), but callers that waited for a fetch in progress take its
    result instead of fetching again. A refetch replaces the whole set, so a
    key Cognito has withdrawn stops being accepted.
    """

    def __init__(self, url: str, *, timeout: float = 2.0, cooldown: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, fetch: Fetch | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.cooldown = cooldown
        self._clock = clock
        self._fetch: Fetch = fetch or http_fetch
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[str, str, RSAPublicKey]] = {}
        self._keys: dict[str, RSAPublicKey] = {}
        self._loaded = False
        self._last_refetch: float | None = None
        self._generation = 0  # finished fetch attempts; lets waiters see one happened
        self.fetch_count = 0

    def get_key(self, kid: str) -> RSAPublicKey:
        key = self._keys.get(kid)
        if key is not None:
            return key
        seen = self._generation
        with self._lock:
            key = self._keys.get(kid)
            if key is not None:
                return key
            if self._generation != seen:
                # Another thread fetched while we waited: its answer is ours.
                if not self._loaded:
                    raise JwksUnavailable("signing keys are unavailable", reason="jwks_unavailable")
                raise _unknown_kid()
            if self._loaded:
                now = self._clock()
                if self._last_refetch is not None and now - self._last_refetch < self.cooldown:
                    raise _unknown_kid()
                self._last_refetch = now
            self._refresh()
            key = self._keys.get(kid)
        if key is None:
            raise _unknown_kid()
        return key

    def _refresh(self) -> None:
        """Fetch and replace the key set. Caller holds the lock.

        The generation moves on only when the attempt is over, so every caller
        that arrived during it sees the change and takes this result.
        """
        self.fetch_count += 1
        try:
            document = self._fetch(self.url, self.timeout)
            entries = parse_jwks(document, self._entries)
        except Exception as exc:  # any failure of the download or its content: fail closed
            logger.warning(json.dumps({"event": "jwks_fetch_failed", "url": self.url,
                                       "error": str(exc) if isinstance(exc, _FetchFailed)
                                       else type(exc).__name__}))
            raise JwksUnavailable("signing keys are unavailable", reason="jwks_unavailable") from exc
        else:
            self._entries = entries
            self._keys = {kid: entry[2] for kid, entry in entries.items()}
            self._loaded = True
        finally:
            self._generation += 1
        logger.info(json.dumps({"event": "jwks_fetched", "url": self.url, "kids": sorted(self._keys)}))

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)
