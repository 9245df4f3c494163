"""Connections and topic subscriptions in the one DynamoDB table (see schema.py).

Uses the low-level DynamoDB client: it skips the resource API's type
(de)serialisation layer, which is measurable on the hot paths ($connect,
fan-out). The client is injected, or created lazily on first use so importing
this module never imports boto3.

Every lookup is a GetItem or a Query (on the table or a sparse GSI); the only
Scan is ``iter_connection_ids``, the broadcast-to-everyone path.
"""
from __future__ import annotations

import logging
import math
import queue
import random
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Mapping

from .faults import error_code
from .schema import (
    BY_TOKEN_EXPIRY_INDEX, BY_TOPIC_INDEX, BY_USER_ID_INDEX, BY_USERNAME_INDEX, CONNECTION_PREFIX,
    EXPIRY_SHARD_ATTRIBUTE, META_SK, TOKEN_EXP_ATTRIBUTE, TOPIC_PREFIX, WARNED_EXP_ATTRIBUTE, expiry_shard,
    expiry_shards,
)
from .validation import MAX_ID_LENGTH, MAX_TOPIC_LENGTH, check_id, check_topic

logger = logging.getLogger("ws.repository")

ClaimValue = str | int | float | bool

BATCH_WRITE_LIMIT = 25  # BatchWriteItem's per-call maximum
MAX_BATCH_ATTEMPTS = 8
# On the connection's META item: how many subscriptions it holds, kept by the
# same transactions that write them, so a limit holds under concurrent Lambdas.
SUBSCRIPTION_COUNT = "subscriptions"


class ConnectionExists(Exception):
    """A connection item with this id is already stored (the conditional put failed)."""

    def __init__(self, connection_id: str) -> None:
        super().__init__(f"connection {connection_id!r} is already stored")
        self.connection_id = connection_id


class ConnectionNotFound(Exception):
    """The connection is not (or no longer) stored."""

    def __init__(self, connection_id: str) -> None:
        super().__init__(f"connection {connection_id!r} is not stored (never connected, or disconnected)")
        self.connection_id = connection_id


class SubscriptionLimitReached(Exception):
    """The connection already holds as many subscriptions as allowed; nothing was written."""

    def __init__(self, connection_id: str, limit: int) -> None:
        super().__init__(f"connection {connection_id!r} already holds {limit} subscriptions")
        self.connection_id = connection_id
        self.limit = limit


# -- validation ---------------------------------------------------------------------

# Both raise validation.TextRefused (a ValueError) before any DynamoDB call.
validate_topic = check_topic  # 1-MAX_TOPIC_LENGTH characters of safe text
_validate_id = check_id  # connection ids, subs, usernames: 1-MAX_ID_LENGTH characters of safe text


# -- typed attribute values ---------------------------------------------------------

def _number_to_ddb(value: int | float) -> str:
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return str(Decimal(repr(value)))
    return str(value)


def _number_from_ddb(text: str) -> int | float:
    number = Decimal(text)
    if number == number.to_integral_value():
        return int(number)
    return float(number)


def _claim_to_ddb(value: ClaimValue) -> dict[str, Any]:
    if isinstance(value, bool):  # before int: bool is an int subclass
        return {"BOOL": value}
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return {"N": _number_to_ddb(value)}
    # DynamoDB has no NaN/Infinity; anything else a claim could hold is kept as text.
    return {"S": str(value)}


def _claim_from_ddb(value: Mapping[str, Any]) -> ClaimValue:
    if "BOOL" in value:
        return bool(value["BOOL"])
    if "N" in value:
        return _number_from_ddb(value["N"])
    if "S" in value:
        return value["S"]
    raise ValueError(f"unsupported claim attribute value: {sorted(value)}")


def _s(item: Mapping[str, Any], name: str) -> str:
    return str((item.get(name) or {}).get("S", ""))


def _n(item: Mapping[str, Any], name: str) -> int:
    raw = (item.get(name) or {}).get("N")
    return int(_number_from_ddb(raw)) if raw is not None else 0


def connection_key(connection_id: str) -> dict[str, Any]:
    return {"pk": {"S": CONNECTION_PREFIX + connection_id}, "sk": {"S": META_SK}}


def subscription_key(connection_id: str, topic: str) -> dict[str, Any]:
    return {"pk": {"S": CONNECTION_PREFIX + connection_id}, "sk": {"S": TOPIC_PREFIX + topic}}


def _connection_id_of(item: Mapping[str, Any]) -> str:
    """The projected ``connectionId``, or the one inside ``pk`` (always projected)."""
    connection_id = _s(item, "connectionId")
    if connection_id:
        return connection_id
    return _s(item, "pk")[len(CONNECTION_PREFIX):]


@dataclass(frozen=True)
class ConnectionRecord:
    connection_id: str
    user_id: str
    username: str
    claims: dict[str, ClaimValue]
    connected_at: int
    source_ip: str
    user_agent: str
    stage: str
    domain: str
    client_params: dict[str, str]
    token_source: str
    ttl: int
    api_id: str = ""
    # The token's ``exp`` (epoch seconds): puts the item in the expiry index. None: never swept.
    token_exp: int | None = None

    def to_item(self) -> dict[str, Any]:
        """The low-level typed item. An empty ``username`` is left out: GSI keys cannot be ''."""
        item: dict[str, Any] = {
            **connection_key(self.connection_id),
            "connectionId": {"S": self.connection_id},
            "userId": {"S": self.user_id},
            "claims": {"M": {k: _claim_to_ddb(v) for k, v in self.claims.items()}},
            "connectedAt": {"N": str(int(self.connected_at))},
            "sourceIp": {"S": self.source_ip},
            "userAgent": {"S": self.user_agent},
            "stage": {"S": self.stage},
            "domain": {"S": self.domain},
            "apiId": {"S": self.api_id},
            "clientParams": {"M": {k: {"S": str(v)} for k, v in self.client_params.items()}},
            "tokenSource": {"S": self.token_source},
            "ttl": {"N": str(int(self.ttl))},
        }
        if self.username:
            item["username"] = {"S": self.username}
        if self.token_exp is not None:
            item[EXPIRY_SHARD_ATTRIBUTE] = {"S": expiry_shard(self.connection_id)}
            item[TOKEN_EXP_ATTRIBUTE] = {"N": str(int(self.token_exp))}
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ConnectionRecord:
        claims = {k: _claim_from_ddb(v) for k, v in ((item.get("claims") or {}).get("M") or {}).items()}
        params = {k: str(v.get("S", "")) for k, v in ((item.get("clientParams") or {}).get("M") or {}).items()}
        return cls(
            connection_id=_s(item, "connectionId") or _connection_id_of(item),
            user_id=_s(item, "userId"),
            username=_s(item, "username"),
            claims=claims,
            connected_at=_n(item, "connectedAt"),
            source_ip=_s(item, "sourceIp"),
            user_agent=_s(item, "userAgent"),
            stage=_s(item, "stage"),
            domain=_s(item, "domain"),
            client_params=params,
            token_source=_s(item, "tokenSource"),
            ttl=_n(item, "ttl"),
            api_id=_s(item, "apiId"),
            token_exp=_n(item, TOKEN_EXP_ATTRIBUTE) if TOKEN_EXP_ATTRIBUTE in item else None,
        )

    def identity(self) -> dict[str, Any]:
        """What the ``whoami`` action shows the client about its own connection."""
        return {
            "connectionId": self.connection_id,
            "userId": self.user_id,
            "username": self.username,
            "claims": dict(self.claims),
            "connectedAt": self.connected_at,
            "sourceIp": self.source_ip,
            "userAgent": self.user_agent,
            "clientParams": dict(self.client_params),
            "tokenSource": self.token_source,
        }


@dataclass(frozen=True)
class ExpiringConnection:
    """One entry of the expiry index: what the sweep needs to warn or close a connection."""

    connection_id: str
    token_exp: int
    warned_exp: int | None  # the ``exp`` the client was already warned about
    domain: str
    stage: str
    api_id: str

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ExpiringConnection:
        return cls(connection_id=_connection_id_of(item), token_exp=_n(item, TOKEN_EXP_ATTRIBUTE),
                   warned_exp=_n(item, WARNED_EXP_ATTRIBUTE) if WARNED_EXP_ATTRIBUTE in item else None,
                   domain=_s(item, "domain"), stage=_s(item, "stage"), api_id=_s(item, "apiId"))


_CONDITION_FAILED = "ConditionalCheckFailed"


def _cancellation_codes(error: BaseException) -> list[str] | None:
    """Per-item reason codes of a cancelled two-item transaction (``"None"`` for an item that passed);
    None when ``error`` is not a TransactionCanceledException."""
    if error_code(error) != "TransactionCanceledException":
        return None
    reasons = (getattr(error, "response", None) or {}).get("CancellationReasons") or []
    codes = [str((reason or {}).get("Code") or "None") for reason in reasons]
    return (codes + ["None", "None"])[:2]


class ConnectionRepository:
    def __init__(self, table_name: str, client: Any | None = None,
                 sleep: Callable[[float], None] = time.sleep, query_page_size: int | None = None) -> None:
        """``query_page_size``: items per Query request (the paginator's ``PageSize``, DynamoDB's
        ``Limit``); None lets DynamoDB fill its 1 MB pages."""
        if not isinstance(table_name, str) or not table_name:
            raise ValueError("table_name must be a non-empty string")
        if query_page_size is not None and (not isinstance(query_page_size, int) or query_page_size < 1):
            raise ValueError("query_page_size must be a positive integer or None")
        self.table_name = table_name
        self._query_pages = {"PageSize": query_page_size} if query_page_size else {}
        self._client_obj = client
        self._client_lock = threading.Lock()
        self._sleep = sleep

    @property
    def client(self) -> Any:
        if self._client_obj is None:
            with self._client_lock:
                if self._client_obj is None:
                    from .aws import dynamodb_client

                    self._client_obj = dynamodb_client()
        return self._client_obj

    def _write_if(self, operation: str, **request: Any) -> bool:
        """One conditional ``put_item``/``update_item`` on the table; False when its condition failed."""
        try:
            getattr(self.client, operation)(TableName=self.table_name, **request)
        except Exception as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # -- connections ---------------------------------------------------------------

    def put_connection(self, record: ConnectionRecord) -> None:
        _validate_id(record.connection_id, "connection_id")
        _validate_id(record.user_id, "user_id")
        if record.username:
            _validate_id(record.username, "username")
        if not self._write_if("put_item", Item=record.to_item(), ConditionExpression="attribute_not_exists(pk)"):
            raise ConnectionExists(record.connection_id)

    def get_connection(self, connection_id: str) -> ConnectionRecord | None:
        _validate_id(connection_id, "connection_id")
        item = self.client.get_item(TableName=self.table_name, Key=connection_key(connection_id),
                                    ConsistentRead=True).get("Item")
        return ConnectionRecord.from_item(item) if item else None

    def delete_connection(self, connection_id: str) -> int:
        """Delete the connection and all its subscriptions; 0 when nothing was stored."""
        _validate_id(connection_id, "connection_id")
        return self._batch_delete(self._partition_keys(connection_id))

    def delete_connections(self, connection_ids: Iterable[str]) -> int:
        """Delete many connections (gone ones a broadcast found) with their subscriptions."""
        ids = list(connection_ids)
        for connection_id in ids:  # all of them first: nothing is deleted for a bad list
            _validate_id(connection_id, "connection_id")
        unique = list(dict.fromkeys(ids))
        keys: list[dict[str, Any]] = []
        for connection_id in unique:
            keys.extend(self._partition_keys(connection_id))
        return self._batch_delete(keys)

    def _partition_keys(self, connection_id: str) -> list[dict[str, Any]]:
        keys = []
        for item in self._query_all(
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": CONNECTION_PREFIX + connection_id}},
                ProjectionExpression="pk, sk", ConsistentRead=True):
            keys.append({"pk": item["pk"], "sk": item["sk"]})
        return keys

    def _batch_delete(self, keys: list[dict[str, Any]]) -> int:
        """BatchWriteItem in chunks of 25; returns how many deletes DynamoDB accepted.

        botocore retries throttled calls, not the ``UnprocessedItems`` of a call that
        succeeded: DynamoDB leaves resending those to the caller, so they are resent
        here with capped, jittered backoff. Whatever is still unprocessed after the
        last try is logged and left for TTL, so a throttled cleanup never fails a
        ``$disconnect`` or a broadcast.
        """
        deleted = 0
        for start in range(0, len(keys), BATCH_WRITE_LIMIT):
            pending = [{"DeleteRequest": {"Key": key}} for key in keys[start:start + BATCH_WRITE_LIMIT]]
            for attempt in range(MAX_BATCH_ATTEMPTS):
                if attempt:
                    self._sleep(min(1.0, 0.05 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))
                response = self.client.batch_write_item(RequestItems={self.table_name: pending})
                unprocessed = (response.get("UnprocessedItems") or {}).get(self.table_name) or []
                deleted += len(pending) - len(unprocessed)
                pending = unprocessed
                if not pending:
                    break
            else:
                logger.warning("batch delete left %d items unprocessed after %d attempts; TTL will remove them",
                               len(pending), MAX_BATCH_ATTEMPTS)
        return deleted

    # -- token expiry (the byTokenExpiry index) ------------------------------------

    def expiring_before(self, deadline: int) -> list[ExpiringConnection]:
        """Every connection whose token's ``exp`` is at or before ``deadline``: one Query per shard.

        The index is eventually consistent: a refresh written a moment ago may
        still show the old ``exp``; ``mark_warned`` and the sweep's re-check
        (``token_expiry``) read the item itself before acting.
        """
        found: list[ExpiringConnection] = []
        for shard in expiry_shards():
            found.extend(ExpiringConnection.from_item(item) for item in self._query_all(
                IndexName=BY_TOKEN_EXPIRY_INDEX,
                KeyConditionExpression="#shard = :shard AND #exp <= :deadline",
                ExpressionAttributeNames={"#shard": EXPIRY_SHARD_ATTRIBUTE, "#exp": TOKEN_EXP_ATTRIBUTE},
                ExpressionAttributeValues={":shard": {"S": shard}, ":deadline": {"N": str(int(deadline))}}))
        return found

    def token_expiry(self, connection_id: str) -> int | None:
        """The stored ``exp`` of the connection's token, read consistently; None if not stored."""
        _validate_id(connection_id, "connection_id")
        item = self.client.get_item(TableName=self.table_name, Key=connection_key(connection_id),
                                    ConsistentRead=True, ProjectionExpression="#exp",
                                    ExpressionAttributeNames={"#exp": TOKEN_EXP_ATTRIBUTE}).get("Item")
        if item is None:
            return None
        return _n(item, TOKEN_EXP_ATTRIBUTE) if TOKEN_EXP_ATTRIBUTE in item else None

    def set_token_expiry(self, connection_id: str, token_exp: int) -> None:
        """Store a refreshed token's ``exp`` (also in the stored claims) and forget the warning given.

        Conditioned on the connection item existing, so a refresh racing its
        ``$disconnect`` cannot recreate a half item. Raises ConnectionNotFound.
        """
        _validate_id(connection_id, "connection_id")
        if not self._write_if(
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
        _validate_id(connection_id, "connection_id")
        return self._write_if(
            "update_item", Key=connection_key(connection_id),
            UpdateExpression="SET #warned = :exp",
            ConditionExpression="#exp = :exp AND (attribute_not_exists(#warned) OR #warned <> :exp)",
            ExpressionAttributeNames={"#exp": TOKEN_EXP_ATTRIBUTE, "#warned": WARNED_EXP_ATTRIBUTE},
            ExpressionAttributeValues={":exp": {"N": str(int(token_exp))}})

    # -- lookups by user -----------------------------------------------------------

    def connection_ids_for_user(self, user_id: str) -> list[str]:
        _validate_id(user_id, "user_id")
        return self._index_ids(BY_USER_ID_INDEX, "userId", user_id)

    def connection_ids_for_username(self, username: str) -> list[str]:
        _validate_id(username, "username")
        return self._index_ids(BY_USERNAME_INDEX, "username", username)

    def _index_ids(self, index: str, attribute: str, value: str) -> list[str]:
        return [_connection_id_of(item) for item in self._query_all(
            IndexName=index,
            KeyConditionExpression="#k = :v",
            ExpressionAttributeNames={"#k": attribute},
            ExpressionAttributeValues={":v": {"S": value}},
            ProjectionExpression="pk, connectionId")]

    # -- subscriptions -------------------------------------------------------------

    def subscribe(self, connection_id: str, topic: str, max_subscriptions: int | None = None) -> None:
        """Store the subscription only while the connection exists and is under its limit (one transaction).

        One TransactWriteItems: an Update of the connection's META item that
        counts the subscription (``subscriptions``; conditioned on the item
        existing and, with ``max_subscriptions``, on the count being under it)
        and a Put of the subscription conditioned on it not being stored yet.
        The count therefore stays exact when one connection's frames run in
        parallel Lambdas, and a refused subscribe writes nothing. Subscribing
        twice is idempotent: the second Put's condition fails, nothing changes.
        The item copies the connection's ``ttl`` so TTL removes both together.
        Raises ConnectionNotFound or SubscriptionLimitReached.
        """
        _validate_id(connection_id, "connection_id")
        validate_topic(topic)
        if max_subscriptions is not None and (type(max_subscriptions) is not int or max_subscriptions < 1):
            raise ValueError("max_subscriptions must be a positive integer or None")
        meta = self.client.get_item(TableName=self.table_name, Key=connection_key(connection_id),
                                    ConsistentRead=True, ProjectionExpression="#ttl",
                                    ExpressionAttributeNames={"#ttl": "ttl"}).get("Item")
        if meta is None:
            raise ConnectionNotFound(connection_id)
        item = {
            **subscription_key(connection_id, topic),
            "topic": {"S": topic},
            "connectionId": {"S": connection_id},
        }
        if "ttl" in meta:
            item["ttl"] = meta["ttl"]
        condition = "attribute_exists(pk)"
        values: dict[str, Any] = {":one": {"N": "1"}}
        if max_subscriptions is not None:
            condition += " AND (attribute_not_exists(#subs) OR #subs < :max)"
            values[":max"] = {"N": str(max_subscriptions)}
        try:
            self.client.transact_write_items(TransactItems=[
                {"Update": {"TableName": self.table_name, "Key": connection_key(connection_id),
                            "UpdateExpression": "ADD #subs :one", "ConditionExpression": condition,
                            "ExpressionAttributeNames": {"#subs": SUBSCRIPTION_COUNT},
                            "ExpressionAttributeValues": values}},
                {"Put": {"TableName": self.table_name, "Item": item,
                         "ConditionExpression": "attribute_not_exists(pk)"}},
            ])
        except Exception as error:
            codes = _cancellation_codes(error)
            if codes is None:
                raise
            counted, stored = codes[0] != _CONDITION_FAILED, codes[1] != _CONDITION_FAILED
            if counted and stored:  # cancelled for another reason (a conflicting transaction)
                raise
            if not counted and not self._connection_exists(connection_id):
                raise ConnectionNotFound(connection_id) from None
            if not stored:
                return  # already subscribed (at the limit or not): nothing to change
            if max_subscriptions is None:  # the META item vanished and came back: treat as gone
                raise ConnectionNotFound(connection_id) from None
            raise SubscriptionLimitReached(connection_id, max_subscriptions) from None

    def unsubscribe(self, connection_id: str, topic: str) -> bool:
        """Remove the subscription; whether there was one.

        The delete and the count's decrement are one transaction, each
        conditioned (the subscription exists; the count is positive), so the
        count never drifts nor goes below zero. When only the count's side
        fails (the connection is being removed, or its subscriptions predate
        the count) the subscription is deleted on its own.
        """
        _validate_id(connection_id, "connection_id")
        validate_topic(topic)
        key = subscription_key(connection_id, topic)
        try:
            self.client.transact_write_items(TransactItems=[
                {"Delete": {"TableName": self.table_name, "Key": key,
                            "ConditionExpression": "attribute_exists(pk)"}},
                {"Update": {"TableName": self.table_name, "Key": connection_key(connection_id),
                            "UpdateExpression": "ADD #subs :minus_one", "ConditionExpression": "#subs > :zero",
                            "ExpressionAttributeNames": {"#subs": SUBSCRIPTION_COUNT},
                            "ExpressionAttributeValues": {":minus_one": {"N": "-1"}, ":zero": {"N": "0"}}}},
            ])
            return True
        except Exception as error:
            codes = _cancellation_codes(error)
            if codes is None:
                raise
            if codes[0] == _CONDITION_FAILED:
                return False  # was not subscribed
            if codes[1] != _CONDITION_FAILED:
                raise
        response = self.client.delete_item(TableName=self.table_name, Key=key, ReturnValues="ALL_OLD")
        return bool(response.get("Attributes"))

    def _connection_exists(self, connection_id: str) -> bool:
        return "Item" in self.client.get_item(TableName=self.table_name, Key=connection_key(connection_id),
                                              ConsistentRead=True, ProjectionExpression="pk")

    def topics_for(self, connection_id: str) -> list[str]:
        _validate_id(connection_id, "connection_id")
        return [_s(item, "topic") for item in self._query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :topic)",
            ExpressionAttributeValues={":pk": {"S": CONNECTION_PREFIX + connection_id},
                                       ":topic": {"S": TOPIC_PREFIX}},
            ProjectionExpression="topic", ConsistentRead=True)]

    def subscriber_ids(self, topic: str) -> list[str]:
        validate_topic(topic)
        return self._index_ids(BY_TOPIC_INDEX, "topic", topic)

    # -- broadcast to everyone -----------------------------------------------------

    def iter_connection_ids(self, segments: int = 4, page_size: int = 1000) -> Iterator[list[str]]:
        """All connection ids, a page at a time, from a parallel Scan.

        One thread per segment; pages are yielded as they arrive so sending can
        start before the scan ends. Subscription items are filtered out server-side.
        Closing the generator early stops the workers after their current page.
        """
        if not isinstance(segments, int) or segments < 1:
            raise ValueError("segments must be a positive integer")
        if not isinstance(page_size, int) or page_size < 1:
            raise ValueError("page_size must be a positive integer")
        self.client  # created once, here, before the threads share it
        pages: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=segments * 2)
        stop = threading.Event()

        def offer(entry: tuple[str, Any]) -> bool:
            while not stop.is_set():
                try:
                    pages.put(entry, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def scan(segment: int) -> None:
            try:
                for ids in self.segment_connection_ids(segment, segments, page_size):
                    if ids:
                        offer(("page", ids))
                    if stop.is_set():  # closed: no further page is requested
                        return
            except BaseException as error:  # handed to the consumer, which re-raises it
                offer(("error", error))
                return
            offer(("done", None))

        workers = [threading.Thread(target=scan, args=(segment,), name=f"scan-{segment}", daemon=True)
                   for segment in range(segments)]
        for worker in workers:
            worker.start()
        try:
            running = segments
            while running:
                kind, value = pages.get()
                if kind == "page":
                    yield value
                elif kind == "done":
                    running -= 1
                else:
                    raise value
        finally:
            stop.set()

    # -- fan-out slices (chalicelib/fanout.py) ------------------------------------

    def segment_connection_ids(self, segment: int, segments: int, page_size: int = 1000) -> Iterator[list[str]]:
        """One parallel-scan segment's connection ids, a page at a time (a broadcast work item; a
        thread of ``iter_connection_ids``). A page the filter emptied is yielded empty, so a
        closed parallel scan stops after the page it was on, whatever that page held."""
        if not (isinstance(segment, int) and isinstance(segments, int) and 0 <= segment < segments):
            raise ValueError("segment must be in 0..segments-1")
        for page in self.client.get_paginator("scan").paginate(
                TableName=self.table_name, Segment=segment, TotalSegments=segments,
                FilterExpression="sk = :meta", ExpressionAttributeValues={":meta": {"S": META_SK}},
                ProjectionExpression="connectionId", PaginationConfig={"PageSize": page_size}):
            yield [_s(item, "connectionId") for item in page.get("Items", [])]

    def approximate_item_count(self) -> int:
        """DynamoDB's ``ItemCount`` (refreshed about every six hours on AWS): sizes a broadcast's segments."""
        table = self.client.describe_table(TableName=self.table_name).get("Table") or {}
        return int(table.get("ItemCount") or 0)

    def topic_pages(self, topic: str, page_size: int = 1000) -> Iterator[tuple[list[str], dict[str, Any] | None]]:
        """The topic's subscriber ids a page at a time, with each page's ``LastEvaluatedKey``."""
        validate_topic(topic)
        for page in self.client.get_paginator("query").paginate(
                TableName=self.table_name, IndexName=BY_TOPIC_INDEX, KeyConditionExpression="#k = :v",
                ExpressionAttributeNames={"#k": "topic"}, ExpressionAttributeValues={":v": {"S": topic}},
                ProjectionExpression="pk, connectionId", PaginationConfig={"PageSize": page_size}):
            yield [_connection_id_of(item) for item in page.get("Items", [])], page.get("LastEvaluatedKey")

    def topic_page_bounds(self, topic: str, page_size: int = 1000) -> list[tuple[dict[str, Any] | None, str | None]]:
        """``(after, through)`` per page of the topic index: what each topic work item reads.

        ``after`` is the page's exclusive start key (None for the first);
        ``through`` its last ``pk`` (None for the last page: to the end). Reads
        keys only; an item holds two keys, never the page's ids.
        """
        bounds: list[tuple[dict[str, Any] | None, str | None]] = []
        after: dict[str, Any] | None = None
        for _ids, last in self.topic_pages(topic, page_size):
            through = str((last or {}).get("pk", {}).get("S", "")) or None
            bounds.append((after, through))
            after = last
        return bounds

    def topic_page_ids(self, topic: str, after: Mapping[str, Any] | None, through: str | None) -> list[str]:
        """Subscriber ids of one topic page: after ``after`` (exclusive), up to ``through`` (inclusive)."""
        validate_topic(topic)
        condition, values = "#k = :v", {":v": {"S": topic}}
        if through:
            condition += " AND pk <= :through"
            values[":through"] = {"S": through}
        request: dict[str, Any] = {
            "IndexName": BY_TOPIC_INDEX, "KeyConditionExpression": condition,
            "ExpressionAttributeNames": {"#k": "topic"}, "ExpressionAttributeValues": values,
            "ProjectionExpression": "pk, connectionId"}
        if after:
            request["ExclusiveStartKey"] = dict(after)
        return [_connection_id_of(item) for item in self._query_all(**request)]

    # -- helpers -------------------------------------------------------------------

    def _query_all(self, **request: Any) -> Iterator[dict[str, Any]]:
        """Every item of a Query, through boto3's paginator (it follows ``LastEvaluatedKey``)."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table_name, PaginationConfig=self._query_pages, **request)
        for page in pages:
            yield from page.get("Items", [])


__all__ = [
    "ConnectionRecord", "ConnectionRepository", "ExpiringConnection", "ConnectionExists", "ConnectionNotFound",
    "SubscriptionLimitReached", "validate_topic", "connection_key", "subscription_key",
    "MAX_ID_LENGTH", "MAX_TOPIC_LENGTH",
]
