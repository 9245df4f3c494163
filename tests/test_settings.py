from __future__ import annotations

import pytest

from chalicelib.settings import DEFAULT_TOKEN_SOURCES, Settings, SettingsError, load_settings
from devtools.chalice_local import FROM_STACK, LOCAL_STAGE, stack_environment
from tests.support.builders import chalice_config, settings_env, stage_environment

BASE = {
    "COGNITO_USER_POOL_ID": "eu-west-1_AbC123",
    "COGNITO_APP_CLIENT_IDS": "client1, client2",
    "CONNECTIONS_TABLE": "connections",
    "ALLOWED_ORIGINS": "https://app.example.com",
}


# What `make run` writes to .local/stack.json (the fields `make local` reads).
SAMPLE_STACK = {
    "ws_url": "ws://127.0.0.1:8000/dev", "management_url": "http://127.0.0.1:8000/dev",
    "dynamodb_endpoint": "http://127.0.0.1:45678", "table": "ws-cognito-dev-connections",
    "cognito": {"endpoint_url": "http://127.0.0.1:45679", "region": "us-east-1",
                "pool_id": "us-east-1_0123456789abcdef", "client_id": "abcdef0123456789abcdef0123"},
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


def test_every_stage_in_chalice_config_loads_and_dev_has_the_tutorial_allow_lists() -> None:
    """The stages' own environment (global, then stage), as Chalice merges it."""
    config = chalice_config()
    assert "TOKEN_SOURCES" not in config.get("environment_variables", {})
    # The local stage gets the running stack's ids and endpoints from `make local`, as here.
    loaded = {stage: load_settings({**(stack_environment(SAMPLE_STACK) if stage == LOCAL_STAGE else {}),
                                    **stage_environment(stage)})
              for stage in config["stages"]}
    assert set(loaded) == {"dev", "prod", LOCAL_STAGE}
    assert loaded["dev"].push_groups == loaded[LOCAL_STAGE].push_groups == frozenset({"publishers"})
    assert not loaded["prod"].push_groups and not loaded["prod"].push_scopes
    for stage in ("dev", "prod"):
        assert loaded[stage].token_sources == ("header", "query", "protocol", "cookie"), stage
        assert loaded[stage].allowed_origins, stage
    assert loaded["dev"].context_query_params == ("clientQueryParameter",)
    assert loaded["dev"].context_headers == ("clientheader",)  # matched case-insensitively


def test_push_permissions_are_any_of_lists_and_default_to_nobody() -> None:
    assert (load_settings(env()).push_groups, load_settings(env()).push_scopes) == (frozenset(), frozenset())
    loaded = load_settings(env(PUSH_GROUPS="publishers, ops", PUSH_SCOPES="ws-cognito/push"))
    assert loaded.push_groups == frozenset({"publishers", "ops"})
    assert loaded.push_scopes == frozenset({"ws-cognito/push"})


def test_the_local_stage_leaves_the_stacks_values_to_make_local() -> None:
    """Chalice puts a stage's environment_variables over the process's: a local stage naming one of
    these would override what `make local` reads from .local/stack.json."""
    local = chalice_config()["stages"][LOCAL_STAGE]
    assert not set(local.get("environment_variables", {})) & set(FROM_STACK)
    assert not set(chalice_config().get("environment_variables", {})) & set(FROM_STACK)
    loaded = load_settings({**stack_environment(SAMPLE_STACK), **stage_environment(LOCAL_STAGE)})
    assert loaded.user_pool_ids == ("us-east-1_0123456789abcdef",)
    assert loaded.issuers == {
        "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_0123456789abcdef":
            "http://127.0.0.1:45679/us-east-1_0123456789abcdef/.well-known/jwks.json"}
    assert loaded.management_url == "http://127.0.0.1:8000/dev"
    assert loaded.connections_table == "ws-cognito-dev-connections"
