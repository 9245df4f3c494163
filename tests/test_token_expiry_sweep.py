"""The token expiry sweep and the refresh action, on DynamoDB Local and a real HTTP management API.

A fake clock makes each step exact (warn once, close after ``exp``, a refresh
moves the expiry, TOKEN_EXPIRY=ignore does nothing); the end-to-end cases
over real WebSockets, with the gateway's scheduler, are in test_token_expiry.py.
"""
from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib import schema
from chalicelib.errors import TokenInvalid
from chalicelib.settings import Settings
from tests.support.dynamodb import Stores, make_record
from tests.support.entry import Entry
from tests.support.management_api import ManagementApiServer

NOW = 1_800_000_000


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


def _settings(table: str, management_url: str, **overrides: Any) -> Settings:
    base = Settings(user_pool_ids=("us-east-1_Test",), issuers={}, app_client_ids=frozenset({"client"}),
                    token_uses=frozenset({"access"}), connections_table=table, management_url=management_url,
                    token_expiry_warning_seconds=300)
    return dataclasses.replace(base, **overrides)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_service(management_api: ManagementApiServer, stores: Stores,
                 clock: Clock) -> Iterator[Any]:
    made: list[Entry] = []

    def factory(verify: Any = None, **overrides: Any) -> Entry:
        settings = _settings(stores.table.name, management_api.endpoint_url, **overrides)
        made.append(Entry.build(settings, stores.table.client, verifier=SimpleNamespace(verify=verify), clock=clock))
        return made[-1]

    yield factory
    for entry in made:
        entry.close()


def _frames(api: ManagementApiServer, connection_id: str) -> list[dict[str, Any]]:
    return [json.loads(body) for body in api.received.get(connection_id, [])]


def _message(connection_id: str, frame: dict[str, Any]) -> dict[str, Any]:
    return {"body": json.dumps(frame), "isBase64Encoded": False, "requestContext": {
        "connectionId": connection_id, "stage": "dev", "domainName": "localhost", "apiId": "api"}}


def test_the_expiry_index_finds_exactly_the_connections_expiring_before_a_time(
        stores: Stores) -> None:
    for n, exp in enumerate((NOW - 10, NOW + 100, NOW + 1000, None)):
        stores.connections.put(make_record(f"c{n}", token_exp=exp))
    found = stores.expiries.expiring_before(NOW + 100)
    assert sorted((e.connection_id, e.token_exp) for e in found) == [("c0", NOW - 10), ("c1", NOW + 100)]
    assert {e.endpoint.domain for e in found} == {"localhost"}  # projected: the endpoint needs no GetItem
    # Sparse and sharded: only connection items with an exp are in it, spread over the shards.
    shards = {schema.expiry_shard(f"c{n}") for n in range(200)}
    assert shards == set(schema.expiry_shards())


def test_an_expiring_connection_is_warned_once_then_closed(make_service: Any, stores: Stores,
                                                           management_api: ManagementApiServer,
                                                           clock: Clock) -> None:
    management_api.add("c1", "c2")
    stores.connections.put(make_record("c1", token_exp=NOW + 200))
    stores.connections.put(make_record("c2", token_exp=NOW + 3600))  # not yet in the window
    service = make_service()
    assert service.sweep().to_dict()["warned"] == 1
    assert service.sweep().to_dict()["warned"] == 0  # once per token
    [warning] = _frames(management_api, "c1")
    assert (warning["type"], warning["expiresAt"]) == ("token_expiring", NOW + 200) and warning["messageId"]
    assert _frames(management_api, "c2") == [] and management_api.deleted == []

    clock.now = NOW + 200  # exp reached: closed through DELETE @connections, items removed
    report = service.sweep()
    assert (report.closed, management_api.deleted) == (["c1"], ["c1"])
    assert stores.connections.get("c1") is None and stores.connections.get("c2") is not None


def test_a_connection_already_gone_is_cleaned_up(make_service: Any, stores: Stores,
                                                 management_api: ManagementApiServer) -> None:
    stores.connections.put(make_record("c1", token_exp=NOW - 1))  # its $disconnect was lost: 410 now
    stores.subscriptions.subscribe("c1", "news")
    report = make_service().sweep()
    assert report.gone == ["c1"]
    assert stores.connections.get("c1") is None and stores.audiences.subscriber_ids("news") == []


def test_token_expiry_ignore_leaves_connections_alone(make_service: Any, stores: Stores,
                                                      management_api: ManagementApiServer) -> None:
    management_api.add("c1")
    stores.connections.put(make_record("c1", token_exp=NOW - 100))
    assert make_service(token_expiry="ignore").sweep().to_dict()["skipped"] is True
    assert management_api.deleted == [] and _frames(management_api, "c1") == []


def test_a_refresh_moves_the_expiry_and_rearms_the_warning(make_service: Any, stores: Stores,
                                                           management_api: ManagementApiServer,
                                                           clock: Clock) -> None:
    management_api.add("c1")
    stores.connections.put(make_record("c1", user_id="u1", token_exp=NOW + 100))
    tokens = {"good": {"sub": "u1", "exp": NOW + 3600}, "other": {"sub": "u2", "exp": NOW + 3600}}

    def verify(token: str) -> dict[str, Any]:
        if token not in tokens:
            raise TokenInvalid("bad", reason="bad_signature")
        return tokens[token]

    service = make_service(verify=verify)
    service.sweep()  # warned about NOW + 100
    service.on_message(_message("c1", {"action": "refresh", "token": "forged", "id": 1}))
    service.on_message(_message("c1", {"action": "refresh", "token": "good", "id": 2}))
    frames = _frames(management_api, "c1")
    assert [(f["type"], f.get("code"), f.get("id")) for f in frames] == [
        ("token_expiring", None, None), ("error", "invalid_token", 1), ("refreshed", None, 2)]
    assert frames[-1]["expiresAt"] == NOW + 3600
    record = stores.connections.get("c1")
    assert record is not None and record.token_exp == NOW + 3600 and record.identity.flat_claims()["exp"] == NOW + 3600

    clock.now = NOW + 200  # past the old exp: still open
    assert service.sweep().closed == [] and management_api.deleted == []
    clock.now = NOW + 3600 - 100  # the new token's window: warned again, once
    assert len(service.sweep().warned) == 1

    service.on_message(_message("c1", {"action": "refresh", "token": "other"}))
    assert _frames(management_api, "c1")[-1]["code"] == "token_mismatch"
    assert management_api.deleted == ["c1"]  # closed after the error frame


def test_a_refresh_with_the_same_token_does_not_rearm_the_warning(make_service: Any, stores: Stores,
                                                                  management_api: ManagementApiServer,
                                                                  clock: Clock) -> None:
    """Once per token means once: only a token with another ``exp`` is warned about again."""
    management_api.add("c1")
    stores.connections.put(make_record("c1", user_id="u1", token_exp=NOW + 100))
    tokens = {"same": {"sub": "u1", "exp": NOW + 100}, "later": {"sub": "u1", "exp": NOW + 250}}
    service = make_service(verify=lambda token: tokens[token])
    assert len(service.sweep().warned) == 1
    for n in range(3):  # the same token again and again, each followed by a sweep
        service.on_message(_message("c1", {"action": "refresh", "token": "same", "id": n}))
        clock.now += 10
        assert service.sweep().warned == [], n
    service.on_message(_message("c1", {"action": "refresh", "token": "later"}))
    assert len(service.sweep().warned) == 1  # a later exp: warned once more
    assert [f["type"] for f in _frames(management_api, "c1")].count("token_expiring") == 2


@pytest.mark.parametrize("env, expected", [
    ({}, ("close", 300)), ({"TOKEN_EXPIRY": "ignore", "TOKEN_EXPIRY_WARNING_SECONDS": "0"}, ("ignore", 0)),
    ({"TOKEN_EXPIRY": " Close ", "TOKEN_EXPIRY_WARNING_SECONDS": "60"}, ("close", 60)),
])
def test_token_expiry_settings(env: dict[str, str], expected: tuple[str, int]) -> None:
    from chalicelib.settings import load_settings

    base = {"COGNITO_USER_POOL_ID": "us-east-1_Test", "COGNITO_APP_CLIENT_IDS": "c", "CONNECTIONS_TABLE": "table"}
    loaded = load_settings({**base, **env})
    assert (loaded.token_expiry, loaded.token_expiry_warning_seconds) == expected


@pytest.mark.parametrize("env, variable", [
    ({"TOKEN_EXPIRY": "sometimes"}, "TOKEN_EXPIRY"), ({"TOKEN_EXPIRY_WARNING_SECONDS": "-1"}, "TOKEN_EXPIRY_WARNING_SECONDS"),
    ({"TOKEN_EXPIRY_WARNING_SECONDS": "3601"}, "TOKEN_EXPIRY_WARNING_SECONDS"),
])
def test_bad_token_expiry_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    from chalicelib.settings import SettingsError, load_settings

    base = {"COGNITO_USER_POOL_ID": "us-east-1_Test", "COGNITO_APP_CLIENT_IDS": "c", "CONNECTIONS_TABLE": "table"}
    with pytest.raises(SettingsError) as caught:
        load_settings({**base, **env})
    assert caught.value.variable == variable


def test_unavailable_is_told_apart_from_a_bug() -> None:
    from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

    from chalicelib.faults import is_unavailable

    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Query")

    assert is_unavailable(EndpointConnectionError(endpoint_url="http://x"))
    assert is_unavailable(ConnectTimeoutError(endpoint_url="http://x"))
    assert is_unavailable(ReadTimeoutError(endpoint_url="http://x"))
    assert is_unavailable(client_error("ProvisionedThroughputExceededException", 400))
    assert is_unavailable(client_error("InternalServerError", 500))
    assert not is_unavailable(client_error("ValidationException", 400))
    assert not is_unavailable(client_error("ConditionalCheckFailedException", 400))
    assert not is_unavailable(KeyError("x")) and not is_unavailable(ValueError("x"))
