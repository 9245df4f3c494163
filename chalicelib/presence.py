"""Presence: who is in a topic now, for topics whose rule says ``presence: true``.

A member is a user, not a connection: one item per user and topic counts the
user's connections subscribed to it, and one item per topic counts its members
(under ``MAX_PRESENCE_MEMBERS``). Every change is atomic in DynamoDB: a new
member is one transaction (the member item, conditioned on not existing, and
the topic's count, conditioned on room), another connection of a member one
``ADD``, and the last connection's leave a transaction that deletes the member
item only while its count is still zero. So concurrent joins and leaves of one
user's connections never leave a wrong list; ``join``/``leave`` say when the
user became or stopped being a member, which is when ``member_added`` and
``member_removed`` go out.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import AppError, ErrorCode
from .table import CONDITION_FAILED

if TYPE_CHECKING:
    from .identity import Identity
    from .table import Table

PRESENCE_PREFIX = "PRES#"
MEMBER_PREFIX = "M#"
COUNT_SK = "COUNT"


def _key(topic: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": PRESENCE_PREFIX + topic}, "sk": {"S": sk}}


def member_view(identity: Identity) -> dict[str, str]:
    """What other subscribers see of a member: the user id and name (no other claim)."""
    return {"userId": identity.sub, "username": identity.username}


class PresenceFull(AppError):
    def __init__(self, topic: str, limit: int) -> None:
        super().__init__(ErrorCode.PRESENCE_FULL, f"{topic!r} has {limit} members already")


class PresenceStore:
    def __init__(self, table: Table) -> None:
        self.table = table

    def join(self, topic: str, identity: Identity, max_members: int) -> bool:
        """Count one more connection of the user in ``topic``; True when the user just became a member.
        PresenceFull (nothing changed) when a new member would make ``max_members`` + 1."""
        member = {"M": {key: {"S": value} for key, value in member_view(identity).items()}}
        codes = self.table.transact([
            {"Put": {"Item": {**_key(topic, MEMBER_PREFIX + identity.sub), "n": {"N": "1"}, "member": member},
                     "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Update": {"Key": _key(topic, COUNT_SK), "UpdateExpression": "ADD #m :one",
                        "ConditionExpression": "attribute_not_exists(#m) OR #m < :max",
                        "ExpressionAttributeNames": {"#m": "members"},
                        "ExpressionAttributeValues": {":one": {"N": "1"}, ":max": {"N": str(max_members)}}}},
        ])
        if codes is None:
            return True
        if codes[0] == CONDITION_FAILED:  # a member already (another tab): one more connection
            if self.table.write_if("update_item", Key=_key(topic, MEMBER_PREFIX + identity.sub),
                                   UpdateExpression="ADD #n :one", ConditionExpression="attribute_exists(pk)",
                                   ExpressionAttributeNames={"#n": "n"},
                                   ExpressionAttributeValues={":one": {"N": "1"}}):
                return False
            return self.join(topic, identity, max_members)  # its last connection left meanwhile: join anew
        if codes[1] == CONDITION_FAILED:
            raise PresenceFull(topic, max_members)
        raise AppError(ErrorCode.UNAVAILABLE, "joining conflicted with another write; try again")

    def leave(self, topic: str, user_id: str) -> dict[str, str] | None:
        """Count one connection less; the member as others saw them when it was the user's last connection
        (the member item is gone), else None."""
        try:
            answer = self.table.client.update_item(
                TableName=self.table.name, Key=_key(topic, MEMBER_PREFIX + user_id), UpdateExpression="ADD #n :minus",
                ConditionExpression="#n > :zero", ExpressionAttributeNames={"#n": "n"},
                ExpressionAttributeValues={":minus": {"N": "-1"}, ":zero": {"N": "0"}}, ReturnValues="ALL_NEW")
        except Exception as error:
            from .faults import error_code

            if error_code(error) == "ConditionalCheckFailedException":
                return None  # not a member (already left)
            raise
        if int(answer["Attributes"]["n"]["N"]) > 0:
            return None
        codes = self.table.transact([
            {"Delete": {"Key": _key(topic, MEMBER_PREFIX + user_id), "ConditionExpression": "#n = :zero",
                        "ExpressionAttributeNames": {"#n": "n"}, "ExpressionAttributeValues": {":zero": {"N": "0"}}}},
            {"Update": {"Key": _key(topic, COUNT_SK), "UpdateExpression": "ADD #m :minus",
                        "ExpressionAttributeNames": {"#m": "members"},
                        "ExpressionAttributeValues": {":minus": {"N": "-1"}}}},
        ])
        if codes is not None:
            return None  # cancelled: a join of the same user came in between, still a member
        return {key: value["S"] for key, value in answer["Attributes"]["member"]["M"].items()}

    def members(self, topic: str, limit: int) -> list[dict[str, str]]:
        """The topic's members (at most ``limit``), as others see them."""
        found: list[dict[str, str]] = []
        for item in self.table.query(
                KeyConditionExpression="pk = :pk AND begins_with(sk, :member)",
                ExpressionAttributeValues={":pk": {"S": PRESENCE_PREFIX + topic}, ":member": {"S": MEMBER_PREFIX}},
                ConsistentRead=True):
            found.append({key: value["S"] for key, value in item["member"]["M"].items()})
            if len(found) >= limit:
                break
        return found


__all__ = ["PresenceFull", "PresenceStore", "member_view"]
