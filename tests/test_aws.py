"""Endpoint resolution, client caching and configuration, and the management API stand-in."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime

import pytest
from botocore.exceptions import ClientError

from chalicelib import aws
from chalicelib.management import management_endpoint
from chalicelib.broadcaster import BROADCAST_WORKERS
from tests.support.management_api import ManagementApiServer


clients = aws.Clients()


@pytest.fixture(autouse=True)
def fresh_clients() -> Iterator[None]:
    global clients
    clients = aws.Clients()
    yield


# -- management_endpoint ------------------------------------------------------------------

@pytest.mark.parametrize("domain, stage, api_id, region, expected", [
    ("abc123.execute-api.eu-west-1.amazonaws.com", "dev", None, None,
     "https://abc123.execute-api.eu-west-1.amazonaws.com/dev"),
    ("ABC123.execute-api.us-east-1.amazonaws.com", "prod", "ignored", "us-west-2",
     "https://abc123.execute-api.us-east-1.amazonaws.com/prod"),
    ("abc123.execute-api.cn-north-1.amazonaws.com.cn", "dev", None, None,
     "https://abc123.execute-api.cn-north-1.amazonaws.com.cn/dev"),
    ("ws.example.com", "prod", "abc123", "eu-central-1",
     "https://abc123.execute-api.eu-central-1.amazonaws.com/prod"),
    ("ws.example.cn", "prod", "abc123", "cn-northwest-1",
     "https://abc123.execute-api.cn-northwest-1.amazonaws.com.cn/prod"),
])
def test_management_endpoint(domain: str, stage: str, api_id: str | None, region: str | None,
                             expected: str) -> None:
    assert management_endpoint(domain, stage, api_id=api_id, region=region) == expected


def test_management_endpoint_override_wins() -> None:
    assert management_endpoint("abc.execute-api.us-east-1.amazonaws.com", "dev",
                               override="http://127.0.0.1:8000/dev/") == "http://127.0.0.1:8000/dev"
    assert management_endpoint("", "", override="http://localhost:9/x") == "http://localhost:9/x"


@pytest.mark.parametrize("domain, stage, api_id, region", [
    ("ws.example.com", "prod", None, "us-east-1"),
    ("ws.example.com", "prod", "abc123", None),
    ("abc.execute-api.us-east-1.amazonaws.com", "", None, None),
    ("abc.execute-api.us-east-1.amazonaws.com.evil.com", "dev", None, None),
])
def test_management_endpoint_errors(domain: str, stage: str, api_id: str | None, region: str | None) -> None:
    with pytest.raises(ValueError, match="management endpoint"):
        management_endpoint(domain, stage, api_id=api_id, region=region)


# -- client caching -----------------------------------------------------------------------

def test_management_clients_are_cached_per_endpoint(management_api: ManagementApiServer) -> None:
    url = management_api.endpoint_url
    client = clients.management(url)
    assert clients.management(url + "/") is client
    other = clients.management("http://127.0.0.1:9/other")
    assert other is not client and clients.management("http://127.0.0.1:9/other") is other
    assert client.meta.endpoint_url == url
    assert aws.Clients().management(url) is not client  # a new container's


def test_concurrent_first_calls_build_one_client(management_api: ManagementApiServer) -> None:
    barrier = threading.Barrier(8)
    got: list[object] = []

    def first_call() -> None:
        barrier.wait()
        got.append(clients.management(management_api.endpoint_url))

    threads = [threading.Thread(target=first_call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(got) == 8 and len({id(client) for client in got}) == 1


def test_management_client_configuration(management_api: ManagementApiServer) -> None:
    config = clients.management(management_api.endpoint_url).meta.config
    assert config.max_pool_connections == BROADCAST_WORKERS  # one connection per broadcast thread
    assert config.connect_timeout == aws.MANAGEMENT_CONNECT_TIMEOUT <= 5
    assert config.read_timeout == aws.MANAGEMENT_READ_TIMEOUT <= 10
    assert config.retries["mode"] == "standard"
    assert config.retries["total_max_attempts"] == aws.MANAGEMENT_MAX_ATTEMPTS


def test_dynamodb_client_is_cached_and_honours_endpoint_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8999")
    client = clients.dynamodb
    assert clients.dynamodb is client
    assert client.meta.endpoint_url == "http://127.0.0.1:8999"
    assert client.meta.config.retries["mode"] == "standard"


def test_management_client_retries_throttling_but_not_gone(management_api: ManagementApiServer) -> None:
    management_api.add("a")
    management_api.throttle("a", 1)
    client = clients.management(management_api.endpoint_url)
    client.post_to_connection(ConnectionId="a", Data=b"x")
    assert management_api.attempts == {"a": 2}
    assert management_api.received == {"a": [b"x"]}
    with pytest.raises(ClientError) as caught:
        client.post_to_connection(ConnectionId="gone", Data=b"x")
    assert caught.value.response["Error"]["Code"] == "GoneException"
    assert management_api.attempts["gone"] == 1


# -- the management API stand-in, through boto3 -------------------------------------------

def test_server_speaks_boto3(management_api: ManagementApiServer) -> None:
    management_api.add("Ab0=")
    client = clients.management(management_api.endpoint_url)
    client.post_to_connection(ConnectionId="Ab0=", Data=b"hello")
    assert management_api.received == {"Ab0=": [b"hello"]}
    info = client.get_connection(ConnectionId="Ab0=")
    assert isinstance(info["ConnectedAt"], datetime) and isinstance(info["LastActiveAt"], datetime)
    assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "pytest-client"}
    client.delete_connection(ConnectionId="Ab0=")
    assert management_api.deleted == ["Ab0="]
    with pytest.raises(client.exceptions.GoneException) as caught:
        client.post_to_connection(ConnectionId="Ab0=", Data=b"late")
    assert caught.value.response["Error"]["Code"] == "GoneException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    with pytest.raises(client.exceptions.GoneException):
        client.get_connection(ConnectionId="Ab0=")
