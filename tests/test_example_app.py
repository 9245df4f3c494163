"""Your first test of the app, with Chalice's test client: docs/testing.md walks through this file.

It signs its own token (an RSA key made here, its JWKS served on 127.0.0.1),
gives the app the settings a stage needs, runs the authorizer, then ``$connect``
and a frame, and reads the answer the app posted to the connection. DynamoDB is
DynamoDB Local and the management API a local stand-in: the ``dynamodb_local``
and ``management_api`` fixtures of ``tests/support``.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest
from chalice.test import Client
from cryptography.hazmat.primitives.asymmetric import rsa

import app as app_module
from chalicelib import runtime, schema

POOL_ID = "us-east-1_Example1"
ISSUER = f"https://cognito-idp.us-east-1.amazonaws.com/{POOL_ID}"
CLIENT_ID = "example-client"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def signed_token(sub: str = "user-1", username: str = "alice", lifetime: int = 3600) -> str:
    """An access token as Cognito signs it: RS256, the pool's issuer, ``token_use`` and ``client_id``."""
    now = int(time.time())
    claims = {"sub": sub, "username": username, "iss": ISSUER, "token_use": "access", "client_id": CLIENT_ID,
              "scope": "aws.cognito.signin.user.admin", "iat": now, "auth_time": now, "exp": now + lifetime}
    return jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "example-key"})


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    """The key's JWKS on 127.0.0.1, where COGNITO_JWKS_URL points the verifier."""
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    body = json.dumps({"keys": [{**public, "kid": "example-key", "alg": "RS256", "use": "sig"}]}).encode()

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()


@pytest.fixture
def settings(jwks_url: str, dynamodb_local: Any, management_api: Any) -> dict[str, str]:
    """What a stage sets in .chalice/config.json, pointed at local services; a fresh table per test."""
    table = f"example-{uuid.uuid4().hex[:8]}"
    schema.create_table(boto3.client("dynamodb", endpoint_url=dynamodb_local.endpoint_url), table)
    return {"COGNITO_USER_POOL_ID": POOL_ID, "COGNITO_APP_CLIENT_IDS": CLIENT_ID, "COGNITO_JWKS_URL": jwks_url,
            "CONNECTIONS_TABLE": table, "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_local.endpoint_url,
            "WEBSOCKET_MANAGEMENT_URL": management_api.endpoint_url, "AWS_REGION": "us-east-1"}


@pytest.fixture
def client(tmp_path: Path, settings: dict[str, str]) -> Iterator[Client]:
    """Chalice's test client on the real app, with a stage ``test`` carrying ``settings``."""
    (tmp_path / ".chalice").mkdir()
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps({
        "version": "2.0", "app_name": "ws-cognito",
        "stages": {"test": {"api_gateway_stage": "test", "environment_variables": settings}}}))
    runtime.rebuild()  # settings are read once per container: start afresh for this test's
    with Client(app_module.app, stage_name="test", project_dir=str(tmp_path)) as test_client:
        yield test_client
    runtime.rebuild()


def ws_event(connection_id: str, *, token: str | None = None, context: dict[str, Any] | None = None,
             body: str | None = None) -> dict[str, Any]:
    """An API Gateway WebSocket event: the upgrade's headers for the authorizer, the context after it."""
    request = {"connectionId": connection_id, "stage": "test", "apiId": "abcdef1234",
               "domainName": "abcdef1234.execute-api.us-east-1.amazonaws.com",
               "identity": {"sourceIp": "127.0.0.1", "userAgent": "pytest"}, "connectedAt": int(time.time() * 1000)}
    event: dict[str, Any] = {"requestContext": request, "isBase64Encoded": False}
    if token is not None:
        event.update(type="REQUEST", methodArn="arn:aws:execute-api:us-east-1:123456789012:abcdef1234/test/$connect",
                     headers={"Authorization": f"Bearer {token}"})
    if context is not None:
        request["authorizer"] = context
    if body is not None:
        event["body"] = body
    return event


def connect(client: Client, connection_id: str, token: str) -> dict[str, Any]:
    """The authorizer, then ``$connect`` with the context it allowed, as API Gateway runs them."""
    policy = client.lambda_.invoke("ws_authorizer", ws_event(connection_id, token=token)).payload
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow", policy
    context = {**policy["context"], "principalId": policy["principalId"]}
    answer = client.lambda_.invoke("connect", ws_event(connection_id, context=context)).payload
    assert answer["statusCode"] == 200, answer
    return context


def test_whoami_answers_the_verified_identity(client: Client, management_api: Any) -> None:
    context = connect(client, "conn-1", signed_token())
    management_api.add("conn-1")
    client.lambda_.invoke("message", ws_event("conn-1", context=context, body='{"action":"whoami","id":7}'))
    [answer] = [json.loads(frame) for frame in management_api.received["conn-1"]]
    assert (answer["type"], answer["id"], answer["identity"]["username"]) == ("whoami", 7, "alice")


def test_the_authorizer_refuses_an_expired_token(client: Client) -> None:
    with pytest.raises(Exception, match="Unauthorized"):
        client.lambda_.invoke("ws_authorizer", ws_event("conn-2", token=signed_token(lifetime=-60)))


def test_a_missing_table_is_reported_by_name(client: Client, management_api: Any, settings: dict[str, str],
                                             tmp_path: Path) -> None:
    context = connect(client, "conn-3", signed_token())
    boto3.client("dynamodb", endpoint_url=settings["AWS_ENDPOINT_URL_DYNAMODB"]).delete_table(
        TableName=settings["CONNECTIONS_TABLE"])
    management_api.add("conn-3")
    client.lambda_.invoke("message", ws_event("conn-3", context=context, body='{"action":"whoami"}'))
    [answer] = [json.loads(frame) for frame in management_api.received["conn-3"]]
    assert answer["code"] == "misconfigured" and "CONNECTIONS_TABLE" in answer["message"]


def test_a_missing_region_is_reported_by_name(client: Client, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    policy = client.lambda_.invoke("ws_authorizer", ws_event("conn-4", token=signed_token())).payload
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    runtime.current().settings  # already read: only the region is missing now
    context = {**policy["context"], "principalId": policy["principalId"]}
    answer = client.lambda_.invoke("connect", ws_event("conn-4", context=context)).payload
    assert answer == {"statusCode": 500}
    [line] = [json.loads(out) for out in capsys.readouterr().out.splitlines() if '"handler_error"' in out]
    assert line["missing"].startswith("AWS_REGION")
