"""The local gateway's EventBridge ``PutEvents``, driven by a real boto3 ``events`` client and the AWS CLI.

The app is ``tests/eventbridge_app``, whose rules record every event they are
invoked with; each test gets its own gateway on a free port (its own fresh
copy of the toy app module).
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devtools.gateway import GatewayHandle, run_in_thread
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
TOY = str(ROOT / "tests" / "eventbridge_app")
EVENT_KEYS = {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}


@pytest.fixture
def gateway() -> Iterator[GatewayHandle]:
    handle = run_in_thread(TOY, authorizer="")
    try:
        yield handle
    finally:
        handle.stop()


def endpoint(handle: GatewayHandle) -> str:
    return f"http://127.0.0.1:{handle.port}"


def events_client(handle: GatewayHandle) -> Any:
    return boto3.client("events", endpoint_url=endpoint(handle), region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local",
                        config=Config(retries={"max_attempts": 1}))


def recorded(handle: GatewayHandle) -> list[tuple[str, dict[str, Any]]]:
    assert handle.app_module is not None
    return list(handle.app_module.EVENTS)


def wait_recorded(handle: GatewayHandle, count: int) -> list[tuple[str, dict[str, Any]]]:
    return wait_until(lambda: recorded(handle) if len(recorded(handle)) >= count else None, 5.0,
                      lambda: f"{count} invocations (have {recorded(handle)})")


def entry(source: str = "shop.orders", detail: Any = None, detail_type: str = "Order", **extra: Any) -> dict[str, Any]:
    return {"Source": source, "DetailType": detail_type,
            "Detail": json.dumps({} if detail is None else detail), **extra}


PAID_EU = {"status": "paid", "order": {"region": "eu"}, "total": 20}


def test_an_accepted_entry_reaches_its_rule_with_eventbridges_event_shape(gateway: GatewayHandle) -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    answer = events_client(gateway).put_events(Entries=[
        entry(detail=PAID_EU, Time=moment, Resources=["arn:aws:s3:::orders"])])
    assert answer["FailedEntryCount"] == 0
    (accepted,) = answer["Entries"]
    (rule, event), = wait_recorded(gateway, 1)
    assert rule == "paid_orders"
    assert set(event) == EVENT_KEYS
    assert event == {"version": "0", "id": accepted["EventId"], "detail-type": "Order", "source": "shop.orders",
                     "account": "123456789012", "time": "2026-03-04T05:06:07Z", "region": "us-east-1",
                     "resources": ["arn:aws:s3:::orders"], "detail": PAID_EU}


def test_each_matching_rule_is_invoked_and_nothing_else(gateway: GatewayHandle,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    client = events_client(gateway)
    with caplog.at_level(logging.INFO, logger="devtools.gateway"):
        unmatched = client.put_events(Entries=[entry(detail={"status": "open", "order": {"region": "eu"}, "total": 5}),
                                               entry(source="shop.returns", detail=PAID_EU),
                                               entry(source="audit", detail={})])
        both = client.put_events(Entries=[entry(detail=dict(PAID_EU, total=500))])
        audit = client.put_events(Entries=[entry(source="audit.login", detail={"user": "alice"})])
    invocations = wait_recorded(gateway, 3)
    both_id, audit_id = both["Entries"][0]["EventId"], audit["Entries"][0]["EventId"]
    assert sorted((rule, event["id"]) for rule, event in invocations) == sorted(
        [("paid_orders", both_id), ("big_orders", both_id), ("audit", audit_id)])
    assert unmatched["FailedEntryCount"] == 0 and len(unmatched["Entries"]) == 3
    for accepted in unmatched["Entries"]:
        assert any(accepted["EventId"] in r.getMessage() and r.getMessage().endswith("-> no rule")
                   for r in caplog.records), accepted
    assert len(recorded(gateway)) == 3  # the unmatched ones were never scheduled


def test_refused_entries_get_aws_error_codes_and_the_rest_are_delivered(gateway: GatewayHandle) -> None:
    answer = events_client(gateway).put_events(Entries=[
        {"Source": "shop.orders", "DetailType": "Order", "Detail": "[1, 2]"},
        {"Source": "shop.orders", "DetailType": "Order", "Detail": "not json"},
        {"Source": "shop.orders", "DetailType": "Order", "Detail": '"a string"'},
        {"Source": "shop.orders", "DetailType": "Order"},
        {"DetailType": "Order", "Detail": "{}"},
        {"Source": "shop.orders", "Detail": "{}"},
        {"Source": "aws.ec2", "DetailType": "Order", "Detail": "{}"},
        entry(detail=PAID_EU),
    ])
    assert answer["FailedEntryCount"] == 7
    codes = [e.get("ErrorCode") for e in answer["Entries"]]
    assert codes == ["MalformedDetail"] * 3 + ["InvalidArgument"] * 3 + ["NotAuthorizedForSourceException", None]
    assert answer["Entries"][3]["ErrorMessage"] == ("Parameter Detail is not valid. Reason: Detail is a required "
                                                   "argument.")
    assert answer["Entries"][0]["ErrorMessage"] == "Detail is malformed."
    (rule, event), = wait_recorded(gateway, 1)
    assert (rule, event["id"]) == ("paid_orders", answer["Entries"][7]["EventId"])


def test_request_level_validation(gateway: GatewayHandle) -> None:
    client = events_client(gateway)
    with pytest.raises(ClientError) as too_many:
        client.put_events(Entries=[entry()] * 11)
    assert too_many.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as too_big:
        client.put_events(Entries=[entry(detail={"blob": "x" * 90_000})] * 3)
    assert too_big.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as no_bus:
        client.put_events(Entries=[entry(detail=PAID_EU, EventBusName="orders-bus")])
    assert no_bus.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert recorded(gateway) == []
    default_arn = "arn:aws:events:us-east-1:123456789012:event-bus/default"
    for bus in ("default", default_arn):
        assert client.put_events(Entries=[entry(detail=PAID_EU, EventBusName=bus)])["FailedEntryCount"] == 0
    assert [rule for rule, _ in wait_recorded(gateway, 2)] == ["paid_orders", "paid_orders"]


def test_other_operations_and_other_posts(gateway: GatewayHandle) -> None:
    with pytest.raises(ClientError) as other:
        events_client(gateway).list_rules()
    assert other.value.response["Error"]["Code"] == "UnknownOperationException"
    request = urllib.request.Request(endpoint(gateway) + "/", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as plain:
        urllib.request.urlopen(request, timeout=5)
    assert plain.value.code == 403  # what the port answers anything it does not serve


def test_a_failing_handler_is_logged_and_does_not_fail_the_call(gateway: GatewayHandle,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    client = events_client(gateway)
    with caplog.at_level(logging.INFO, logger="devtools.gateway"):
        answer = client.put_events(Entries=[entry(source="toy.boom")])
        assert answer["FailedEntryCount"] == 0
        event_id = answer["Entries"][0]["EventId"]
        wait_until(lambda: any(f"EVENTBRIDGE boom {event_id} error" in r.getMessage() for r in caplog.records),
                   5.0, "the failed invocation's log line")
    failure = next(r for r in caplog.records if "handler failed" in r.getMessage())
    assert failure.exc_info is not None and "failed on purpose" in str(failure.exc_info[1])
    client.put_events(Entries=[entry(detail=PAID_EU)])
    assert [rule for rule, _ in wait_recorded(gateway, 2)] == ["boom", "paid_orders"]


def test_a_rule_the_matcher_cannot_match_fails_loudly(gateway: GatewayHandle) -> None:
    assert gateway.app_module is not None
    app: Any = gateway.app_module.app

    @app.on_cw_event({"source": [{"wildcard": "shop.*"}]})
    def wildcard(event: Any) -> None:  # registered for its pattern only
        raise AssertionError("never invoked")

    with pytest.raises(ClientError) as failed:
        events_client(gateway).put_events(Entries=[entry(detail=PAID_EU)])
    error = failed.value.response["Error"]
    assert error["Code"] == "InternalException"
    assert "wildcard" in error["Message"]
    assert recorded(gateway) == []


def _aws_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``.venv/bin/aws`` (requirements-dev.txt), the command the README shows, with throwaway credentials."""
    aws = Path(sys.executable).with_name("aws")
    assert aws.exists(), "awscli is in requirements-dev.txt: run `make deps`"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    env.pop("AWS_PROFILE", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(aws), *args], capture_output=True, text=True, timeout=60, env=env)

    return run


def test_aws_cli_put_events(gateway: GatewayHandle) -> None:
    entries = json.dumps([{"Source": "audit.cli", "DetailType": "Login", "Detail": json.dumps({"user": "bob"})}])
    done = _aws_cli()("events", "put-events", "--endpoint-url", endpoint(gateway), "--entries", entries)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["FailedEntryCount"] == 0
    (rule, event), = wait_recorded(gateway, 1)
    assert (rule, event["id"], event["detail"]) == ("audit", answer["Entries"][0]["EventId"], {"user": "bob"})


# -- hostile input: what AWS answers, never a 500 -------------------------------------------------

def _raw_put_events(handle: GatewayHandle, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(endpoint(handle) + "/", data=body, method="POST", headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AWSEvents.PutEvents"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("time_literal", ["NaN", "1e300", "-1e300", "Infinity"])
def test_a_time_no_date_can_hold_is_a_validation_exception(gateway: GatewayHandle, time_literal: str) -> None:
    body = ('{"Entries": [{"Source": "shop.orders", "DetailType": "Order", "Detail": "{}", "Time": '
            + time_literal + "}]}").encode()
    status, answer = _raw_put_events(gateway, body)
    assert (status, answer["__type"]) == (400, "ValidationException"), answer
    assert recorded(gateway) == []


def test_a_detail_nested_past_reading_is_malformed(gateway: GatewayHandle) -> None:
    deep = "[" * 1000 + "]" * 1000
    status, answer = _raw_put_events(gateway, json.dumps({"Entries": [entry(), {
        "Source": "shop.orders", "DetailType": "Order", "Detail": '{"a": ' + deep + "}"}]}).encode())
    assert status == 200 and answer["FailedEntryCount"] == 1
    assert answer["Entries"][1]["ErrorCode"] == "MalformedDetail" and "EventId" in answer["Entries"][0]
    status, answer = _raw_put_events(gateway, ('{"Entries": ' + "[" * 5000 + "]" * 5000 + "}").encode())
    assert (status, answer["__type"]) == (400, "SerializationException")
