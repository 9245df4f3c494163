"""Endpoint resolution, client caching, and the lean client's wire compatibility with boto3."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib import aws
from chalicelib.aws import management_endpoint
from chalicelib.management_http import Credentials, ManagementApiClient
from tests.support.management_api import ManagementApiServer


@pytest.fixture(autouse=True)
def fresh_clients() -> Iterator[None]:
    aws.reset_clients()
    yield
    aws.reset_clients()


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


def test_endpoint_region() -> None:
    assert aws.endpoint_region("https://a1.execute-api.ap-south-1.amazonaws.com/dev") == "ap-south-1"
    assert aws.endpoint_region("http://127.0.0.1:8000/dev", "eu-west-3") == "eu-west-3"


# -- client caching -----------------------------------------------------------------------

def test_management_clients_are_cached_per_endpoint(management_api: ManagementApiServer) -> None:
    url = management_api.endpoint_url
    client = aws.management_client(url)
    assert aws.management_client(url + "/") is client
    assert aws.management_client("http://127.0.0.1:9/other") is not client
    assert client.meta.endpoint_url == url
    assert client.meta.config.max_pool_connections == 64
    lean = aws.lean_management_client(url)
    assert aws.lean_management_client(url) is lean and lean is not client
    aws.reset_clients()
    assert aws.management_client(url) is not client
    assert aws.lean_management_client(url) is not lean


def test_dynamodb_client_is_cached_and_honours_endpoint_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8999")
    client = aws.dynamodb_client()
    assert aws.dynamodb_client() is client
    assert client.meta.endpoint_url == "http://127.0.0.1:8999"
    assert client.meta.config.retries["mode"] == "standard"


def test_boto3_management_client_does_not_retry_by_itself(management_api: ManagementApiServer) -> None:
    management_api.add("a")
    management_api.throttle("a", 1)
    client = aws.management_client(management_api.endpoint_url)
    with pytest.raises(ClientError) as caught:
        client.post_to_connection(ConnectionId="a", Data=b"x")
    assert caught.value.response["Error"]["Code"] == "LimitExceededException"
    assert management_api.attempts == {"a": 1}  # the Broadcaster owns retries


# -- the management API stand-in, through boto3 -------------------------------------------

def test_server_speaks_boto3(management_api: ManagementApiServer) -> None:
    management_api.add("Ab0=")
    client = aws.management_client(management_api.endpoint_url)
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


# -- the lean client ----------------------------------------------------------------------

@pytest.mark.parametrize("token", [None, "FQoGZXIvYXdzEXAMPLE//token+="])
def test_lean_client_signs_exactly_like_boto3(management_api: ManagementApiServer, token: str | None) -> None:
    """Same URL path and same Authorization header as botocore for the same instant."""
    connection_id = "L0Sg+cdeIAMCJGw=/é"
    body = "payload ✓".encode()
    management_api.add(connection_id)
    session = boto3.session.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="wJalr/SECRET",
                                    aws_session_token=token, region_name="eu-west-1")
    session.client("apigatewaymanagementapi", endpoint_url=management_api.endpoint_url).post_to_connection(
        ConnectionId=connection_id, Data=body)
    sent = management_api.requests[-1]
    amz_date = sent.headers["X-Amz-Date"]
    moment = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)

    lean = ManagementApiClient(management_api.endpoint_url, region="eu-west-1",
                               credentials=lambda: Credentials("AKIDEXAMPLE", "wJalr/SECRET", token))
    path = lean.path_for(connection_id)
    headers = lean.sign("POST", path, body, now=moment.timestamp())

    assert path == sent.path
    assert headers["Authorization"] == sent.headers["Authorization"]
    assert headers.get("x-amz-security-token") == sent.headers.get("X-Amz-Security-Token")
    assert management_api.received == {connection_id: [body]}


def test_lean_client_operations_and_errors(management_api: ManagementApiServer) -> None:
    management_api.add("a=", "f")
    management_api.fail("f", 403)
    lean = aws.lean_management_client(management_api.endpoint_url)
    boto = aws.management_client(management_api.endpoint_url)

    assert lean.post_to_connection(ConnectionId="a=", Data="text ✓")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert management_api.received == {"a=": ["text ✓".encode()]}
    mine, theirs = lean.get_connection(ConnectionId="a="), boto.get_connection(ConnectionId="a=")
    assert mine["Identity"] == theirs["Identity"]
    assert mine["ConnectedAt"] == theirs["ConnectedAt"]

    for connection_id, code, status in [("zz", "GoneException", 410), ("f", "ForbiddenException", 403)]:
        with pytest.raises(ClientError) as caught:
            lean.post_to_connection(ConnectionId=connection_id, Data=b"x")
        assert caught.value.response["Error"]["Code"] == code
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status

    lean.delete_connection(ConnectionId="a=")
    assert management_api.deleted == ["a="]
    with pytest.raises(ClientError, match="GoneException"):
        lean.get_connection(ConnectionId="a=")


def test_lean_client_reopens_a_connection_the_server_dropped(management_api: ManagementApiServer) -> None:
    management_api.add("a")
    lean = aws.lean_management_client(management_api.endpoint_url)
    lean.post_to_connection(ConnectionId="a", Data=b"1")
    management_api.drop_after_next_response()
    lean.post_to_connection(ConnectionId="a", Data=b"2")  # answered, then the socket is closed
    lean.post_to_connection(ConnectionId="a", Data=b"3")  # must not surface the stale socket
    assert management_api.received["a"] == [b"1", b"2", b"3"]
    assert management_api.attempts["a"] == 3
