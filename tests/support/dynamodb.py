"""pytest plugin: one DynamoDB Local per test session, a fresh table per test.

Fixtures: ``dynamodb_local`` (session), ``dynamodb_client`` (session),
``connections_table`` (function; the table's name), ``repository`` (function).
``make_record`` builds a ConnectionRecord with sensible defaults for any test.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Iterator

import pytest

from chalicelib import schema
from chalicelib.repository import ConnectionRecord, ConnectionRepository
from devtools.dynamodb_local import DynamoDBLocal

REGION = "us-east-1"


def make_record(connection_id: str = "c1", user_id: str = "u1", username: str = "alice",
                **overrides: Any) -> ConnectionRecord:
    """A plausible connection record; keyword arguments override any field."""
    connected_at = overrides.pop("connected_at", int(time.time() * 1000))
    fields: dict[str, Any] = {
        "connection_id": connection_id,
        "user_id": user_id,
        "username": username,
        "claims": {"sub": user_id, "cognito:username": username, "token_use": "id", "auth_time": 1700000000},
        "connected_at": connected_at,
        "source_ip": "127.0.0.1",
        "user_agent": "pytest",
        "stage": "dev",
        "domain": "localhost",
        "client_params": {},
        "token_source": "header",
        "ttl": connected_at // 1000 + 8100,
    }
    fields.update(overrides)
    return ConnectionRecord(**fields)


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    db = DynamoDBLocal()
    db.start()
    try:
        yield db
    finally:
        db.stop()


@pytest.fixture(scope="session")
def dynamodb_client(dynamodb_local: DynamoDBLocal) -> Any:
    import boto3

    return boto3.client("dynamodb", endpoint_url=dynamodb_local.endpoint_url, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def connections_table(dynamodb_client: Any) -> Iterator[str]:
    name = f"connections-{uuid.uuid4().hex[:12]}"
    schema.create_table(dynamodb_client, name)
    try:
        yield name
    finally:
        try:
            dynamodb_client.delete_table(TableName=name)
        except dynamodb_client.exceptions.ResourceNotFoundException:
            pass


@pytest.fixture
def repository(connections_table: str, dynamodb_client: Any) -> ConnectionRepository:
    return ConnectionRepository(connections_table, client=dynamodb_client)
