"""Records as DynamoDB items and back, through boto3's ``TypeSerializer``/``TypeDeserializer``.

The layout is in ``schema``. Two adaptations around boto3's (de)serializers:
DynamoDB numbers are ``Decimal`` on both sides, so a float claim goes in as the
``Decimal`` of its repr and comes back as an int when it is whole, else a float;
and DynamoDB has no NaN or infinity, so such a claim is kept as text. Imported
only by the stores: the authorizer's path never loads boto3.
"""
from __future__ import annotations

import dataclasses
import math
from decimal import Decimal
from typing import Any, Mapping

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from .identity import Identity
from .records import ConnectionRecord, Endpoint, ExpiringConnection
from .schema import (
    CONNECTION_PREFIX, EXPIRY_SHARD_ATTRIBUTE, GONE_SK, META_SK, TOKEN_EXP_ATTRIBUTE, TOPIC_PREFIX, USER_COUNT_SK,
    USER_PREFIX, WARNED_EXP_ATTRIBUTE, expiry_shard,
)

Item = dict[str, Any]  # a low-level typed item: {"name": {"S": ...}, ...}

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _storable(value: object) -> object:
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k: _storable(v) for k, v in value.items()}
    return value


def _plain(value: object) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def serialize(values: Mapping[str, object]) -> Item:
    """Plain Python values -> a typed item."""
    return {name: _serializer.serialize(_storable(value)) for name, value in values.items()}


def deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    """A typed item -> plain Python values (numbers as int or float)."""
    return {name: _plain(_deserializer.deserialize(value)) for name, value in item.items()}


def connection_key(connection_id: str) -> Item:
    return {"pk": {"S": CONNECTION_PREFIX + connection_id}, "sk": {"S": META_SK}}


def tombstone_key(connection_id: str) -> Item:
    return {"pk": {"S": CONNECTION_PREFIX + connection_id}, "sk": {"S": GONE_SK}}


def user_count_key(user_id: str) -> Item:
    return {"pk": {"S": USER_PREFIX + user_id}, "sk": {"S": USER_COUNT_SK}}


def subscription_key(connection_id: str, topic: str) -> Item:
    return {"pk": {"S": CONNECTION_PREFIX + connection_id}, "sk": {"S": TOPIC_PREFIX + topic}}


def connection_id_of(item: Mapping[str, Any]) -> str:
    """The projected ``connectionId``, or the one inside ``pk`` (always projected)."""
    connection_id = (item.get("connectionId") or {}).get("S")
    if connection_id:
        return str(connection_id)
    return str((item.get("pk") or {}).get("S", ""))[len(CONNECTION_PREFIX):]


def connection_item(record: ConnectionRecord) -> Item:
    """The connection's META item. An empty ``username`` is left out: GSI keys cannot be ''."""
    identity = record.identity
    values: dict[str, object] = {
        "connectionId": record.connection_id, "userId": identity.sub, "claims": identity.flat_claims(),
        "connectedAt": int(record.connected_at), "sourceIp": record.source_ip, "userAgent": record.user_agent,
        "stage": record.endpoint.stage, "domain": record.endpoint.domain, "apiId": record.endpoint.api_id,
        "clientParams": dict(identity.client_params), "tokenSource": identity.source, "ttl": int(record.ttl),
    }
    if identity.username:
        values["username"] = identity.username
    if identity.expires_at is not None:
        values[EXPIRY_SHARD_ATTRIBUTE] = expiry_shard(record.connection_id)
        values[TOKEN_EXP_ATTRIBUTE] = int(identity.expires_at)
    return {**connection_key(record.connection_id), **serialize(values)}


# What ``stored_identity`` reads of a META item (a projection: the rest may be unreadable and not matter).
IDENTITY_ATTRIBUTES = ("userId", "claims", "tokenSource", "clientParams", TOKEN_EXP_ATTRIBUTE)


def stored_identity(item: Mapping[str, Any]) -> Identity:
    """The connection's identity as stored (a ``refresh`` updates its exp, groups and scopes)."""
    return _identity(deserialize(item))


def _identity(values: Mapping[str, Any]) -> Identity:
    context = {**(values.get("claims") or {}), "tokenSource": values.get("tokenSource", "")}
    if TOKEN_EXP_ATTRIBUTE in values:  # a refresh moves it; the stored claims follow, but this is the truth
        context["exp"] = values[TOKEN_EXP_ATTRIBUTE]
    else:
        context.pop("exp", None)
    identity = Identity.from_context(context, principal=str(values.get("userId", ""))) or Identity(sub="")
    params = {str(k): str(v) for k, v in (values.get("clientParams") or {}).items()}
    return dataclasses.replace(identity, client_params=params)


def connection_record(item: Mapping[str, Any]) -> ConnectionRecord:
    values = deserialize(item)
    identity = _identity(values)  # one deserialization of the item
    return ConnectionRecord(
        connection_id=str(values.get("connectionId") or connection_id_of(item)), identity=identity,
        connected_at=int(values.get("connectedAt") or 0), ttl=int(values.get("ttl") or 0),
        endpoint=Endpoint(str(values.get("domain", "")), str(values.get("stage", "")), str(values.get("apiId", ""))),
        source_ip=str(values.get("sourceIp", "")), user_agent=str(values.get("userAgent", "")))


def expiring_connection(item: Mapping[str, Any]) -> ExpiringConnection:
    values = deserialize(item)
    warned = values.get(WARNED_EXP_ATTRIBUTE)
    return ExpiringConnection(
        connection_id=connection_id_of(item), token_exp=int(values.get(TOKEN_EXP_ATTRIBUTE) or 0),
        warned_exp=int(warned) if warned is not None else None,
        endpoint=Endpoint(str(values.get("domain", "")), str(values.get("stage", "")), str(values.get("apiId", ""))))
