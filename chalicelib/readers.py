"""Reading audiences: whose connection ids a push goes to.

A user's connections come from the sparse user (or username) index, a topic's
subscribers from the topic index, page by page, and everyone from a parallel
Scan, the only Scan in the app. Fan-out work items read one slice each: a
topic page between two keys, or one scan segment.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Iterator, Mapping

from .items import connection_id_of
from .schema import BY_TOPIC_INDEX, BY_USER_ID_INDEX, BY_USERNAME_INDEX, META_SK
from .table import Table
from .validation import check_id, check_topic

TopicBound = tuple[dict[str, Any] | None, str | None]  # (exclusive start key, last pk) of a topic page


class AudienceReader:
    def __init__(self, table: Table) -> None:
        self.table = table

    # -- users and topics ----------------------------------------------------------

    def user_ids(self, user_id: str) -> list[str]:
        check_id(user_id, "user_id")
        return self._index_ids(BY_USER_ID_INDEX, "userId", user_id)

    def username_ids(self, username: str) -> list[str]:
        check_id(username, "username")
        return self._index_ids(BY_USERNAME_INDEX, "username", username)

    def subscriber_ids(self, topic: str) -> list[str]:
        check_topic(topic)
        return self._index_ids(BY_TOPIC_INDEX, "topic", topic)

    def _index_ids(self, index: str, attribute: str, value: str) -> list[str]:
        return [connection_id_of(item) for item in self.table.query(
            IndexName=index, KeyConditionExpression="#k = :v", ExpressionAttributeNames={"#k": attribute},
            ExpressionAttributeValues={":v": {"S": value}}, ProjectionExpression="pk, connectionId")]

    def topic_pages(self, topic: str, page_size: int = 1000) -> Iterator[tuple[list[str], dict[str, Any] | None]]:
        """The topic's subscriber ids a page at a time, with each page's ``LastEvaluatedKey``."""
        check_topic(topic)
        for page in self.table.client.get_paginator("query").paginate(
                TableName=self.table.name, IndexName=BY_TOPIC_INDEX, KeyConditionExpression="#k = :v",
                ExpressionAttributeNames={"#k": "topic"}, ExpressionAttributeValues={":v": {"S": topic}},
                ProjectionExpression="pk, connectionId", PaginationConfig={"PageSize": page_size}):
            yield [connection_id_of(item) for item in page.get("Items", [])], page.get("LastEvaluatedKey")

    def topic_page_bounds(self, topic: str, page_size: int = 1000) -> list[TopicBound]:
        """``(after, through)`` per page of the topic index: what each topic work item reads.

        ``after`` is the page's exclusive start key (None for the first);
        ``through`` its last ``pk`` (None for the last page: to the end).
        """
        bounds: list[TopicBound] = []
        after: dict[str, Any] | None = None
        for _ids, last in self.topic_pages(topic, page_size):
            through = str((last or {}).get("pk", {}).get("S", "")) or None
            bounds.append((after, through))
            after = last
        return bounds

    def topic_page_ids(self, topic: str, after: Mapping[str, Any] | None, through: str | None) -> list[str]:
        """Subscriber ids of one topic page: after ``after`` (exclusive), up to ``through`` (inclusive)."""
        check_topic(topic)
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
        return [connection_id_of(item) for item in self.table.query(**request)]

    # -- everyone ------------------------------------------------------------------

    def all_ids(self, segments: int = 4, page_size: int = 1000) -> Iterator[list[str]]:
        """All connection ids, a page at a time, from a parallel Scan.

        One thread per segment; pages are yielded as they arrive so sending can
        start before the scan ends. Subscription items are filtered out server-side.
        Closing the generator early stops the workers after their current page.
        """
        if not isinstance(segments, int) or segments < 1:
            raise ValueError("segments must be a positive integer")
        if not isinstance(page_size, int) or page_size < 1:
            raise ValueError("page_size must be a positive integer")
        self.table.client  # created once, here, before the threads share it
        pages: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=segments * 2)
        stop = threading.Event()

        def offer(entry: tuple[str, Any]) -> None:
            while not stop.is_set():
                try:
                    pages.put(entry, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def scan(segment: int) -> None:
            try:
                for ids in self.segment_ids(segment, segments, page_size):
                    if ids:
                        offer(("page", ids))
                    if stop.is_set():  # closed: no further page is requested
                        return
            except BaseException as error:  # handed to the consumer, which re-raises it
                offer(("error", error))
                return
            offer(("done", None))

        for segment in range(segments):
            threading.Thread(target=scan, args=(segment,), name=f"scan-{segment}", daemon=True).start()
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

    def segment_ids(self, segment: int, segments: int, page_size: int = 1000) -> Iterator[list[str]]:
        """One parallel-scan segment's connection ids, a page at a time. A page the filter emptied is
        yielded empty, so a closed parallel scan stops after the page it was on."""
        if not (isinstance(segment, int) and isinstance(segments, int) and 0 <= segment < segments):
            raise ValueError("segment must be in 0..segments-1")
        for page in self.table.client.get_paginator("scan").paginate(
                TableName=self.table.name, Segment=segment, TotalSegments=segments,
                FilterExpression="sk = :meta", ExpressionAttributeValues={":meta": {"S": META_SK}},
                ProjectionExpression="connectionId", PaginationConfig={"PageSize": page_size}):
            yield [str(item["connectionId"]["S"]) for item in page.get("Items", []) if "connectionId" in item]

    def approximate_count(self) -> int:
        """DynamoDB's ``ItemCount`` (refreshed about every six hours on AWS): sizes a broadcast's segments."""
        table = self.table.client.describe_table(TableName=self.table.name).get("Table") or {}
        return int(table.get("ItemCount") or 0)


__all__ = ["AudienceReader", "TopicBound"]
