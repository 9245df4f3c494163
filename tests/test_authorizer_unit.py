"""Unit tests of the decision logic with a stand-in verifier (the real verifier
and JWKS path is covered in test_verifier.py and test_handlers.py)."""
from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from chalicelib.authorizer import MAX_CONTEXT_BYTES, authorize
from chalicelib.errors import JwksUnavailable, TokenInvalid
from chalicelib.settings import load_settings

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


def event(**query: str) -> dict[str, Any]:
    return {
        "type": "REQUEST", "methodArn": ARN,
        "headers": {"Authorization": f"Bearer {TOKEN}", "clientHeader": "clientHeaderValue"},
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
