"""The one DynamoDB table: connections and their topic subscriptions.

Tests, the local stack and the CloudFormation template all build the table from
here, so the key schema and indexes cannot drift between them.

Layout (single table, on-demand billing):

- connection: ``pk = CONN#<connectionId>``, ``sk = META``, plus ``userId``,
  ``username`` and the identity attributes the ``whoami`` action returns.
- subscription: ``pk = CONN#<connectionId>``, ``sk = TOPIC#<topic>``, plus
  ``topic``, ``connectionId`` and the connection's ``ttl``.
- tombstone: ``pk = CONN#<connectionId>``, ``sk = GONE``, a short ``ttl``: the
  connection's ``$disconnect`` ran, so its ``$connect`` (a transaction that
  checks this item) can no longer store it.
- user count: ``pk = USER#<sub>``, ``sk = CONNECTIONS``, ``connections``: kept by
  the ``$connect`` and ``$disconnect`` transactions, so ``MAX_CONNECTIONS_PER_USER``
  holds under parallel connects; its ``ttl`` outlives any connection it counts.

Keeping a connection and its subscriptions under one partition key lets
``$disconnect`` find everything to delete with one Query, no index needed.

The user, username and topic GSIs are sparse: only connection items carry ``userId``/``username``
and only subscription items carry ``topic``, so each index holds exactly the
items its lookup wants. Every index projects the keys plus ``connectionId``
(INCLUDE), which is all fan-out needs (``notify``, ``publish``); projecting ALL
would copy the claims map into two indexes and pay for it on every connect.

The fourth GSI, ``byTokenExpiry``, serves the scheduled expiry sweep
(``chalicelib/expiry.py``): API Gateway authorizes only at ``$connect``, so a
connection whose token expired must be found and closed. Connection items
carry ``expiryShard`` (``EXP#<n>``, ``n`` a stable hash of the connection id
modulo ``EXPIRY_SHARDS``) and ``tokenExp`` (the token's ``exp``, a number), so
one Query per shard, ``tokenExp <= T``, returns exactly the connections
expiring before ``T``, in expiry order, without a Scan. Sharding spreads the
write load of many connects over several partitions; a fixed shard count
keeps the sweep at a constant number of Queries. Sparse: subscription items
carry neither attribute. It projects what the sweep acts on: the connection
id, the ``exp`` already warned about (``warnedExp``) and the endpoint parts
(``domain``, ``stage``, ``apiId``), so no GetItem per connection is needed.

``ttl`` (epoch seconds) lets DynamoDB drop items whose ``$disconnect`` never ran.
This module does not import boto3: callers pass a client in.
"""
from __future__ import annotations

import math
from typing import Any

from .faults import error_code

TTL_ATTRIBUTE = "ttl"

PARTITION_KEY = "pk"
SORT_KEY = "sk"

CONNECTION_PREFIX = "CONN#"
TOPIC_PREFIX = "TOPIC#"
META_SK = "META"
# ``CONN#<id>``/``GONE``: written by $disconnect, so a $connect that loses the race to it writes nothing.
GONE_SK = "GONE"
# ``USER#<sub>``/``CONNECTIONS``: how many connections the user holds (MAX_CONNECTIONS_PER_USER).
USER_PREFIX = "USER#"
USER_COUNT_SK = "CONNECTIONS"

BY_USER_ID_INDEX = "byUserId"
BY_USERNAME_INDEX = "byUsername"
BY_TOPIC_INDEX = "byTopic"
BY_TOKEN_EXPIRY_INDEX = "byTokenExpiry"

# The expiry index's keys and shards (see the module docstring).
EXPIRY_SHARD_ATTRIBUTE = "expiryShard"
TOKEN_EXP_ATTRIBUTE = "tokenExp"
WARNED_EXP_ATTRIBUTE = "warnedExp"
EXPIRY_SHARD_PREFIX = "EXP#"
EXPIRY_SHARDS = 4
EXPIRY_PROJECTION: dict[str, Any] = {
    "ProjectionType": "INCLUDE",
    "NonKeyAttributes": ["connectionId", WARNED_EXP_ATTRIBUTE, "domain", "stage", "apiId"],
}

# Projected into every index besides the keys: the only thing fan-out reads.
INDEX_PROJECTION: dict[str, Any] = {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["connectionId"]}

_INDEXES: tuple[tuple[str, str], ...] = (
    (BY_USER_ID_INDEX, "userId"),
    (BY_USERNAME_INDEX, "username"),
    (BY_TOPIC_INDEX, "topic"),
)


def expiry_shard(connection_id: str) -> str:
    """``EXP#<n>``: the connection's expiry shard, stable across processes (not Python's salted hash)."""
    import zlib

    return f"{EXPIRY_SHARD_PREFIX}{zlib.crc32(connection_id.encode('utf-8')) % EXPIRY_SHARDS}"


def expiry_shards() -> list[str]:
    """Every shard's partition key: the sweep queries each one."""
    return [f"{EXPIRY_SHARD_PREFIX}{n}" for n in range(EXPIRY_SHARDS)]


def _attribute_definitions() -> list[dict[str, str]]:
    names = [PARTITION_KEY, SORT_KEY] + [hash_key for _, hash_key in _INDEXES] + [EXPIRY_SHARD_ATTRIBUTE]
    return [{"AttributeName": name, "AttributeType": "S"} for name in names] + [
        {"AttributeName": TOKEN_EXP_ATTRIBUTE, "AttributeType": "N"}]


def _key_schema() -> list[dict[str, str]]:
    return [
        {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
        {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
    ]


def _index(name: str, hash_key: str, range_key: str, projection: dict[str, Any]) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": [{"AttributeName": hash_key, "KeyType": "HASH"},
                      {"AttributeName": range_key, "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": projection["ProjectionType"],
                       "NonKeyAttributes": list(projection["NonKeyAttributes"])},
    }


def _global_secondary_indexes() -> list[dict[str, Any]]:
    return [_index(name, hash_key, PARTITION_KEY, INDEX_PROJECTION) for name, hash_key in _INDEXES] + [
        _index(BY_TOKEN_EXPIRY_INDEX, EXPIRY_SHARD_ATTRIBUTE, TOKEN_EXP_ATTRIBUTE, EXPIRY_PROJECTION)]


def table_definition(table_name: str) -> dict[str, Any]:
    """Keyword arguments for the CreateTable API."""
    return {
        "TableName": table_name,
        "AttributeDefinitions": _attribute_definitions(),
        "KeySchema": _key_schema(),
        "GlobalSecondaryIndexes": _global_secondary_indexes(),
        "BillingMode": "PAY_PER_REQUEST",
    }


def ttl_specification() -> dict[str, Any]:
    """The UpdateTimeToLive / CloudFormation TimeToLiveSpecification shape."""
    return {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}


def cloudformation_properties(table_name: str | None, point_in_time_recovery: bool) -> dict[str, Any]:
    """``Properties`` of an ``AWS::DynamoDB::Table`` resource.

    ``table_name`` None lets CloudFormation name the table (safe replacements).
    """
    definition = table_definition(table_name or "")
    properties: dict[str, Any] = {}
    if table_name:
        properties["TableName"] = table_name
    properties.update({
        "AttributeDefinitions": definition["AttributeDefinitions"],
        "KeySchema": definition["KeySchema"],
        "GlobalSecondaryIndexes": definition["GlobalSecondaryIndexes"],
        "BillingMode": definition["BillingMode"],
        "TimeToLiveSpecification": ttl_specification(),
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": bool(point_in_time_recovery)},
    })
    return properties


def create_table(client: Any, table_name: str, timeout: float = 60.0) -> None:
    """Create the table (or accept an existing one), wait until ACTIVE, enable TTL.

    Idempotent, so the local stack can run it on every start.
    """
    try:
        client.create_table(**table_definition(table_name))
    except Exception as error:  # botocore's ClientError; not imported here on purpose
        if error_code(error) != "ResourceInUseException":
            raise
    _wait_active(client, table_name, timeout)
    current = client.describe_time_to_live(TableName=table_name).get("TimeToLiveDescription") or {}
    if current.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        if current.get("AttributeName") == TTL_ATTRIBUTE:
            return
        raise RuntimeError(
            f"table {table_name!r} has TTL on attribute {current.get('AttributeName')!r}, "
            f"expected {TTL_ATTRIBUTE!r}"
        )
    client.update_time_to_live(TableName=table_name, TimeToLiveSpecification=ttl_specification())


# Seconds between DescribeTable calls. The waiter's default is 20 s; botocore documents Delay as
# an integer (a float happens to work), and 1 s costs nothing locally: DynamoDB Local answers
# CreateTable with the table and its indexes already ACTIVE, so the first describe succeeds.
WAIT_DELAY = 1


def _wait_active(client: Any, table_name: str, timeout: float) -> None:
    """The ``table_exists`` waiter, then a check that every GSI is ACTIVE too.

    Indexes created with the table are ACTIVE once the table is (on AWS and in
    DynamoDB Local alike); only an index added later by UpdateTable can still be
    CREATING (backfilling) on an ACTIVE table, which this refuses to use.
    """
    from botocore.exceptions import WaiterError  # botocore is loaded already: the client is

    try:
        client.get_waiter("table_exists").wait(
            TableName=table_name,
            WaiterConfig={"Delay": WAIT_DELAY, "MaxAttempts": max(1, math.ceil(timeout / WAIT_DELAY))})
    except WaiterError as error:
        if "Max attempts exceeded" not in str(error):
            raise
        status = (error.last_response.get("Table") or {}).get("TableStatus") or "not found"
        raise TimeoutError(f"table {table_name!r} not ACTIVE after {timeout:.0f} s (status {status})") from None
    indexes = client.describe_table(TableName=table_name)["Table"].get("GlobalSecondaryIndexes") or []
    pending = {i["IndexName"]: i.get("IndexStatus") for i in indexes if i.get("IndexStatus") != "ACTIVE"}
    if pending:
        raise RuntimeError(f"table {table_name!r} is ACTIVE but not all its indexes are: {pending} "
                           "(an index added after creation is still being built; try again once it is ACTIVE)")


__all__ = [
    "TTL_ATTRIBUTE", "PARTITION_KEY", "SORT_KEY", "CONNECTION_PREFIX", "TOPIC_PREFIX", "META_SK", "GONE_SK",
    "USER_PREFIX", "USER_COUNT_SK",
    "BY_USER_ID_INDEX", "BY_USERNAME_INDEX", "BY_TOPIC_INDEX", "INDEX_PROJECTION",
    "BY_TOKEN_EXPIRY_INDEX", "EXPIRY_SHARD_ATTRIBUTE", "TOKEN_EXP_ATTRIBUTE", "WARNED_EXP_ATTRIBUTE",
    "EXPIRY_SHARDS", "EXPIRY_PROJECTION", "expiry_shard", "expiry_shards",
    "table_definition", "ttl_specification", "cloudformation_properties", "create_table",
]
