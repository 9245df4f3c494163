from __future__ import annotations

import pytest

from chalicelib.errors import CrossSiteRequest, TokenInvalid, TokenMissing
from chalicelib.tokens import extract_token, parse_cookies
from tests.support.builders import ORIGIN, cookie_headers, request_event, settings

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
OTHER = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ5In0.c2ln"


def test_bearer_header_any_case() -> None:
    found = extract_token(request_event({"AUTHORIZATION": f"bearer {JWT}"}), settings())
    assert (found.token, found.source) == (JWT, "header")


def test_bare_token_in_custom_header() -> None:
    found = extract_token(request_event({"X-Auth-Token": JWT}), settings(TOKEN_HEADER="x-auth-token"))
    assert found.token == JWT


def test_basic_auth_header_is_not_a_token() -> None:
    with pytest.raises(TokenMissing):
        extract_token(request_event({"Authorization": "Basic dXNlcjpwYXNz"}), settings())


@pytest.mark.parametrize("name", ["access_token", "ID_Token"])
def test_query_names(name: str) -> None:
    found = extract_token(request_event(query={name: JWT}), settings())
    assert (found.token, found.source) == (JWT, "query")


def test_query_is_case_sensitive_like_api_gateway() -> None:
    with pytest.raises(TokenMissing):
        extract_token(request_event(query={"id_token": JWT}), settings())


def test_duplicate_query_token_is_refused() -> None:
    with pytest.raises(TokenInvalid):
        extract_token(request_event(query=[("access_token", OTHER), ("access_token", JWT)]), settings())


def test_subprotocol_marker_then_token() -> None:
    found = extract_token(request_event({"Sec-WebSocket-Protocol": f"cognito-jwt, {JWT}"}), settings())
    assert (found.token, found.source) == (JWT, "protocol")


def test_subprotocol_without_marker_is_ignored() -> None:
    with pytest.raises(TokenMissing):
        extract_token(request_event({"Sec-WebSocket-Protocol": f"chat, {JWT}"}), settings())


def test_order_first_present_wins() -> None:
    e = request_event({"Authorization": f"Bearer {JWT}"}, query={"access_token": OTHER})
    assert extract_token(e, settings()).token == JWT
    assert extract_token(e, settings(TOKEN_SOURCES="query,header")).token == OTHER


def test_disabled_source_is_not_read() -> None:
    with pytest.raises(TokenMissing):
        extract_token(request_event(query={"access_token": JWT}), settings(TOKEN_SOURCES="header"))


def test_cookie_with_csrf_in_query() -> None:
    e = request_event(cookie_headers(f"JWT={JWT}; CSRF-TOKEN=abc123"), query={"csrf": "abc123"})
    found = extract_token(e, settings())
    assert (found.token, found.source) == (JWT, "cookie")


def test_cookie_with_csrf_in_subprotocol() -> None:
    e = request_event(cookie_headers(f"CSRF-TOKEN=abc123; JWT={JWT}", protocol="cognito-jwt, csrf.abc123"))
    assert extract_token(e, settings()).source == "cookie"


@pytest.mark.parametrize("cookie, origin, query, reason", [
    (f"JWT={JWT}; CSRF-TOKEN=abc", "https://evil.example.com", {"csrf": "abc"}, "origin_not_allowed"),
    (f"JWT={JWT}; CSRF-TOKEN=abc", "", {"csrf": "abc"}, "origin_not_allowed"),
    (f"JWT={JWT}; CSRF-TOKEN=abc", ORIGIN, {"csrf": "abd"}, "csrf_mismatch"),
    (f"JWT={JWT}; CSRF-TOKEN=abc", ORIGIN, None, "csrf_mismatch"),
    (f"JWT={JWT}", ORIGIN, {"csrf": ""}, "csrf_mismatch"),
])
def test_cookie_refusals(cookie: str, origin: str, query: dict[str, str] | None, reason: str) -> None:
    with pytest.raises(CrossSiteRequest) as info:
        extract_token(request_event(cookie_headers(cookie, origin), query), settings())
    assert info.value.reason == reason


def test_cookie_parsing_multi_headers() -> None:
    e = request_event([("cookie", "a=1; b=2"), ("cookie", "a=3; c=\"4\"")])
    assert parse_cookies(e) == {"a": "1", "b": "2", "c": "4"}


def test_no_token_anywhere() -> None:
    with pytest.raises(TokenMissing):
        extract_token(request_event(), settings())
