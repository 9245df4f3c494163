from __future__ import annotations

import pytest

from chalicelib.settings import DEFAULT_TOKEN_SOURCES, Settings, SettingsError, load_settings
from tests.support.builders import chalice_config, settings_env, stage_environment

BASE = {
    "COGNITO_USER_POOL_ID": "eu-west-1_AbC123",
    "COGNITO_APP_CLIENT_IDS": "client1, client2",
    "CONNECTIONS_TABLE": "connections",
    "ALLOWED_ORIGINS": "https://app.example.com",
}


def env(**overrides: str | None) -> dict[str, str]:
    return settings_env(BASE, **overrides)


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
    ({"ALLOWED_ORIGINS": None, "TOKEN_SOURCES": "header,cookie"}, "ALLOWED_ORIGINS"),
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


MINIMAL = {
    "COGNITO_USER_POOL_ID": "us-east-1_Min123",
    "COGNITO_APP_CLIENT_IDS": "client1",
    "CONNECTIONS_TABLE": "connections",
}


def test_minimal_configuration_loads_without_cookie_auth() -> None:
    s = load_settings(dict(MINIMAL))
    assert s.user_pool_ids == ("us-east-1_Min123",)
    assert s.app_client_ids == {"client1"}
    assert s.connections_table == "connections"
    assert s.token_sources == ("header", "query", "protocol") == DEFAULT_TOKEN_SOURCES
    assert s.allowed_origins == frozenset()
    assert s.token_uses == {"access", "id"}
    assert (s.context_query_params, s.context_headers, s.context_claims) == ((), (), ())


@pytest.mark.parametrize("unset", [None, "", "  "])
def test_cookie_is_a_default_source_only_with_allowed_origins(unset: str | None) -> None:
    sources = {} if unset is None else {"TOKEN_SOURCES": unset}
    without = load_settings({**MINIMAL, **sources})
    assert without.token_sources == ("header", "query", "protocol")
    with_origins = load_settings({**MINIMAL, **sources, "ALLOWED_ORIGINS": "https://app.example.com/"})
    assert with_origins.token_sources == ("header", "query", "protocol", "cookie")
    assert with_origins.allowed_origins == {"https://app.example.com"}


def test_explicit_sources_are_kept_as_given_with_or_without_origins() -> None:
    assert load_settings({**MINIMAL, "TOKEN_SOURCES": "header"}).token_sources == ("header",)
    s = load_settings({**MINIMAL, "TOKEN_SOURCES": "Query,header", "ALLOWED_ORIGINS": "https://app.example.com"})
    assert s.token_sources == ("query", "header")  # origins alone do not add cookie to an explicit list


@pytest.mark.parametrize("sources", ["cookie", "header,query,protocol,cookie", "COOKIE,header"])
def test_explicit_cookie_without_origins_names_both_variables(sources: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({**MINIMAL, "TOKEN_SOURCES": sources})
    assert info.value.variable == "ALLOWED_ORIGINS"
    message = str(info.value)
    assert message.startswith("ALLOWED_ORIGINS:")
    assert "TOKEN_SOURCES" in message and "cookie" in message


def test_settings_dataclass_default_sources_have_no_cookie() -> None:
    s = Settings(user_pool_ids=("us-east-1_Min123",), issuers={}, app_client_ids=frozenset({"c"}),
                 token_uses=frozenset({"access"}))
    assert s.token_sources == DEFAULT_TOKEN_SOURCES
    assert "cookie" not in s.token_sources


def test_every_stage_in_chalice_config_loads_and_dev_has_the_seed_allow_lists() -> None:
    """The stages' own environment (global, then stage), as Chalice merges it."""
    config = chalice_config()
    assert "TOKEN_SOURCES" not in config.get("environment_variables", {})
    loaded = {stage: load_settings(stage_environment(stage)) for stage in config["stages"]}
    for stage in ("dev", "prod"):
        assert loaded[stage].token_sources == ("header", "query", "protocol", "cookie"), stage
        assert loaded[stage].allowed_origins, stage
    assert loaded["dev"].context_query_params == ("clientQueryParameter",)
    assert loaded["dev"].context_headers == ("clientheader",)  # matched case-insensitively
