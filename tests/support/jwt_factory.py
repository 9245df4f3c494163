"""Cognito-shaped tokens, signing keys and a real JWKS HTTP endpoint for tests.

A pytest plugin (registered in tests/conftest.py). Fixtures:

* ``rsa_keys`` (session): a ``KeyRing`` of KeyPairs with kids k1, k2, k3 - a list
  that can also be indexed by kid (``rsa_keys["k2"]``).
* ``jwks_server``: a JwksServer serving [k1], stopped after the test.
* ``cognito_issuer``, ``client_id``: the pool issuer and app client the tokens name.
* ``token_factory``: a TokenFactory signing with k1.
* ``verifier``: a CognitoJwtVerifier trusting ``cognito_issuer`` with keys from ``jwks_server``.

RSA key generation takes ~50-200 ms, so ``KeyPair.generate`` keeps one key per
kid for the whole process; use another kid (and ``with_kid``) for a rogue key.
"""
from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, SupportsIndex

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import get_default_algorithms

from chalicelib.verifier import CognitoJwtVerifier

POOL_ID = "us-east-1_TestPool1"
ISSUER = f"https://cognito-idp.us-east-1.amazonaws.com/{POOL_ID}"
CLIENT_ID = "testclient123"

_generated: dict[str, rsa.RSAPrivateKey] = {}
_generated_lock = threading.Lock()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class KeyPair:
    """An RSA signing key with its kid."""

    def __init__(self, kid: str, private_key: rsa.RSAPrivateKey) -> None:
        self.kid = kid
        self.private_key = private_key

    @classmethod
    def generate(cls, kid: str) -> KeyPair:
        """RSA-2048 for ``kid``; the same key material every time within one process."""
        with _generated_lock:
            key = _generated.get(kid)
            if key is None:
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                _generated[kid] = key
        return cls(kid, key)

    def with_kid(self, kid: str) -> KeyPair:
        """The same key under another kid (e.g. a rogue key claiming a trusted kid)."""
        return KeyPair(kid, self.private_key)

    def public_jwk(self) -> dict[str, Any]:
        numbers = self.private_key.public_key().public_numbers()
        return {"kid": self.kid, "kty": "RSA", "alg": "RS256", "use": "sig",
                "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def __repr__(self) -> str:
        return f"KeyPair(kid={self.kid!r})"


class KeyRing(list[KeyPair]):
    """A list of KeyPairs that can also be indexed by kid."""

    def __getitem__(self, index: SupportsIndex | slice | str) -> Any:  # type: ignore[override]
        if isinstance(index, str):
            for pair in self:
                if pair.kid == index:
                    return pair
            raise KeyError(index)
        return super().__getitem__(index)


def _apply(base: dict[str, Any], changes: dict[str, Any] | None) -> dict[str, Any]:
    """Merge ``changes`` into ``base``; a None value removes the entry."""
    for name, value in (changes or {}).items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return base


class TokenFactory:
    """Signs tokens shaped like the ones Cognito issues for one pool and app client."""

    def __init__(self, issuer: str, client_id: str, key: KeyPair) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self.key = key

    def _common(self, sub: str, token_use: str, exp_in: int) -> dict[str, Any]:
        now = int(time.time())
        return {
            "sub": sub,
            "iss": self.issuer,
            "origin_jti": str(uuid.uuid4()),
            "event_id": str(uuid.uuid4()),
            "token_use": token_use,
            "auth_time": now,
            "exp": now + exp_in,
            "iat": now,
            "jti": str(uuid.uuid4()),
        }

    def access_claims(self, sub: str = "user-1", username: str = "alice",
                      groups: Iterable[str] = (), scope: str = "openid profile email",
                      extra: dict[str, Any] | None = None, exp_in: int = 3600,
                      **overrides: Any) -> dict[str, Any]:
        claims = self._common(sub, "access", exp_in)
        claims.update(client_id=self.client_id, scope=scope, username=username)
        if groups:
            claims["cognito:groups"] = list(groups)
        claims.update(extra or {})
        return _apply(claims, overrides)

    def id_claims(self, sub: str = "user-1", username: str = "alice",
                  email: str = "alice@example.com", groups: Iterable[str] = (),
                  extra: dict[str, Any] | None = None, exp_in: int = 3600,
                  **overrides: Any) -> dict[str, Any]:
        claims = self._common(sub, "id", exp_in)
        del claims["event_id"]
        claims.update({"aud": self.client_id, "email_verified": True,
                       "cognito:username": username, "email": email})
        if groups:
            claims["cognito:groups"] = list(groups)
        claims.update(extra or {})
        return _apply(claims, overrides)

    def access_token(self, sub: str = "user-1", username: str = "alice",
                     groups: Iterable[str] = (), scope: str = "openid profile email",
                     extra: dict[str, Any] | None = None, exp_in: int = 3600,
                     **overrides: Any) -> str:
        return self.sign(self.access_claims(sub, username, groups, scope, extra, exp_in, **overrides))

    def id_token(self, sub: str = "user-1", username: str = "alice",
                 email: str = "alice@example.com", groups: Iterable[str] = (),
                 extra: dict[str, Any] | None = None, exp_in: int = 3600,
                 **overrides: Any) -> str:
        return self.sign(self.id_claims(sub, username, email, groups, extra, exp_in, **overrides))

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None,
             key: KeyPair | None = None, alg: str = "RS256") -> str:
        """Any token, including hostile ones.

        The header is ``{"kid": key.kid, "alg": alg}`` updated by ``headers`` (None
        removes an entry); header and claims are serialized as given, so they
        may hold anything JSON can. PyJWT's algorithm objects sign: RS*/PS*/...
        with the private key, ``HS*`` with the public key PEM as the HMAC secret
        (the classic key-confusion attack, which ``jwt.encode`` rightly refuses
        to produce), ``none`` with an empty signature.
        """
        key = key or self.key
        header = _apply({"kid": key.kid, "alg": alg}, headers)
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                         + b64url(json.dumps(claims, separators=(",", ":")).encode()))
        algorithm = get_default_algorithms()[alg]
        secret: Any = key.public_pem() if alg.startswith("HS") else key.private_key
        signature = b"" if alg == "none" else algorithm.sign(signing_input.encode(), secret)
        return signing_input + "." + b64url(signature)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        owner = self.server.owner
        with owner._lock:
            owner.hits += 1
            status, delay, raw = owner._status, owner._delay, owner._raw
            keys = list(owner._keys)
        if delay and owner._stopping.wait(delay):
            return
        if status is not None:
            body = json.dumps({"message": "failure injected"}).encode()
        elif raw is not None:
            status, body = 200, raw
        else:
            status, body = 200, json.dumps({"keys": [k.public_jwk() for k in keys]}).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: JwksServer


class JwksServer:
    """A real HTTP JWKS endpoint on 127.0.0.1 (any path answers with the key set)."""

    def __init__(self, keys: Iterable[KeyPair] = (), pool_id: str = POOL_ID) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._keys: list[KeyPair] = list(keys)
        self._status: int | None = None
        self._delay = 0.0
        self._raw: bytes | None = None
        self.hits = 0
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/{pool_id}/.well-known/jwks.json"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"jwks-server-{self.port}", daemon=True)
        self._thread.start()

    def set_keys(self, keys: Iterable[KeyPair]) -> None:
        with self._lock:
            self._keys = list(keys)

    def fail(self, status: int | None) -> None:
        """Answer every request with ``status`` (None: serve keys again)."""
        with self._lock:
            self._status = status

    def hang(self, seconds: float) -> None:
        """Wait ``seconds`` before answering (0: answer at once). stop() cuts it short."""
        with self._lock:
            self._delay = seconds

    def serve_raw(self, body: bytes | None) -> None:
        """Answer 200 with exactly ``body`` (None: serve keys again) - for bad payloads."""
        with self._lock:
            self._raw = body

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> JwksServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def rsa_keys() -> KeyRing:
    return KeyRing(KeyPair.generate(kid) for kid in ("k1", "k2", "k3"))


@pytest.fixture
def jwks_server(rsa_keys: KeyRing) -> Iterator[JwksServer]:
    server = JwksServer([rsa_keys["k1"]])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cognito_issuer() -> str:
    return ISSUER


@pytest.fixture
def client_id() -> str:
    return CLIENT_ID


@pytest.fixture
def token_factory(cognito_issuer: str, client_id: str, rsa_keys: KeyRing) -> TokenFactory:
    return TokenFactory(cognito_issuer, client_id, rsa_keys["k1"])


@pytest.fixture
def verifier(jwks_server: JwksServer, cognito_issuer: str, client_id: str) -> CognitoJwtVerifier:
    return CognitoJwtVerifier(issuers={cognito_issuer: jwks_server.url}, client_ids=[client_id])
