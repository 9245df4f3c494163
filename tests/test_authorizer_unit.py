"""Unit tests of the decision logic with a stand-in verifier (the real verifier
and JWKS path is covered in test_verifier.py and test_handlers.py)."""
from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from chalicelib.authorizer import MAX_CONTEXT_BYTES, authorize
from chalicelib.errors import JwksUnavailable, TokenInvalid
from chalicelib.settings import load_settings
from chalicelib.tokens import MAX_HEADER_BYTES

ARN = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/$connect"
TOKEN = "aaa.bbb.ccc"


class StubVerifier:
    def __init__(self, claims: dict[str, Any] | None = None, error: Exception | None = None) -> None:
        self.claims = claims
        self.error = error
        self.seen: list[str] = []

    def verify(self, token: str) -> dict[str, Any]:
        self.seen.append(token)
        if self.error:
            raise self.error
        assert self.claims is not None
        return dict(self.claims)


CLAIMS = {
    "sub": "1d7856e9", "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Pool1",
    "client_id": "c", "token_use": "access", "scope": "openid profile email", "auth_time": 1705726879,
    "exp": 1705730479, "iat": 1705726880, "jti": "x", "username": "loginov",
    "cognito:groups": ["admins", "staff"], "custom:tenant": "acme", "custom:nested": {"a": 1},
}


def settings(**overrides: str) -> Any:
    return load_settings({
        "COGNITO_USER_POOL_ID": "us-east-1_Pool1", "COGNITO_APP_CLIENT_IDS": "c",
        "CONNECTIONS_TABLE": "tbl", "ALLOWED_ORIGINS": "https://app.example.com", **overrides,
    })


def token_for(claims: dict[str, Any]) -> str:
    """A token-shaped string whose payload is ``claims`` as raw UTF-8 JSON (the
    context's size bound counts on the claims' text fitting in the token)."""
    payload = base64.urlsafe_b64encode(json.dumps(claims, ensure_ascii=False).encode()).rstrip(b"=")
    return f"aaa.{payload.decode()}.ccc"


def event(token: str = TOKEN, **query: str) -> dict[str, Any]:
    return {
        "type": "REQUEST", "methodArn": ARN,
        "headers": {"Authorization": f"Bearer {token}", "clientHeader": "clientHeaderValue"},
        "queryStringParameters": query or None,
        "requestContext": {"connectionId": "abc=", "identity": {"sourceIp": "1.2.3.4"}},
    }


def test_allow_policy_with_flat_context() -> None:
    s = settings(CONTEXT_QUERY_PARAMS="clientQueryParameter", CONTEXT_HEADERS="clientHeader")
    answer = authorize(event(clientQueryParameter="v1", other="nope"), s, StubVerifier(CLAIMS))
    assert answer["principalId"] == "1d7856e9"
    statement = answer["policyDocument"]["Statement"][0]
    assert statement == {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": ARN}
    context = answer["context"]
    assert all(isinstance(v, (str, int, float, bool)) for v in context.values())
    assert context["groups"] == "admins,staff"
    assert context["custom_tenant"] == "acme"
    assert "custom_nested" not in context
    assert context["query_clientQueryParameter"] == "v1"
    assert "query_other" not in context
    assert context["header_clientheader"] == "clientHeaderValue"
    assert context["tokenSource"] == "header"
    assert context["username"] == "loginov"
    assert context["exp"] == 1705730479


def test_id_token_username_and_client() -> None:
    claims = {"sub": "s", "aud": "c", "token_use": "id", "cognito:username": "bob", "email": "b@x.io", "exp": 1}
    context = authorize(event(), settings(), StubVerifier(claims))["context"]
    assert (context["username"], context["client_id"], context["email"]) == ("bob", "c", "b@x.io")


@pytest.mark.parametrize("error", [TokenInvalid("bad", reason="expired"), JwksUnavailable("down")])
def test_invalid_token_raises_unauthorized(error: Exception) -> None:
    with pytest.raises(Exception) as info:
        authorize(event(), settings(), StubVerifier(error=error))
    assert str(info.value) == "Unauthorized"


def test_missing_token_never_reaches_verifier() -> None:
    stub = StubVerifier(CLAIMS)
    e = event()
    e["headers"] = {}
    with pytest.raises(Exception, match="^Unauthorized$"):
        authorize(e, settings(), stub)
    assert stub.seen == []


@pytest.mark.parametrize("overrides", [{"REQUIRED_GROUPS": "owners"}, {"REQUIRED_SCOPES": "admin:write"}])
def test_valid_but_not_permitted_is_deny(overrides: dict[str, str]) -> None:
    answer = authorize(event(), settings(**overrides), StubVerifier(CLAIMS))
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert "context" not in answer


def test_required_groups_any_of_allows() -> None:
    answer = authorize(event(), settings(REQUIRED_GROUPS="owners,staff", REQUIRED_SCOPES="email"), StubVerifier(CLAIMS))
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"


def test_deny_hook() -> None:
    answer = authorize(event(), settings(), StubVerifier(CLAIMS), deny_hook=lambda claims, e: "banned")
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"


def test_context_stays_under_limit() -> None:
    claims = dict(CLAIMS, **{f"custom:f{i}": "x" * 1000 for i in range(20)})
    answer = authorize(event(), settings(), StubVerifier(claims))
    assert len(json.dumps(answer)) < 8192
    assert len(json.dumps(answer["context"])) <= MAX_CONTEXT_BYTES
    assert answer["context"]["sub"] == "1d7856e9"


@pytest.fixture
def ws_log_level() -> Any:
    """Set the ``ws`` logger's level (runtime sets it from LOG_LEVEL), restored after."""
    logger = logging.getLogger("ws")
    previous = logger.level
    yield logger.setLevel
    logger.setLevel(previous)


def test_log_line_has_reason_and_never_the_token(capsys: pytest.CaptureFixture[str], ws_log_level: Any) -> None:
    ws_log_level(logging.INFO)
    with pytest.raises(Exception):
        authorize(event(), settings(), StubVerifier(error=TokenInvalid("bad", reason="expired")))
    authorize(event(), settings(), StubVerifier(CLAIMS))
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(l["decision"], l["reason"]) for l in lines] == [("unauthorized", "expired"), ("allow", "ok")]
    assert lines[1]["sub"] == "1d7856e9" and lines[1]["connectionId"] == "abc="
    assert TOKEN not in out


def test_no_decision_lines_above_info(capsys: pytest.CaptureFixture[str], ws_log_level: Any) -> None:
    ws_log_level(logging.WARNING)
    authorize(event(), settings(), StubVerifier(CLAIMS))
    assert capsys.readouterr().out == ""


def test_context_fields_follow_the_issue_list() -> None:
    """aud feeds client_id (id tokens); iat and aud are not copied; odd values are flattened or dropped."""
    claims = {"sub": "s", "aud": "c", "token_use": "id", "cognito:username": ["not", "a", "string"],
              "cognito:groups": ["a", 3, "b"], "exp": 17, "iat": 16, "email": "e@x.io",
              "custom:ratio": float("nan"), "custom:ok": 1.5, "custom:flag": True}
    context = authorize(event(), settings(), StubVerifier(claims))["context"]
    assert context["client_id"] == "c" and "aud" not in context and "iat" not in context
    assert context["username"] == "not,a,string"
    assert context["groups"] == "a,b"
    assert "custom_ratio" not in context  # NaN is not JSON: API Gateway would refuse the answer
    assert context["custom_ok"] == 1.5 and context["custom_flag"] is True
    assert all(type(v) in (str, int, float, bool) for v in context.values())


def test_usual_context_skips_the_exact_size_measure(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-upgrade path: a usual token never pays for measuring the encoded context."""
    from chalicelib import authorizer

    def measured(context: Any) -> Any:
        raise AssertionError("a usual context was measured")

    monkeypatch.setattr(authorizer, "_cap", measured)
    plain = {k: v for k, v in CLAIMS.items() if not k.startswith("custom:")}
    assert authorize(event(token_for(plain)), settings(), StubVerifier(plain))["context"]["sub"] == "1d7856e9"


def test_context_of_a_large_token_is_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ~2,600 characters the token no longer bounds the context below the limit."""
    from chalicelib import authorizer

    measured: list[int] = []
    original = authorizer._cap
    monkeypatch.setattr(authorizer, "_cap", lambda c: (measured.append(len(c)), original(c))[1])
    plain = {k: v for k, v in CLAIMS.items() if not k.startswith("custom:")}
    authorize(event(token_for(plain)), settings(), StubVerifier(plain))
    assert measured == []
    big = dict(plain, email="e" * 1000 + "@x.io", scope="s " * 500, username="\u00e9" * 200)
    context = authorize(event(token_for(big)), settings(), StubVerifier(big))["context"]
    assert measured and context["scope"].startswith("s s") and len(json.dumps(context)) <= MAX_CONTEXT_BYTES


@pytest.mark.parametrize("seed", range(6))
def test_context_size_bound_is_never_below_the_encoded_size(seed: int) -> None:
    """Fuzz: whatever the claims (non-BMP text, escapes, long values, big ints), the
    context that comes back encodes within MAX_CONTEXT_BYTES, and it is trimmed only
    when the untrimmed one would not fit."""
    import random

    from chalicelib import authorizer

    rng = random.Random(seed)
    alphabets = ["abc", 'q"\\\n\x01', "é中", "😀𝄞", "a😀\"é"]

    def text() -> str:
        return "".join(rng.choice(rng.choice(alphabets)) for _ in range(rng.choice([0, 5, 60, 300, 1500])))

    outcomes = {"fast": 0, "measured": 0, "deny": 0, "too_large": 0}
    for _ in range(150):
        claims: dict[str, Any] = {"sub": text() or "s", "iss": text(), "token_use": rng.choice(["access", "id"])}
        for name in ("username", "email", "scope", "client_id", "aud"):
            if rng.random() < 0.6:
                claims[name] = text()
        for name in ("auth_time", "exp", "iat"):
            if rng.random() < 0.8:
                claims[name] = rng.choice([0, 1705730479, -5, 10**14, 10**15, 10**40, 2.5, True])
        if rng.random() < 0.5:
            claims["cognito:groups"] = [text() for _ in range(rng.randrange(4))]
        token = token_for(claims)
        if len(token) > MAX_HEADER_BYTES:  # refused before any verifying: not this test's concern
            outcomes["too_large"] += 1
            continue
        original_cap = authorizer._cap
        kept: list[int] = []
        authorizer._cap = lambda c: (kept.append(authorizer._encoded_size(c)), original_cap(c))[1]
        try:
            answer = authorize(event(token), settings(), StubVerifier(claims))
        finally:
            authorizer._cap = original_cap
        if answer["policyDocument"]["Statement"][0]["Effect"] == "Deny":
            # Only when the identity entries alone cannot fit.
            identity = {"sub": claims["sub"], "username": claims.get("username", "")[:1024],
                        "token_use": claims["token_use"], "iss": claims["iss"], "tokenSource": "header"}
            assert kept and len(json.dumps(identity)) > MAX_CONTEXT_BYTES
            outcomes["deny"] += 1
            continue
        outcomes["fast" if not kept else "measured"] += 1
        context = answer["context"]
        size = len(json.dumps(context))
        assert size == authorizer._encoded_size(context)
        assert size <= MAX_CONTEXT_BYTES
        if kept and kept[0] <= MAX_CONTEXT_BYTES:
            assert len(context) >= 6  # measured and fitting: nothing dropped
    assert outcomes["fast"] > 10 and outcomes["measured"] > 10, outcomes


@pytest.mark.parametrize("alphabet", ["a", '"\\', "\x01\n", "é", "中", "😀", "a😀\"é\x7f"])
def test_context_json_never_exceeds_the_token_bound(alphabet: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound the fast path relies on, for the costliest characters to escape:
    the untrimmed context's JSON is at most _FIXED_JSON + 9/4 x the token's length."""
    from chalicelib import authorizer

    monkeypatch.setattr(authorizer, "_cap", lambda context: context)  # see it untrimmed
    for length in (1, 7, 100, 1024, 3000):
        value = (alphabet * length)[:length]
        claims: dict[str, Any] = {name: value for name in ("sub", "iss", "username", "email", "scope", "aud")}
        claims.update(token_use="id", exp=10**18, auth_time=-(10**17), **{"cognito:groups": [value, value]})
        token = token_for(claims)
        for source in ("header", "protocol"):
            context = authorizer.build_context(claims, source, event(token), settings())
            assert len(json.dumps(context)) <= authorizer._FIXED_JSON + (9 * len(token) >> 2), (alphabet, length)


def test_identity_too_large_for_any_answer_is_a_deny() -> None:
    claims = dict(CLAIMS, sub="\U0001F600" * 600)
    answer = authorize(event(), settings(), StubVerifier(claims))
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert "context" not in answer
