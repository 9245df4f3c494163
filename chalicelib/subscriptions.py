"""The subscription store: one ``TOPIC#<topic>`` item per subscription, under its connection's partition.

The connection's META item counts its subscriptions (``subscriptions``), kept
by the same transactions that write them, so a limit holds under concurrent
Lambdas and a refused subscribe writes nothing.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .connections import ConnectionNotFound
from .errors import AppError, ErrorCode
from .items import IDENTITY_ATTRIBUTES, connection_key, stored_identity, subscription_key
from .schema import CONNECTION_PREFIX, TOPIC_PREFIX
from .table import CONDITION_FAILED, Table
from .validation import check_id, check_topic

if TYPE_CHECKING:
    from .identity import Identity

SUBSCRIPTION_COUNT = "subscriptions"


class SubscriptionLimitReached(AppError):
    """The connection already holds as many subscriptions as allowed; nothing was written."""

    def __init__(self, connection_id: str, limit: int) -> None:
        super().__init__(ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                         f"a connection may hold at most {limit} subscriptions; unsubscribe first")
        self.connection_id = connection_id
        self.limit = limit


class SubscriptionStore:
    def __init__(self, table: Table) -> None:
        self.table = table

    def subscribe(self, connection_id: str, topic: str, max_subscriptions: int | None = None,
                  authorize: Callable[[Identity], object] | None = None) -> bool:
        """Store the subscription only while the connection exists and is under its limit (one transaction).

        An Update of the connection's META item counts it (conditioned on the
        item existing and, with ``max_subscriptions``, on the count being under
        it) and a Put of the subscription is conditioned on it not being stored
        yet. Subscribing twice is idempotent. The item copies the connection's
        ``ttl`` so TTL removes both together. ``authorize`` sees the connection's stored identity (read with
        its ``ttl`` anyway: no extra call) and raises to refuse, before anything is written. Raises ConnectionNotFound or
        SubscriptionLimitReached. True when a subscription was stored, False when it already was.
        """
        check_id(connection_id, "connection_id")
        check_topic(topic)
        if max_subscriptions is not None and (type(max_subscriptions) is not int or max_subscriptions < 1):
            raise ValueError("max_subscriptions must be a positive integer or None")
        meta = self.table.get(connection_key(connection_id), ", ".join(("ttl", *IDENTITY_ATTRIBUTES)))
        if meta is None:
            raise ConnectionNotFound(connection_id)
        if authorize is not None:
            authorize(stored_identity(meta))
        item: dict[str, Any] = {**subscription_key(connection_id, topic), "topic": {"S": topic},
                                "connectionId": {"S": connection_id}}
        if "ttl" in meta:
            item["ttl"] = meta["ttl"]
        condition = "attribute_exists(pk)"
        values: dict[str, Any] = {":one": {"N": "1"}}
        if max_subscriptions is not None:
            condition += " AND (attribute_not_exists(#subs) OR #subs < :max)"
            values[":max"] = {"N": str(max_subscriptions)}
        codes = self.table.transact([
            {"Update": {"Key": connection_key(connection_id), "UpdateExpression": "ADD #subs :one",
                        "ConditionExpression": condition, "ExpressionAttributeNames": {"#subs": SUBSCRIPTION_COUNT},
                        "ExpressionAttributeValues": values}},
            {"Put": {"Item": item, "ConditionExpression": "attribute_not_exists(pk)"}},
        ])
        if codes is None:
            return True
        counted, stored = codes[0] != CONDITION_FAILED, codes[1] != CONDITION_FAILED
        if counted and stored:  # cancelled for another reason (a conflicting transaction)
            raise AppError(ErrorCode.UNAVAILABLE, "the subscription conflicted with another write; try again")
        if not counted and not self.table.get(connection_key(connection_id), "pk"):
            raise ConnectionNotFound(connection_id)
        if not stored:
            return False  # already subscribed (at the limit or not): nothing to change
        if max_subscriptions is None:  # the META item vanished and came back: treat as gone
            raise ConnectionNotFound(connection_id)
        raise SubscriptionLimitReached(connection_id, max_subscriptions)

    def unsubscribe(self, connection_id: str, topic: str) -> bool:
        """Remove the subscription; whether there was one.

        The delete and the count's decrement are one transaction, each
        conditioned (the subscription exists; the count is positive), so the
        count never drifts nor goes below zero. When only the count's side
        fails (its subscriptions predate the count) the subscription is deleted
        on its own.
        """
        check_id(connection_id, "connection_id")
        check_topic(topic)
        key = subscription_key(connection_id, topic)
        codes = self.table.transact([
            {"Delete": {"Key": key, "ConditionExpression": "attribute_exists(pk)"}},
            {"Update": {"Key": connection_key(connection_id), "UpdateExpression": "ADD #subs :minus_one",
                        "ConditionExpression": "#subs > :zero", "ExpressionAttributeNames": {"#subs": SUBSCRIPTION_COUNT},
                        "ExpressionAttributeValues": {":minus_one": {"N": "-1"}, ":zero": {"N": "0"}}}},
        ])
        if codes is None:
            return True
        if codes[0] == CONDITION_FAILED:
            return False  # was not subscribed
        if codes[1] != CONDITION_FAILED:
            raise AppError(ErrorCode.UNAVAILABLE, "the unsubscription conflicted with another write; try again")
        response = self.table.client.delete_item(TableName=self.table.name, Key=key, ReturnValues="ALL_OLD")
        return bool(response.get("Attributes"))

    def topics_for(self, connection_id: str) -> list[str]:
        check_id(connection_id, "connection_id")
        return [str(item["topic"]["S"]) for item in self.table.query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :topic)",
            ExpressionAttributeValues={":pk": {"S": CONNECTION_PREFIX + connection_id}, ":topic": {"S": TOPIC_PREFIX}},
            ProjectionExpression="topic", ConsistentRead=True)]


__all__ = ["SubscriptionLimitReached", "SubscriptionStore", "SUBSCRIPTION_COUNT"]
