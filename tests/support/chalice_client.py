"""The Chalice test client on this test's real local services (DynamoDB Local,
a JWKS server, a management API), shared by the handler and REST tests."""
from __future__ import annotations

import json
from pathlib import Path

from chalice.test import Client

import app as app_module
from chalicelib import aws, runtime
from tests.support.builders import chalice_config, settings_env
from tests.support.jwt_factory import JwksServer
from tests.support.management_api import ManagementApiServer


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
    runtime.reset()
    aws.reset_clients()
    return Client(app_module.app, stage_name="test", project_dir=str(tmp_path))
