"""The connection store: one META item per open connection, stored and removed (the expiry index: ``expiries``).

A connection and its subscriptions share one partition key (``schema``).
``put`` and ``delete`` are transactions, so no race leaves an item behind:

- ``put`` stores the META item, counts it on the user's count item (under
  ``MAX_CONNECTIONS_PER_USER``) and checks that no ``$disconnect`` ran for the
  id yet (its tombstone), all or nothing;
- ``delete`` removes the META item first, with the count and the tombstone in
  the same transaction, and only then queries the subscriptions left: a
  ``subscribe`` is itself a transaction conditioned on the META item, so it
  either committed before (and its item is found) or fails.

Every id is validated (``validation``) before DynamoDB is called.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from .errors import AppError, ErrorCode
from .items import connection_item, connection_key, connection_record, tombstone_key, user_count_key
from .records import ConnectionRecord
from .schema import CONNECTION_PREFIX, TOPIC_PREFIX
from .table import CONDITION_FAILED, Table
from .tombstones import TOMBSTONE_OWNER
from .validation import check_id

# How long a tombstone is kept: far longer than a $connect can take.
TOMBSTONE_SECONDS = 600
MAX_REMOVE_TURNS = 4  # reads and conditional writes before a delete gives up (unavailable)
USER_COUNT = "connections"


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


class TooManyConnections(AppError):
    """The user already holds ``MAX_CONNECTIONS_PER_USER`` connections; nothing was written."""

    def __init__(self, user_id: str, limit: int) -> None:
        super().__init__(ErrorCode.TOO_MANY_CONNECTIONS, f"a user may hold at most {limit} connections")
        self.user_id = user_id
        self.limit = limit


class TokenRevoked(AppError):
    """The user was kicked with ``revoke`` after this token was issued; nothing was written."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.FORBIDDEN, "this token was revoked; sign in again")


class ConnectionGone(AppError):
    """The connection's ``$disconnect`` already ran: it cannot be stored any more."""

    def __init__(self, connection_id: str) -> None:
        super().__init__(ErrorCode.NOT_CONNECTED, "this connection was already closed")
        self.connection_id = connection_id


Left = Callable[[str, str, list[str]], object]  # (user id, connection id, the topics it held)


class ConnectionStore:
    def __init__(self, table: Table, clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self._clock = clock
        self.on_left: Left | None = None  # presence: told of every removed connection's topics (components)

    def put(self, record: ConnectionRecord, max_per_user: int = 0,
            checks: list[dict[str, Any]] | None = None) -> None:
        """Store a new connection, counted on its user; all or nothing (one transaction).

        Raises ConnectionExists (the id is stored), ConnectionGone (its
        ``$disconnect`` ran first), TooManyConnections (``max_per_user`` > 0
        and the user holds that many already) or TokenRevoked (one of ``checks``,
        the revocation conditions, failed).
        """
        check_id(record.connection_id, "connection_id")
        check_id(record.user_id, "user_id")
        if record.username:
            check_id(record.username, "username")
        count: dict[str, Any] = {
            "Key": user_count_key(record.user_id), "UpdateExpression": "ADD #n :one SET #ttl = :ttl",
            "ExpressionAttributeNames": {"#n": USER_COUNT, "#ttl": "ttl"},
            "ExpressionAttributeValues": {":one": {"N": "1"}, ":ttl": {"N": str(int(record.ttl))}}}
        if max_per_user > 0:
            count["ConditionExpression"] = "attribute_not_exists(#n) OR #n < :max"
            count["ExpressionAttributeValues"][":max"] = {"N": str(max_per_user)}
        codes = self.table.transact([
            {"Put": {"Item": connection_item(record), "ConditionExpression": "attribute_not_exists(pk)"}},
            {"ConditionCheck": {"Key": tombstone_key(record.connection_id),
                                "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Update": count},
            *(checks or []),
        ])
        if codes is None:
            return
        if CONDITION_FAILED in codes[3:]:
            raise TokenRevoked()
        if codes[0] == CONDITION_FAILED:
            raise ConnectionExists(record.connection_id)
        if codes[1] == CONDITION_FAILED:
            raise ConnectionGone(record.connection_id)
        if codes[2] == CONDITION_FAILED:
            raise TooManyConnections(record.user_id, max_per_user)
        raise AppError(ErrorCode.UNAVAILABLE, "the connection conflicted with another write; try again")

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

    def delete(self, connection_id: str) -> int:
        """Remove the connection, its count and its subscriptions; leave its tombstone. Safe to run twice.

        Returns how many items were removed (0 when nothing was stored).
        """
        check_id(connection_id, "connection_id")
        user_id = self._remove_meta(connection_id)
        removed = 1 if user_id else 0
        keys = [{"pk": item["pk"], "sk": item["sk"]} for item in self.table.query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :topic)",
            ExpressionAttributeValues={":pk": {"S": CONNECTION_PREFIX + connection_id}, ":topic": {"S": TOPIC_PREFIX}},
            ProjectionExpression="pk, sk", ConsistentRead=True)]
        if removed and keys:  # what a resume moves to the user's next connection (``resumes.py``)
            topics = [key["sk"]["S"][len(TOPIC_PREFIX):] for key in keys]
            self.table.write_if("update_item", Key=tombstone_key(connection_id), UpdateExpression="SET #t = :t",
                                ConditionExpression="attribute_exists(pk)", ExpressionAttributeNames={"#t": "topics"},
                                ExpressionAttributeValues={":t": {"L": [{"S": t} for t in topics]}})
        deleted = self.table.batch_delete(keys)
        if user_id and keys and self.on_left is not None:
            self.on_left(user_id, connection_id, [key["sk"]["S"][len(TOPIC_PREFIX):] for key in keys])
        return removed + deleted

    def delete_many(self, connection_ids: Iterable[str]) -> int:
        """``delete`` each connection (gone ones a broadcast found, expired ones the sweep closed)."""
        ids = list(connection_ids)
        for connection_id in ids:  # all of them first: nothing is deleted for a bad list
            check_id(connection_id, "connection_id")
        return sum(self.delete(connection_id) for connection_id in dict.fromkeys(ids))

    def user_connections(self, user_id: str) -> int:
        """How many connections the user's count item holds (``MAX_CONNECTIONS_PER_USER``)."""
        check_id(user_id, "user_id")
        item = self.table.get(user_count_key(user_id), USER_COUNT)
        return int(item[USER_COUNT]["N"]) if item and USER_COUNT in item else 0

    def _remove_meta(self, connection_id: str) -> str | None:
        """Delete the META item with its count and write the tombstone, in one transaction: the connection's
        user id; None if no META item was stored (then the tombstone alone, conditioned on the META item still being absent,
        so a ``$connect`` committing at the same moment is seen and removed on the next turn)."""
        expires = {"ttl": {"N": str(int(self._clock()) + TOMBSTONE_SECONDS)}}
        # Without a META item: a tombstone only where none is (a second run keeps the first's user and topics).
        tombstone = {"Put": {"Item": {**tombstone_key(connection_id), **expires},
                             "ConditionExpression": "attribute_not_exists(pk)"}}
        absent = {"ConditionCheck": {"Key": connection_key(connection_id),
                                     "ConditionExpression": "attribute_not_exists(pk)"}}
        delete = {"Delete": {"Key": connection_key(connection_id), "ConditionExpression": "attribute_exists(pk)"}}
        for _ in range(MAX_REMOVE_TURNS):
            meta = self.table.get(connection_key(connection_id), "userId")
            if meta is None:
                codes = self.table.transact([tombstone, absent])
                if codes is None:
                    return None
                if codes[1] == CONDITION_FAILED:
                    continue  # a $connect committed between the read and this write
                if codes[0] == CONDITION_FAILED:
                    return None  # the tombstone of an earlier run is there: nothing to do
                break
            tombstone = {"Put": {"Item": {**tombstone_key(connection_id), **expires, TOMBSTONE_OWNER: meta["userId"]}}}
            uncount = {"Update": {"Key": user_count_key(meta["userId"]["S"]), "UpdateExpression": "ADD #n :minus",
                                  "ConditionExpression": "#n > :zero", "ExpressionAttributeNames": {"#n": USER_COUNT},
                                  "ExpressionAttributeValues": {":minus": {"N": "-1"}, ":zero": {"N": "0"}}}}
            codes = self.table.transact([delete, uncount, tombstone])
            if codes is None:
                return str(meta["userId"]["S"])
            if codes[0] == CONDITION_FAILED:
                continue  # a concurrent delete removed it first
            if codes[1] == CONDITION_FAILED:  # not counted (stored before the count existed): remove it alone
                codes = self.table.transact([delete, tombstone])
                if codes is None:
                    return str(meta["userId"]["S"])
                continue
            break
        raise AppError(ErrorCode.UNAVAILABLE, "the disconnect conflicted with other writes; try again")

__all__ = ["ConnectionExists", "ConnectionGone", "ConnectionNotFound", "ConnectionStore", "TooManyConnections"]
