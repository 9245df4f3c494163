"""Faults under a running stack, end to end with real WebSocket clients.

* DynamoDB unreachable: the stack's app is pointed at a DynamoDB Local the
  test owns (``AWS_ENDPOINT_URL_DYNAMODB``), which the test stops and starts
  again on the same port. While it is down a frame is answered ``unavailable``
  (not a 500, not ``internal_error``) and ``$connect`` fails closed; once it is
  back everything works without restarting the stack (in-memory data is lost,
  so the table is created again and clients reconnect).
* The JWKS endpoint down or hanging: a token whose key is not cached is
  refused (401) within ``JWKS_TIMEOUT_SECONDS``.
"""
from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from chalicelib import schema
from devtools.dynamodb_local import DynamoDBLocal
from tests.support.jwt_factory import CLIENT_ID, ISSUER, POOL_ID, JwksServer, KeyPair, TokenFactory
from tests.support.stack import Client, RunningStack, run_stack

pytestmark = pytest.mark.timeout(240)

JWKS_TIMEOUT = 1.0


class Env:
    def __init__(self, stack: RunningStack, dynamodb: DynamoDBLocal, tokens: TokenFactory, jwks: JwksServer) -> None:
        self.stack, self.dynamodb, self.tokens, self.jwks = stack, dynamodb, tokens, jwks

    def token(self, sub: str | None = None, key: KeyPair | None = None) -> str:
        claims = self.tokens.access_claims(sub=sub or f"user-{uuid.uuid4().hex[:10]}", exp_in=600)
        return self.tokens.sign(claims, key=key)

    def open(self, token: str | None = None) -> Client:
        ws = connect(self.stack.ws_url, additional_headers={"Authorization": f"Bearer {token or self.token()}"},
                     open_timeout=10, close_timeout=2)
        client = Client(ws)
        client.connection_id = client.whoami()["connectionId"]
        return client

    def create_table(self) -> None:
        schema.create_table(self.dynamodb.client(), self.stack.table)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    key = KeyPair.generate("k1")
    with JwksServer([key]) as jwks, DynamoDBLocal() as dynamodb:
        with run_stack({"COGNITO_USER_POOL_ID": POOL_ID, "COGNITO_APP_CLIENT_IDS": CLIENT_ID,
                        "COGNITO_REGION": "us-east-1", "COGNITO_JWKS_URL": jwks.url,
                        "JWKS_TIMEOUT_SECONDS": str(JWKS_TIMEOUT), "JWKS_REFRESH_COOLDOWN_SECONDS": "1",
                        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb.endpoint_url}) as stack:
            running = Env(stack, dynamodb, TokenFactory(ISSUER, CLIENT_ID, key), jwks)
            running.create_table()
            yield running


def _refused(env: Env, token: str) -> tuple[int, float]:
    started = time.monotonic()
    with pytest.raises(InvalidStatus) as caught:
        with connect(env.stack.ws_url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=20):
            pass
    return caught.value.response.status_code, time.monotonic() - started


def test_dynamodb_down_answers_unavailable_then_recovers_without_a_restart(env: Env) -> None:
    port = env.dynamodb.port
    alice, bob = env.open(), env.open()
    assert alice.request({"action": "sendmessage", "data": "before", "id": "m0"})["delivered"] == 1
    assert bob.recv()["data"] == "before"

    env.dynamodb.stop()
    try:
        for frame in ({"action": "sendmessage", "data": "during", "id": "m1"}, {"action": "whoami", "id": 7},
                      {"action": "subscribe", "topic": "public/news"}):
            started = time.monotonic()
            answer = alice.request(frame, timeout=30)
            assert (answer["type"], answer["code"]) == ("error", "unavailable"), answer
            assert answer.get("id") == frame.get("id")
            assert time.monotonic() - started < 15  # small connect timeout: the answer comes fast
        bob.recv_none(within=0.5)  # nothing was sent
        status, _ = _refused(env, env.token())  # $connect fails closed
        assert status == 500
    finally:
        env.dynamodb = DynamoDBLocal(port=port).start()  # the same port: the app's endpoint is unchanged
    assert env.dynamodb.endpoint_url.endswith(f":{port}")
    env.create_table()  # in memory: the old table and its items are gone

    assert alice.request({"action": "whoami"})["code"] == "not_connected"  # its item was lost, the socket works
    carol, dave = env.open(), env.open()  # reconnecting works, nothing restarted
    assert carol.request({"action": "sendmessage", "data": "after"})["delivered"] == 1
    assert dave.recv()["data"] == "after"
    assert carol.request({"action": "subscribe", "topic": "public/news"})["type"] == "subscribed"
    for client in (alice, bob, carol, dave):
        client.close()


def _get_me(url: str, token: str) -> tuple[int, dict[str, Any]]:
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{url}/me", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_waits_are_bounded_while_dynamodb_is_frozen(env: Env) -> None:
    """DynamoDB accepts connections and never answers (SIGSTOP): each entry point answers within its
    budget (a frame and REST about 3 s, $connect about 5 s), not read timeout x attempts."""
    alice = env.open()
    token = env.token()
    rest = env.stack.state["rest_url"]
    assert env.dynamodb.process is not None
    os.kill(env.dynamodb.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        answer = alice.request({"action": "whoami", "id": "frozen"}, timeout=60)
        frame_wait = time.monotonic() - started
        assert (answer["code"], answer["id"]) == ("unavailable", "frozen")

        started = time.monotonic()
        status, body = _get_me(rest, token)
        rest_wait = time.monotonic() - started
        assert (status, body["error"]["code"]) == (503, "unavailable")

        status, connect_wait = _refused(env, env.token())
        assert status == 500
    finally:
        os.kill(env.dynamodb.process.pid, signal.SIGCONT)
    assert frame_wait < 4.5 and rest_wait < 4.5 and connect_wait < 7.0, (frame_wait, rest_wait, connect_wait)
    assert alice.request({"action": "whoami"})["type"] == "whoami"  # thawed: answered again
    alice.close()


@pytest.mark.parametrize("fault", ["hang", "503"])
def test_jwks_down_refuses_an_uncached_key_within_the_timeout(env: Env, fault: str) -> None:
    known = env.open()  # k1 is cached by the verifier: unaffected by the outage
    time.sleep(1.1)  # past JWKS_REFRESH_COOLDOWN_SECONDS: the unknown kid makes the verifier fetch again
    if fault == "hang":
        env.jwks.hang(10)
    else:
        env.jwks.fail(503)
    try:
        status, elapsed = _refused(env, env.token(key=KeyPair.generate("k2")))
        assert status == 401
        assert elapsed < JWKS_TIMEOUT + 2.5, elapsed
        assert env.open().whoami()["userId"]  # a cached key still verifies
    finally:
        env.jwks.hang(0)
        env.jwks.fail(None)
    assert known.whoami()["connectionId"] == known.connection_id
    known.close()
