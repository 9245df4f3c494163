"""One boto3 session for a deploy run, with a credentials check up front.

``AWS_ENDPOINT_URL`` (honoured by botocore itself) points every client at an
emulator (MiniStack, moto's server). The deploy then also points the deployed
functions there (``emulator_endpoints``): where they fetch the pool's JWKS and
post to ``@connections`` depends on ids the same deploy creates, so both are
derived in the same run, never left at their ``*.amazonaws.com`` defaults.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import NoCredentials, NoRegion


@dataclass
class Aws:
    session: Any
    region: str
    account_id: str
    partition: str

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name=self.region)


def connect() -> Aws:
    """Check credentials (sts:GetCallerIdentity) before anything is changed."""
    import boto3
    import botocore.exceptions

    session = boto3.session.Session()
    region = session.region_name
    if not region:
        raise NoRegion()
    if session.get_credentials() is None:
        raise NoCredentials("none found")
    try:
        identity = session.client("sts", region_name=region).get_caller_identity()
    except botocore.exceptions.NoCredentialsError as error:
        raise NoCredentials(str(error)) from None
    except botocore.exceptions.ClientError as error:
        raise NoCredentials(f"sts:GetCallerIdentity refused them ({error})") from None
    except botocore.exceptions.EndpointConnectionError as error:
        raise NoCredentials(f"cannot reach AWS ({error})") from None
    arn = str(identity.get("Arn") or "arn:aws:")
    return Aws(session=session, region=region, account_id=str(identity["Account"]),
               partition=arn.split(":")[1] or "aws")


def emulator_endpoint() -> str | None:
    """``AWS_ENDPOINT_URL`` when the deploy targets an emulator, else None (real AWS)."""
    import os

    endpoint = (os.environ.get("AWS_ENDPOINT_URL") or "").strip().rstrip("/")
    return endpoint or None


def emulator_endpoints(endpoint: str, pool_id: str, api_id: str, api_stage: str) -> dict[str, str]:
    """The functions' JWKS and ``@connections`` URLs on an emulator: the pool's JWKS at
    ``<endpoint>/<pool>/.well-known/jwks.json`` (Cognito's path), the WebSocket stage at
    ``<endpoint>/_aws/execute-api/<api>/<stage>`` (the path form emulators serve without DNS)."""
    return {"COGNITO_JWKS_URL": f"{endpoint}/{pool_id}/.well-known/jwks.json",
            "WEBSOCKET_MANAGEMENT_URL": f"{endpoint}/_aws/execute-api/{api_id}/{api_stage}"}


def emulator_urls(endpoint: str, api_id: str, rest_api_id: str, api_stage: str) -> tuple[str, str]:
    """The stage's WebSocket and REST URLs on an emulator, in the same path form (no DNS needed)."""
    ws = endpoint.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    return (f"{ws}/_aws/execute-api/{api_id}/{api_stage}",
            f"{endpoint}/_aws/execute-api/{rest_api_id}/{api_stage}/" if rest_api_id else "")


def error_code(error: BaseException) -> str:
    response = getattr(error, "response", None) or {}
    return str((response.get("Error") or {}).get("Code") or "")


def all_items(client: Any, operation: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every ``Items`` entry of an API Gateway v2 listing (``get_apis``, ``get_routes``, ...).

    boto3's paginator follows ``NextToken``. Every listing the deploy reads has one,
    so there is no hand-written fallback: an operation without one raises
    ``OperationNotPageableError``.
    """
    return client.get_paginator(operation).paginate(**kwargs).build_full_result().get("Items") or []
