"""The gateway's AWS stand-ins (Lambda Invoke, @connections, PutEvents): SDK requests only, and AWS's
answers to hostile input, never a 500. The attack from a real cross-origin page is in test_browser.py."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from devtools.gateway import GatewayHandle, run_in_thread

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = os.path.join(ROOT, "tests", "gateway_app")


@pytest.fixture
def gateway() -> Iterator[GatewayHandle]:
    handle = run_in_thread(TOY)
    try:
        yield handle
    finally:
        handle.stop()


def _request(handle: GatewayHandle, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{handle.port}{path}", data=body, method=method,
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


ENDPOINTS = [
    ("POST", "/2015-03-31/functions/ws_authorizer/invocations", {}),
    ("POST", "/dev/@connections/abc=", {}),
    ("DELETE", "/dev/@connections/abc=", {}),
    ("POST", "/", {"X-Amz-Target": "AWSEvents.PutEvents"}),
]


@pytest.mark.parametrize("method, path, extra", ENDPOINTS)
@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1:8000"])
def test_a_request_with_an_origin_is_refused(gateway: GatewayHandle, method: str, path: str,
                                             extra: dict[str, str], origin: str) -> None:
    status, _, body = _request(gateway, method, path, b"{}", {"Origin": origin, **extra})
    assert status == 403 and "Origin" in json.loads(body)["message"]


@pytest.mark.parametrize("method, path, extra", ENDPOINTS)
@pytest.mark.parametrize("content_type", ["text/plain", "text/plain;charset=UTF-8",
                                          "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_a_body_a_page_could_send_without_a_preflight_is_refused(gateway: GatewayHandle, method: str, path: str,
                                                                extra: dict[str, str], content_type: str) -> None:
    status, _, _ = _request(gateway, method, path, b"{}", {"Content-Type": content_type, **extra})
    assert status == 415


def test_the_sdks_still_get_through(gateway: GatewayHandle) -> None:
    options: dict[str, Any] = {"endpoint_url": f"http://127.0.0.1:{gateway.port}", "region_name": "us-east-1",
                               "aws_access_key_id": "local", "aws_secret_access_key": "local",
                               "config": Config(retries={"max_attempts": 1})}
    invoked = boto3.client("lambda", **options).invoke(FunctionName="ws_authorizer", Payload=b"{}")
    assert invoked["StatusCode"] == 200
    events = boto3.client("events", **options).put_events(
        Entries=[{"Source": "x", "DetailType": "y", "Detail": "{}"}])
    assert events["FailedEntryCount"] == 0
    management = boto3.client("apigatewaymanagementapi", **{**options, "endpoint_url": options["endpoint_url"] + "/dev"})
    with pytest.raises(management.exceptions.GoneException):
        management.post_to_connection(ConnectionId="abc=", Data=b"x")  # through the check: the id is unknown


def test_an_invoke_body_nested_past_reading_is_the_functions_error(gateway: GatewayHandle) -> None:
    status, headers, body = _request(gateway, "POST", "/2015-03-31/functions/ws_authorizer/invocations",
                                     b"[" * 5000 + b"]" * 5000, {"Content-Type": "application/json"})
    assert status == 200 and headers.get("X-Amz-Function-Error") == "Unhandled"
    assert json.loads(body)["errorType"] == "Runtime.UnmarshalError"
