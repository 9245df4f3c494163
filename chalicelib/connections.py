"""The connection store: one META item per open connection, and the expiry index over them.

A connection and its subscriptions share one partition key (``schema``), so
``delete`` finds everything to remove with one Query. Every id is validated
(``validation``) before DynamoDB is called.
"""
from __future__ import annotations

from typing import Any, Iterable

from .errors import AppError, ErrorCode
from .items import connection_item, connection_key, connection_record, expiring_connection
from .records import ConnectionRecord, ExpiringConnection
from .schema import (
    BY_TOKEN_EXPIRY_INDEX, CONNECTION_PREFIX, EXPIRY_SHARD_ATTRIBUTE, TOKEN_EXP_ATTRIBUTE, WARNED_EXP_ATTRIBUTE,
    expiry_shard, expiry_shards,
)
from .table import Table
from .validation import check_id


class ConnectionExists(AppError):
    """A connection item with this id is already stored (the conditional put failed)."""

    def __init__(self, connection_id: str) -> None:
        super().__init__(ErrorCode.BAD_REQUEST, "this connection id is already stored")
        self.connection_id = connection_id


class ConnectionNotFound(AppError):
    """The connection is not (or no longer) stored."""

    def __init__(self, connection_id: str) -> None:
        super().__init__(ErrorCode.NOT_CONNECTED, "this connection is not registered")
        self.connection_id = connection_id


class ConnectionStore:
    def __init__(self, table: Table) -> None:
        self.table = table

    def put(self, record: ConnectionRecord) -> None:
        """Store a new connection; ConnectionExists if its id is stored already."""
        check_id(record.connection_id, "connection_id")
        check_id(record.user_id, "user_id")
        if record.username:
            check_id(record.username, "username")
        if not self.table.write_if("put_item", Item=connection_item(record),
                                   ConditionExpression="attribute_not_exists(pk)"):
            raise ConnectionExists(record.connection_id)

    def get(self, connection_id: str) -> ConnectionRecord | None:
        check_id(connection_id, "connection_id")
        item = self.table.get(connection_key(connection_id))
        return connection_record(item) if item else None

    def require(self, connection_id: str) -> ConnectionRecord:
        """The stored connection, or ``not_connected``."""
        record = self.get(connection_id)
        if record is None:
            raise ConnectionNotFound(connection_id)
        return record

    def exists(self, connection_id: str) -> bool:
        return self.table.get(connection_key(connection_id), "pk") is not None

    def delete(self, connection_id: str) -> int:
        """Delete the connection and all its subscriptions; 0 when nothing was stored."""
        check_id(connection_id, "connection_id")
        return self.table.batch_delete(self._partition_keys(connection_id))

    def delete_many(self, connection_ids: Iterable[str]) -> int:
        """Delete many connections (gone ones a broadcast found) with their subscriptions."""
        ids = list(connection_ids)
        for connection_id in ids:  # all of them first: nothing is deleted for a bad list
            check_id(connection_id, "connection_id")
        keys: list[dict[str, Any]] = []
        for connection_id in dict.fromkeys(ids):
            keys.extend(self._partition_keys(connection_id))
        return self.table.batch_delete(keys)

    def _partition_keys(self, connection_id: str) -> list[dict[str, Any]]:
        return [{"pk": item["pk"], "sk": item["sk"]} for item in self.table.query(
            KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": CONNECTION_PREFIX + connection_id}},
            ProjectionExpression="pk, sk", ConsistentRead=True)]

    # -- token expiry (the byTokenExpiry index) ------------------------------------

    def expiring_before(self, deadline: int) -> list[ExpiringConnection]:
        """Every connection whose token's ``exp`` is at or before ``deadline``: one Query per shard.

        The index is eventually consistent: a refresh written a moment ago may
        still show the old ``exp``; ``mark_warned`` and the sweep's re-check
        (``token_expiry``) read the item itself before acting.
        """
        found: list[ExpiringConnection] = []
        for shard in expiry_shards():
            found.extend(expiring_connection(item) for item in self.table.query(
                IndexName=BY_TOKEN_EXPIRY_INDEX,
                KeyConditionExpression="#shard = :shard AND #exp <= :deadline",
                ExpressionAttributeNames={"#shard": EXPIRY_SHARD_ATTRIBUTE, "#exp": TOKEN_EXP_ATTRIBUTE},
                ExpressionAttributeValues={":shard": {"S": shard}, ":deadline": {"N": str(int(deadline))}}))
        return found

    def token_expiry(self, connection_id: str) -> int | None:
        """The stored ``exp`` of the connection's token, read consistently; None if not stored."""
        check_id(connection_id, "connection_id")
        item = self.table.get(connection_key(connection_id), TOKEN_EXP_ATTRIBUTE)
        if item is None or TOKEN_EXP_ATTRIBUTE not in item:
            return None
        return int(item[TOKEN_EXP_ATTRIBUTE]["N"])

    def set_token_expiry(self, connection_id: str, token_exp: int) -> None:
        """Store a refreshed token's ``exp`` (also in the stored claims) and forget the warning given.

        Conditioned on the connection item existing, so a refresh racing its
        ``$disconnect`` cannot recreate a half item. Raises ConnectionNotFound.
        """
        check_id(connection_id, "connection_id")
        if not self.table.write_if(
                "update_item", Key=connection_key(connection_id),
                UpdateExpression="SET #exp = :exp, #shard = :shard, claims.#claim = :exp REMOVE #warned",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#exp": TOKEN_EXP_ATTRIBUTE, "#shard": EXPIRY_SHARD_ATTRIBUTE,
                                          "#claim": "exp", "#warned": WARNED_EXP_ATTRIBUTE},
                ExpressionAttributeValues={":exp": {"N": str(int(token_exp))},
                                           ":shard": {"S": expiry_shard(connection_id)}}):
            raise ConnectionNotFound(connection_id)

    def mark_warned(self, connection_id: str, token_exp: int) -> bool:
        """Record that the client was warned about ``token_exp``; False if it was already, or it changed.

        One conditional UpdateItem: the stored ``exp`` is still ``token_exp``
        (no refresh since the index was read) and no warning for it was
        recorded. Two sweeps running at once therefore warn once.
        """
        check_id(connection_id, "connection_id")
        return self.table.write_if(
            "update_item", Key=connection_key(connection_id),
            UpdateExpression="SET #warned = :exp",
            ConditionExpression="#exp = :exp AND (attribute_not_exists(#warned) OR #warned <> :exp)",
            ExpressionAttributeNames={"#exp": TOKEN_EXP_ATTRIBUTE, "#warned": WARNED_EXP_ATTRIBUTE},
            ExpressionAttributeValues={":exp": {"N": str(int(token_exp))}})


__all__ = ["ConnectionExists", "ConnectionNotFound", "ConnectionStore"]
