"""The whole local stack (``python -m devtools.stack``) for end-to-end tests, with real clients.

A pytest plugin. Fixtures:

* ``local_stack`` (session): a ``RunningStack``. The stack runs as a subprocess
  in its own process group, exactly as ``make run`` runs it (stage ``dev``, the
  app's settings from ``.chalice/config.json``, see ``STACK_SETTINGS``), started
  once per session and stopped with SIGTERM (SIGKILL if it hangs).
* ``ws_clients``: a ``ClientFactory`` opening Python ``websockets`` clients; it
  waits for the connections table to be empty first (so broadcast counts are
  exact) and, at teardown, closes its clients and waits for their items to go.
* ``wscat``: a ``WscatFactory`` running the npm ``wscat`` CLI with bounded
  waits; its processes are killed at teardown.

Broadcasts (``sendmessage``) reach every stored connection, so tests that count
deliveries rely on ``ws_clients`` starting from an empty table; users are fresh
per test (``local_stack.user("alice")`` -> ``alice-<uuid>``).
"""
from __future__ import annotations

import collections
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jwt
import pytest
from websockets.sync.client import ClientConnection, connect

from devtools import cognito_local
from devtools.gateway.server import LOSE_DISCONNECTS_ENV
from devtools.processes import stop_process_group
from tests.support.builders import stage_environment
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
READY_LINE = "LOCAL_STACK_READY"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
WSCAT = ROOT / "node_modules" / ".bin" / "wscat"
_PROMPTS = re.compile(r"^(> )+")  # readline prompts wscat writes to stdout
STACK_STAGE = "dev"


# The session stack overrides nothing in the app's settings beyond what
# devtools.stack points at local services: like `make run`, its app reads the dev
# stage's environment, whose allow-lists store the tutorials' ?clientQueryParameter=...
# and clientHeader: ... (the README's walkthrough relies on them).
STACK_OVERRIDES: dict[str, str] = {}
STACK_SETTINGS = {name: value for name, value in {**stage_environment(STACK_STAGE), **STACK_OVERRIDES}.items()
                  if name in ("CONTEXT_QUERY_PARAMS", "CONTEXT_HEADERS")}
# Process environment of the session stack: connections that ask for it (by a
# header, see devtools.gateway) lose their $disconnect when dropped.
STACK_ENV = {LOSE_DISCONNECTS_ENV: "1"}


def without_message_id(frame: dict[str, Any]) -> dict[str, Any]:
    """``frame`` without its ``messageId``, which every frame the app pushes must carry (a non-empty string)."""
    message_id = frame.get("messageId")
    assert isinstance(message_id, str) and message_id, f"frame without a messageId: {frame!r}"
    return {key: value for key, value in frame.items() if key != "messageId"}


class StackStartError(RuntimeError):
    """The stack exited or stayed silent before its READY line; carries its output."""


@dataclass(frozen=True)
class User:
    """A signed-up Cognito user of the local pool and its tokens."""

    username: str
    sub: str
    access_token: str
    id_token: str


class _OutputPump:
    """Drains a child's stdout on a thread: a full pipe would block the stack's logging."""

    def __init__(self, stream: Any, keep: int = 2000) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self.queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def text(self) -> str:
        return "\n".join(self.lines)


class RunningStack:
    """A started stack: its state (see devtools.stack), users, and a DynamoDB view of its table."""

    def __init__(self, state: dict[str, Any], process: subprocess.Popen[str], output: _OutputPump,
                 state_file: Path | None = None) -> None:
        self.state = state
        self.state_file = state_file  # what `make token` reads (devtools.token --state-file)
        self.process = process
        self.output = output
        self.ws_url: str = state["ws_url"]
        self.http_url: str = state["http_url"]
        self.management_url: str = state["management_url"]
        self.table: str = state["table"]
        self.pool = cognito_local.LocalPool(**state["cognito"])
        port = self.ws_url.rsplit(":", 1)[1].split("/", 1)[0]
        self.origin = f"http://localhost:{port}"
        assert self.origin in state["allowed_origins"], state["allowed_origins"]

    def logs(self) -> str:
        return self.output.text()

    def wait_for_log(self, fragment: str, timeout: float = 5.0) -> str:
        """The first line of the stack's output containing ``fragment`` (e.g. a gateway log line)."""
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in list(self.output.lines) if fragment in line][:1]
            return bool(found)

        self.wait_until(seen, timeout, f"a stack log line containing {fragment!r}")
        return found[0]

    def user(self, prefix: str = "user") -> User:
        """A fresh user (``<prefix>-<uuid>``), signed up and in; its ``sub`` read from the token."""
        username = f"{prefix}-{uuid.uuid4().hex[:10]}"
        tokens = cognito_local.tokens_for(self.pool, username)
        claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
        return User(username=username, sub=claims["sub"], access_token=tokens["access_token"],
                    id_token=tokens["id_token"])

    # -- DynamoDB -------------------------------------------------------------------

    @cached_property
    def dynamodb(self) -> Any:
        import boto3

        return boto3.client("dynamodb", endpoint_url=self.state["dynamodb_endpoint"], region_name="us-east-1",
                            aws_access_key_id="local", aws_secret_access_key="local")

    def connection_item(self, connection_id: str) -> dict[str, Any] | None:
        item = self.dynamodb.get_item(TableName=self.table, ConsistentRead=True,
                                      Key={"pk": {"S": f"CONN#{connection_id}"}, "sk": {"S": "META"}})
        return item.get("Item")

    def stored_connection_ids(self) -> list[str]:
        """Every stored connection (META items); a Scan, fine for a test-sized table."""
        ids: list[str] = []
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True,
                                  "FilterExpression": "sk = :meta",
                                  "ExpressionAttributeValues": {":meta": {"S": "META"}}}
        while True:
            page = self.dynamodb.scan(**kwargs)
            ids += [item["pk"]["S"][len("CONN#"):] for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return ids
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
        """``tests.support.waiting.wait_until``, for what this stack does in the background."""
        wait_until(condition, timeout, what)

    def wait_no_connections(self, ids: list[str] | None = None, timeout: float = 5.0) -> None:
        """Until the given connections (or all) are no longer stored."""
        def done() -> bool:
            stored = set(self.stored_connection_ids())
            return not (stored & set(ids)) if ids is not None else not stored

        self.wait_until(done, timeout, f"connection items to be deleted ({ids or 'all'})")

    # -- Lambda Invoke API on the gateway -------------------------------------------

    def invoke(self, function: str, payload: dict[str, Any]) -> dict[str, Any]:
        import boto3

        client = boto3.client("lambda", endpoint_url=self.http_url, region_name="us-east-1",
                              aws_access_key_id="local", aws_secret_access_key="local")
        answer = client.invoke(FunctionName=function, Payload=json.dumps(payload).encode())
        assert answer["StatusCode"] == 200, answer
        result: dict[str, Any] = json.loads(answer["Payload"].read())
        return result


@contextmanager
def run_stack(settings: dict[str, str] | None = None, env: dict[str, str] | None = None,
              timeout: float = START_TIMEOUT, args: list[str] | None = None,
              reload: bool = False) -> Iterator[RunningStack]:
    """Start ``python -m devtools.stack --port 0`` and yield once it printed its READY line.

    ``settings`` become ``--set KEY=VALUE`` (the app's environment); ``env`` is
    added to the stack process's own environment. A stack that does not start
    fails the test with its output, and no traceback of this helper. ``reload``:
    the stack reloads the app when its code changes, as ``make run`` does (off
    by default, so one test touching app.py disturbs no other stack).
    """
    with tempfile.TemporaryDirectory(prefix="e2e-stack-") as tmp:
        state_file = Path(tmp) / "stack.json"
        command = [sys.executable, "-m", "devtools.stack", "--stage", STACK_STAGE, "--port", "0",
                   "--state-file", str(state_file)]
        for key, value in (settings or {}).items():
            command += ["--set", f"{key}={value}"]
        command += list(args or ())  # more of devtools.stack's options (--fanout-workers 1, ...)
        if not reload:
            command.append("--no-reload")
        process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True, env={**os.environ, **(env or {})})
        output = _OutputPump(process.stdout)
        try:
            try:
                state = _wait_ready(process, output, timeout)
            except StackStartError as error:
                pytest.fail(str(error), pytrace=False)
            yield RunningStack(state, process, output, state_file)
        finally:
            stop_process_group(process, STOP_TIMEOUT)


def _wait_ready(process: subprocess.Popen[str], output: _OutputPump, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise StackStartError(f"no {READY_LINE} line within {timeout}s; output:\n{output.text()}")
        try:
            line = output.queue.get(timeout=left)
        except queue.Empty:
            continue
        if line is None:
            raise StackStartError(f"the stack exited ({process.wait()}) before it was ready; output:\n"
                                  f"{output.text()}")
        if line.startswith(READY_LINE + " "):
            payload = line[len(READY_LINE) + 1:]
            return dict(json.JSONDecoder().raw_decode(payload)[0])


@pytest.fixture(scope="session")
def local_stack() -> Iterator[RunningStack]:
    with run_stack(STACK_OVERRIDES, STACK_ENV) as stack:
        yield stack


# -- Python websockets clients --------------------------------------------------------

class Client:
    """A connected ``websockets`` client that speaks the app's JSON frames."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.connection_id = ""

    def send(self, frame: dict[str, Any] | str) -> None:
        self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    def recv_raw(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame, parsed, as sent (``messageId`` included); TimeoutError if none arrives in time."""
        frame: dict[str, Any] = json.loads(self.ws.recv(timeout=timeout))
        return frame

    def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame, parsed, checked for a ``messageId`` and returned without it."""
        return without_message_id(self.recv_raw(timeout))

    def recv_none(self, within: float = 0.4) -> None:
        """Assert that nothing arrives for a while (a negative delivery check)."""
        try:
            frame = self.ws.recv(timeout=within)
        except TimeoutError:
            return
        raise AssertionError(f"expected no frame, got {frame!r}")

    def request(self, frame: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        self.send(frame)
        return self.recv(timeout)

    def whoami(self) -> dict[str, Any]:
        answer = self.request({"action": "whoami"})
        assert answer["type"] == "whoami", answer
        identity: dict[str, Any] = answer["identity"]
        return identity

    def close(self) -> None:
        self.ws.close()


@dataclass
class ClientFactory:
    """``ws_clients(...)`` opens a client; every one is closed (and its item awaited) at teardown."""

    stack: RunningStack
    clients: list[Client] = field(default_factory=list)

    def __call__(self, token: str | None = None, *, via: str = "header", query: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None, subprotocols: list[str] | None = None,
                 origin: str | None = None) -> Client:
        """Connect with ``token`` sent ``via`` header | access_token | ID_Token | protocol | none."""
        url, params, extra = self.stack.ws_url, dict(query or {}), dict(headers or {})
        protocols = list(subprotocols or [])
        if token is not None:
            if via == "header":
                extra["Authorization"] = f"Bearer {token}"
            elif via in ("access_token", "ID_Token"):
                params[via] = token
            elif via == "protocol":
                protocols = ["cognito-jwt", token, *protocols]
            else:
                raise ValueError(f"unknown token route {via!r}")
        if params:
            from urllib.parse import urlencode

            url += "?" + urlencode(params)
        ws = connect(url, additional_headers=extra or None, subprotocols=protocols or None,
                     origin=origin, open_timeout=5, close_timeout=2)  # type: ignore[arg-type]
        client = Client(ws)
        self.clients.append(client)
        client.connection_id = client.whoami()["connectionId"]
        return client

    def close_all(self) -> None:
        for client in self.clients:
            client.close()
        ids = [c.connection_id for c in self.clients if c.connection_id]
        if ids:
            self.stack.wait_no_connections(ids)


@pytest.fixture
def ws_clients(local_stack: RunningStack) -> Iterator[ClientFactory]:
    local_stack.wait_no_connections(timeout=5.0)
    with client_factory(local_stack) as factory:
        yield factory


@contextmanager
def client_factory(stack: RunningStack) -> Iterator[ClientFactory]:
    """Clients on ``stack``, every one closed (and its item awaited) at the end."""
    factory = ClientFactory(stack)
    try:
        yield factory
    finally:
        factory.close_all()


def rules_stack_fixtures(rules: str) -> tuple[Any, Any]:
    """A module's own stack serving these CHANNEL_RULES, and a ``clients`` fixture on it:
    ``rules_stack, clients = rules_stack_fixtures(RULES)`` at the top of a test module."""
    @pytest.fixture(scope="module")
    def rules_stack() -> Iterator[RunningStack]:
        with run_stack(settings={"CHANNEL_RULES": rules}) as stack:
            yield stack

    @pytest.fixture
    def clients(rules_stack: RunningStack) -> Iterator[ClientFactory]:
        with client_factory(rules_stack) as factory:
            yield factory

    return rules_stack, clients


# -- wscat (npm) -----------------------------------------------------------------------

class Wscat:
    """One ``wscat`` process. stdin stays open: wscat quits as soon as its stdin ends.

    Without a TTY wscat prints each received message as one stdout line and
    errors as ``error: ...`` on stderr; interactive lines sent before the
    socket opens are dropped, hence ``wait_open``.
    """

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.process = subprocess.Popen([str(WSCAT), "--no-color", *args], cwd=ROOT, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        start_new_session=True)
        self.stdout = _OutputPump(self.process.stdout)
        self.stderr = _OutputPump(self.process.stderr)

    def send_line(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    @staticmethod
    def _parse(line: str) -> dict[str, Any]:
        """A printed frame (readline's "> " prompts stripped), checked for a ``messageId`` and without it."""
        frame: dict[str, Any] = json.loads(_PROMPTS.sub("", line))
        return without_message_id(frame)

    def next_frame(self, timeout: float = 5.0, skip: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        """The next JSON line wscat printed (frames matching ``skip`` are passed over)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.stdout.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"wscat printed nothing in {timeout}s; stderr: {self.stderr.text()!r}") from None
            if line is None:
                raise AssertionError(f"wscat exited ({self.process.wait()}); stderr: {self.stderr.text()!r}")
            frame = self._parse(line)
            if skip is None or not skip(frame):
                return frame

    def wait_open(self, timeout: float = 5.0) -> dict[str, Any]:
        """Probe with ``whoami`` until the socket is open; returns the connection's identity."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send_line('{"action":"whoami"}')
            try:
                line = self.stdout.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            frame = self._parse(line)
            assert frame["type"] == "whoami", frame
            identity: dict[str, Any] = frame["identity"]
            return identity
        raise AssertionError(f"wscat did not open in {timeout}s (rc {self.process.poll()}); "
                             f"stderr: {self.stderr.text()!r}")

    def wait_exit(self, timeout: float = 10.0) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"wscat still running after {timeout}s; killed") from None

    def close(self) -> None:
        """End stdin: wscat closes its socket and exits."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass

    def kill(self) -> None:
        stop_process_group(self.process, grace=2.0)


@dataclass
class WscatFactory:
    stack: RunningStack
    processes: list[Wscat] = field(default_factory=list)

    def __call__(self, *args: str) -> Wscat:
        process = Wscat(list(args))
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            process.close()
        for process in self.processes:
            try:
                process.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def wscat(local_stack: RunningStack) -> Iterator[WscatFactory]:
    assert WSCAT.exists(), f"{WSCAT} is missing: run npm ci"
    factory = WscatFactory(local_stack)
    try:
        yield factory
    finally:
        factory.stop_all()
