"""A closed connection's tombstone, read for ``resume`` (``resumes.py``).

``ConnectionStore.delete`` writes it (with the connection's user, ``owner``) and
then the topics the connection held; it lives ``TOMBSTONE_SECONDS``. Here the
resume takes the topics from it once, and tells why when it cannot.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from .faults import error_code
from .items import tombstone_key
from .validation import check_id

if TYPE_CHECKING:
    from .table import Table

# The closed connection's user on its tombstone: not "userId", which the byUserId index keys on.
TOMBSTONE_OWNER = "owner"


class Tombstones:
    def __init__(self, table: Table, clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self._clock = clock

    def claim_resume(self, connection_id: str, user_id: str, by: str) -> list[str] | None:
        """The topics a closed connection of ``user_id`` held, taken once (``by`` the resuming connection) from
        its tombstone; None when there is no live, unclaimed tombstone of that user's connection (never
        connected, still open, another user's, expired, or already resumed). One conditional UpdateItem: two
        resumes cannot both take them."""
        check_id(connection_id, "connection_id")
        try:
            answer = self.table.client.update_item(
                TableName=self.table.name, Key=tombstone_key(connection_id),
                UpdateExpression="SET #by = :by REMOVE #t",
                ConditionExpression="#u = :user AND #ttl > :now AND attribute_not_exists(#by)",
                ExpressionAttributeNames={"#t": "topics", "#u": TOMBSTONE_OWNER, "#ttl": "ttl", "#by": "resumedBy"},
                ExpressionAttributeValues={":user": {"S": user_id}, ":now": {"N": str(int(self._clock()))},
                                           ":by": {"S": by}},
                ReturnValues="ALL_OLD")
        except Exception as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return None
            raise
        return [str(topic["S"]) for topic in answer["Attributes"].get("topics", {}).get("L", [])]

    def closed_by(self, connection_id: str) -> str | None:
        """A live tombstone's user ("" when it has none); None when there is none (or it expired)."""
        check_id(connection_id, "connection_id")
        item = self.table.get(tombstone_key(connection_id), f"{TOMBSTONE_OWNER}, ttl")
        if item is None or int(item.get("ttl", {}).get("N", "0")) <= int(self._clock()):
            return None  # an expired one waits for DynamoDB's TTL: as good as gone
        return str(item.get(TOMBSTONE_OWNER, {}).get("S", ""))


__all__ = ["TOMBSTONE_OWNER", "Tombstones"]
