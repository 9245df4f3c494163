from __future__ import annotations

import pytest

from chalicelib.settings import SettingsError, load_settings

BASE = {
    "COGNITO_USER_POOL_ID": "eu-west-1_AbC123",
    "COGNITO_APP_CLIENT_IDS": "client1, client2",
    "CONNECTIONS_TABLE": "connections",
    "ALLOWED_ORIGINS": "https://app.example.com",
}


def env(**overrides: str | None) -> dict[str, str]:
    merged = {**BASE, **overrides}
    return {k: v for k, v in merged.items() if v is not None}


def test_defaults_and_derived_issuer() -> None:
    s = load_settings(env())
    issuer = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
    assert dict(s.issuers) == {issuer: issuer + "/.well-known/jwks.json"}
    assert s.app_client_ids == {"client1", "client2"}
    assert s.token_uses == {"access", "id"}
    assert s.token_sources == ("header", "query", "protocol", "cookie")
    assert s.token_query_params == ("access_token", "ID_Token")
    assert s.jwt_leeway == 0
    assert s.management_url is None


def test_several_pools_region_override_and_jwks_override() -> None:
    s = load_settings(env(COGNITO_USER_POOL_ID="eu-west-1_A1,us-east-2_B2", COGNITO_REGION="eu-central-1",
                          COGNITO_JWKS_URL="http://127.0.0.1:9/a.json,http://127.0.0.1:9/b.json"))
    assert dict(s.issuers) == {
        "https://cognito-idp.eu-central-1.amazonaws.com/eu-west-1_A1": "http://127.0.0.1:9/a.json",
        "https://cognito-idp.eu-central-1.amazonaws.com/us-east-2_B2": "http://127.0.0.1:9/b.json",
    }


@pytest.mark.parametrize("overrides, variable", [
    ({"COGNITO_USER_POOL_ID": None}, "COGNITO_USER_POOL_ID"),
    ({"COGNITO_USER_POOL_ID": "not-a-pool"}, "COGNITO_USER_POOL_ID"),
    ({"COGNITO_APP_CLIENT_IDS": " , "}, "COGNITO_APP_CLIENT_IDS"),
    ({"COGNITO_TOKEN_USE": "refresh"}, "COGNITO_TOKEN_USE"),
    ({"TOKEN_SOURCES": "header,carrier-pigeon"}, "TOKEN_SOURCES"),
    ({"TOKEN_SOURCES": "header,header"}, "TOKEN_SOURCES"),
    ({"ALLOWED_ORIGINS": None}, "ALLOWED_ORIGINS"),
    ({"ALLOWED_ORIGINS": "app.example.com"}, "ALLOWED_ORIGINS"),
    ({"CONNECTIONS_TABLE": None}, "CONNECTIONS_TABLE"),
    ({"JWT_LEEWAY_SECONDS": "ten"}, "JWT_LEEWAY_SECONDS"),
    ({"JWT_LEEWAY_SECONDS": "100000"}, "JWT_LEEWAY_SECONDS"),
    ({"COGNITO_JWKS_URL": "ftp://keys"}, "COGNITO_JWKS_URL"),
    ({"COGNITO_JWKS_URL": "http://a,http://b"}, "COGNITO_JWKS_URL"),
    ({"WEBSOCKET_MANAGEMENT_URL": "localhost:8000"}, "WEBSOCKET_MANAGEMENT_URL"),
    ({"TOKEN_HEADER": "Bad Header"}, "TOKEN_HEADER"),
])
def test_errors_name_the_variable(overrides: dict[str, str | None], variable: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env(**overrides))
    assert info.value.variable == variable
    assert str(info.value).startswith(variable + ":")


def test_origins_not_required_without_cookie_source() -> None:
    s = load_settings(env(ALLOWED_ORIGINS=None, TOKEN_SOURCES="query,header"))
    assert s.token_sources == ("query", "header")
    assert s.allowed_origins == frozenset()
