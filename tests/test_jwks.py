"""Unit tests of JwksCache: refetch policy, concurrency, key filtering, bad payloads.

Most use an in-process fetch function (the cache is the unit under test); the
download (PyJWKClient's) is exercised against the real JwksServer.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Mapping

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chalicelib import jwks as jwks_module
from chalicelib.errors import JwksUnavailable, TokenInvalid
from chalicelib.jwks import JwksCache, http_fetch
from tests.support.jwt_factory import JwksServer, KeyPair, KeyRing, b64url


class FakeJwks:
    """Counts fetches and answers with whatever document is current."""

    def __init__(self, document: Any, delay: float = 0.0) -> None:
        self.document = document
        self.delay = delay
        self.calls = 0
        self.error: Exception | None = None
        self._lock = threading.Lock()

    def __call__(self, url: str, timeout: float) -> Mapping[str, Any]:
        with self._lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.document


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def jwks_of(*pairs: KeyPair) -> dict[str, Any]:
    return {"keys": [pair.public_jwk() for pair in pairs]}


def reason_of(cache: JwksCache, kid: str) -> str:
    with pytest.raises(TokenInvalid) as caught:
        cache.get_key(kid)
    return caught.value.reason


def test_key_matches_the_jwk(rsa_keys: KeyRing) -> None:
    fake = FakeJwks(jwks_of(rsa_keys["k1"], rsa_keys["k2"]))
    cache = JwksCache("https://x/jwks.json", fetch=fake)
    key = cache.get_key("k2")
    assert key.key.public_numbers() == rsa_keys["k2"].private_key.public_key().public_numbers()
    assert cache.get_key("k2") is key
    assert cache.get_key("k1") is not key
    assert fake.calls == 1
    assert cache.kids == {"k1", "k2"}


def test_unknown_kid_refetches_once_per_cooldown(rsa_keys: KeyRing) -> None:
    clock = Clock()
    fake = FakeJwks(jwks_of(rsa_keys["k1"]))
    cache = JwksCache("https://x/jwks.json", cooldown=60, clock=clock, fetch=fake)
    cache.get_key("k1")
    assert fake.calls == 1
    assert reason_of(cache, "forged") == "unknown_kid"
    assert fake.calls == 2  # the initial load does not count against the cooldown
    for _ in range(20):
        clock.now += 2
        assert reason_of(cache, "forged") == "unknown_kid"
    assert fake.calls == 2
    clock.now += 60
    fake.document = jwks_of(rsa_keys["k1"], rsa_keys["k2"])
    assert cache.get_key("k2") is not None
    assert fake.calls == 3
    clock.now += 1
    assert reason_of(cache, "k3") == "unknown_kid"
    assert fake.calls == 3


def test_refetch_replaces_the_whole_set(rsa_keys: KeyRing) -> None:
    """A kid whose key material changes gets the new key; a withdrawn kid is no longer accepted."""
    fake = FakeJwks(jwks_of(rsa_keys["k1"]))
    cache = JwksCache("https://x/jwks.json", cooldown=0, fetch=fake)
    cache.get_key("k1")
    fake.document = {"keys": [rsa_keys["k3"].with_kid("k1").public_jwk(), rsa_keys["k2"].public_jwk()]}
    cache.get_key("k2")
    assert cache.get_key("k1").key.public_numbers() == rsa_keys["k3"].private_key.public_key().public_numbers()
    fake.document = jwks_of(rsa_keys["k2"])
    with pytest.raises(TokenInvalid):
        cache.get_key("k3")
    assert reason_of(cache, "k1") == "unknown_kid"


def test_refetch_failures_count_against_the_cooldown(rsa_keys: KeyRing) -> None:
    """While the JWKS endpoint is down, forged kids still cause one attempt per cool-down."""
    clock = Clock()
    fake = FakeJwks(jwks_of(rsa_keys["k1"]))
    cache = JwksCache("https://x/jwks.json", cooldown=60, clock=clock, fetch=fake)
    cache.get_key("k1")
    fake.error = OSError("down")
    with pytest.raises(JwksUnavailable):
        cache.get_key("forged-1")
    for i in range(10):
        clock.now += 5
        assert reason_of(cache, f"forged-{i}") == "unknown_kid"
    assert fake.calls == 2
    assert cache.get_key("k1") is not None  # known keys survive the failed refetch


def test_concurrent_first_calls_fetch_once(rsa_keys: KeyRing) -> None:
    fake = FakeJwks(jwks_of(rsa_keys["k1"]), delay=0.2)
    cache = JwksCache("https://x/jwks.json", fetch=fake)
    barrier = threading.Barrier(16)
    results: list[Any] = []

    def worker() -> None:
        barrier.wait()
        results.append(cache.get_key("k1"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert fake.calls == 1
    assert len(results) == 16 and all(r is results[0] for r in results)


def test_concurrent_forged_kids_refetch_once(rsa_keys: KeyRing) -> None:
    fake = FakeJwks(jwks_of(rsa_keys["k1"]), delay=0.05)
    cache = JwksCache("https://x/jwks.json", fetch=fake)
    cache.get_key("k1")
    barrier = threading.Barrier(16)
    reasons: list[str] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            cache.get_key(f"forged-{i}")
        except TokenInvalid as exc:
            reasons.append(exc.reason)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert reasons == ["unknown_kid"] * 16
    assert fake.calls == 2


def test_concurrent_callers_share_a_failed_fetch(rsa_keys: KeyRing) -> None:
    fake = FakeJwks(None, delay=0.2)
    fake.error = OSError("down")
    cache = JwksCache("https://x/jwks.json", fetch=fake)
    barrier = threading.Barrier(8)
    errors: list[Exception] = []

    def worker() -> None:
        barrier.wait()
        try:
            cache.get_key("k1")
        except Exception as exc:  # noqa: BLE001 - the type is asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(errors) == 8 and all(isinstance(e, JwksUnavailable) for e in errors)
    assert fake.calls == 1


def _rsa_jwk(kid: str, bits: int = 2048, **fields: Any) -> dict[str, Any]:
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key().public_numbers()
    jwk = {"kid": kid, "kty": "RSA", "alg": "RS256", "use": "sig",
           "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")), "e": "AQAB"}
    jwk.update(fields)
    return {k: v for k, v in jwk.items() if v is not None}


def test_only_rs256_signing_rsa_keys_are_used(rsa_keys: KeyRing) -> None:
    good = rsa_keys["k1"].public_jwk()
    k2 = rsa_keys["k2"].public_jwk()
    ec_numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    document = {"keys": [
        good,
        {**k2, "kid": "bare", "use": None, "alg": None},  # no use/alg: accepted
        {**k2, "kid": "enc", "use": "enc"},
        {**k2, "kid": "rs512", "alg": "RS512"},
        {**k2, "kid": "ps256", "alg": "PS256"},
        {"kid": "ec", "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
         "x": b64url(ec_numbers.x.to_bytes(32, "big")), "y": b64url(ec_numbers.y.to_bytes(32, "big"))},
        {"kid": "oct", "kty": "oct", "k": b64url(b"secret" * 8)},
        _rsa_jwk("weak", bits=1024),
        {**k2, "kid": "bad_n", "n": "!!!"},
        {**k2, "kid": "even_e", "e": "AAI"},
        {**k2, "kid": "e_one", "e": "AQ"},
        {**k2, "kid": "int_n", "n": 12345},
        {**k2, "kid": "", },
        {**k2, "kid": None},
        "not-a-jwk",
    ]}
    document["keys"] = [{k: v for k, v in jwk.items() if v is not None} if isinstance(jwk, dict) else jwk
                        for jwk in document["keys"]]
    cache = JwksCache("https://x/jwks.json", cooldown=3600, fetch=FakeJwks(document))
    assert cache.get_key("k1") is not None
    assert cache.get_key("bare") is not None
    assert cache.kids == {"k1", "bare"}
    for kid in ("enc", "rs512", "ps256", "ec", "oct", "weak", "bad_n", "even_e", "e_one", "int_n"):
        assert reason_of(cache, kid) == "unknown_kid"


def test_duplicate_kid_is_dropped(rsa_keys: KeyRing) -> None:
    document = {"keys": [rsa_keys["k1"].public_jwk(), rsa_keys["k2"].with_kid("k1").public_jwk(),
                         rsa_keys["k3"].public_jwk()]}
    cache = JwksCache("https://x/jwks.json", fetch=FakeJwks(document))
    assert cache.get_key("k3") is not None
    assert reason_of(cache, "k1") == "unknown_kid"


@pytest.mark.parametrize("document", [
    None,
    [],
    "keys",
    {},
    {"keys": None},
    {"keys": {"kid": "k1"}},
    {"keys": []},
    {"keys": [{"kid": "k1", "kty": "EC"}]},
    {"keys": [{"kid": "k1", "kty": "RSA", "n": "AQAB", "e": "AQAB"}]},  # 17-bit modulus
], ids=["none", "list", "string", "empty", "keys_null", "keys_object", "no_keys", "no_rsa", "tiny_rsa"])
def test_unusable_jwks_fails_closed(document: Any) -> None:
    cache = JwksCache("https://x/jwks.json", fetch=FakeJwks(document))
    with pytest.raises(JwksUnavailable):
        cache.get_key("k1")


def test_too_many_keys_fails_closed(rsa_keys: KeyRing) -> None:
    jwk = rsa_keys["k1"].public_jwk()
    document = {"keys": [{**jwk, "kid": f"k{i}"} for i in range(jwks_module.MAX_KEYS + 1)]}
    with pytest.raises(JwksUnavailable):
        JwksCache("https://x/jwks.json", fetch=FakeJwks(document)).get_key("k1")


def test_fetch_exception_fails_closed() -> None:
    fake = FakeJwks(None)
    fake.error = RuntimeError("boom")
    with pytest.raises(JwksUnavailable):
        JwksCache("https://x/jwks.json", fetch=fake).get_key("k1")


# --- the download against a real HTTP server --------------------------------------

@pytest.fixture
def server(rsa_keys: KeyRing) -> Any:
    with JwksServer([rsa_keys["k1"]]) as srv:
        yield srv


def test_http_fetch_reads_the_served_set(server: JwksServer, rsa_keys: KeyRing) -> None:
    document = http_fetch(server.url, 2.0)
    assert [k["kid"] for k in document["keys"]] == ["k1"]
    cache = JwksCache(server.url)
    assert cache.get_key("k1").key.public_numbers() == rsa_keys["k1"].private_key.public_key().public_numbers()
    assert server.hits == 2


@pytest.mark.parametrize("status", [301, 404, 500, 503])
def test_non_200_fails_closed(server: JwksServer, status: int) -> None:
    server.fail(status)
    with pytest.raises(JwksUnavailable):
        JwksCache(server.url).get_key("k1")


@pytest.mark.parametrize("body", [
    b"<html>not json</html>",
    b'{"keys": [',
    b"\xff\xfe{}",
    b'{"keys": []}',
    b'{"keys": [' + b'{"kid":"x","kty":"RSA","n":"' + b"A" * 1000 + b'","e":"AQAB"},' * 300 + b"{}]}",
], ids=["html", "truncated", "not_utf8", "empty_keys", "oversize"])
def test_bad_bodies_fail_closed(server: JwksServer, body: bytes) -> None:
    server.serve_raw(body)
    with pytest.raises(JwksUnavailable):
        JwksCache(server.url).get_key("k1")


def test_hanging_server_times_out(server: JwksServer) -> None:
    server.hang(10)
    cache = JwksCache(server.url, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(JwksUnavailable):
        cache.get_key("k1")
    assert time.monotonic() - started < 0.3 + 0.5
