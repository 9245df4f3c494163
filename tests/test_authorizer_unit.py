"""Unit tests of the decision logic with a stand-in verifier (the real verifier
and JWKS path is covered in test_verifier.py and test_handlers.py)."""
from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from chalicelib.authorizer import authorize
from chalicelib.identity import MAX_CONTEXT_BYTES, Identity
from chalicelib.errors import JwksUnavailable, TokenInvalid
from tests.support.builders import request_event, settings

ARN = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/$connect"  # builders.API's $connect ARN
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


def event(token: str | None = TOKEN, **query: str) -> dict[str, Any]:
    """The authorizer's input: ``token`` as a bearer header (None: no token), a client header, ``query``."""
    authorization = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return request_event({**authorization, "clientHeader": "clientHeaderValue"}, query,
                         connection_id="abc=", source_ip="1.2.3.4")


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
    with pytest.raises(Exception, match="^Unauthorized$"):
        authorize(event(token=None), settings(), stub)
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
    """Configure the ``ws`` logs as runtime does from LOG_LEVEL; the level is restored after."""
    from chalicelib import logs

    previous = logging.getLogger("ws").level
    yield logs.configure
    logging.getLogger("ws").setLevel(previous)


def test_log_line_has_reason_and_never_the_token(capsys: pytest.CaptureFixture[str], ws_log_level: Any) -> None:
    ws_log_level("INFO")
    with pytest.raises(Exception):
        authorize(event(), settings(), StubVerifier(error=TokenInvalid("bad", reason="expired")))
    authorize(event(), settings(), StubVerifier(CLAIMS))
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(l["decision"], l["reason"]) for l in lines] == [("unauthorized", "expired"), ("allow", "ok")]
    assert lines[1]["sub"] == "1d7856e9" and lines[1]["connectionId"] == "abc="
    assert TOKEN not in out


def test_no_decision_lines_above_info(capsys: pytest.CaptureFixture[str], ws_log_level: Any) -> None:
    ws_log_level("WARNING")
    authorize(event(), settings(), StubVerifier(CLAIMS))
    assert capsys.readouterr().out == ""


def test_context_fields_follow_the_issue_list() -> None:
    """aud feeds client_id (id tokens) and is not copied; iat is (a revocation refuses older tokens); odd
    values are flattened or dropped."""
    claims = {"sub": "s", "aud": "c", "token_use": "id", "cognito:username": ["not", "a", "string"],
              "cognito:groups": ["a", 3, "b"], "exp": 17, "iat": 16, "email": "e@x.io",
              "custom:ratio": float("nan"), "custom:ok": 1.5, "custom:flag": True}
    context = authorize(event(), settings(), StubVerifier(claims))["context"]
    assert context["client_id"] == "c" and "aud" not in context and context["iat"] == 16
    assert context["username"] == "not,a,string"
    assert context["groups"] == "a,b"
    assert "custom_ratio" not in context  # NaN is not JSON: API Gateway would refuse the answer
    assert context["custom_ok"] == 1.5 and context["custom_flag"] is True
    assert all(type(v) in (str, int, float, bool) for v in context.values())


def test_large_optional_claims_are_dropped_largest_first() -> None:
    """What a caller sees when the context would not fit: the identity stays, the
    largest optional entries go, and the answer encodes within the limit."""
    big = dict(CLAIMS, email="e" * 1000 + "@x.io", scope="s " * 500, username="\u00e9" * 200,
               **{f"custom:f{i}": "\U0001F600" * 1000 for i in range(3)})
    context = authorize(event(), settings(), StubVerifier(big))["context"]
    assert len(json.dumps(context)) <= MAX_CONTEXT_BYTES
    assert context["sub"] == "1d7856e9" and context["username"] == "\u00e9" * 200
    assert not any(name.startswith("custom_f") for name in context)  # 6 KB of escapes each: dropped
    assert context["scope"].startswith("s s") and context["email"].endswith("@x.io")  # they fit once those went


def test_context_that_fits_is_not_trimmed() -> None:
    claims = dict(CLAIMS, email="e" * 1000 + "@x.io")
    s = settings(CONTEXT_QUERY_PARAMS="clientQueryParameter")
    context = authorize(event(clientQueryParameter="q" * 900), s, StubVerifier(claims))["context"]
    assert len(json.dumps(context)) <= MAX_CONTEXT_BYTES
    assert context["email"] == "e" * 1000 + "@x.io" and context["query_clientQueryParameter"] == "q" * 900


@pytest.mark.parametrize("seed", range(6))
def test_context_always_encodes_within_the_limit(seed: int) -> None:
    """Fuzz: whatever the claims (non-BMP text, escapes, long values, big ints), the
    answer is an Allow whose context encodes within MAX_CONTEXT_BYTES, or a Deny when
    the identity entries alone cannot fit."""
    import random

    rng = random.Random(seed)
    alphabets = ["abc", 'q"\\\n\x01', "\u00e9\u4e2d", "\U0001F600\U0001D11E", "a\U0001F600\"\u00e9"]

    def text() -> str:
        return "".join(rng.choice(rng.choice(alphabets)) for _ in range(rng.choice([0, 5, 60, 300, 1500])))

    outcomes = {"allow": 0, "deny": 0}
    for _ in range(150):
        claims: dict[str, Any] = {"sub": text() or "s", "iss": text(), "token_use": rng.choice(["access", "id"])}
        for name in ("username", "email", "scope", "client_id", "aud"):
            if rng.random() < 0.6:
                claims[name] = text()
        for name in ("auth_time", "exp", "iat"):
            if rng.random() < 0.8:
                claims[name] = rng.choice([0, 1705730479, -5, 10**14, 10**40, 2.5, True])
        if rng.random() < 0.5:
            claims["cognito:groups"] = [text() for _ in range(rng.randrange(4))]
        answer = authorize(event(), settings(), StubVerifier(claims))
        if answer["policyDocument"]["Statement"][0]["Effect"] == "Deny":
            protected = {"sub": claims["sub"], "username": claims.get("username", ""),
                         "token_use": claims["token_use"], "iss": claims["iss"], "tokenSource": "header",
                         "groups": ",".join(claims.get("cognito:groups", [])), "scope": claims.get("scope", "")}
            assert len(json.dumps(protected)) > MAX_CONTEXT_BYTES - 64  # + "exp": what cannot be dropped
            outcomes["deny"] += 1
            continue
        outcomes["allow"] += 1
        context = answer["context"]
        assert len(json.dumps(context)) <= MAX_CONTEXT_BYTES
        assert all(type(v) in (str, int, float, bool) for v in context.values())
        assert context["sub"] == claims["sub"]  # never cut: routes read it back
        assert context["groups"] == ",".join(claims.get("cognito:groups", []))
    assert outcomes["allow"] > 50, outcomes


def test_the_identity_reads_back_what_the_authorizer_wrote() -> None:
    """The routes' side of the format: the identity, apart from the client's allow-listed values."""
    s = settings(CONTEXT_QUERY_PARAMS="clientQueryParameter", CONTEXT_HEADERS="clientHeader")
    context = authorize(event(clientQueryParameter="v1"), s, StubVerifier(CLAIMS))["context"]
    stored = Identity.from_context({**context, "principalId": "1d7856e9", "integrationLatency": 12})
    assert stored is not None
    assert stored.client_params == {"query_clientQueryParameter": "v1", "header_clientheader": "clientHeaderValue"}
    claims = stored.flat_claims()
    assert claims["sub"] == "1d7856e9" and claims["custom_tenant"] == "acme"
    assert "principalId" not in claims and "integrationLatency" not in claims
    assert not any(name.startswith(("query_", "header_")) for name in claims)
    assert stored.to_context() == context  # the same context, whichever side writes it


def test_every_group_is_carried_or_the_connection_is_denied() -> None:
    """An Allow is never followed by a route's refusal: groups are never cut to fit the context."""
    many = [f"group-{n:04d}-with-a-long-name" for n in range(120)]  # about 3.5 KB joined
    answer = authorize(event(), settings(), StubVerifier(dict(CLAIMS, **{"cognito:groups": many})))
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    carried = Identity.from_context({**answer["context"], "principalId": answer["principalId"]})
    assert carried is not None and list(carried.groups) == many  # the last group whole
    too_many = [f"group-{n:04d}-with-a-long-name" for n in range(300)]  # about 9 KB: cannot fit 8 KB
    denied = authorize(event(), settings(), StubVerifier(dict(CLAIMS, **{"cognito:groups": too_many})))
    assert denied["policyDocument"]["Statement"][0]["Effect"] == "Deny" and "context" not in denied


def test_identity_too_large_for_any_answer_is_a_deny() -> None:
    claims = dict(CLAIMS, sub="\U0001F600" * 600)
    answer = authorize(event(), settings(), StubVerifier(claims))
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert "context" not in answer
