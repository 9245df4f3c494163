"""A connection does not outlive its token: end to end, real WebSockets against the local stack.

The stack runs as ``make run`` does (``devtools.stack``), with the app trusting
a JWKS served by the test (tokens from ``tests.support.jwt_factory``, which
can live seconds rather than Cognito's hour), and the gateway invoking the
``token_expiry`` schedule every second (``LOCAL_GATEWAY_SCHEDULE_INTERVAL``)
with EventBridge's scheduled event, instead of every minute.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from devtools.gateway.scheduler import SCHEDULE_INTERVAL_ENV
from tests.support.jwt_factory import CLIENT_ID, ISSUER, POOL_ID, JwksServer, KeyPair, TokenFactory
from tests.support.stack import Client, RunningStack, run_stack

pytestmark = pytest.mark.timeout(180)

WARNING_SECONDS = 3


@pytest.fixture(scope="module")
def tokens() -> Iterator[tuple[TokenFactory, JwksServer]]:
    key = KeyPair.generate("k1")
    with JwksServer([key]) as jwks:
        yield TokenFactory(ISSUER, CLIENT_ID, key), jwks


def _stack(jwks: JwksServer, **settings: str) -> Any:
    return run_stack({"COGNITO_USER_POOL_ID": POOL_ID, "COGNITO_APP_CLIENT_IDS": CLIENT_ID,
                      "COGNITO_REGION": "us-east-1", "COGNITO_JWKS_URL": jwks.url,
                      "TOKEN_EXPIRY_WARNING_SECONDS": str(WARNING_SECONDS), **settings},
                     env={SCHEDULE_INTERVAL_ENV: "1"})


@pytest.fixture(scope="module")
def stack(tokens: tuple[TokenFactory, JwksServer]) -> Iterator[RunningStack]:
    with _stack(tokens[1]) as running:
        yield running


def _open(stack: RunningStack, token: str) -> Client:
    ws = connect(stack.ws_url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=5,
                 close_timeout=2)
    client = Client(ws)
    client.connection_id = client.whoami()["connectionId"]
    return client


def _sub() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


def _next(client: Client, kind: str, timeout: float) -> dict[str, Any]:
    """The next frame of type ``kind`` (frames of other types are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = client.recv(timeout=max(0.05, deadline - time.monotonic()))
        if frame["type"] == kind:
            return frame


def _wait_closed(client: Client, timeout: float) -> list[dict[str, Any]]:
    """Frames received until the server closes the socket (AssertionError if it stays open)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(json.loads(client.ws.recv(timeout=max(0.05, deadline - time.monotonic()))))
        except TimeoutError:
            break
        except ConnectionClosed:
            return seen
    raise AssertionError(f"still open after {timeout}s; received {seen}")


def test_an_expiring_connection_is_warned_then_closed(stack: RunningStack,
                                                      tokens: tuple[TokenFactory, JwksServer]) -> None:
    factory = tokens[0]
    token = factory.access_token(sub=_sub(), exp_in=WARNING_SECONDS + 3)
    exp = int(jwt.decode(token, options={"verify_signature": False})["exp"])
    client = _open(stack, token)
    warning = _next(client, "token_expiring", timeout=WARNING_SECONDS + 3)
    assert warning == {"type": "token_expiring", "expiresAt": exp}
    assert time.time() < exp  # before the close, not after
    later = _wait_closed(client, timeout=exp - time.time() + 4)
    assert all(frame["type"] != "token_expiring" for frame in later), later  # warned once
    assert time.time() >= exp
    assert client.ws.close_code == 1000  # closed through DELETE @connections, not dropped
    stack.wait_until(lambda: stack.connection_item(client.connection_id) is None, 5, "the item to be deleted")
    stack.wait_for_log("SCHEDULE token_expiry")


def test_a_refreshed_connection_stays_open_past_the_old_expiry(stack: RunningStack,
                                                               tokens: tuple[TokenFactory, JwksServer]) -> None:
    factory, sub = tokens[0], _sub()
    old_exp = int(time.time()) + 4
    client = _open(stack, factory.access_token(sub=sub, exp_in=4))
    fresh = factory.access_token(sub=sub, exp_in=600)
    client.send({"action": "refresh", "token": fresh, "id": "r1"})
    answer = _next(client, "refreshed", timeout=5)
    assert answer["id"] == "r1" and answer["expiresAt"] >= old_exp + 590
    time.sleep(max(0.0, old_exp - time.time()) + 3)  # three sweeps past the old expiry
    assert client.whoami()["connectionId"] == client.connection_id
    assert client.whoami()["claims"]["exp"] == answer["expiresAt"]
    client.close()


def test_a_refresh_with_another_users_token_is_refused_and_closes(stack: RunningStack,
                                                                  tokens: tuple[TokenFactory, JwksServer]) -> None:
    factory = tokens[0]
    client = _open(stack, factory.access_token(sub=_sub(), exp_in=600))
    client.send({"action": "refresh", "token": factory.access_token(sub=_sub(), exp_in=600)})
    frames = _wait_closed(client, timeout=5)
    errors = [f for f in frames if f["type"] == "error"]
    assert [(e["code"], bool(e["messageId"])) for e in errors] == [("token_mismatch", True)], frames
    stack.wait_until(lambda: stack.connection_item(client.connection_id) is None, 5, "the item to be deleted")


def test_a_forged_refresh_is_refused_and_changes_nothing(stack: RunningStack,
                                                         tokens: tuple[TokenFactory, JwksServer]) -> None:
    factory = tokens[0]
    sub = _sub()
    client = _open(stack, factory.access_token(sub=sub, exp_in=600))
    forged = factory.sign(factory.access_claims(sub=sub, exp_in=6000), key=KeyPair.generate("k1-rogue").with_kid("k1"))
    assert client.request({"action": "refresh", "token": forged})["code"] == "invalid_token"
    assert client.whoami()["claims"]["exp"] < time.time() + 700
    client.close()


def test_token_expiry_ignore_leaves_the_connection_open(tokens: tuple[TokenFactory, JwksServer]) -> None:
    factory, jwks = tokens
    with _stack(jwks, TOKEN_EXPIRY="ignore") as ignoring:
        client = _open(ignoring, factory.access_token(sub=_sub(), exp_in=2))
        time.sleep(4)  # four sweeps, two seconds past the token's exp
        ignoring.wait_for_log("SCHEDULE token_expiry")
        assert client.whoami()["connectionId"] == client.connection_id
        client.close()
