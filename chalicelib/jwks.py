"""A Cognito user pool's signing keys, fetched once and kept for the container.

PyJWT does the JWKS work: ``PyJWKClient.fetch_data`` downloads the set (no
redirects, a timeout) and ``PyJWKSet`` turns it into prepared keys, skipping
entries it cannot use. What this module adds is the policy PyJWKClient does
not have:

* **Kept for the container's life.** Cognito rotates keys rarely; there is no
  time-based expiry (PyJWKClient's ``lifespan``), so a warm container never
  waits on the network.
* **Fail closed.** Any doubt about the set (download failed, not JSON, no usable
  key) ends in ``JwksUnavailable``, which the authorizer answers with 401.
* **A refetch on an unknown kid at most once per cool-down**, counted from the
  last refetch *attempt*, successful or not: forged kids cannot turn the
  authorizer into a request storm against the JWKS endpoint, not even while
  that endpoint is down. The initial load does not start the cool-down, so a
  key rotated just after a cold start is still picked up.
* **Only RS256 signing keys** of at least 2,048 bits are kept, and a kid that
  appears twice is dropped (which of the two is meant is unknowable).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Mapping

from jwt import PyJWK, PyJWKClient, PyJWKSet

from .errors import JwksUnavailable, TokenInvalid
from .logs import log_event

logger = logging.getLogger("ws.jwks")

Fetch = Callable[[str, float], Mapping[str, Any]]  # (url, timeout) -> the JWKS document

MAX_KEYS = 100  # a Cognito JWKS holds two keys; a set this large is not one
MIN_RSA_BITS = 2048


class JwksDocumentError(ValueError):
    """The downloaded document is not a key set we can use (logged, never shown)."""


def http_fetch(url: str, timeout: float) -> Mapping[str, Any]:
    """GET the JWKS with PyJWKClient's downloader (it caches nothing here: the
    cache below owns the policy)."""
    return PyJWKClient(url, cache_jwk_set=False, timeout=timeout,
                       headers={"User-Agent": "ws-cognito-authorizer"}).fetch_data()


def signing_keys(document: Any) -> dict[str, PyJWK]:
    """kid -> key for every RS256 signing key of the document; raises JwksDocumentError if none."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise JwksDocumentError("JWKS is not an object with a 'keys' list")
    if len(document["keys"]) > MAX_KEYS:
        raise JwksDocumentError(f"JWKS has {len(document['keys'])} keys (max {MAX_KEYS})")
    try:
        keyset = PyJWKSet.from_dict(dict(document))
    except Exception as error:  # PyJWKSetError when nothing in it is usable
        raise JwksDocumentError(f"JWKS holds no usable key: {error}") from error
    keys: dict[str, PyJWK] = {}
    seen: set[str] = set()
    for key in keyset.keys:
        kid = key.key_id
        if not isinstance(kid, str) or not kid:
            continue
        if kid in seen:
            keys.pop(kid, None)
            log_event(logger, "jwks_duplicate_kid", logging.WARNING, kid=kid)
            continue
        seen.add(kid)
        usable = (key.algorithm_name == "RS256" and key.public_key_use in ("sig", None)
                  and getattr(key.key, "key_size", 0) >= MIN_RSA_BITS)
        if usable:
            keys[kid] = key
    if not keys:
        raise JwksDocumentError("JWKS holds no RS256 signing key")
    return keys


def _unknown_kid() -> TokenInvalid:
    return TokenInvalid("token signed with an unknown key", reason="unknown_kid")


class JwksCache:
    """Keys of one issuer, by kid. Thread safe; at most one fetch runs at a time.

    While no key set has ever been obtained, every call may try again (there
    is nothing to serve), but callers that waited for a fetch in progress take
    its result instead of fetching again. A refetch replaces the whole set, so
    a key Cognito has withdrawn stops being accepted.
    """

    def __init__(self, url: str, *, timeout: float = 2.0, cooldown: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, fetch: Fetch | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.cooldown = cooldown
        self._clock = clock
        self._fetch: Fetch = fetch or http_fetch
        self._lock = threading.Lock()
        self._keys: dict[str, PyJWK] = {}
        self._loaded = False
        self._last_refetch: float | None = None
        self._attempts = 0  # finished fetch attempts; lets waiters see that one happened
        self.fetch_count = 0

    def peek(self, kid: str) -> PyJWK | None:
        """The key for ``kid`` if it is already held; never fetches."""
        return self._keys.get(kid)

    def get_key(self, kid: str) -> PyJWK:
        """The key for ``kid``, fetching the set first if the policy above allows it."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        seen = self._attempts
        with self._lock:
            key = self._keys.get(kid)
            if key is not None:
                return key
            if self._attempts != seen:
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
        """Fetch and replace the key set. Caller holds the lock."""
        self.fetch_count += 1
        try:
            keys = signing_keys(self._fetch(self.url, self.timeout))
        except Exception as error:  # the download or its content: fail closed
            log_event(logger, "jwks_fetch_failed", logging.WARNING, url=self.url,
                      error=f"{type(error).__name__}: {error}"[:300])
            raise JwksUnavailable("signing keys are unavailable", reason="jwks_unavailable") from error
        finally:
            self._attempts += 1
        self._keys = keys
        self._loaded = True
        log_event(logger, "jwks_fetched", url=self.url, kids=sorted(keys))

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)
