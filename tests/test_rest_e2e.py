"""End to end over REST: real HTTP against the running stack (``make run``'s REST
server) and against ``chalice local`` started as the README says, with real
WebSocket clients (Python ``websockets`` and npm ``wscat``) on the gateway and
tokens from the local Cognito pool."""
from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
import threading
import time
import uuid
import urllib.error
import urllib.request
from urllib.parse import quote
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from devtools import cognito_local
from devtools.processes import stop_process_group
from tests.support.stack import ROOT, WSCAT, ClientFactory, RunningStack, User
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

UNAUTHORIZED = {"message": "Unauthorized"}
FORBIDDEN = {"Message": "User is not authorized to access this resource"}


def _http(method: str, url: str, token: str | None = None, body: Any = None,
          raw: bytes | None = None) -> tuple[int, Any]:
    """One HTTP request; (status, parsed JSON body), 4xx/5xx included."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _publisher(stack: RunningStack, prefix: str = "pub") -> User:
    """A fresh user in the pool group ``publishers`` (the dev stage's PUSH_GROUPS), signed in after joining."""
    user = stack.user(prefix)
    cognito_local.ensure_group(stack.pool, "publishers", user.username)
    tokens = cognito_local.sign_in(stack.pool, user.username)
    return User(user.username, user.sub, tokens["access_token"], tokens["id_token"])


def _kinds(frame: dict[str, Any]) -> tuple[Any, ...]:
    return frame["type"], frame.get("topic"), frame["data"]


# -- make run's REST server ------------------------------------------------------------------


def test_make_run_serves_the_rest_api_on_its_own_port(local_stack: RunningStack, ws_clients: ClientFactory) -> None:
    rest = local_stack.state["rest_url"]
    assert rest.startswith("http://127.0.0.1:") and rest != local_stack.http_url
    alice = local_stack.user("alice")
    client = ws_clients(alice.access_token)
    status, me = _http("GET", f"{rest}/me", alice.access_token)
    assert status == 200
    assert (me["sub"], me["username"], me["token_use"]) == (alice.sub, alice.username, "access")
    assert [(c["connectionId"], c["tokenSource"]) for c in me["connections"]] == [(client.connection_id, "header")]
    assert _http("GET", f"{rest}/me") == (401, UNAUTHORIZED)
    assert _http("GET", f"{rest}/me", "not-a-token") == (401, UNAUTHORIZED)
    assert _http("GET", f"{rest}/me", alice.id_token[:-3] + "abc")[0] == 401


def test_https_pushes_reach_the_right_websocket_clients_and_no_one_else(local_stack: RunningStack,
                                                                        ws_clients: ClientFactory) -> None:
    rest = local_stack.state["rest_url"]
    alice, bob, carol = local_stack.user("alice"), local_stack.user("bob"), local_stack.user("carol")
    publisher = _publisher(local_stack)
    alice_phone, alice_laptop = ws_clients(alice.access_token), ws_clients(alice.access_token, via="access_token")
    bob_client, carol_client = ws_clients(bob.id_token, via="ID_Token"), ws_clients(carol.access_token)
    topic = f"public/scores-{uuid.uuid4().hex[:8]}"
    assert carol_client.request({"action": "subscribe", "topic": topic})["type"] == "subscribed"
    everyone = (alice_phone, alice_laptop, bob_client, carol_client)

    def report(n: int) -> dict[str, Any]:
        return {"ok": True, "connections": n, "delivered": n, "gone": 0, "failed": 0}

    assert _http("POST", f"{rest}/users/{alice.sub}/messages", publisher.access_token, {"data": {"n": 1}}) == \
        (200, report(2))
    for client in (alice_phone, alice_laptop):
        assert _kinds(client.recv()) == ("notification", None, {"n": 1})
    for client in (bob_client, carol_client):
        client.recv_none()

    assert _http("POST", f"{rest}/users/{bob.username}/messages?by=username", publisher.access_token,
                 {"data": "bob only"}) == (200, report(1))
    assert _kinds(bob_client.recv()) == ("notification", None, "bob only")
    for client in (alice_phone, alice_laptop, carol_client):
        client.recv_none()

    assert _http("POST", f"{rest}/topics/{quote(topic, safe='')}/messages", publisher.access_token,
                 {"data": 7}) == (200, report(1))
    assert _kinds(carol_client.recv()) == ("push", topic, 7)
    for client in (alice_phone, alice_laptop, bob_client):
        client.recv_none()

    assert _http("POST", f"{rest}/messages", publisher.access_token, {"data": "all"}) == (200, report(4))
    for client in everyone:
        assert _kinds(client.recv()) == ("broadcast", None, "all")

    # An ordinary user may not push; bad input is refused before anything is sent.
    for path in ("/messages", f"/users/{bob.sub}/messages", f"/topics/{quote(topic, safe='')}/messages"):
        assert _http("POST", f"{rest}{path}", alice.access_token, {"data": "nope"}) == (403, FORBIDDEN)
    status, error = _http("POST", f"{rest}/messages", publisher.access_token, raw=b"{not json")
    assert (status, error["error"]["code"]) == (400, "invalid_json")
    status, error = _http("POST", f"{rest}/messages", publisher.access_token, {"data": "x" * (128 * 1024)})
    assert (status, error["error"]["code"]) == (400, "payload_too_large")
    for client in everyone:
        client.recv_none()


def test_a_push_goes_only_where_it_was_addressed(local_stack: RunningStack, ws_clients: ClientFactory) -> None:
    """A body that names a second audience is refused (400 bad_request) by every entry point; nothing is sent."""
    rest = local_stack.state["rest_url"]
    alice, bob = local_stack.user("alice"), local_stack.user("bob")
    publisher = _publisher(local_stack)
    alice_client, bob_client = ws_clients(alice.access_token), ws_clients(bob.access_token)
    topic = f"public/news-{uuid.uuid4().hex[:6]}"
    assert alice_client.request({"action": "subscribe", "topic": topic})["type"] == "subscribed"
    refused = [
        ("/messages", {"data": 1, "userId": alice.sub}), ("/messages", {"data": 1, "username": "alice"}),
        ("/messages", {"data": 1, "topic": topic}), (f"/topics/{quote(topic, safe='')}/messages", {"data": 1, "userId": bob.sub}),
        (f"/topics/{quote(topic, safe='')}/messages", {"data": 1, "topic": "other"}),
        (f"/users/{bob.sub}/messages", {"data": 1, "topic": topic}),
        (f"/users/{bob.sub}/messages", {"data": 1, "userId": alice.sub}),
    ]
    for path, body in refused:
        status, answer = _http("POST", f"{rest}{path}", publisher.access_token, body)
        assert (status, answer["error"]["code"]) == (400, "bad_request"), (path, body, answer)
    notify = local_stack.invoke("notify", {"userId": bob.sub, "topic": topic, "data": 1})
    assert notify["ok"] is False and notify["error"]["code"] == "bad_request"
    for client in (alice_client, bob_client):
        client.recv_none()


@pytest.mark.parametrize("path, topic", [("public%2Froom%201", "public/room 1"), ("public%2Fcaf%C3%A9", "public/café"),
                                              ("public%2Fa%2Fb", "public/a/b")])
def test_path_parameters_arrive_decoded(local_stack: RunningStack, ws_clients: ClientFactory,
                                        path: str, topic: str) -> None:
    rest = local_stack.state["rest_url"]
    publisher = _publisher(local_stack)
    client = ws_clients(local_stack.user("reader").access_token)
    assert client.request({"action": "subscribe", "topic": topic})["type"] == "subscribed"
    status, report = _http("POST", f"{rest}/topics/{path}/messages", publisher.access_token, {"data": path})
    assert (status, report["delivered"]) == (200, 1)
    assert _kinds(client.recv()) == ("push", topic, path)


@pytest.mark.parametrize("path", ["a%00b", "a%0Ab", "%FF"])
def test_a_decoded_path_parameter_is_validated(local_stack: RunningStack, path: str) -> None:
    rest = local_stack.state["rest_url"]
    status, answer = _http("POST", f"{rest}/topics/{path}/messages", _publisher(local_stack).access_token, {"data": 1})
    assert (status, answer["error"]["code"]) == (400, "bad_topic")


# -- chalice local, started exactly as docs/local-stack.md says ------------------------------------------
#
# The page's commands must appear in it verbatim; only the ports (the session
# stack's gateway, a free port for chalice local), the users (fresh names, so
# counts are exact), `npx` (the same node_modules/.bin/wscat) and `make -s
# token`'s state file (this stack's, not .local/stack.json) are substituted.
# `make local` runs the command `make -n` shows for it, with LOCAL_PORT and
# STATE_FILE set.

README_GATEWAY = "ws://127.0.0.1:8000/dev"
README_LOCAL = "http://127.0.0.1:8002"
MAKE_LOCAL = "make local"
TOKEN_ALICE = """TOKEN=$(make -s token USER=alice FIELD=access)"""
WSCAT_ALICE = '''npx wscat -c ws://127.0.0.1:8000/dev -H "Authorization: Bearer $TOKEN"'''
CURLS = (
    TOKEN_ALICE,
    """curl -s -w ' %{http_code}\\n' -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8002/me""",
    """curl -s -w ' %{http_code}\\n' http://127.0.0.1:8002/me""",
    """curl -s -w ' %{http_code}\\n' -H "Authorization: Bearer not-a-token" http://127.0.0.1:8002/me""",
    """curl -s -w ' %{http_code}\\n' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json'"""
    """ -d '{"data":"hi"}' http://127.0.0.1:8002/messages""",
    """PUSHER=$(make -s token USER=carol GROUPS=publishers FIELD=access)""",
    """curl -s -w ' %{http_code}\\n' -H "Authorization: Bearer $PUSHER" -H 'Content-Type: application/json'"""
    """ -d '{"data":"hello from REST"}' 'http://127.0.0.1:8002/users/alice/messages?by=username'""",
)
# The README's output lines that do not change from run to run.
STEADY_OUTPUT = (
    '{"message":"Unauthorized"} 401',
    '{"message":"Unauthorized"} 401',
    '{"Message": "User is not authorized to access this resource"} 403',
    '{"ok":true,"connections":1,"delivered":1,"gone":0,"failed":0} 200',
)


def _readme() -> str:
    """The page that documents these commands."""
    return (ROOT / "docs" / "local-stack.md").read_text()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Lines:
    """A child's stdout, drained on a thread (a full pipe would block it)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(process,), daemon=True)
        self._thread.start()

    def _run(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.lines)


class _Substitutions:
    def __init__(self, stack: RunningStack, local_url: str) -> None:
        assert stack.state_file is not None
        self.stack = stack
        self.local_url = local_url
        self.alice = f"alice-{uuid.uuid4().hex[:8]}"
        self.carol = f"carol-{uuid.uuid4().hex[:8]}"
        self._token = f"{shlex.quote(sys.executable)} -m devtools.token --state-file {shlex.quote(str(stack.state_file))}"

    def __call__(self, command: str) -> str:
        assert command in _readme(), f"docs/local-stack.md no longer shows {command!r}"
        line = (command.replace("make -s token USER=alice", f"{self._token} --user {self.alice}")
                .replace("make -s token USER=carol GROUPS=publishers", f"{self._token} --user {self.carol} --groups publishers")
                .replace(" FIELD=access", " --field access")
                .replace("/users/alice/", f"/users/{self.alice}/")
                .replace("npx wscat ", f"exec {shlex.quote(str(WSCAT))} ")
                .replace(README_GATEWAY, self.stack.ws_url)
                .replace(README_LOCAL, self.local_url))
        assert "make " not in line and "8000" not in line and "8002" not in line, line
        return line


@pytest.fixture
def chalice_local(local_stack: RunningStack) -> Iterator[tuple[str, subprocess.Popen[str], _Lines]]:
    """``make local`` as the README says (LOCAL_PORT and STATE_FILE set), until it answers."""
    assert MAKE_LOCAL in _readme()
    assert "runs exactly `chalice local --stage local --port 8002`" in _readme()
    port = _free_port()
    shown = subprocess.run(["make", "-n", "-s", "local", f"LOCAL_PORT={port}", f"STATE_FILE={local_stack.state_file}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
    command = shlex.split(shown.stdout.strip().splitlines()[-1])
    assert command[1:4] == ["-m", "devtools.chalice_local", "--port"], command
    process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output = _Lines(process)
    url = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        assert process.poll() is None, "\n".join(output.snapshot())
        try:
            return _http("GET", f"{url}/me") == (401, UNAUTHORIZED)
        except OSError:
            return False

    try:
        wait_until(answering, 30.0, lambda: "chalice local to answer; output:\n" + "\n".join(output.snapshot()),
                   interval=0.2)
        yield url, process, output
    finally:
        stop_process_group(process, grace=5.0)


def test_readme_chalice_local_quick_checks(local_stack: RunningStack, chalice_local: tuple[str, Any, _Lines],
                                           tmp_path: Path) -> None:
    url, process, output = chalice_local
    port = url.rsplit(":", 1)[1]
    # What runs is exactly `chalice local --stage local --port <port>` (the make target's process became it).
    cmdline = psutil.Process(process.pid).cmdline()
    assert Path(cmdline[1]).name == "chalice" and cmdline[2:] == ["local", "--stage", "local", "--port", port], cmdline
    assert output.snapshot()[0] == f"==> chalice local --stage local --port {port}"

    local_stack.wait_no_connections(timeout=5.0)
    substitute = _Substitutions(local_stack, url)
    # Alice's wscat on the gateway, as the README runs it (stdin kept open: wscat quits when it ends).
    wscat = subprocess.Popen(["bash", "-c", "set -eo pipefail\n" + "\n".join(map(substitute, (TOKEN_ALICE, WSCAT_ALICE)))],
                             cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    frames = _Lines(wscat)
    try:
        def opened() -> bool:
            assert wscat.poll() is None, frames.snapshot()
            assert wscat.stdin is not None
            wscat.stdin.write('{"action":"whoami"}\n')
            wscat.stdin.flush()
            time.sleep(0.2)
            return any('"whoami"' in line for line in frames.snapshot())

        wait_until(opened, 15.0, lambda: f"wscat to open; it printed {frames.snapshot()!r}", interval=0.1)
        whoami = json.loads(next(line for line in frames.snapshot() if '"whoami"' in line).lstrip("> "))
        connection_id = whoami["identity"]["connectionId"]

        script = tmp_path / "quick-checks.sh"
        script.write_text("set -eo pipefail\n" + "\n".join(map(substitute, CURLS)) + "\n")
        done = subprocess.run(["bash", str(script)], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        me_line, *steady = done.stdout.splitlines()
        me_body, me_status = me_line.rsplit(" ", 1)
        me = json.loads(me_body)
        assert me_status == "200"
        assert (me["username"], me["token_use"], me["groups"]) == (substitute.alice, "access", [])
        assert [(c["connectionId"], c["tokenSource"]) for c in me["connections"]] == [(connection_id, "header")]
        assert tuple(steady) == STEADY_OUTPUT
        for line in STEADY_OUTPUT:
            assert line in _readme()

        def notified() -> bool:
            return any('"notification"' in line for line in frames.snapshot())

        wait_until(notified, 10.0, lambda: f"the notification on wscat; it printed {frames.snapshot()!r}")
        frame = json.loads(next(line for line in frames.snapshot() if '"notification"' in line).lstrip("> "))
        assert (frame["type"], frame["data"]) == ("notification", "hello from REST")
        assert isinstance(frame["timestamp"], int)
        # The first curl's push (by alice, who may not push) sent nothing: one notification only.
        assert sum('"notification"' in line or '"broadcast"' in line for line in frames.snapshot()) == 1
    finally:
        if wscat.stdin is not None:
            wscat.stdin.close()
        stop_process_group(wscat, grace=3.0)
    local_stack.wait_no_connections([connection_id])


def test_make_token_groups_reaches_devtools_token() -> None:
    """The README's `make -s token USER=carol GROUPS=publishers`, which the quick checks run as
    `python -m devtools.token --user carol --groups publishers`."""
    shown = subprocess.run(["make", "-n", "-s", "token", "USER=carol", "GROUPS=publishers"], cwd=ROOT,
                           capture_output=True, text=True, timeout=30, check=True)
    assert shlex.split(shown.stdout.strip().splitlines()[-1])[1:] == [
        "-m", "devtools.token", "--user", "carol", "--groups", "publishers"]
    plain = subprocess.run(["make", "-n", "-s", "token", "USER=alice"], cwd=ROOT, capture_output=True, text=True,
                           timeout=30, check=True, env={"PATH": "/usr/bin:/bin", "GROUPS": "wheel"})
    assert shlex.split(plain.stdout.strip().splitlines()[-1])[1:] == ["-m", "devtools.token", "--user", "alice"]
