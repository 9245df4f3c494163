from __future__ import annotations

from typing import Any

import pytest

from chalicelib.errors import CrossSiteRequest, TokenInvalid, TokenMissing
from chalicelib.settings import load_settings
from chalicelib.tokens import extract_token, parse_cookies

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
OTHER = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ5In0.c2ln"


def settings(**overrides: str) -> Any:
    env = {
        "COGNITO_USER_POOL_ID": "us-east-1_Pool1",
        "COGNITO_APP_CLIENT_IDS": "c",
        "CONNECTIONS_TABLE": "tbl",
        "ALLOWED_ORIGINS": "https://app.example.com",
        **overrides,
    }
    return load_settings(env)


def event(headers: dict[str, str] | None = None, query: dict[str, str] | None = None,
          multi_query: dict[str, list[str]] | None = None) -> dict[str, Any]:
    return {
        "headers": headers or {},
        "multiValueHeaders": {k: [v] for k, v in (headers or {}).items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query or ({k: [v] for k, v in query.items()} if query else None),
    }


def test_bearer_header_any_case() -> None:
    found = extract_token(event({"AUTHORIZATION": f"bearer {JWT}"}), settings())
    assert (found.token, found.source) == (JWT, "header")


def test_bare_token_in_custom_header() -> None:
    found = extract_token(event({"X-Auth-Token": JWT}), settings(TOKEN_HEADER="x-auth-token"))
    assert found.token == JWT


def test_basic_auth_header_is_not_a_token() -> None:
    with pytest.raises(TokenMissing):
        extract_token(event({"Authorization": "Basic dXNlcjpwYXNz"}), settings())


@pytest.mark.parametrize("name", ["access_token", "ID_Token"])
def test_query_names(name: str) -> None:
    found = extract_token(event(query={name: JWT}), settings())
    assert (found.token, found.source) == (JWT, "query")


def test_query_is_case_sensitive_like_api_gateway() -> None:
    with pytest.raises(TokenMissing):
        extract_token(event(query={"id_token": JWT}), settings())


def test_duplicate_query_token_is_refused() -> None:
    with pytest.raises(TokenInvalid):
        extract_token(event(query={"access_token": JWT}, multi_query={"access_token": [OTHER, JWT]}), settings())


def test_subprotocol_marker_then_token() -> None:
    found = extract_token(event({"Sec-WebSocket-Protocol": f"cognito-jwt, {JWT}"}), settings())
    assert (found.token, found.source) == (JWT, "protocol")


def test_subprotocol_without_marker_is_ignored() -> None:
    with pytest.raises(TokenMissing):
        extract_token(event({"Sec-WebSocket-Protocol": f"chat, {JWT}"}), settings())


def test_order_first_present_wins() -> None:
    e = event({"Authorization": f"Bearer {JWT}"}, query={"access_token": OTHER})
    assert extract_token(e, settings()).token == JWT
    assert extract_token(e, settings(TOKEN_SOURCES="query,header")).token == OTHER


def test_disabled_source_is_not_read() -> None:
    with pytest.raises(TokenMissing):
        extract_token(event(query={"access_token": JWT}), settings(TOKEN_SOURCES="header"))


def cookie_event(cookie: str, origin: str = "https://app.example.com", query: dict[str, str] | None = None,
                 protocol: str | None = None) -> dict[str, Any]:
    headers = {"Cookie": cookie, "Origin": origin}
    if protocol:
        headers["Sec-WebSocket-Protocol"] = protocol
    return event(headers, query=query)


def test_cookie_with_csrf_in_query() -> None:
    e = cookie_event(f"JWT={JWT}; CSRF-TOKEN=abc123", query={"csrf": "abc123"})
    found = extract_token(e, settings())
    assert (found.token, found.source) == (JWT, "cookie")


def test_cookie_with_csrf_in_subprotocol() -> None:
    e = cookie_event(f"CSRF-TOKEN=abc123; JWT={JWT}", protocol="cognito-jwt, csrf.abc123")
    assert extract_token(e, settings()).source == "cookie"


@pytest.mark.parametrize("cookie, origin, query, reason", [
    (f"JWT={JWT}; CSRF-TOKEN=abc", "https://evil.example.com", {"csrf": "abc"}, "origin_not_allowed"),
    (f"JWT={JWT}; CSRF-TOKEN=abc", "", {"csrf": "abc"}, "origin_not_allowed"),
    (f"JWT={JWT}; CSRF-TOKEN=abc", "https://app.example.com", {"csrf": "abd"}, "csrf_mismatch"),
    (f"JWT={JWT}; CSRF-TOKEN=abc", "https://app.example.com", None, "csrf_mismatch"),
    (f"JWT={JWT}", "https://app.example.com", {"csrf": ""}, "csrf_mismatch"),
])
def test_cookie_refusals(cookie: str, origin: str, query: dict[str, str] | None, reason: str) -> None:
    with pytest.raises(CrossSiteRequest) as info:
        extract_token(cookie_event(cookie, origin, query), settings())
    assert info.value.reason == reason


def test_cookie_parsing_multi_headers() -> None:
    e = {"multiValueHeaders": {"cookie": ["a=1; b=2", "a=3; c=\"4\""]}}
    assert parse_cookies(e) == {"a": "1", "b": "2", "c": "4"}


def test_no_token_anywhere() -> None:
    with pytest.raises(TokenMissing):
        extract_token(event(), settings())
