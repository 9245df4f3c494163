"""Revoked users: tokens issued before a kick with ``revoke`` are refused until they expire.

An offline verifier cannot see a revocation (a Cognito token's signature stays
valid until ``exp``), and the authorizer stays free of boto3, so the check is
made where DynamoDB is already used: ``$connect``'s transaction carries a
condition on the user's revocation items (no extra round trip), and ``refresh``
and the REST routes read them. One item per user id and one per username
(a kick may name either); each expires by TTL once no older token can still be
valid (``MAX_TOKEN_LIFETIME_SECONDS`` after the kick).
"""
from __future__ import annotations

import time
from typing import Any, Callable

from .identity import Identity
from .schema import USER_PREFIX
from .table import Table
from .validation import check_id

REVOKED_SK = "REVOKED"
USERNAME_PREFIX = "USERNAME#"
REVOKED_AT = "revokedAt"
# Cognito's access and id tokens live at most a day: a revocation outlives every token it refuses.
MAX_TOKEN_LIFETIME_SECONDS = 86_400


def revocation_keys(identity: Identity) -> list[dict[str, Any]]:
    keys = [{"pk": {"S": USER_PREFIX + identity.sub}, "sk": {"S": REVOKED_SK}}]
    if identity.username:
        keys.append({"pk": {"S": USERNAME_PREFIX + identity.username}, "sk": {"S": REVOKED_SK}})
    return keys


class Revocations:
    def __init__(self, table: Table, clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self._clock = clock

    def revoke(self, user_id: str | None = None, username: str | None = None) -> int:
        """Refuse every token of the user issued up to now (by id or username); returns the revocation time."""
        now = int(self._clock())
        for prefix, name in ((USER_PREFIX, user_id), (USERNAME_PREFIX, username)):
            if name:
                check_id(name, "user")
                self.table.client.put_item(TableName=self.table.name, Item={
                    "pk": {"S": prefix + name}, "sk": {"S": REVOKED_SK}, REVOKED_AT: {"N": str(now)},
                    "ttl": {"N": str(now + MAX_TOKEN_LIFETIME_SECONDS)}})
        return now

    @staticmethod
    def connect_checks(identity: Identity) -> list[dict[str, Any]]:
        """Condition checks for ``$connect``'s transaction: no revocation at or after the token's ``iat``
        (a token without ``iat`` counts as issued at 0: refused by any revocation)."""
        issued = {":iat": {"N": str(int(identity.issued_at or 0))}}
        return [{"ConditionCheck": {"Key": key, "ConditionExpression": "attribute_not_exists(pk) OR #at < :iat",
                                    "ExpressionAttributeNames": {"#at": REVOKED_AT},
                                    "ExpressionAttributeValues": issued}}
                for key in revocation_keys(identity)]

    def is_revoked(self, identity: Identity) -> bool:
        """For ``refresh`` and the REST routes: one consistent read per key."""
        issued = int(identity.issued_at or 0)
        for key in revocation_keys(identity):
            item = self.table.get(key, REVOKED_AT)
            if item is not None and int(item[REVOKED_AT]["N"]) >= issued:
                return True
        return False


__all__ = ["MAX_TOKEN_LIFETIME_SECONDS", "Revocations"]
