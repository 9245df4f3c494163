"""CognitoJwtVerifier against real signed tokens and a real JWKS HTTP endpoint."""
from __future__ import annotations

import json
import socket
import time
from typing import Any, Callable

import pytest
from jwt.algorithms import get_default_algorithms

from chalicelib.errors import JwksUnavailable, TokenInvalid
from chalicelib.settings import issuer_url
from chalicelib.verifier import CognitoJwtVerifier
from tests.support.jwt_factory import (
    POOL_ID, JwksServer, KeyPair, KeyRing, TokenFactory, b64url,
)

Builder = Callable[[TokenFactory, KeyRing], Any]


def sign_raw(header: str, payload: str, key: KeyPair) -> str:
    """A token from literal JSON texts (for JSON that json.dumps cannot write)."""
    signing_input = b64url(header.encode()) + "." + b64url(payload.encode())
    signature = get_default_algorithms()["RS256"].sign(signing_input.encode(), key.private_key)
    return signing_input + "." + b64url(signature)


def replace_segment(token: str, index: int, value: str) -> str:
    parts = token.split(".")
    parts[index] = value
    return ".".join(parts)


def segment_json(value: Any) -> str:
    return b64url(json.dumps(value).encode())


def tamper_payload(f: TokenFactory, keys: KeyRing) -> str:
    good = f.access_token()
    forged = f.access_token(sub="admin")
    return replace_segment(good, 1, forged.split(".")[1])


def flip_signature(f: TokenFactory, keys: KeyRing) -> str:
    token = f.access_token()
    head, sig = token[:-60], token[-60:]
    flipped = ("B" if sig[0] == "A" else "A") + sig[1:]
    return head + flipped


def swap_in_segment(token: str, index: int, char: str) -> str:
    """The token with one character of a segment (its 5th) replaced by ``char``."""
    parts = token.split(".")
    parts[index] = parts[index][:4] + char + parts[index][5:]
    return ".".join(parts)


def standard_letter_in_signature(f: TokenFactory, url_safe: str, standard: str) -> str:
    """A valid token with one url-safe letter of its signature spelled the standard
    way: a lenient decoder reads the same signature, and the token would verify."""
    while True:  # a 342-letter signature without the letter is a ~1e-5 event
        token = f.access_token()
        head, _, signature = token.rpartition(".")
        if url_safe in signature:
            return head + "." + signature.replace(url_safe, standard, 1)


def noncanonical_signature(f: TokenFactory, keys: KeyRing) -> str:
    token = f.access_token()
    sig = token.split(".")[2]
    assert len(sig) % 4 == 2  # 256 bytes: the last char carries 4 unused bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(sig[-1]) + 1]  # same decoded bytes, other spelling
    return token[:-1] + last




def now() -> int:
    """The time when the token is made: the suite runs for minutes after this module is imported."""
    return int(time.time())


HOSTILE: list[tuple[str, Builder, str]] = [
    # time
    ("expired", lambda f, k: f.access_token(exp_in=-5), "expired"),
    ("expired_id", lambda f, k: f.id_token(exp_in=-5), "expired"),
    ("not_yet_valid", lambda f, k: f.access_token(nbf=now() + 600), "not_yet_valid"),
    ("missing_exp", lambda f, k: f.access_token(exp=None), "missing_exp"),
    ("exp_string", lambda f, k: f.access_token(exp=str(now() + 3600)), "bad_exp"),
    ("exp_bool", lambda f, k: f.access_token(exp=True), "bad_exp"),
    # 1e400 overflows a double: the JSON decoder refuses it before any time check.
    ("exp_huge_float", lambda f, k: sign_raw('{"kid":"k1","alg":"RS256"}', json.dumps(
        f.access_claims(exp=None))[:-1] + ', "exp": 1e400}', k["k1"]), "malformed"),
    ("exp_infinity", lambda f, k: f.access_token(exp=float("inf")), "malformed"),
    ("nbf_string", lambda f, k: f.access_token(nbf="0"), "bad_nbf"),
    ("iat_string", lambda f, k: f.access_token(iat="yesterday"), "bad_iat"),
    # PyJWT reads time claims with int(), which takes digit strings, padding and underscores.
    ("exp_digit_string", lambda f, k: f.access_token(exp=" 9_999_999_999 "), "bad_exp"),
    ("exp_padded_digits", lambda f, k: f.access_token(exp=f" {now() + 3600}\n"), "bad_exp"),
    ("nbf_digit_string", lambda f, k: f.access_token(nbf="1700000000"), "bad_nbf"),
    ("nbf_padded_digits", lambda f, k: f.access_token(nbf=" 9_999 "), "bad_nbf"),
    ("nbf_bool", lambda f, k: f.access_token(nbf=False), "bad_nbf"),
    ("iat_digit_string", lambda f, k: f.access_token(iat=str(now())), "bad_iat"),
    ("iat_padded_digits", lambda f, k: f.access_token(iat=" 9_999 "), "bad_iat"),
    ("iat_in_the_future", lambda f, k: f.access_token(iat=now() + 600), "not_yet_valid"),
    ("exp_nan", lambda f, k: f.access_token(exp=float("nan")), "malformed"),
    # issuer
    ("foreign_issuer", lambda f, k: f.access_token(iss="https://evil.example.com"), "bad_issuer"),
    ("other_pool", lambda f, k: f.access_token(iss=issuer_url("us-east-1", "us-east-1_OtherPool")), "bad_issuer"),
    ("other_region", lambda f, k: f.access_token(iss=issuer_url("eu-west-1", POOL_ID)), "bad_issuer"),
    ("issuer_trailing_slash", lambda f, k: f.access_token(iss=f.issuer + "/"), "bad_issuer"),
    ("issuer_list", lambda f, k: f.access_token(iss=[f.issuer]), "bad_issuer"),
    ("missing_issuer", lambda f, k: f.access_token(iss=None), "bad_issuer"),
    # audience and use
    ("wrong_client_id", lambda f, k: f.access_token(client_id="otherclient"), "bad_client"),
    ("missing_client_id", lambda f, k: f.access_token(client_id=None), "bad_client"),
    ("access_with_only_aud", lambda f, k: f.access_token(client_id=None, aud=f.client_id), "bad_client"),
    ("id_wrong_aud", lambda f, k: f.id_token(aud="otherclient"), "bad_audience"),
    ("id_aud_list_no_match", lambda f, k: f.id_token(aud=["a", "b"]), "bad_audience"),
    ("id_missing_aud", lambda f, k: f.id_token(aud=None, client_id=f.client_id), "bad_audience"),
    ("wrong_token_use", lambda f, k: f.access_token(token_use="refresh"), "bad_token_use"),
    ("missing_token_use", lambda f, k: f.access_token(token_use=None), "bad_token_use"),
    ("missing_sub", lambda f, k: f.access_token(sub=None), "bad_sub"),
    ("empty_sub", lambda f, k: f.access_token(sub=""), "bad_sub"),
    ("numeric_sub", lambda f, k: f.access_token(sub=42), "bad_sub"),
    # algorithm and header
    ("alg_none_unsigned", lambda f, k: f.sign(f.access_claims(), alg="none"), "malformed"),
    ("alg_none_with_signature", lambda f, k: f.sign(f.access_claims(), alg="none") + "c2ln", "bad_alg"),
    ("alg_none_header_rs256_sig", lambda f, k: f.sign(f.access_claims(), headers={"alg": "none"}), "bad_alg"),
    ("hs256_public_pem_secret", lambda f, k: f.sign(f.access_claims(), alg="HS256"), "bad_alg"),
    ("rs512", lambda f, k: f.sign(f.access_claims(), alg="RS512"), "bad_alg"),
    ("ps256", lambda f, k: f.sign(f.access_claims(), alg="PS256"), "bad_alg"),
    ("alg_lowercase", lambda f, k: f.sign(f.access_claims(), headers={"alg": "rs256"}), "bad_alg"),
    ("alg_missing", lambda f, k: f.sign(f.access_claims(), headers={"alg": None}), "bad_alg"),
    ("alg_list", lambda f, k: f.sign(f.access_claims(), headers={"alg": ["RS256"]}), "bad_alg"),
    # PyJWT itself refuses an unsupported critical extension and a non-string kid.
    ("crit_header", lambda f, k: f.sign(f.access_claims(), headers={"crit": ["exp"], "exp": 1}), "malformed"),
    # b64 is an extension PyJWT supports (RFC 7797); Cognito never sends crit, so it is refused.
    ("crit_b64_header", lambda f, k: f.sign(f.access_claims(), headers={"crit": ["b64"], "b64": True}),
     "bad_header"),
    ("unknown_kid", lambda f, k: f.sign(f.access_claims(), key=k["k3"]), "unknown_kid"),
    ("missing_kid", lambda f, k: f.sign(f.access_claims(), headers={"kid": None}), "missing_kid"),
    ("numeric_kid", lambda f, k: f.sign(f.access_claims(), headers={"kid": 1}), "malformed"),
    ("empty_kid", lambda f, k: f.sign(f.access_claims(), headers={"kid": ""}), "missing_kid"),
    ("rogue_key_known_kid", lambda f, k: f.sign(f.access_claims(),
                                                key=KeyPair.generate("rogue").with_kid("k1")), "bad_signature"),
    # signature
    ("tampered_payload", tamper_payload, "bad_signature"),
    ("tampered_signature", flip_signature, "bad_signature"),
    ("truncated_signature", lambda f, k: f.access_token()[:-2], "bad_signature"),
    ("signature_of_other_token", lambda f, k: replace_segment(
        f.access_token(), 2, f.id_token().split(".")[2]), "bad_signature"),
    ("noncanonical_signature", noncanonical_signature, "malformed"),
    # shape
    ("two_segments", lambda f, k: f.access_token().rsplit(".", 1)[0], "malformed"),
    ("four_segments", lambda f, k: f.access_token() + ".e30", "malformed"),
    ("empty_header", lambda f, k: "." + f.access_token().split(".", 1)[1], "malformed"),
    ("empty_payload", lambda f, k: replace_segment(f.access_token(), 1, ""), "malformed"),
    ("empty_signature", lambda f, k: replace_segment(f.access_token(), 2, ""), "malformed"),
    ("dots_only", lambda f, k: "..", "malformed"),
    ("standard_base64_chars", lambda f, k: f.access_token()[:-3] + "+/A", "malformed"),
    ("bang_in_payload", lambda f, k: replace_segment(f.access_token(), 1, "ab!c"), "malformed"),
    # the standard alphabet's letters where url-safe ones belong decode to the same bytes
    ("plus_for_dash_in_signature", lambda f, k: standard_letter_in_signature(f, "-", "+"), "malformed"),
    ("slash_for_underscore_in_signature", lambda f, k: standard_letter_in_signature(f, "_", "/"), "malformed"),
    ("plus_in_payload", lambda f, k: swap_in_segment(f.access_token(), 1, "+"), "malformed"),
    ("equals_inside_payload", lambda f, k: swap_in_segment(f.access_token(), 1, "="), "malformed"),
    ("tab_inside_payload", lambda f, k: swap_in_segment(f.access_token(), 1, "\t"), "malformed"),
    ("control_char_in_header", lambda f, k: swap_in_segment(f.access_token(), 0, "\x00"), "malformed"),
    ("padding_chars", lambda f, k: f.access_token() + "==", "malformed"),
    ("padded_header", lambda f, k: replace_segment(f.access_token(), 0, segment_json({"a": 1}) + "="), "malformed"),
    ("length_mod4_is_1", lambda f, k: replace_segment(f.access_token(), 1, "abcde"), "malformed"),
    ("header_not_json", lambda f, k: replace_segment(f.access_token(), 0, b64url(b"kid=k1;alg=RS256")), "malformed"),
    ("header_json_array", lambda f, k: replace_segment(f.access_token(), 0, segment_json(["RS256", "k1"])), "malformed"),
    ("header_json_string", lambda f, k: replace_segment(f.access_token(), 0, segment_json("RS256")), "malformed"),
    ("header_not_utf8", lambda f, k: replace_segment(f.access_token(), 0, b64url(b'{"alg":"\xff"}')), "malformed"),
    ("payload_not_json", lambda f, k: sign_raw('{"kid":"k1","alg":"RS256"}', "sub=admin", k["k1"]), "malformed"),
    ("payload_json_array", lambda f, k: sign_raw('{"kid":"k1","alg":"RS256"}', "[1, 2]", k["k1"]), "malformed"),
    ("payload_trailing_garbage", lambda f, k: sign_raw('{"kid":"k1","alg":"RS256"}', json.dumps(
        f.access_claims()) + "x", k["k1"]), "malformed"),
    ("non_ascii", lambda f, k: f.access_token()[:-1] + "é", "malformed"),
    ("non_ascii_digit", lambda f, k: f.access_token()[:-1] + "٣", "malformed"),
    ("oversize", lambda f, k: f.access_token(extra={"custom:blob": "x" * 9000}), "too_large"),
    ("empty_string", lambda f, k: "", "malformed"),
    ("whitespace_wrapped", lambda f, k: " " + f.access_token() + "\n", "malformed"),
    ("bearer_prefix", lambda f, k: "Bearer " + f.access_token(), "malformed"),
    ("newline_inside", lambda f, k: f.access_token().replace(".", ".\n", 1), "malformed"),
    ("bytes_token", lambda f, k: f.access_token().encode(), "malformed"),
    ("none_token", lambda f, k: None, "malformed"),
]


@pytest.mark.parametrize("build,reason", [pytest.param(b, r, id=i) for i, b, r in HOSTILE])
def test_hostile_token_rejected(verifier: CognitoJwtVerifier, token_factory: TokenFactory,
                                rsa_keys: KeyRing, build: Builder, reason: str) -> None:
    token = build(token_factory, rsa_keys)
    with pytest.raises(TokenInvalid) as caught:
        verifier.verify(token)
    assert caught.value.reason == reason


def test_hostile_list_is_broad() -> None:
    assert len(HOSTILE) >= 30
    assert len({name for name, _, _ in HOSTILE}) == len(HOSTILE)


def test_valid_access_token(verifier: CognitoJwtVerifier, token_factory: TokenFactory,
                            cognito_issuer: str, client_id: str) -> None:
    claims = verifier.verify(token_factory.access_token(sub="u-9", username="bob", groups=["admins"]))
    assert claims["sub"] == "u-9"
    assert claims["username"] == "bob"
    assert claims["cognito:groups"] == ["admins"]
    assert claims["iss"] == cognito_issuer
    assert claims["client_id"] == client_id
    assert claims["token_use"] == "access"


def test_valid_id_token(verifier: CognitoJwtVerifier, token_factory: TokenFactory, client_id: str) -> None:
    claims = verifier.verify(token_factory.id_token(email="bob@example.com"))
    assert claims["aud"] == client_id
    assert claims["token_use"] == "id"
    assert claims["email"] == "bob@example.com"
    assert claims["cognito:username"] == "alice"


def test_id_token_aud_list_with_a_match_is_accepted(verifier: CognitoJwtVerifier,
                                                     token_factory: TokenFactory, client_id: str) -> None:
    assert verifier.verify(token_factory.id_token(aud=["other", client_id]))["sub"] == "user-1"


def test_a_verified_header_does_not_vouch_for_the_next_token(verifier: CognitoJwtVerifier,
                                                             token_factory: TokenFactory, rsa_keys: KeyRing) -> None:
    """After a good token, forgeries reusing its header still fail."""
    good = token_factory.access_token()
    verifier.verify(good)
    rogue = token_factory.sign(token_factory.access_claims(), key=KeyPair.generate("rogue").with_kid("k1"))
    assert rogue.split(".")[0] == good.split(".")[0]
    with pytest.raises(TokenInvalid) as caught:
        verifier.verify(rogue)
    assert caught.value.reason == "bad_signature"
    with pytest.raises(TokenInvalid):
        verifier.verify(token_factory.access_token(exp_in=-1))


def test_leeway_accepts_recently_expired_and_early_tokens(jwks_server: JwksServer, token_factory: TokenFactory,
                                                          cognito_issuer: str, client_id: str) -> None:
    lenient = CognitoJwtVerifier(issuers={cognito_issuer: jwks_server.url}, client_ids=[client_id], leeway=60)
    assert lenient.verify(token_factory.access_token(exp_in=-30))["sub"] == "user-1"
    assert lenient.verify(token_factory.access_token(nbf=int(time.time()) + 30))["sub"] == "user-1"
    with pytest.raises(TokenInvalid) as caught:
        lenient.verify(token_factory.access_token(exp_in=-120))
    assert caught.value.reason == "expired"


def test_float_time_claims_are_numbers(verifier: CognitoJwtVerifier, token_factory: TokenFactory) -> None:
    """JSON numbers with a fraction are valid NumericDates (RFC 7519)."""
    token = token_factory.access_token(exp=time.time() + 3600.5, nbf=time.time() - 0.5, iat=time.time() - 1.5)
    assert verifier.verify(token)["sub"] == "user-1"


def test_token_uses_restricts_kind(jwks_server: JwksServer, token_factory: TokenFactory,
                                   cognito_issuer: str, client_id: str) -> None:
    access_only = CognitoJwtVerifier(issuers={cognito_issuer: jwks_server.url}, client_ids=[client_id],
                                     token_uses=["access"])
    access_only.verify(token_factory.access_token())
    with pytest.raises(TokenInvalid) as caught:
        access_only.verify(token_factory.id_token())
    assert caught.value.reason == "bad_token_use"


def test_max_token_bytes_is_configurable(jwks_server: JwksServer, token_factory: TokenFactory,
                                         cognito_issuer: str, client_id: str) -> None:
    token = token_factory.access_token()
    small = CognitoJwtVerifier(issuers={cognito_issuer: jwks_server.url}, client_ids=[client_id],
                               max_token_bytes=len(token) - 1)
    with pytest.raises(TokenInvalid) as caught:
        small.verify(token)
    assert caught.value.reason == "too_large"
    assert jwks_server.hits == 0


@pytest.mark.parametrize("kwargs", [
    {"issuers": {}},
    {"client_ids": []},
    {"client_ids": [""]},
    {"token_uses": ["refresh"]},
    {"token_uses": []},
    {"leeway": -1},
    {"jwks_timeout": 0},
])
def test_constructor_rejects_bad_configuration(kwargs: dict[str, Any]) -> None:
    base: dict[str, Any] = {"issuers": {"https://i": "http://127.0.0.1:1/jwks"}, "client_ids": ["c"]}
    with pytest.raises(ValueError):
        CognitoJwtVerifier(**{**base, **kwargs})


def test_issuer_url() -> None:
    assert issuer_url("eu-west-1", "eu-west-1_abc") == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc"


# --- JWKS behaviour through the verifier -------------------------------------------------

def test_untrusted_issuer_never_fetches(verifier: CognitoJwtVerifier, token_factory: TokenFactory,
                                        jwks_server: JwksServer) -> None:
    for iss in ("https://evil.example.com", issuer_url("us-east-1", "us-east-1_Other")):
        with pytest.raises(TokenInvalid):
            verifier.verify(token_factory.access_token(iss=iss))
    with pytest.raises(TokenInvalid):
        verifier.verify(token_factory.sign(token_factory.access_claims(), alg="HS256"))
    assert jwks_server.hits == 0


def test_keys_are_fetched_once(verifier: CognitoJwtVerifier, token_factory: TokenFactory,
                               jwks_server: JwksServer) -> None:
    for i in range(20):
        verifier.verify(token_factory.access_token(sub=f"u{i}"))
    assert jwks_server.hits == 1


def test_jwks_http_error_fails_closed(verifier: CognitoJwtVerifier, token_factory: TokenFactory,
                                      jwks_server: JwksServer) -> None:
    jwks_server.fail(500)
    with pytest.raises(JwksUnavailable):
        verifier.verify(token_factory.access_token())
    assert jwks_server.hits == 1
    # Nothing was ever loaded, so the next request tries again and recovers.
    jwks_server.fail(None)
    assert verifier.verify(token_factory.access_token())["sub"] == "user-1"
    assert jwks_server.hits == 2


def test_jwks_connection_refused_fails_closed(token_factory: TokenFactory, cognito_issuer: str,
                                              client_id: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = CognitoJwtVerifier(issuers={cognito_issuer: f"http://127.0.0.1:{port}/jwks.json"},
                                client_ids=[client_id], jwks_timeout=1.0)
    with pytest.raises(JwksUnavailable):
        closed.verify(token_factory.access_token())


def test_jwks_hanging_fails_within_timeout(jwks_server: JwksServer, token_factory: TokenFactory,
                                           cognito_issuer: str, client_id: str) -> None:
    jwks_server.hang(10)
    slow = CognitoJwtVerifier(issuers={cognito_issuer: jwks_server.url}, client_ids=[client_id],
                              jwks_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(JwksUnavailable):
        slow.verify(token_factory.access_token())
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 0.5 + 0.5


def test_key_rotation_refetches_once(verifier: CognitoJwtVerifier, jwks_server: JwksServer,
                                     cognito_issuer: str, client_id: str, rsa_keys: KeyRing) -> None:
    old = TokenFactory(cognito_issuer, client_id, rsa_keys["k1"])
    new = TokenFactory(cognito_issuer, client_id, rsa_keys["k2"])
    verifier.verify(old.access_token())
    assert jwks_server.hits == 1
    jwks_server.set_keys([rsa_keys["k2"]])
    assert verifier.verify(new.access_token())["token_use"] == "access"
    assert jwks_server.hits == 2
    verifier.verify(new.id_token())
    assert jwks_server.hits == 2
    # The refetched set no longer has k1: Cognito withdrew it, so it is refused now.
    with pytest.raises(TokenInvalid) as caught:
        verifier.verify(old.access_token())
    assert caught.value.reason == "unknown_kid"
    assert jwks_server.hits == 2


def test_forged_kids_cause_at_most_one_refetch(verifier: CognitoJwtVerifier, token_factory: TokenFactory,
                                               jwks_server: JwksServer) -> None:
    verifier.verify(token_factory.access_token())
    for i in range(50):
        forged = token_factory.sign(token_factory.access_claims(), headers={"kid": f"forged-{i}"})
        with pytest.raises(TokenInvalid) as caught:
            verifier.verify(forged)
        assert caught.value.reason == "unknown_kid"
    assert jwks_server.hits == 2
    verifier.verify(token_factory.access_token())
    assert jwks_server.hits == 2


def test_forged_kid_on_cold_start_fetches_once(verifier: CognitoJwtVerifier, token_factory: TokenFactory,
                                               jwks_server: JwksServer) -> None:
    for i in range(10):
        with pytest.raises(TokenInvalid):
            verifier.verify(token_factory.sign(token_factory.access_claims(), headers={"kid": f"x{i}"}))
    # the initial load, plus the one refetch the cooldown allows
    assert jwks_server.hits == 2


def test_refetch_failure_keeps_known_keys(verifier: CognitoJwtVerifier, token_factory: TokenFactory,
                                          jwks_server: JwksServer, rsa_keys: KeyRing) -> None:
    verifier.verify(token_factory.access_token())
    jwks_server.fail(503)
    with pytest.raises(JwksUnavailable):
        verifier.verify(token_factory.sign(token_factory.access_claims(), key=rsa_keys["k2"]))
    assert verifier.verify(token_factory.access_token())["sub"] == "user-1"
    assert jwks_server.hits == 2


def test_two_pools_each_with_own_jwks(rsa_keys: KeyRing, client_id: str) -> None:
    pool_a = issuer_url("us-east-1", "us-east-1_PoolA")
    pool_b = issuer_url("eu-west-1", "eu-west-1_PoolB")
    with JwksServer([rsa_keys["k1"]], pool_id="us-east-1_PoolA") as server_a, \
            JwksServer([rsa_keys["k2"]], pool_id="eu-west-1_PoolB") as server_b:
        both = CognitoJwtVerifier(issuers={pool_a: server_a.url, pool_b: server_b.url},
                                  client_ids=[client_id, "otherclient"])
        a = TokenFactory(pool_a, client_id, rsa_keys["k1"])
        b = TokenFactory(pool_b, "otherclient", rsa_keys["k2"])
        assert both.verify(a.access_token())["iss"] == pool_a
        assert both.verify(b.id_token())["iss"] == pool_b
        assert (server_a.hits, server_b.hits) == (1, 1)
        # Pool A's key does not vouch for a token that names pool B, nor the reverse.
        cross = TokenFactory(pool_b, client_id, rsa_keys["k1"])
        with pytest.raises(TokenInvalid) as caught:
            both.verify(cross.access_token())
        assert caught.value.reason == "unknown_kid"
        rogue = TokenFactory(pool_a, client_id, rsa_keys["k2"].with_kid("k1"))
        with pytest.raises(TokenInvalid) as caught:
            both.verify(rogue.access_token())
        assert caught.value.reason == "bad_signature"


def test_two_pools_with_the_same_kid_each_verify_their_own(rsa_keys: KeyRing, client_id: str) -> None:
    pool_a = issuer_url("us-east-1", "us-east-1_PoolA")
    pool_b = issuer_url("eu-west-1", "eu-west-1_PoolB")
    key_b = rsa_keys["k2"].with_kid("k1")
    with JwksServer([rsa_keys["k1"]], pool_id="us-east-1_PoolA") as server_a, \
            JwksServer([key_b], pool_id="eu-west-1_PoolB") as server_b:
        both = CognitoJwtVerifier(issuers={pool_a: server_a.url, pool_b: server_b.url}, client_ids=[client_id])
        a, b = TokenFactory(pool_a, client_id, rsa_keys["k1"]), TokenFactory(pool_b, client_id, key_b)
        for _ in range(2):  # before and after both pools hold a "k1"
            assert both.verify(a.access_token())["iss"] == pool_a
            assert both.verify(b.access_token())["iss"] == pool_b
        assert (server_a.hits, server_b.hits) == (1, 1)


def test_json_with_insignificant_whitespace_is_accepted(verifier: CognitoJwtVerifier,
                                                        token_factory: TokenFactory, rsa_keys: KeyRing) -> None:
    """RFC 7159 allows whitespace around values."""
    payload = "\n " + json.dumps(token_factory.access_claims(sub="spaced"), indent=2) + " \n"
    token = sign_raw(' { "kid" : "k1", "alg" : "RS256" } ', payload, rsa_keys["k1"])
    assert verifier.verify(token)["sub"] == "spaced"
