"""pytest plugin: one DynamoDB Local per test session, a fresh table per test.

Fixtures: ``dynamodb_local`` (session), ``dynamodb_client`` (session),
``connections_table`` (function; the table's name), ``stores`` (function: the
connection and subscription stores and the audience reader on that table).
``make_record`` builds a ConnectionRecord with sensible defaults for any test.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Iterator

import pytest

from chalicelib import schema
from chalicelib.connections import ConnectionStore
from chalicelib.expiries import TokenExpiries
from chalicelib.identity import Identity
from chalicelib.readers import AudienceReader
from chalicelib.records import ConnectionRecord, Endpoint
from chalicelib.subscriptions import SubscriptionStore
from chalicelib.table import StaticClient, Table
from devtools.dynamodb_local import DynamoDBLocal

REGION = "us-east-1"


def make_record(connection_id: str = "c1", user_id: str = "u1", username: str = "alice", *,
                claims: dict[str, Any] | None = None, connected_at: int | None = None, token_exp: int | None = None,
                token_source: str = "header", client_params: dict[str, str] | None = None,
                endpoint: Endpoint | None = None, ttl: int | None = None, **identity: Any) -> ConnectionRecord:
    """A plausible connection record; keyword arguments override any part of it."""
    connected_at = int(time.time() * 1000) if connected_at is None else connected_at
    info = {"auth_time": 1700000000} if claims is None else claims
    who = Identity(sub=user_id, username=username, token_use="id", source=token_source, expires_at=token_exp,
                   claims=info, client_params=client_params or {}, **identity)
    return ConnectionRecord(connection_id=connection_id, identity=who, connected_at=connected_at,
                            ttl=connected_at // 1000 + 8100 if ttl is None else ttl,
                            endpoint=endpoint or Endpoint("localhost", "dev"), source_ip="127.0.0.1",
                            user_agent="pytest")


class Stores:
    """The stores and the reader on one table, as the runtime builds them (``components``)."""

    def __init__(self, table_name: str, client: Any = None, query_page_size: int | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.table = Table(table_name, StaticClient(client), query_page_size=query_page_size, sleep=sleep)
        self.connections = ConnectionStore(self.table)
        self.subscriptions = SubscriptionStore(self.table)
        self.expiries = TokenExpiries(self.table)
        self.audiences = AudienceReader(self.table)


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
def stores(connections_table: str, dynamodb_client: Any) -> Stores:
    return Stores(connections_table, dynamodb_client)
