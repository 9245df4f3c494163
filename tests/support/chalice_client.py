"""The Chalice test client on this test's real local services (DynamoDB Local,
a JWKS server, a management API), and the harness the handler and REST tests
share."""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from chalice.test import Client

import app as app_module
from chalicelib import runtime
from devtools.chalice_gateway import install as like_api_gateway
from devtools.gateway.events import Api, ClientInfo, authorizer_event, connect_event, message_event
from tests.support.builders import chalice_config, settings_env
from tests.support.jwt_factory import JwksServer, TokenFactory
from tests.support.management_api import ManagementApiServer

API = Api(api_id="abcdef1234", stage="test")


class _Endpoint:  # what the DynamoDB Local fixture hands out
    endpoint_url: str


def services_env(jwks_server: JwksServer, connections_table: str, dynamodb_local: _Endpoint,
                 management_api: ManagementApiServer, cognito_issuer: str, client_id: str,
                 **extra: str) -> dict[str, str]:
    """The shared test settings (cookie auth from ``builders.ORIGIN``) pointed at these services."""
    return settings_env(
        COGNITO_USER_POOL_ID=cognito_issuer.rsplit("/", 1)[1],
        COGNITO_APP_CLIENT_IDS=client_id,
        COGNITO_JWKS_URL=jwks_server.url,
        CONNECTIONS_TABLE=connections_table,
        WEBSOCKET_MANAGEMENT_URL=management_api.endpoint_url,
        AWS_ENDPOINT_URL_DYNAMODB=dynamodb_local.endpoint_url,
        **extra,
    )


def chalice_client(tmp_path: Path, env: dict[str, str]) -> Client:
    """A Chalice test client whose 'test' stage carries ``env``; the runtime starts afresh."""
    (tmp_path / ".chalice").mkdir(exist_ok=True)
    config = chalice_config()
    config["stages"] = {"test": {"api_gateway_stage": "test", "environment_variables": env}}
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config))
    runtime.rebuild()
    like_api_gateway()  # authorizer errors and path parameters as API Gateway handles them
    return Client(app_module.app, stage_name="test", project_dir=str(tmp_path))


class AppHarness:
    """One test's app through the Chalice test client, with its tokens, the
    management API it posts to and the connection table. WebSocket clients are
    opened the way API Gateway opens them: ``ws_authorizer``, then ``$connect``
    with the authorizer's context."""

    def __init__(self, client: Client, tokens: TokenFactory, management: ManagementApiServer,
                 stores: Any) -> None:
        self.client = client
        self.tokens = tokens
        self.management = management
        self.stores = stores

    def authorize(self, info: ClientInfo) -> dict[str, Any]:
        return dict(self.client.lambda_.invoke("ws_authorizer", authorizer_event(API, info)).payload)

    def open(self, info: ClientInfo) -> ClientInfo:
        """Authorize and ``$connect`` ``info``; both must succeed."""
        answer = self.authorize(info)
        assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow", answer
        info.authorizer = {**answer["context"], "principalId": answer["principalId"]}
        result = self.client.lambda_.invoke("connect", connect_event(API, info)).payload
        assert result["statusCode"] == 200, result
        self.management.add(info.connection_id)
        return info

    def send(self, info: ClientInfo, frame: Any) -> dict[str, Any]:
        body = frame if isinstance(frame, str) else json.dumps(frame)
        return dict(self.client.lambda_.invoke("message", message_event(API, info, body)).payload)

    def raw_frames(self, info: ClientInfo) -> list[dict[str, Any]]:
        """Every frame posted to the client, as sent (``messageId`` included)."""
        return [json.loads(raw) for raw in self.management.received.get(info.connection_id, [])]


H = TypeVar("H", bound=AppHarness)


@contextlib.contextmanager
def app_harness(kind: type[H], tmp_path: Path, env: dict[str, str], tokens: TokenFactory,
                management: ManagementApiServer, stores: Any) -> Iterator[H]:
    """A harness of ``kind`` on a fresh test client; the runtime's cached clients are dropped after.

    ``os.environ`` is put back as it was: Chalice's test client swaps it for each invocation and back, which
    concurrent invocations (a race test) can leave swapped for a test's environment."""
    environ = os.environ
    try:
        with chalice_client(tmp_path, env) as client:
            yield kind(client, tokens, management, stores)
    finally:
        os.environ = environ  # type: ignore[assignment]
        runtime.rebuild()
