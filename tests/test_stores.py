"""Stores against a real DynamoDB Local (one per session, a table per test)."""
from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.stub import Stubber

from chalicelib import schema
from chalicelib.errors import AppError
from chalicelib.connections import ConnectionExists, ConnectionNotFound
from chalicelib.items import connection_item, connection_key
from chalicelib.records import ConnectionRecord, Endpoint
from tests.support.dynamodb import Stores, make_record


def _all_items(client: Any, table: str) -> list[dict[str, Any]]:
    """Every connection and subscription item (tombstones and users' counts, bookkeeping, left out)."""
    pages = client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    return [item for page in pages for item in page["Items"]
            if item["pk"]["S"].startswith("CONN#") and item["sk"]["S"] != "GONE"]


def _counting_client(dynamodb_local: Any, operation: str) -> tuple[Any, list[str]]:
    """A client of its own for the same DynamoDB Local, and the list its ``operation`` requests land in."""
    import boto3

    client = boto3.client("dynamodb", endpoint_url=dynamodb_local.endpoint_url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    requests: list[str] = []
    client.meta.events.register(f"before-call.dynamodb.{operation}", lambda **_: requests.append(operation))
    return client, requests


def _seed(client: Any, table: str, records: list[ConnectionRecord], topic: str | None = None) -> None:
    """Bulk insert (BatchWriteItem) so big fixtures stay fast; optionally one subscription each."""
    requests = []
    for record in records:
        requests.append({"PutRequest": {"Item": connection_item(record)}})
        if topic is not None:
            requests.append({"PutRequest": {"Item": {
                "pk": {"S": "CONN#" + record.connection_id}, "sk": {"S": "TOPIC#" + topic},
                "topic": {"S": topic}, "connectionId": {"S": record.connection_id},
                "ttl": {"N": str(record.ttl)}}}})
    for start in range(0, len(requests), 25):
        pending = {table: requests[start:start + 25]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


# -- connections ---------------------------------------------------------------------

def test_put_get_round_trip_preserves_claim_types(stores: Stores) -> None:
    record = make_record(
        "conn-A=", "sub-1", "alice",
        claims={"sub": "sub-1", "auth_time": 1700000000, "ratio": 0.25, "whole_float": 3.0,
                "email_verified": True, "admin": False, "big": 2 ** 53 + 1, "neg": -7, "empty": ""},
        client_params={"q.room": "lobby", "h.x-client": "cli/1.0"},
        token_source="query", endpoint=Endpoint("localhost", "dev", "abc123"),
    )
    stores.connections.put(record)
    stored = stores.connections.get("conn-A=")
    assert stored is not None
    assert (stored.endpoint, stored.connected_at, stored.ttl) == (record.endpoint, record.connected_at, record.ttl)
    assert stored.identity.flat_claims() == {**record.identity.flat_claims(), "whole_float": 3}
    claims = stored.identity.flat_claims()
    assert type(claims["auth_time"]) is int and claims["auth_time"] == 1700000000
    assert type(claims["big"]) is int and claims["big"] == 2 ** 53 + 1
    assert type(claims["ratio"]) is float and claims["ratio"] == 0.25
    assert type(claims["whole_float"]) is int
    assert claims["email_verified"] is True and claims["admin"] is False
    assert claims["neg"] == -7 and claims["empty"] == ""
    assert stored.describe() == {
        "connectionId": "conn-A=", "userId": "sub-1", "username": "alice", "claims": claims,
        "connectedAt": record.connected_at, "sourceIp": "127.0.0.1", "userAgent": "pytest",
        "clientParams": {"q.room": "lobby", "h.x-client": "cli/1.0"}, "tokenSource": "query",
    }


def test_get_unknown_connection_is_none(stores: Stores) -> None:
    assert stores.connections.get("nope") is None


def test_connection_without_username_is_stored_and_not_in_username_index(
        stores: Stores, dynamodb_client: Any, connections_table: str) -> None:
    stores.connections.put(make_record("c1", "u1", ""))
    assert stores.connections.get("c1").username == ""
    item = dynamodb_client.get_item(TableName=connections_table, Key=connection_key("c1"))["Item"]
    assert "username" not in item  # an empty GSI key would be rejected by DynamoDB
    assert stores.audiences.user_ids("u1") == ["c1"]


def test_conditional_put_refuses_duplicate(stores: Stores) -> None:
    stores.connections.put(make_record("c1", "u1", "alice"))
    with pytest.raises(ConnectionExists, match="already stored"):
        stores.connections.put(make_record("c1", "u2", "mallory"))
    assert stores.connections.get("c1").user_id == "u1"  # the first one is untouched


def test_delete_removes_subscriptions_and_is_idempotent(
        stores: Stores, dynamodb_client: Any, connections_table: str) -> None:
    stores.connections.put(make_record("c1"))
    stores.connections.put(make_record("c2"))
    for topic in ("a", "b", "c"):
        stores.subscriptions.subscribe("c1", topic)
    stores.subscriptions.subscribe("c2", "a")

    assert stores.connections.delete("c1") == 4  # META + 3 subscriptions
    assert stores.connections.get("c1") is None
    assert stores.subscriptions.topics_for("c1") == []
    assert stores.audiences.subscriber_ids("a") == ["c2"]
    assert stores.connections.delete("c1") == 0
    remaining = {(i["pk"]["S"], i["sk"]["S"]) for i in _all_items(dynamodb_client, connections_table)}
    assert remaining == {("CONN#c2", "META"), ("CONN#c2", "TOPIC#a")}


def test_user_and_username_queries_return_only_that_users_connections(stores: Stores) -> None:
    for n in range(3):
        stores.connections.put(make_record(f"alice-{n}", "sub-alice", "alice"))
    for n in range(2):
        stores.connections.put(make_record(f"bob-{n}", "sub-bob", "bob"))
    stores.connections.put(make_record("carol-0", "sub-carol", "carol"))
    stores.subscriptions.subscribe("alice-0", "news")  # subscription items must not show up in user indexes

    assert sorted(stores.audiences.user_ids("sub-alice")) == ["alice-0", "alice-1", "alice-2"]
    assert sorted(stores.audiences.user_ids("sub-bob")) == ["bob-0", "bob-1"]
    assert sorted(stores.audiences.username_ids("alice")) == ["alice-0", "alice-1", "alice-2"]
    assert stores.audiences.username_ids("carol") == ["carol-0"]
    assert stores.audiences.user_ids("sub-nobody") == []
    assert stores.audiences.username_ids("sub-alice") == []  # a sub is not a username


def test_queries_spanning_several_pages_return_every_item(dynamodb_local: Any, dynamodb_client: Any,
                                                          connections_table: str) -> None:
    # Real pages end at 1 MB; a small page size takes the same LastEvaluatedKey path with 30 items.
    records = [make_record(f"c{n:03}", "u1", "alice") for n in range(30)]
    _seed(dynamodb_client, connections_table, records, topic="news")
    topics = [f"t{n:02}" for n in range(30)]
    for topic in topics:
        Stores(connections_table, client=dynamodb_client).subscriptions.subscribe("c000", topic)
    client, queries = _counting_client(dynamodb_local, "Query")
    paged = Stores(connections_table, client=client, query_page_size=7)
    ids = [r.connection_id for r in records]

    assert sorted(paged.audiences.user_ids("u1")) == ids
    assert len(queries) >= 5  # 30 items, 7 a page: it really paged
    assert sorted(paged.audiences.username_ids("alice")) == ids
    assert sorted(paged.audiences.subscriber_ids("news")) == ids
    assert sorted(paged.subscriptions.topics_for("c000")) == sorted(topics + ["news"])
    assert paged.connections.delete("c000") == 32  # META + 31 subscriptions, found over 5 pages
    assert paged.subscriptions.topics_for("c000") == [] and "c000" not in paged.audiences.subscriber_ids("news")


def test_query_page_size_must_be_positive() -> None:
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="query_page_size"):
            Stores("tbl", query_page_size=bad)  # type: ignore[arg-type]


# -- subscriptions -------------------------------------------------------------------

def test_subscribe_requires_the_connection_and_writes_nothing_without_it(
        stores: Stores, dynamodb_client: Any, connections_table: str) -> None:
    with pytest.raises(ConnectionNotFound, match="not registered"):
        stores.subscriptions.subscribe("ghost", "news")
    assert _all_items(dynamodb_client, connections_table) == []
    assert stores.audiences.subscriber_ids("news") == []


def test_subscribe_copies_ttl_and_is_idempotent(stores: Stores, dynamodb_client: Any,
                                                connections_table: str) -> None:
    record = make_record("c1", ttl=1234567890)
    stores.connections.put(record)
    stores.subscriptions.subscribe("c1", "news")
    stores.subscriptions.subscribe("c1", "news")
    item = dynamodb_client.get_item(TableName=connections_table,
                                    Key={"pk": {"S": "CONN#c1"}, "sk": {"S": "TOPIC#news"}})["Item"]
    assert item["ttl"] == {"N": "1234567890"}
    assert item["topic"] == {"S": "news"} and item["connectionId"] == {"S": "c1"}
    assert stores.subscriptions.topics_for("c1") == ["news"]
    assert stores.audiences.subscriber_ids("news") == ["c1"]


def test_subscribe_after_disconnect_raises(stores: Stores) -> None:
    stores.connections.put(make_record("c1"))
    stores.connections.delete("c1")
    with pytest.raises(ConnectionNotFound):
        stores.subscriptions.subscribe("c1", "news")


def test_unsubscribe_reports_whether_it_existed(stores: Stores) -> None:
    stores.connections.put(make_record("c1"))
    stores.subscriptions.subscribe("c1", "news")
    stores.subscriptions.subscribe("c1", "sport")
    assert stores.subscriptions.unsubscribe("c1", "news") is True
    assert stores.subscriptions.unsubscribe("c1", "news") is False
    assert stores.subscriptions.unsubscribe("never", "news") is False
    assert stores.subscriptions.topics_for("c1") == ["sport"]
    assert stores.connections.get("c1") is not None  # META untouched


def test_subscriber_ids_by_topic(stores: Stores) -> None:
    for n in range(5):
        stores.connections.put(make_record(f"c{n}", f"u{n}", f"user{n}"))
    for n in (0, 2, 4):
        stores.subscriptions.subscribe(f"c{n}", "even")
    for n in (1, 3):
        stores.subscriptions.subscribe(f"c{n}", "odd")
    stores.subscriptions.subscribe("c3", "Even")  # topics are case-sensitive
    topic = "ünï/cøde topic #1 " + "x" * 100
    stores.subscriptions.subscribe("c1", topic)

    assert sorted(stores.audiences.subscriber_ids("even")) == ["c0", "c2", "c4"]
    assert sorted(stores.audiences.subscriber_ids("odd")) == ["c1", "c3"]
    assert stores.audiences.subscriber_ids("Even") == ["c3"]
    assert stores.audiences.subscriber_ids(topic) == ["c1"]
    assert stores.audiences.subscriber_ids("none") == []
    assert sorted(stores.subscriptions.topics_for("c3")) == ["Even", "odd"]


# -- bulk ----------------------------------------------------------------------------

def test_delete_connections_in_batches_removes_them_and_their_subscriptions(
        stores: Stores, dynamodb_client: Any, connections_table: str) -> None:
    gone = [make_record(f"gone-{n:02}", f"u{n % 4}", f"user{n % 4}") for n in range(60)]
    kept = [make_record(f"kept-{n}", "u0", "user0") for n in range(3)]
    _seed(dynamodb_client, connections_table, gone + kept, topic="news")
    assert len(_all_items(dynamodb_client, connections_table)) == 126

    batch_sizes: list[int] = []

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(dynamodb_client, name)

        def batch_write_item(self, **request: Any) -> Any:
            batch_sizes.append(len(request["RequestItems"][connections_table]))
            return dynamodb_client.batch_write_item(**request)

    counted = Stores(connections_table, client=Counting())
    ids = [r.connection_id for r in gone]
    assert counted.connections.delete_many(ids + ids[:5]) == 120  # duplicates are deleted once
    assert max(batch_sizes) <= 25  # the subscriptions left after each META item went

    many = make_record("many")
    stores.connections.put(many)
    for n in range(60):
        stores.subscriptions.subscribe("many", f"t{n:02}", max_subscriptions=100)
    batch_sizes.clear()
    assert counted.connections.delete("many") == 61
    assert batch_sizes == [25, 25, 10]  # BatchWriteItem's 25 per call

    left = {i["pk"]["S"] for i in _all_items(dynamodb_client, connections_table)}
    assert left == {f"CONN#kept-{n}" for n in range(3)}
    assert sorted(stores.audiences.subscriber_ids("news")) == ["kept-0", "kept-1", "kept-2"]
    assert stores.connections.delete_many(ids) == 0
    assert stores.connections.delete_many([]) == 0


def test_batch_delete_retries_unprocessed_items(dynamodb_client: Any, connections_table: str) -> None:
    _seed(dynamodb_client, connections_table, [make_record("c0")])
    seeded = Stores(connections_table, dynamodb_client)
    for n in range(10):
        seeded.subscriptions.subscribe("c0", f"t{n}")
    sleeps: list[float] = []
    calls = 0

    class Throttled:
        """Hands the second half of the first batch back as unprocessed, like a throttled table."""

        def __getattr__(self, name: str) -> Any:
            return getattr(dynamodb_client, name)

        def batch_write_item(self, RequestItems: dict[str, Any]) -> Any:
            nonlocal calls
            calls += 1
            requests = RequestItems[connections_table]
            if calls == 1:
                dynamodb_client.batch_write_item(RequestItems={connections_table: requests[:5]})
                return {"UnprocessedItems": {connections_table: requests[5:]}}
            return dynamodb_client.batch_write_item(RequestItems=RequestItems)

    repo = Stores(connections_table, client=Throttled(), sleep=sleeps.append)
    assert repo.connections.delete("c0") == 11  # META, then its 10 subscriptions in one batch
    assert calls == 2 and len(sleeps) == 1 and 0 < sleeps[0] <= 1.0
    assert _all_items(dynamodb_client, connections_table) == []


def test_iter_connection_ids_returns_each_exactly_once_and_skips_subscriptions(
        stores: Stores, dynamodb_client: Any, connections_table: str) -> None:
    records = [make_record(f"conn-{n:03}", f"u{n % 7}", f"user{n % 7}") for n in range(250)]
    _seed(dynamodb_client, connections_table, records, topic="everyone")

    pages = list(stores.audiences.all_ids(segments=4, page_size=40))
    seen = [cid for page in pages for cid in page]
    assert len(seen) == 250
    assert set(seen) == {r.connection_id for r in records}
    assert all(page for page in pages)  # no empty pages
    assert len(pages) > 4  # it really paged (500 items, 40 evaluated per page)

    single = [cid for page in stores.audiences.all_ids(segments=1) for cid in page]
    assert sorted(single) == sorted(seen)


def test_iter_connection_ids_on_empty_table_and_early_close(stores: Stores,
                                                            dynamodb_client: Any, connections_table: str) -> None:
    assert list(stores.audiences.all_ids()) == []
    _seed(dynamodb_client, connections_table, [make_record(f"c{n}") for n in range(50)])
    pages = stores.audiences.all_ids(segments=2, page_size=5)
    first = next(pages)
    assert 1 <= len(first) <= 5
    pages.close()  # stops the workers; must not hang


def test_closing_iter_connection_ids_stops_the_scan(dynamodb_local: Any, dynamodb_client: Any,
                                                    connections_table: str) -> None:
    _seed(dynamodb_client, connections_table, [make_record(f"c{n:03}") for n in range(400)])
    client, scans = _counting_client(dynamodb_local, "Scan")
    pages = Stores(connections_table, client=client).audiences.all_ids(segments=2, page_size=5)
    next(pages)
    pages.close()
    time.sleep(0.5)  # let the workers finish the page they were on
    stopped_at = len(scans)
    time.sleep(0.3)
    assert len(scans) == stopped_at  # no page is asked for after close
    assert stopped_at < 30  # a full scan takes 80+ requests


def test_iter_connection_ids_raises_scan_errors(dynamodb_client: Any) -> None:
    missing = Stores("no-such-table", client=dynamodb_client)
    with pytest.raises(dynamodb_client.exceptions.ResourceNotFoundException):
        list(missing.audiences.all_ids(segments=3))


# -- validation ----------------------------------------------------------------------

@pytest.mark.parametrize("topic, message", [
    ("", "1-128 characters"),
    ("x" * 129, "1-128 characters"),
    ("bad\ntopic", "control characters"),
    ("bad\x00", "control characters"),
    ("del\x7f", "control characters"),
    (42, "must be a string"),
    (None, "must be a string"),
])
def test_invalid_topics_are_rejected(stores: Stores, topic: Any, message: str) -> None:
    stores.connections.put(make_record("c1"))
    for call in (lambda: stores.subscriptions.subscribe("c1", topic), lambda: stores.subscriptions.unsubscribe("c1", topic),
                 lambda: stores.audiences.subscriber_ids(topic)):
        with pytest.raises(AppError, match=message):
            call()
    assert stores.subscriptions.topics_for("c1") == []


def test_topic_limits_are_inclusive(stores: Stores) -> None:
    stores.connections.put(make_record("c1"))
    stores.subscriptions.subscribe("c1", "x" * 128)
    stores.subscriptions.subscribe("c1", "a")
    assert sorted(stores.subscriptions.topics_for("c1")) == ["a", "x" * 128]


@pytest.mark.parametrize("call", [
    lambda r: r.connections.get(""),
    lambda r: r.connections.delete(""),
    lambda r: r.connections.delete_many(["ok", ""]),
    lambda r: r.subscriptions.subscribe("", "t"),
    lambda r: r.subscriptions.unsubscribe("", "t"),
    lambda r: r.subscriptions.topics_for(""),
    lambda r: r.audiences.user_ids(""),
    lambda r: r.audiences.username_ids(""),
    lambda r: r.connections.put(make_record("")),
    lambda r: r.connections.put(make_record("c1", user_id="")),
    lambda r: r.connections.get(None),
    lambda r: r.audiences.all_ids(segments=0).__next__(),
])
def test_empty_ids_are_rejected(call: Any) -> None:
    class NoCalls:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"DynamoDB was called ({name}) for invalid input")

    with pytest.raises((ValueError, AppError), match="non-empty|positive"):
        call(Stores("tbl", client=NoCalls()))


# -- schema --------------------------------------------------------------------------

def test_created_table_matches_the_schema(dynamodb_client: Any, connections_table: str) -> None:
    ttl = dynamodb_client.describe_time_to_live(TableName=connections_table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl"}
    table = dynamodb_client.describe_table(TableName=connections_table)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                  {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    indexes = {i["IndexName"]: i for i in table["GlobalSecondaryIndexes"]}
    assert set(indexes) == {schema.BY_USER_ID_INDEX, schema.BY_USERNAME_INDEX, schema.BY_TOPIC_INDEX,
                            schema.BY_TOKEN_EXPIRY_INDEX}
    assert indexes["byTopic"]["KeySchema"][0] == {"AttributeName": "topic", "KeyType": "HASH"}
    assert indexes["byTokenExpiry"]["KeySchema"] == [{"AttributeName": "expiryShard", "KeyType": "HASH"},
                                                     {"AttributeName": "tokenExp", "KeyType": "RANGE"}]
    assert {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}["tokenExp"] == "N"
    assert indexes["byUserId"]["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["connectionId"]}

    schema.create_table(dynamodb_client, connections_table)  # idempotent: no error the second time


def _table(name: str, status: str, index_status: str = "ACTIVE") -> dict[str, Any]:
    return {"Table": {"TableName": name, "TableStatus": status, "GlobalSecondaryIndexes": [
        {"IndexName": index, "IndexStatus": index_status}
        for index in (schema.BY_USER_ID_INDEX, schema.BY_USERNAME_INDEX, schema.BY_TOPIC_INDEX)]}}


def _stubbed_client() -> tuple[Any, Stubber]:
    """A real DynamoDB client whose answers the test scripts (a table stuck CREATING cannot be made locally)."""
    import boto3

    client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    return client, Stubber(client)


def test_create_table_waits_until_the_table_is_active() -> None:
    client, stub = _stubbed_client()
    stub.add_response("create_table", {})
    stub.add_response("describe_table", _table("tbl", "CREATING", "CREATING"))
    stub.add_response("describe_table", _table("tbl", "ACTIVE"))
    stub.add_response("describe_table", _table("tbl", "ACTIVE"))
    stub.add_response("describe_time_to_live", {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}})
    stub.add_response("update_time_to_live", {"TimeToLiveSpecification": schema.ttl_specification()})
    with stub:
        schema.create_table(client, "tbl")
    stub.assert_no_pending_responses()


def test_create_table_times_out_naming_the_status() -> None:
    client, stub = _stubbed_client()
    stub.add_response("create_table", {})
    stub.add_response("describe_table", _table("tbl", "CREATING", "CREATING"))
    with stub, pytest.raises(TimeoutError, match=r"'tbl' not ACTIVE after 1 s \(status CREATING\)"):
        schema.create_table(client, "tbl", timeout=1)


def test_create_table_refuses_an_existing_table_whose_index_is_still_building() -> None:
    client, stub = _stubbed_client()
    stub.add_client_error("create_table", "ResourceInUseException")
    stub.add_response("describe_table", _table("tbl", "ACTIVE", "CREATING"))
    stub.add_response("describe_table", _table("tbl", "ACTIVE", "CREATING"))
    with stub, pytest.raises(RuntimeError, match="not all its indexes are.*byTopic.*CREATING"):
        schema.create_table(client, "tbl")


def test_cloudformation_properties_match_the_table_definition() -> None:
    definition = schema.table_definition("x-table")
    props = schema.cloudformation_properties("x-table", point_in_time_recovery=True)
    for key in ("TableName", "AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode"):
        assert props[key] == definition[key]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}

    unnamed = schema.cloudformation_properties(None, point_in_time_recovery=False)
    assert "TableName" not in unnamed
    assert unnamed["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": False}
    # every attribute defined is used by a key (CloudFormation rejects unused definitions)
    used = {k["AttributeName"] for k in definition["KeySchema"]}
    used |= {k["AttributeName"] for i in definition["GlobalSecondaryIndexes"] for k in i["KeySchema"]}
    assert {a["AttributeName"] for a in definition["AttributeDefinitions"]} == used


def test_subscribe_loses_the_race_with_disconnect_cleanly(dynamodb_client: Any, connections_table: str) -> None:
    """$disconnect between the ttl lookup and the transaction: the condition check refuses the write."""
    class Racing:
        def __getattr__(self, name: str) -> Any:
            return getattr(dynamodb_client, name)

        def transact_write_items(self, **request: Any) -> Any:
            dynamodb_client.delete_item(TableName=connections_table, Key=connection_key("c1"))
            return dynamodb_client.transact_write_items(**request)

    repo = Stores(connections_table, client=Racing())
    repo.connections.put(make_record("c1"))
    with pytest.raises(ConnectionNotFound):
        repo.subscriptions.subscribe("c1", "news")
    assert _all_items(dynamodb_client, connections_table) == []


# -- races: both sides many times at once, on DynamoDB Local ------------------------------------------

RACES = 60


def _race(first: Any, second: Any) -> list[BaseException | None]:
    """Run both at the same moment (a barrier), as two Lambdas of one connection would."""
    import threading

    barrier = threading.Barrier(2)
    outcomes: list[BaseException | None] = [None, None]

    def run(index: int, call: Any) -> None:
        barrier.wait()
        try:
            call()
        except BaseException as error:  # noqa: BLE001 - recorded: the loser of a race may refuse
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def _left(dynamodb_client: Any, table: str, connection_id: str) -> set[str]:
    return {i["sk"]["S"] for i in _all_items(dynamodb_client, table) if i["pk"]["S"] == f"CONN#{connection_id}"}


def test_subscribe_racing_disconnect_never_leaves_a_subscription(stores: Stores, dynamodb_client: Any,
                                                                connections_table: str) -> None:
    for n in range(RACES):
        cid = f"sub-race-{n}"
        stores.connections.put(make_record(cid))
        _race(lambda: stores.subscriptions.subscribe(cid, "news"), lambda: stores.connections.delete(cid))
        assert _left(dynamodb_client, connections_table, cid) == set(), n
    assert stores.audiences.subscriber_ids("news") == []


def test_connect_racing_disconnect_never_leaves_a_connection(stores: Stores, dynamodb_client: Any,
                                                            connections_table: str) -> None:
    for n in range(RACES):
        cid = f"put-race-{n}"
        _race(lambda: stores.connections.put(make_record(cid, "racer"), 100), lambda: stores.connections.delete(cid))
        assert _left(dynamodb_client, connections_table, cid) == set(), n
    assert stores.connections.user_connections("racer") == 0  # counted once, uncounted once


def test_refresh_and_warning_racing_disconnect_recreate_nothing(stores: Stores, dynamodb_client: Any,
                                                               connections_table: str) -> None:
    for n in range(RACES):
        cid = f"exp-race-{n}"
        stores.connections.put(make_record(cid, token_exp=1_800_000_000))
        update = (lambda: stores.expiries.set_token_expiry(cid, 1_800_003_600)) if n % 2 else \
            (lambda: stores.expiries.mark_warned(cid, 1_800_000_000))
        _race(update, lambda: stores.connections.delete(cid))
        assert _left(dynamodb_client, connections_table, cid) == set(), n


def test_gone_cleanup_racing_subscribe_never_leaves_a_subscription(stores: Stores, dynamodb_client: Any,
                                                                  connections_table: str) -> None:
    """A broadcast's 410 clean-up (``delete_many``) against the same connection's subscribe."""
    for n in range(RACES):
        cid = f"gone-race-{n}"
        stores.connections.put(make_record(cid))
        _race(lambda: stores.subscriptions.subscribe(cid, f"t{n}"), lambda: stores.connections.delete_many([cid]))
        assert _left(dynamodb_client, connections_table, cid) == set(), n


def test_parallel_connects_never_exceed_the_users_limit(stores: Stores) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from chalicelib.connections import TooManyConnections

    def attempt(n: int) -> str:
        try:
            stores.connections.put(make_record(f"cap-{n}", "busy"), max_per_user=5)
            return "ok"
        except TooManyConnections:
            return "refused"
        except Exception as error:  # noqa: BLE001 - a conflicting transaction: the client retries
            return type(error).__name__

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(attempt, range(40)))
    stored = stores.audiences.user_ids("busy")
    assert len(stored) == outcomes.count("ok") == stores.connections.user_connections("busy") <= 5
    assert outcomes.count("refused") >= 30
    stores.connections.delete(stored[0])
    stores.connections.delete(stored[0])  # twice, as the expiry close and then $disconnect do
    assert stores.connections.user_connections("busy") == len(stored) - 1
    stores.connections.put(make_record("cap-after", "busy"), max_per_user=5)  # room again
