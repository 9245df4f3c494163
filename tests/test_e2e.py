"""End to end: real clients (Python ``websockets`` and npm ``wscat``) against the running stack.

One ``python -m devtools.stack`` (DynamoDB Local, Cognito on moto, the gateway
serving app.py) for the session; tokens come from the local pool, so the
authorizer verifies real RS256 signatures against the pool's JWKS over HTTP.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from devtools.gateway import LocalGateway
from devtools.gateway.server import LOSE_DISCONNECT_HEADER, LOSE_DISCONNECTS_ENV
from devtools.processes import stop_process_group
from tests.support.builders import stage_environment
from tests.support.stack import (ROOT, STACK_ENV, STACK_OVERRIDES, STACK_SETTINGS, WSCAT, Client, ClientFactory,
                                 RunningStack, User, run_stack,
                                 WscatFactory, without_message_id)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

WSCAT_401 = "error: Unexpected server response: 401"


# -- helpers --------------------------------------------------------------------------

def _moto_signing_key() -> Any:
    """The private key moto signs every local Cognito token with (kid "dummy")."""
    from moto.utilities.utils import load_resource

    return jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(load_resource("cognitoidp/resources/jwks-private.json")))


def _resign(token: str, key: Any, **changes: Any) -> str:
    """The token's claims (with ``changes``) signed again with ``key`` under kid "dummy"."""
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(changes)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "dummy"})


def _refused(stack: RunningStack, url_suffix: str = "", **options: Any) -> int:
    """Open a handshake that must be refused; returns the HTTP status (body must match it)."""
    with pytest.raises(InvalidStatus) as caught:
        with connect(stack.ws_url + url_suffix, open_timeout=5, **options):
            pass
    response = caught.value.response
    messages = {401: "Unauthorized", 403: "Forbidden"}
    assert json.loads(response.body) == {"message": messages[response.status_code]}
    return int(response.status_code)


def _message_from(user: User, data: Any) -> dict[str, Any]:
    return {"type": "message", "from": {"userId": user.sub, "username": user.username}, "data": data}


def _without_timestamp(frame: dict[str, Any]) -> dict[str, Any]:
    assert isinstance(frame.get("timestamp"), int) and frame["timestamp"] > 1_600_000_000_000, frame
    return {k: v for k, v in frame.items() if k != "timestamp"}


# -- refusals (Python client) ---------------------------------------------------------

def test_no_token_is_401(local_stack: RunningStack) -> None:
    assert _refused(local_stack) == 401


def test_garbage_and_tampered_tokens_are_401(local_stack: RunningStack) -> None:
    user = local_stack.user("mallory")
    head, payload, signature = user.access_token.split(".")
    middle = len(signature) // 2
    flipped = signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1:]
    assert _refused(local_stack, additional_headers={"Authorization": f"Bearer {head}.{payload}.{flipped}"}) == 401
    assert _refused(local_stack, "?access_token=not-a-jwt") == 401
    # Claims changed under the original signature (a forged sub).
    forged = jwt.utils.base64url_encode(json.dumps(
        {**jwt.decode(user.access_token, options={"verify_signature": False}), "sub": "someone-else"}).encode()).decode()
    assert _refused(local_stack, additional_headers={"Authorization": f"Bearer {head}.{forged}.{signature}"}) == 401


def test_token_signed_by_another_key_is_401(local_stack: RunningStack) -> None:
    user = local_stack.user("mallory")
    rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert _refused(local_stack, additional_headers={
        "Authorization": f"Bearer {_resign(user.access_token, rogue)}"}) == 401


def test_expired_token_is_401_though_validly_signed(local_stack: RunningStack, ws_clients: ClientFactory) -> None:
    user = local_stack.user("late")
    key = _moto_signing_key()
    now = int(time.time())
    # Control: the same key and claims with a future expiry are accepted, so only exp differs.
    fresh = ws_clients(_resign(user.access_token, key, exp=now + 600))
    assert fresh.whoami()["userId"] == user.sub
    expired = _resign(user.access_token, key, exp=now - 60, iat=now - 3660)
    assert _refused(local_stack, additional_headers={"Authorization": f"Bearer {expired}"}) == 401
    assert _refused(local_stack, f"?ID_Token={_resign(user.id_token, key, exp=now - 5)}") == 401


# -- token sources (Python client) -----------------------------------------------------

@pytest.mark.parametrize("via, token_use", [("header", "access"), ("access_token", "access"), ("ID_Token", "id")])
def test_valid_token_by_header_and_query(local_stack: RunningStack, ws_clients: ClientFactory,
                                         via: str, token_use: str) -> None:
    user = local_stack.user("alice")
    token = user.id_token if token_use == "id" else user.access_token
    client = ws_clients(token, via=via)
    identity = client.whoami()
    assert identity["userId"] == user.sub
    assert identity["username"] == user.username
    assert identity["tokenSource"] == ("header" if via == "header" else "query")
    assert identity["claims"]["token_use"] == token_use
    assert identity["claims"]["iss"] == local_stack.pool.issuer
    assert client.ws.subprotocol is None


def test_valid_token_by_subprotocol_selects_the_marker(local_stack: RunningStack, ws_clients: ClientFactory) -> None:
    user = local_stack.user("alice")
    client = ws_clients(user.access_token, via="protocol")
    assert client.ws.subprotocol == "cognito-jwt"
    assert client.ws.response is not None
    assert client.ws.response.headers.get_all("Sec-WebSocket-Protocol") == ["cognito-jwt"]
    assert client.whoami()["tokenSource"] == "protocol"


def test_cookie_with_csrf_and_allowed_origin(local_stack: RunningStack, ws_clients: ClientFactory) -> None:
    user = local_stack.user("browser")
    csrf = uuid.uuid4().hex
    cookie = {"Cookie": f"JWT={user.access_token}; CSRF-TOKEN={csrf}"}
    by_query = ws_clients(query={"csrf": csrf}, headers=cookie, origin=local_stack.origin)
    identity = by_query.whoami()
    assert (identity["userId"], identity["tokenSource"]) == (user.sub, "cookie")
    # The double-submit value may come as a csrf.<value> subprotocol instead; being all the
    # client offered, it is what the answer selects (browsers fail a handshake that selects none).
    by_protocol = ws_clients(headers=cookie, subprotocols=[f"csrf.{csrf}"], origin=local_stack.origin)
    assert by_protocol.whoami()["tokenSource"] == "cookie"
    assert by_protocol.ws.subprotocol == f"csrf.{csrf}"


def test_cookie_refused_with_foreign_origin_or_csrf_mismatch(local_stack: RunningStack) -> None:
    user = local_stack.user("browser")
    csrf = uuid.uuid4().hex
    cookie = {"Cookie": f"JWT={user.access_token}; CSRF-TOKEN={csrf}"}
    assert _refused(local_stack, f"?csrf={csrf}", additional_headers=cookie, origin="https://evil.example") == 401
    assert _refused(local_stack, f"?csrf={csrf}", additional_headers=cookie) == 401  # no Origin at all
    assert _refused(local_stack, "?csrf=" + "0" * 32, additional_headers=cookie, origin=local_stack.origin) == 401
    assert _refused(local_stack, additional_headers=cookie, origin=local_stack.origin) == 401  # no CSRF value


# -- messaging --------------------------------------------------------------------------

def test_sendmessage_reaches_the_two_others_not_the_sender(local_stack: RunningStack,
                                                           ws_clients: ClientFactory) -> None:
    alice, bob, carol = (local_stack.user(n) for n in ("alice", "bob", "carol"))
    sender, b, c = ws_clients(alice.access_token), ws_clients(bob.access_token), ws_clients(carol.id_token, via="ID_Token")
    data = {"text": "hello world", "n": 1}
    ack = sender.request({"action": "sendmessage", "data": data, "id": "m1"})
    assert ack == {"type": "ack", "action": "sendmessage", "delivered": 2, "gone": 0, "failed": 0, "id": "m1"}
    for receiver in (b, c):
        assert _without_timestamp(receiver.recv()) == _message_from(alice, data)
    sender.recv_none()
    b.recv_none(0.1)
    c.recv_none(0.1)


def test_topic_publish_reaches_subscribers_only(local_stack: RunningStack, ws_clients: ClientFactory) -> None:
    users = [local_stack.user(n) for n in ("pub", "sub1", "sub2", "other")]
    publisher, sub1, sub2, other = (ws_clients(u.access_token) for u in users)
    topic = f"public/news-{uuid.uuid4().hex[:8]}"
    for client in (sub1, sub2):
        assert client.request({"action": "subscribe", "topic": topic}) == {"type": "subscribed", "topic": topic}
    assert other.request({"action": "subscribe", "topic": topic + "-x"})["type"] == "subscribed"
    ack = publisher.request({"action": "publish", "topic": topic, "data": "extra!"})
    assert ack == {"type": "ack", "action": "publish", "topic": topic, "delivered": 2, "gone": 0, "failed": 0}
    expected = {"type": "publish", "topic": topic, "from": {"userId": users[0].sub, "username": users[0].username},
                "data": "extra!"}
    assert _without_timestamp(sub1.recv()) == expected
    assert _without_timestamp(sub2.recv()) == expected
    other.recv_none()
    publisher.recv_none(0.1)
    # After unsubscribing, sub2 no longer gets the topic.
    assert sub2.request({"action": "unsubscribe", "topic": topic}) == {
        "type": "unsubscribed", "topic": topic, "wasSubscribed": True}
    assert publisher.request({"action": "publish", "topic": topic, "data": 2})["delivered"] == 1
    assert _without_timestamp(sub1.recv())["data"] == 2
    sub2.recv_none(0.2)


def test_notify_reaches_every_connection_of_one_user_only(local_stack: RunningStack,
                                                          ws_clients: ClientFactory) -> None:
    alice, bob = local_stack.user("alice"), local_stack.user("bob")
    alice_1, alice_2 = ws_clients(alice.access_token), ws_clients(alice.id_token, via="ID_Token")
    bob_1 = ws_clients(bob.access_token)
    answer = local_stack.invoke("notify", {"userId": alice.sub, "data": {"kind": "invoice", "n": 7}})
    assert answer == {"ok": True, "connections": 2, "delivered": 2, "gone": 0, "failed": 0}
    for client in (alice_1, alice_2):
        assert _without_timestamp(client.recv()) == {"type": "notification", "data": {"kind": "invoice", "n": 7}}
    bob_1.recv_none()
    by_name = local_stack.invoke("notify", {"username": bob.username, "data": "hi bob"})
    assert by_name == {"ok": True, "connections": 1, "delivered": 1, "gone": 0, "failed": 0}
    assert _without_timestamp(bob_1.recv()) == {"type": "notification", "data": "hi bob"}
    alice_1.recv_none(0.1)
    alice_2.recv_none(0.1)


def test_default_route_echoes_with_the_stored_connection_data(local_stack: RunningStack,
                                                              ws_clients: ClientFactory) -> None:
    assert STACK_SETTINGS["CONTEXT_QUERY_PARAMS"] == "clientQueryParameter"
    user = local_stack.user("echo")
    client = ws_clients(user.access_token, via="access_token", query={"clientQueryParameter": "seed-value"})
    body = {"hello": "world", "nested": {"n": [1, 2]}}
    echo = client.request(body)
    assert set(echo) == {"type", "message", "connection"}
    assert (echo["type"], echo["message"]) == ("echo", body)
    connection = echo["connection"]
    assert connection["connectionId"] == client.connection_id
    assert (connection["userId"], connection["username"]) == (user.sub, user.username)
    assert connection["tokenSource"] == "query"
    assert connection["clientParams"] == {"query_clientQueryParameter": "seed-value"}
    assert connection["sourceIp"] == "127.0.0.1"
    assert connection["userAgent"].startswith("Python/")
    assert connection["claims"]["sub"] == user.sub and connection["claims"]["token_use"] == "access"
    assert user.access_token not in json.dumps(echo)  # the token is never stored or echoed
    # The identity is what DynamoDB holds for the connection.
    item = local_stack.connection_item(client.connection_id)
    assert item is not None
    assert (item["userId"]["S"], item["username"]["S"]) == (user.sub, user.username)
    assert echo == client.request(body)  # stable across messages
    assert client.request({"action": "whoami"}) == {"type": "whoami", "identity": connection}


def test_bad_frames_get_error_frames(local_stack: RunningStack, ws_clients: ClientFactory) -> None:
    client = ws_clients(local_stack.user("typo").access_token)
    assert client.request("not json") == {"type": "error", "code": "invalid_json", "message": "message is not valid JSON"}
    unknown = client.request({"action": "nope"})
    assert (unknown["type"], unknown["code"]) == ("error", "unknown_action")
    missing = client.request({"action": "sendmessage"})
    assert (missing["type"], missing["code"]) == ("error", "missing_field")


# -- connection records -----------------------------------------------------------------

def test_closing_a_client_deletes_its_item(local_stack: RunningStack, ws_clients: ClientFactory) -> None:
    client = ws_clients(local_stack.user("bye").access_token)
    topic = f"public/t-{uuid.uuid4().hex[:8]}"
    assert client.request({"action": "subscribe", "topic": topic})["type"] == "subscribed"
    assert local_stack.connection_item(client.connection_id) is not None
    client.close()
    def left() -> list[dict[str, Any]]:
        return local_stack.dynamodb.query(
            TableName=local_stack.table, KeyConditionExpression="pk = :pk", ConsistentRead=True,
            ExpressionAttributeValues={":pk": {"S": f"CONN#{client.connection_id}"}})["Items"]

    # $disconnect removes the connection's item first, then its subscriptions: all but the tombstone go.
    local_stack.wait_until(lambda: [item["sk"]["S"] for item in left()] == ["GONE"],
                           what="the closed connection's items to be deleted")
    leftovers = left()
    assert int(leftovers[0]["ttl"]["N"]) <= time.time() + 600  # the tombstone: refuses a late $connect, then expires


def test_stale_connection_is_removed_by_the_first_broadcast_410(local_stack: RunningStack,
                                                               ws_clients: ClientFactory) -> None:
    """A connection lost without $disconnect (best effort on AWS) leaves an item behind."""
    alice, bob = local_stack.user("alice"), local_stack.user("bob")
    receiver, sender = ws_clients(alice.access_token), ws_clients(bob.access_token)
    item = local_stack.connection_item(receiver.connection_id)
    assert item is not None
    stale_id = "Stale" + uuid.uuid4().hex[:10] + "="
    local_stack.dynamodb.put_item(TableName=local_stack.table, Item={
        **item, "pk": {"S": f"CONN#{stale_id}"}, "connectionId": {"S": stale_id}})
    assert sorted(local_stack.stored_connection_ids()) == sorted([receiver.connection_id, sender.connection_id,
                                                                  stale_id])
    ack = sender.request({"action": "sendmessage", "data": "anyone?"})
    assert ack == {"type": "ack", "action": "sendmessage", "delivered": 1, "gone": 1, "failed": 0}
    assert _without_timestamp(receiver.recv()) == _message_from(bob, "anyone?")
    assert local_stack.connection_item(stale_id) is None
    assert receiver.ws.protocol.state.name == "OPEN"
    # The next broadcast meets no stale record.
    again = sender.request({"action": "sendmessage", "data": "again"})
    assert (again["delivered"], again["gone"]) == (1, 0)
    assert _without_timestamp(receiver.recv())["data"] == "again"


def _abort(client: Client) -> None:
    """Drop the TCP connection without a close frame (a phone losing its network)."""
    client.ws.socket.shutdown(socket.SHUT_RDWR)


def test_connection_dropped_without_disconnect_is_cleaned_up_by_410(local_stack: RunningStack,
                                                                    ws_clients: ClientFactory) -> None:
    """The gateway loses this connection's $disconnect on purpose (LOCAL_GATEWAY_LOSE_DISCONNECTS)."""
    alice, bob = local_stack.user("alice"), local_stack.user("bob")
    sender = ws_clients(bob.access_token)
    doomed = ws_clients(alice.access_token, headers={LOSE_DISCONNECT_HEADER: "1"})
    control = ws_clients(alice.access_token)  # dropped the same way, without the header
    _abort(doomed)
    _abort(control)
    line = local_stack.wait_for_log(f" DISCONNECT - {doomed.connection_id} 0 ")
    assert "1006 connection lost; $disconnect lost on purpose" in line
    local_stack.wait_until(lambda: local_stack.connection_item(control.connection_id) is None,
                           what="the control connection's $disconnect")
    assert local_stack.connection_item(doomed.connection_id) is not None
    ack = sender.request({"action": "sendmessage", "data": "still there?"})
    assert ack == {"type": "ack", "action": "sendmessage", "delivered": 0, "gone": 1, "failed": 0}
    assert local_stack.connection_item(doomed.connection_id) is None
    notified = local_stack.invoke("notify", {"userId": alice.sub, "data": "x"})
    assert notified == {"ok": True, "connections": 0, "delivered": 0, "gone": 0, "failed": 0}


def test_losing_disconnects_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOSE_DISCONNECTS_ENV, raising=False)
    assert LocalGateway(".").lose_disconnects is False
    monkeypatch.setenv(LOSE_DISCONNECTS_ENV, "1")
    assert LocalGateway(".").lose_disconnects is True
    assert LocalGateway(".", lose_disconnects=False).lose_disconnects is False


# -- wscat --------------------------------------------------------------------------------

def test_wscat_without_token_gets_401(local_stack: RunningStack, wscat: WscatFactory) -> None:
    process = wscat("-c", local_stack.ws_url)
    assert process.wait_exit(10) != 0
    assert process.stderr.text().strip() == WSCAT_401
    expired = _resign(local_stack.user("late").access_token, _moto_signing_key(), exp=int(time.time()) - 60)
    process = wscat("-c", local_stack.ws_url, "-H", f"Authorization: Bearer {expired}")
    assert process.wait_exit(10) != 0
    assert process.stderr.text().strip() == WSCAT_401


def test_wscat_header_token_receives_a_python_clients_message(local_stack: RunningStack, ws_clients: ClientFactory,
                                                              wscat: WscatFactory) -> None:
    alice, bob = local_stack.user("alice"), local_stack.user("bob")
    sender = ws_clients(bob.access_token)
    cli = wscat("-c", local_stack.ws_url, "-H", f"Authorization: Bearer {alice.access_token}")
    identity = cli.wait_open()
    assert (identity["userId"], identity["tokenSource"]) == (alice.sub, "header")
    ack = sender.request({"action": "sendmessage", "data": "to wscat"})
    assert ack == {"type": "ack", "action": "sendmessage", "delivered": 1, "gone": 0, "failed": 0}
    frame = cli.next_frame(skip=lambda f: f["type"] == "whoami")
    assert _without_timestamp(frame) == _message_from(bob, "to wscat")
    cli.close()
    assert cli.wait_exit(5) == 0
    local_stack.wait_no_connections([identity["connectionId"]])


def test_wscat_subprotocol_token_and_execute(local_stack: RunningStack, wscat: WscatFactory) -> None:
    """ws (wscat's library) fails the handshake unless the server selects an offered subprotocol."""
    user = local_stack.user("proto")
    cli = wscat("-c", local_stack.ws_url, "-s", "cognito-jwt", "-s", user.access_token,
                "-x", '{"hello":"from wscat"}', "-w", "1")
    echo = cli.next_frame()
    assert (echo["type"], echo["message"]) == ("echo", {"hello": "from wscat"})
    assert (echo["connection"]["userId"], echo["connection"]["tokenSource"]) == (user.sub, "protocol")
    assert cli.wait_exit(10) == 0
    assert cli.stderr.text() == ""
    local_stack.wait_no_connections([echo["connection"]["connectionId"]])


def test_wscat_id_token_query_sendmessage_like_the_tutorials(local_stack: RunningStack, ws_clients: ClientFactory,
                                                        wscat: WscatFactory) -> None:
    alice, bob = local_stack.user("alice"), local_stack.user("bob")
    listener = ws_clients(bob.access_token)
    cli = wscat("-c", f"{local_stack.ws_url}?ID_Token={alice.id_token}")
    identity = cli.wait_open()
    assert (identity["userId"], identity["tokenSource"], identity["claims"]["token_use"]) == (alice.sub, "query", "id")
    cli.send_line('{"message":"sendmessage", "data":"hello world"}')
    ack = cli.next_frame(skip=lambda f: f["type"] == "whoami")
    assert ack == {"type": "ack", "action": "sendmessage", "delivered": 1, "gone": 0, "failed": 0}
    assert _without_timestamp(listener.recv()) == _message_from(alice, "hello world")
    cli.close()
    assert cli.wait_exit(5) == 0
    local_stack.wait_no_connections([identity["connectionId"]])


# -- the local-stack walkthrough: a header token and an ID_Token query, with wscat in a terminal ----
#
# wscat prints its session ("Connected ...", "> " typed lines, "< " received frames,
# errors) only to a terminal, so these run it under `script` (a pty), feeding it
# keystrokes and reading the screen, with the documented commands. The commands below
# must appear verbatim in docs/local-stack.md; only the URL's port, `npx` (the same
# node_modules/.bin/wscat) and `make -s token`'s state file (this stack's, not
# .local/stack.json) are substituted.

README_URL = "ws://127.0.0.1:8000/dev"
HEADER_TOKEN_SESSION = (
    """TOKEN=$(make -s token USER=alice FIELD=access)""",
    """npx wscat -c 'ws://127.0.0.1:8000/dev?clientQueryParameter=clientQueryParameterValue'"""
    """ -H "authorization:Bearer $TOKEN" -H 'clientHeader:clientHeaderValue'""",
)
ECHO_FRAME = '{"hello":"world"}'


def _id_token_session(user: str) -> tuple[str, str]:
    return (f"""ID_TOKEN=$(make -s token USER={user} FIELD=id)""",
            '''npx wscat -c "ws://127.0.0.1:8000/dev?ID_Token=$ID_TOKEN"''')


SENDMESSAGE_FRAME = '{"message":"sendmessage", "data":"hello world"}'
BAD_TOKEN_SESSION = '''npx wscat -c "ws://127.0.0.1:8000/dev?ID_Token=not-a-token"'''
CONNECTED = "Connected (press CTRL+C to quit)"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def _readme() -> str:
    """The page that documents these commands."""
    return (ROOT / "docs" / "local-stack.md").read_text()


class TerminalWscat:
    """The README's commands in one terminal: ``timeout 30 script -qefc "bash <script>" /dev/null``."""

    def __init__(self, stack: RunningStack, commands: tuple[str, ...], tmp: Path, page: str = "docs/local-stack.md") -> None:
        shown = (ROOT / page).read_text()
        for command in commands:
            assert command in shown, f"{page} no longer shows {command!r}"
        assert stack.state_file is not None
        lines = []
        for command in commands:
            line = (command.replace("make -s token USER=", f"{shlex.quote(sys.executable)} -m devtools.token "
                                                          f"--state-file {shlex.quote(str(stack.state_file))} --user ")
                    .replace(" FIELD=", " --field ")
                    .replace("npx wscat ", f"exec {shlex.quote(str(WSCAT))} ")
                    .replace(README_URL, stack.ws_url))
            assert line != command, command
            lines.append(line)
        script_file = tmp / f"terminal-{uuid.uuid4().hex[:8]}.sh"
        script_file.write_text("set -eo pipefail\n" + "\n".join(lines) + "\n")
        self.process = subprocess.Popen(
            ["timeout", "30", "script", "-qefc", f"bash {shlex.quote(str(script_file))}", "/dev/null"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        self._screen = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        while chunk := os.read(self.process.stdout.fileno(), 65536):
            with self._lock:
                self._screen += chunk

    def lines(self) -> list[str]:
        """Complete lines as the terminal shows them: escapes dropped, bare "> " prompts left out."""
        with self._lock:
            text = _ANSI.sub("", self._screen.decode("utf-8", "replace"))
        segments = re.split(r"[\r\n]+", text)[:-1]  # the last one may still be arriving
        return [s.rstrip() for s in segments if s.strip() not in ("", ">")]

    def frames(self) -> list[dict[str, Any]]:
        return [json.loads(line[2:]) for line in self.lines() if line.startswith("< ")]

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
        """Until ``condition`` holds; fails as soon as wscat exits without it."""
        def shown() -> str:
            return f"{what} (rc {self.process.poll()}); the terminal shows: {self.lines()!r}"

        wait_until(lambda: condition() or self.process.poll() is not None, timeout, shown, interval=0.05)
        if not condition():
            raise AssertionError(f"no {shown()}")

    def wait_connected(self) -> None:
        self.wait_for(lambda: CONNECTED in self.lines(), repr(CONNECTED))

    def type_line(self, text: str) -> None:
        self._keys(text.encode() + b"\r")

    def next_frame(self, index: int) -> dict[str, Any]:
        """The ``index``-th frame wscat printed (0-based), waiting for it."""
        self.wait_for(lambda: len(self.frames()) > index, f"received frame #{index}")
        return self.frames()[index]

    def ctrl_c(self) -> int:
        """Ctrl-C, as a person ends the session; returns wscat's exit status."""
        self._keys(b"\x03")
        return self.wait_exit(10)

    def wait_exit(self, timeout: float = 15.0) -> int:
        try:
            rc = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"wscat still running after {timeout}s; the terminal shows: {self.lines()!r}") from None
        self._reader.join(timeout=5)
        return rc

    def _keys(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def kill(self) -> None:
        if self.process.poll() is None:
            stop_process_group(self.process, grace=2.0)


@pytest.fixture
def terminal(local_stack: RunningStack, tmp_path: Path) -> Iterator[Callable[..., TerminalWscat]]:
    assert WSCAT.exists(), f"{WSCAT} is missing: run npm ci"
    assert shutil.which("script") and shutil.which("timeout"), "needs util-linux script and coreutils timeout"
    local_stack.wait_no_connections(timeout=5.0)  # broadcast counts are exact
    opened: list[TerminalWscat] = []

    def open_terminal(*commands: str, page: str = "docs/local-stack.md") -> TerminalWscat:
        opened.append(TerminalWscat(local_stack, commands, tmp_path, page))
        return opened[-1]

    try:
        yield open_terminal
    finally:
        for session in opened:
            session.kill()


README_FIRST_SCREEN = ("TOKEN=$(make -s token USER=demo FIELD=access)",
                      'npx wscat -c ws://127.0.0.1:8000/dev -H "Authorization: Bearer $TOKEN"')


def test_readme_first_screen_gets_a_newcomer_to_a_first_message(local_stack: RunningStack,
                                                                terminal: Callable[..., TerminalWscat]) -> None:
    """The README's first commands, as printed, with the demo user and password it names."""
    from devtools.cognito_local import DEFAULT_PASSWORD

    readme = (ROOT / "README.md").read_text()
    first_screen = readme[:readme.index("| Page |")]
    assert f"`demo`, password `{DEFAULT_PASSWORD}`" in first_screen and "make run" in first_screen
    assert all(command in first_screen for command in README_FIRST_SCREEN)
    session = terminal(*README_FIRST_SCREEN, page="README.md")
    session.wait_connected()
    session.type_line('{"action":"whoami"}')
    session.type_line('{"action":"sendmessage","data":"hello"}')
    who, ack = session.next_frame(0), session.next_frame(1)
    assert (who["type"], who["identity"]["username"]) == ("whoami", "demo")
    assert (ack["type"], ack["action"]) == ("ack", "sendmessage")


def test_walkthrough_header_token_and_default_echo(local_stack: RunningStack,
                                                                   terminal: Callable[..., TerminalWscat]) -> None:
    """A header token, ?clientQueryParameter and clientHeader echoed back by $default."""
    dev = stage_environment("dev")
    assert (dev["CONTEXT_QUERY_PARAMS"], dev["CONTEXT_HEADERS"]) == ("clientQueryParameter", "clientHeader")
    assert STACK_SETTINGS == {"CONTEXT_QUERY_PARAMS": "clientQueryParameter", "CONTEXT_HEADERS": "clientHeader"}
    assert ECHO_FRAME in _readme()
    session = terminal(*HEADER_TOKEN_SESSION)
    session.wait_connected()
    session.type_line(ECHO_FRAME)
    echo = session.next_frame(0)
    assert session.lines()[:3] == [CONNECTED, f"> {ECHO_FRAME}", "< " + json.dumps(echo, separators=(",", ":"))]
    assert (echo["type"], echo["message"]) == ("echo", {"hello": "world"})
    connection = echo["connection"]
    assert connection["username"] == "alice" and connection["tokenSource"] == "header"
    assert connection["claims"]["token_use"] == "access" and connection["claims"]["username"] == "alice"
    assert connection["clientParams"] == {"query_clientQueryParameter": "clientQueryParameterValue",
                                          "header_clientheader": "clientHeaderValue"}
    assert connection["sourceIp"] == "127.0.0.1" and connection["userAgent"] == ""  # as the README shows
    assert set(connection) == {"connectionId", "userId", "username", "claims", "connectedAt", "sourceIp",
                               "userAgent", "clientParams", "tokenSource"}
    item = local_stack.connection_item(connection["connectionId"])
    assert item is not None and item["clientParams"]["M"] == {
        "query_clientQueryParameter": {"S": "clientQueryParameterValue"},
        "header_clientheader": {"S": "clientHeaderValue"}}
    assert session.ctrl_c() == 0
    local_stack.wait_no_connections([connection["connectionId"]])


def test_readme_walkthrough_id_token_session_id_token_query_and_sendmessage(local_stack: RunningStack,
                                                                    terminal: Callable[..., TerminalWscat]) -> None:
    """?ID_Token= in two terminals; the tutorial's sendmessage frame in one reaches the other."""
    assert SENDMESSAGE_FRAME in _readme()
    first = terminal(*_id_token_session("alice"))
    first.wait_connected()
    second = terminal(*_id_token_session("bob"))
    second.wait_connected()
    second.type_line(SENDMESSAGE_FRAME)
    ack = second.next_frame(0)
    assert without_message_id(ack) == {"type": "ack", "action": "sendmessage", "delivered": 1, "gone": 0,
                                       "failed": 0}
    assert second.lines()[:3] == [CONNECTED, f"> {SENDMESSAGE_FRAME}",
                                  '< {"type":"ack","action":"sendmessage","delivered":1,"gone":0,"failed":0,'
                                  f'"messageId":"{ack["messageId"]}"}}']
    message = first.next_frame(0)
    assert message["from"]["username"] == "bob"
    assert _without_timestamp(without_message_id(message)) == {"type": "message", "from": message["from"],
                                                               "data": "hello world"}
    assert message["messageId"] != ack["messageId"]
    assert first.lines()[:2] == [CONNECTED, "< " + json.dumps(message, separators=(",", ":"))]
    # The ids of the two connections, to see them go after Ctrl-C.
    ids = local_stack.stored_connection_ids()
    assert len(ids) == 2
    items = [local_stack.connection_item(i) for i in ids]
    users = {item["username"]["S"]: item for item in items if item is not None}
    assert set(users) == {"alice", "bob"}
    assert {u["tokenSource"]["S"] for u in users.values()} == {"query"}
    assert users["bob"]["userId"]["S"] == message["from"]["userId"]
    assert first.ctrl_c() == 0 and second.ctrl_c() == 0
    local_stack.wait_no_connections(ids)


def test_readme_walkthrough_id_token_session_invalid_token_is_401(local_stack: RunningStack,
                                                           terminal: Callable[..., TerminalWscat]) -> None:
    session = terminal(BAD_TOKEN_SESSION)
    assert session.wait_exit() != 0
    assert WSCAT_401 in session.lines()
    assert CONNECTED not in session.lines()


# -- make run reloads the app when its code changes ----------------------------------------------

def test_the_stack_reloads_the_app_when_its_code_changes(tmp_path: Path) -> None:
    """A changed app.py (its modification time, as an editor's save) reloads the app on the same ports:
    the open connection is dropped and the log says so; a new one works, with the same tokens."""
    import asyncio

    import websockets

    with run_stack(STACK_OVERRIDES, STACK_ENV, reload=True) as stack:
        user = stack.user(f"reload-{uuid.uuid4().hex[:6]}")

        async def scenario() -> tuple[int | None, dict[str, Any]]:
            headers = {"Authorization": f"Bearer {user.access_token}"}
            async with websockets.connect(stack.ws_url, additional_headers=headers) as before:
                os.utime(ROOT / "app.py")  # what saving the file does
                try:
                    await asyncio.wait_for(before.recv(), timeout=30)
                except websockets.ConnectionClosed:
                    pass
                code = before.close_code
            await asyncio.to_thread(wait_until, lambda: "app reloaded:" in stack.output.text(), 60.0,
                                    lambda: "the reload; output:\n" + stack.output.text())
            async with websockets.connect(stack.ws_url, additional_headers=headers) as after:
                await after.send(json.dumps({"action": "whoami", "id": "again"}))
                return code, json.loads(await asyncio.wait_for(after.recv(), timeout=15))

        code, answer = asyncio.run(scenario())
        assert code == 1001  # going away: the old code's gateway stopped
        assert (answer["type"], answer["id"], answer["identity"]["userId"]) == ("whoami", "again", user.sub)
        log = stack.output.text()
        assert "app.py changed: reloading the app; open connections are dropped" in log
        assert "app reloaded:" in log


# -- no server writes a token, a cookie or a query string ---------------------------------------

def test_no_local_server_logs_a_token(tmp_path: Path) -> None:
    """Every way a token reaches the stack (header, query, subprotocol, cookie; REST header and query; a
    refused forgery), then the whole output of every server of ``make run`` is searched for each token."""
    import urllib.error
    import urllib.request

    with run_stack(STACK_OVERRIDES, STACK_ENV) as stack:
        alice = stack.user(f"logs-{uuid.uuid4().hex[:6]}")
        secrets = [alice.access_token, alice.id_token]
        for via in ("header", "access_token", "ID_Token", "protocol"):
            token = alice.id_token if via == "ID_Token" else alice.access_token
            url, headers, protocols = stack.ws_url, {}, None
            if via == "header":
                headers = {"Authorization": f"Bearer {token}"}
            elif via == "protocol":
                protocols = ["cognito-jwt", token]
            else:
                url = f"{stack.ws_url}?{via}={token}"
            with connect(url, additional_headers=headers, subprotocols=protocols, open_timeout=10) as ws:
                ws.send(json.dumps({"action": "whoami"}))
                assert json.loads(ws.recv(timeout=10))["type"] == "whoami"
        forged = alice.access_token[:-6] + "AAAAAA"
        secrets.append(forged)
        with pytest.raises(InvalidStatus):
            connect(f"{stack.ws_url}?access_token={forged}", open_timeout=10)
        rest = stack.state["rest_url"]
        for request in (urllib.request.Request(f"{rest}/me", headers={"Authorization": f"Bearer {alice.access_token}"}),
                        urllib.request.Request(f"{rest}/me?access_token={alice.access_token}"),
                        urllib.request.Request(f"{rest}/me", headers={"Cookie": f"JWT={alice.id_token}"})):
            try:
                urllib.request.urlopen(request, timeout=10).read()
            except urllib.error.HTTPError:
                pass
        time.sleep(0.5)  # the last access lines
        output = stack.output.text()
    assert "/me?..." in output  # the REST server's access line, its query string left out
    for secret in secrets:
        for part in (secret, secret.rsplit(".", 1)[-1]):  # the token, or its signature alone
            assert part not in output, "a token reached the stack's output"


# -- the local stack survives its parts ------------------------------------------------------------

def test_the_stack_restarts_moto_and_recreates_the_fanout_queue(tmp_path: Path) -> None:
    """moto (the local Cognito and SQS) is killed: the stack starts it again on its port, makes the fan-out
    queue again, says what it could not keep (the user pool), and queued pushes work; the poller's
    failures are logged a few times, not four times a second."""
    import psutil

    from tests.support.stack import ClientFactory

    with run_stack({**STACK_OVERRIDES, "FANOUT_INLINE_MAX": "0"}, STACK_ENV) as stack:
        user = stack.user(f"moto-{uuid.uuid4().hex[:6]}")
        factory = ClientFactory(stack)
        try:
            client = factory(user.access_token)
            assert stack.invoke("notify", {"userId": user.sub, "data": "before"})["queued"] == 1
            assert client.recv()["data"] == "before"
            (moto,) = [p for p in psutil.Process(stack.process.pid).children(recursive=True)
                       if "devtools.moto_server" in " ".join(p.cmdline())]
            moto.kill()
            wait_until(lambda: "created again" in stack.output.text(), 60.0,
                       lambda: "the queue to be made again; output:\n" + stack.output.text()[-3000:])
            log = stack.output.text()
            assert "moto (local Cognito, SQS) exited: starting it again" in log
            assert f"lost user pool {stack.pool.pool_id}" in log and "`make run` again" in log
            answer = wait_until(lambda: (lambda a: a if a.get("queued") == 1 else None)(
                stack.invoke("notify", {"userId": user.sub, "data": "after"})), 30.0, "a queued push")
            assert answer["queued"] == 1
            assert client.recv(timeout=30)["data"] == "after"
            assert log.count("receive failed") <= 6, log  # per poller: once per distinct failure per 5 s
        finally:
            factory.close_all()


def test_one_user_past_max_connections_per_user_is_refused_429() -> None:
    """Parallel upgrades of one user against the running stack: exactly the limit get in, the rest 429;
    one leaves, and there is room again."""
    from concurrent.futures import ThreadPoolExecutor

    with run_stack({**STACK_OVERRIDES, "MAX_CONNECTIONS_PER_USER": "3"}, STACK_ENV) as stack:
        user = stack.user(f"cap-{uuid.uuid4().hex[:6]}")
        headers = {"Authorization": f"Bearer {user.access_token}"}

        def attempt(_: int) -> Any:
            try:
                return connect(stack.ws_url, additional_headers=headers, open_timeout=15)
            except InvalidStatus as refused:
                return refused.response.status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(attempt, range(8)))
        opened = [o for o in outcomes if not isinstance(o, int)]
        try:
            assert len(opened) == 3 and sorted(o for o in outcomes if isinstance(o, int)) == [429] * 5, outcomes
            assert "too_many_connections" in stack.output.text()
            opened.pop().close()
            wait_until(lambda: len(stack.stored_connection_ids()) == 2, 10.0, "the closed connection's $disconnect")
            opened.append(connect(stack.ws_url, additional_headers=headers, open_timeout=15))  # room again
        finally:
            for ws in opened:
                ws.close()
