"""The one DynamoDB table as the stores share it: its client, queries, conditional writes, batch deletes.

The client comes from the composition root (``components``) on first use, so
building a store costs no boto3 import. Every lookup is a GetItem or a Query
(through boto3's paginator); conditional writes and transactions replace
read-then-write.
"""
from __future__ import annotations

import logging
import random
import time
from typing import Any, Callable, Iterator, Protocol

from .faults import error_code

logger = logging.getLogger("ws.table")

BATCH_WRITE_LIMIT = 25  # BatchWriteItem's per-call maximum
MAX_BATCH_ATTEMPTS = 8
CONDITION_FAILED = "ConditionalCheckFailed"


class ClientSource(Protocol):
    """Where a store gets its DynamoDB client (``aws.Clients``; a test may pass its own)."""

    @property
    def dynamodb(self) -> Any: ...


class Table:
    """One table name and the client to reach it."""

    def __init__(self, name: str, clients: ClientSource, *, query_page_size: int | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """``query_page_size``: items per Query request (the paginator's ``PageSize``); None lets
        DynamoDB fill its 1 MB pages."""
        if not isinstance(name, str) or not name:
            raise ValueError("the table name must be a non-empty string")
        if query_page_size is not None and (not isinstance(query_page_size, int) or query_page_size < 1):
            raise ValueError("query_page_size must be a positive integer or None")
        self.name = name
        self._clients = clients
        self._query_pages = {"PageSize": query_page_size} if query_page_size else {}
        self._sleep = sleep

    @property
    def client(self) -> Any:
        return self._clients.dynamodb

    def get(self, key: dict[str, Any], projection: str | None = None) -> dict[str, Any] | None:
        """One item, read consistently (optionally only ``projection``, names as given)."""
        request: dict[str, Any] = {"TableName": self.name, "Key": key, "ConsistentRead": True}
        if projection:
            names = [n.strip() for n in projection.split(",")]
            request["ProjectionExpression"] = ", ".join(f"#p{i}" for i in range(len(names)))
            request["ExpressionAttributeNames"] = {f"#p{i}": n for i, n in enumerate(names)}
        return self.client.get_item(**request).get("Item")

    def query(self, **request: Any) -> Iterator[dict[str, Any]]:
        """Every item of a Query, through boto3's paginator (it follows ``LastEvaluatedKey``)."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.name, PaginationConfig=self._query_pages, **request)
        for page in pages:
            yield from page.get("Items", [])

    def write_if(self, operation: str, **request: Any) -> bool:
        """One conditional ``put_item``/``update_item``/``delete_item``; False when its condition failed."""
        try:
            getattr(self.client, operation)(TableName=self.name, **request)
        except Exception as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def transact(self, items: list[dict[str, Any]]) -> list[str] | None:
        """TransactWriteItems on this table; None when it committed, else each item's cancellation code
        (``"None"`` for an item that passed). Any other failure raises."""
        try:
            self.client.transact_write_items(TransactItems=[
                {kind: {"TableName": self.name, **request}} for entry in items for kind, request in entry.items()])
        except Exception as error:
            if error_code(error) != "TransactionCanceledException":
                raise
            reasons = (getattr(error, "response", None) or {}).get("CancellationReasons") or []
            codes = [str((reason or {}).get("Code") or "None") for reason in reasons]
            return (codes + ["None"] * len(items))[:len(items)]
        return None

    def batch_delete(self, keys: list[dict[str, Any]]) -> int:
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
                response = self.client.batch_write_item(RequestItems={self.name: pending})
                unprocessed = (response.get("UnprocessedItems") or {}).get(self.name) or []
                deleted += len(pending) - len(unprocessed)
                pending = unprocessed
                if not pending:
                    break
            else:
                logger.warning("batch delete left %d items unprocessed after %d attempts; TTL will remove them",
                               len(pending), MAX_BATCH_ATTEMPTS)
        return deleted


class StaticClient:
    """A ``ClientSource`` over one client already built (tests, tools)."""

    def __init__(self, client: Any) -> None:
        self.dynamodb = client
