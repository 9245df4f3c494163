"""The browser client (devtools/web) in a real browser, against the local stack.

Playwright (PyPI) drives Debian's chromium (``/usr/bin/chromium``, installed
by ``make test`` through devtools/ensure_chromium.sh): no browser is
downloaded. One browser for the module, a context per user. The page is the
one ``make run`` serves on the gateway's origin; the reconnect case runs its
own gateway (same pool, own table) so it can stop and restart it.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import http.server
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from urllib.request import urlopen

import boto3
import jwt
import pytest
from aiohttp import web
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from chalicelib import runtime, schema
from devtools.gateway import Limits, run_in_thread
from devtools.web import WebPage, local_page, page_config
from devtools.web.__main__ import stage_config
from tests.support.builders import stage_environment
from tests.support.stack import ROOT, RunningStack, User
from tests.test_eventbridge_e2e import _put

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = ROOT / ".local" / "browser-client.png"
PASSWORD = "Passw0rd!local"
WAIT_MS = 10_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs it (devtools/ensure_chromium.sh)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Contexts:
    """Browser contexts of one test (one per user), closed at teardown."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.opened: list[BrowserContext] = []

    def new(self) -> BrowserContext:
        context = self.browser.new_context(viewport={"width": 1200, "height": 860})
        self.opened.append(context)
        return context

    def close(self) -> None:
        for context in self.opened:
            context.close()
        self.opened.clear()


@pytest.fixture
def contexts(browser: Browser, local_stack: RunningStack) -> Iterator[Contexts]:
    # sendmessage reaches every stored connection: start from an empty table.
    local_stack.wait_no_connections(timeout=10.0)
    opened = Contexts(browser)
    try:
        yield opened
    finally:
        opened.close()
        local_stack.wait_no_connections(timeout=10.0)


def sign_in(context: BrowserContext, base_url: str, user: User, mode: str = "subprotocol") -> Page:
    """Open the page and sign in with the user's password: the page connects by itself (its default
    mode, the subprotocol); another ``mode`` is chosen after, as a person would: disconnect, pick, connect."""
    page = context.new_page()
    page.goto(base_url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
    page.fill("#username", user.username)
    page.fill("#password", PASSWORD)
    page.click("#signin")
    expect(page.locator("#me")).to_have_text(user.username, timeout=WAIT_MS)
    expect_connected(page, user)  # no second click
    if mode != "subprotocol":
        first = identity(page)["connectionId"]
        page.click("#disconnect")
        expect(page.locator("#status")).to_have_attribute("data-state", "closed", timeout=WAIT_MS)
        page.select_option("#mode", mode)
        page.click("#connect")
        expect_connected(page, user)
        expect(page.locator("#identity")).not_to_contain_text(first, timeout=WAIT_MS)  # the new connection's
    return page


def expect_connected(page: Page, user: User, timeout: int = WAIT_MS) -> None:
    expect(page.locator("#status")).to_have_attribute("data-state", "connected", timeout=timeout)
    expect(page.locator("#identity")).to_contain_text(user.sub, timeout=timeout)


def chat(page: Page, text: str) -> None:
    page.fill("#chat-input", text)
    page.click("#chat-send")


def chat_line(page: Page, sender: str, text: str) -> Any:
    return page.locator("#chat-log li.theirs", has_text=text).filter(has_text=sender)


def identity(page: Page) -> dict[str, Any]:
    return dict(json.loads(page.locator("#identity").text_content() or "{}"))


def test_two_users_chat_both_ways(contexts: Contexts, local_stack: RunningStack) -> None:
    alice, bob = local_stack.user("alice"), local_stack.user("bob")
    alice_page = sign_in(contexts.new(), local_stack.http_url, alice)
    bob_page = sign_in(contexts.new(), local_stack.http_url, bob)
    assert identity(alice_page)["tokenSource"] == "protocol"
    assert alice_page.evaluate("localStorage.length") == 0  # tokens: memory and sessionStorage only
    assert identity(bob_page)["username"] == bob.username

    chat(alice_page, "hello bob, from the browser")
    line = chat_line(bob_page, alice.username, "hello bob, from the browser")
    expect(line).to_have_count(1, timeout=WAIT_MS)
    assert re.search(r"\d{1,2}:\d{2}:\d{2}", line.locator("time").text_content() or ""), "no time shown"
    chat(bob_page, "hi alice")
    expect(chat_line(alice_page, bob.username, "hi alice")).to_have_count(1, timeout=WAIT_MS)
    # The sender sees its own line once (not echoed back as someone else's).
    expect(alice_page.locator("#chat-log li.mine", has_text="hello bob")).to_have_count(1)
    expect(alice_page.locator("#chat-log li.theirs", has_text="hello bob")).to_have_count(0)

    # Error frames are shown plainly; the connection stays open.
    alice_page.fill("#raw-input", '{"action":"publish","data":"x"}')
    alice_page.click("#raw-send")
    expect(alice_page.locator("#errors li", has_text="missing_field")).to_have_count(1, timeout=WAIT_MS)
    alice_page.fill("#raw-input", '{"action":"teleport"}')
    alice_page.click("#raw-send")
    expect(alice_page.locator("#errors li", has_text="unknown_action")).to_have_count(1, timeout=WAIT_MS)
    expect(alice_page.locator("#status")).to_have_attribute("data-state", "connected")

    topic = f"public/releases-{uuid.uuid4().hex[:6]}"
    alice_page.fill("#topic", topic)
    alice_page.click("#subscribe")
    expect(alice_page.locator("#topics")).to_have_text(topic, timeout=WAIT_MS)
    bob_page.fill("#topic", topic)
    bob_page.fill("#publish-data", "v1.2 is out")
    bob_page.click("#publish")
    expect(alice_page.locator("#topic-log li", has_text="v1.2 is out")).to_have_count(1, timeout=WAIT_MS)
    local_stack.invoke("notify", {"username": alice.username, "data": "build 42 deployed"})
    expect(alice_page.locator("#notifications li", has_text="build 42")).to_have_count(1, timeout=WAIT_MS)
    chat(bob_page, "the screenshot is of alice's page mid-chat")
    expect(chat_line(alice_page, bob.username, "mid-chat")).to_have_count(1, timeout=WAIT_MS)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    alice_page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000


def test_make_run_page_shows_the_demo_credentials_as_placeholders(contexts: Contexts,
                                                                   local_stack: RunningStack) -> None:
    """The page ``make run`` serves (devtools.stack's LocalStack, as the browser sees it)."""
    from devtools.cognito_local import DEFAULT_PASSWORD

    config = json.loads(urlopen(local_stack.http_url + "/config.json", timeout=10).read())
    page = contexts.new().new_page()
    page.goto(local_stack.http_url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
    assert page.get_attribute("#username", "placeholder") == config["demoUser"] == "demo"
    assert page.get_attribute("#password", "placeholder") == DEFAULT_PASSWORD
    assert page.input_value("#username") == "" and page.input_value("#password") == ""  # shown, not filled in


ATTACK_PAGE = """<!doctype html><title>a page the developer happens to visit</title><script>
const gw = "GATEWAY", sent = [];
async function attack() {
  const simple = (url, body, type) => fetch(url, {method: "POST", mode: "no-cors", body,
                                                   headers: type ? {"Content-Type": type} : {}})
    .then(() => sent.push(url), (e) => sent.push("error " + e));
  await simple(gw + "/2015-03-31/functions/notify/invocations", JSON.stringify({username: "VICTIM", data: "forged"}),
               "text/plain");
  await simple(gw + "/2015-03-31/functions/notify/invocations", new Blob([JSON.stringify({username: "VICTIM",
               data: "forged blob"})]), null);
  await simple(gw + "/dev/@connections/CONNECTION", "forged post", "text/plain");
  const form = new FormData();
  form.append("Entries", "[]");
  await simple(gw + "/", form, null);
  document.title = "done " + sent.length;
}
attack();
</script>"""


def test_a_cross_origin_page_cannot_drive_the_local_endpoints(contexts: Contexts, local_stack: RunningStack,
                                                               ws_clients: Any) -> None:
    """A real page on another origin sends the simple cross-site POSTs a browser lets through unasked:
    nothing reaches the victim, and the gateway logs each refusal."""
    victim_user = local_stack.user("victim")
    victim = ws_clients(victim_user.access_token)
    page_html = (ATTACK_PAGE.replace("GATEWAY", local_stack.http_url).replace("VICTIM", victim_user.username)
                 .replace("CONNECTION", victim.connection_id))

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = page_html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = contexts.new().new_page()
        page.goto(f"http://localhost:{server.server_address[1]}/")  # another origin than the gateway's
        expect(page).to_have_title("done 4", timeout=WAIT_MS)
    finally:
        server.shutdown()
    victim.recv_none(within=1.0)  # no forged notification, no forged post
    log = local_stack.output.text()
    assert log.count("refused (403)") >= 4, log[-3000:]  # each carried the attacker's Origin


def test_wrong_password_is_shown_and_nothing_is_kept(contexts: Contexts, local_stack: RunningStack) -> None:
    alice = local_stack.user("alice")
    page = contexts.new().new_page()
    page.goto(local_stack.http_url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
    page.fill("#username", alice.username)
    page.fill("#password", "not-her-password")
    page.click("#signin")
    expect(page.locator("#signin-error")).to_contain_text("NotAuthorizedException", timeout=WAIT_MS)
    expect(page.locator("#session-panel")).to_be_hidden()
    assert page.evaluate("sessionStorage.length + localStorage.length") == 0


def test_topic_subscribe_publish_unsubscribe(contexts: Contexts, local_stack: RunningStack) -> None:
    alice, bob = local_stack.user("alice"), local_stack.user("bob")
    alice_page = sign_in(contexts.new(), local_stack.http_url, alice)
    bob_page = sign_in(contexts.new(), local_stack.http_url, bob)
    topic = f"public/news-{uuid.uuid4().hex[:8]}"

    bob_page.fill("#topic", topic)
    bob_page.click("#subscribe")
    expect(bob_page.locator("#topics")).to_have_text(topic, timeout=WAIT_MS)
    alice_page.fill("#topic", topic)
    alice_page.fill("#publish-data", "first edition")
    alice_page.click("#publish")
    expect(bob_page.locator("#topic-log li", has_text="first edition")).to_contain_text(alice.username,
                                                                                        timeout=WAIT_MS)
    expect(bob_page.locator("#topic-log li", has_text="first edition")).to_contain_text(topic)
    expect(alice_page.locator("#log li", has_text="publish: delivered 1")).to_have_count(1, timeout=WAIT_MS)

    bob_page.click("#unsubscribe")
    expect(bob_page.locator("#topics")).to_have_text("none", timeout=WAIT_MS)
    alice_page.fill("#publish-data", "second edition")
    alice_page.click("#publish")
    expect(alice_page.locator("#log li", has_text="publish: delivered 0")).to_have_count(1, timeout=WAIT_MS)
    bob_page.wait_for_timeout(300)
    expect(bob_page.locator("#topic-log li", has_text="second edition")).to_have_count(0)


def test_a_refused_subscription_is_shown_and_the_private_inbox_offered(contexts: Contexts,
                                                                      local_stack: RunningStack) -> None:
    """Another user's inbox is refused, said beside the topic box; My inbox fills in the user's own, which a
    back-end's push then reaches."""
    alice, bob = local_stack.user("alice"), local_stack.user("bob")
    page = sign_in(contexts.new(), local_stack.http_url, alice)
    page.fill("#topic", f"user/{bob.sub}/inbox")
    page.click("#subscribe")
    expect(page.locator("#topic-refused")).to_contain_text(f"Not subscribed to user/{bob.sub}/inbox",
                                                          timeout=WAIT_MS)
    expect(page.locator("#topic-refused")).to_contain_text("not allowed")
    expect(page.locator("#topics")).to_have_text("none")
    page.click("#inbox")
    expect(page.locator("#topic")).to_have_value(f"user/{alice.sub}/inbox")
    page.click("#subscribe")
    expect(page.locator("#topics")).to_have_text(f"user/{alice.sub}/inbox", timeout=WAIT_MS)
    expect(page.locator("#topic-refused")).to_have_text("")
    _put(local_stack, "TopicMessage", {"topic": f"user/{alice.sub}/inbox", "data": "mail"})  # EventBridge
    expect(page.locator("#topic-log li", has_text="mail")).to_contain_text("back-end", timeout=WAIT_MS)


def test_push_reaches_only_that_user(contexts: Contexts, local_stack: RunningStack) -> None:
    alice, bob = local_stack.user("alice"), local_stack.user("bob")
    alice_page = sign_in(contexts.new(), local_stack.http_url, alice)
    bob_page = sign_in(contexts.new(), local_stack.http_url, bob)

    report = local_stack.invoke("notify", {"username": alice.username, "data": "for alice only"})
    assert report["ok"] and report["delivered"] == 1, report
    expect(alice_page.locator("#notifications li", has_text="for alice only")).to_have_count(1, timeout=WAIT_MS)
    # A later push to bob arrives after alice's would have: then bob's page shows only his.
    report = local_stack.invoke("notify", {"userId": bob.sub, "data": {"for": "bob"}})
    assert report["delivered"] == 1, report
    expect(bob_page.locator("#notifications li", has_text='{"for":"bob"}')).to_have_count(1, timeout=WAIT_MS)
    expect(bob_page.locator("#notifications li")).to_have_count(1)
    expect(alice_page.locator("#notifications li")).to_have_count(1)


class _ForeignSite(http.server.ThreadingHTTPServer):
    """A page on another origin (another port) that tries the victim's cookies on the WebSocket."""

    def __init__(self, ws_url: str, csrf_cookie: str) -> None:
        page = f"""<!doctype html><title>foreign</title><script>
const csrf = (document.cookie.split("; ").find((c) => c.startsWith({json.dumps(csrf_cookie + "=")})) || "=").split("=")[1];
const ws = new WebSocket({json.dumps(ws_url)} + "?csrf=" + encodeURIComponent(csrf));
ws.onopen = () => {{ document.title = "open"; }};
ws.onclose = (e) => {{ document.title = "closed " + e.code; }};
</script>""".encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://localhost:{self.server_address[1]}/"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def test_cookie_mode_and_a_foreign_origin_is_refused(contexts: Contexts, local_stack: RunningStack) -> None:
    alice, bob = local_stack.user("alice"), local_stack.user("bob")
    context = contexts.new()
    # localhost, not 127.0.0.1: cookies are per host, and the stack allows both origins.
    alice_page = sign_in(context, local_stack.origin, alice, mode="cookie")
    assert identity(alice_page)["tokenSource"] == "cookie"
    cookies = {c["name"]: c for c in context.cookies(local_stack.origin)}
    assert cookies["JWT"]["httpOnly"] and not cookies["CSRF-TOKEN"]["httpOnly"], cookies
    assert alice_page.evaluate("document.cookie").count("JWT=") == 0  # the token cookie is not readable
    bob_page = sign_in(contexts.new(), local_stack.http_url, bob)
    chat(bob_page, "to a cookie-mode page")
    expect(chat_line(alice_page, bob.username, "to a cookie-mode page")).to_have_count(1, timeout=WAIT_MS)
    chat(alice_page, "from a cookie-mode page")
    expect(chat_line(bob_page, alice.username, "from a cookie-mode page")).to_have_count(1, timeout=WAIT_MS)

    # The same browser, a page of another origin: alice's cookies go with its
    # upgrade request and it can read the CSRF cookie, but its Origin is not allowed.
    ws_url = local_stack.origin.replace("http://", "ws://") + "/dev"
    foreign = _ForeignSite(ws_url, "CSRF-TOKEN")
    refusals = local_stack.logs().count('"reason":"origin_not_allowed"')
    try:
        evil = context.new_page()
        evil.goto(foreign.url)
        expect(evil).to_have_title(re.compile(r"^(open|closed \d+)$"), timeout=WAIT_MS)
        assert evil.title() != "open", "a foreign origin was let in with the user's cookies"
        local_stack.wait_until(lambda: local_stack.logs().count('"reason":"origin_not_allowed"') > refusals,
                               5.0, "the authorizer's origin_not_allowed refusal")
        # Control: the same script on the allowed origin opens.
        alice_page.evaluate("""(ws) => new Promise((resolve) => {
            const csrf = document.cookie.split("; ").find((c) => c.startsWith("CSRF-TOKEN=")).split("=")[1];
            const s = new WebSocket(ws + "?csrf=" + encodeURIComponent(csrf));
            s.onopen = () => { document.title = "control open"; s.close(); resolve(); };
            s.onclose = () => resolve();
        })""", ws_url)
        assert alice_page.title() == "control open"
    finally:
        foreign.stop()


class OwnStage:
    """A table and gateways of one test's own (stoppable), on the session stack's pool and DynamoDB Local."""

    def __init__(self, local_stack: RunningStack) -> None:
        self.local_stack = local_stack
        self.table = f"browser-{uuid.uuid4().hex[:8]}"
        schema.create_table(local_stack.dynamodb, self.table)
        self.gateways: list[Any] = []

    def gateway(self, port: int = 0, limits: Limits | None = None, settings: dict[str, str] | None = None,
                schedule_interval: float | None = None, **timers: Any) -> Any:
        """Start a gateway for the app on this stage's table, serving the page with ``timers``.

        The app's per-container wiring (chalicelib.runtime) is per process: reset, so
        this gateway's table and management URL are the ones it uses."""
        runtime.rebuild()
        pool = self.local_stack.pool
        env = {
            "COGNITO_USER_POOL_ID": pool.pool_id,
            "COGNITO_APP_CLIENT_IDS": pool.client_id,
            "COGNITO_REGION": pool.region,
            "COGNITO_JWKS_URL": pool.jwks_url,
            "CONNECTIONS_TABLE": self.table,
            "AWS_ENDPOINT_URL_DYNAMODB": self.local_stack.state["dynamodb_endpoint"],
            **(settings or {}),
        }
        holder: dict[str, Any] = {}
        page = local_page(stage_environment("dev"), "dev", pool, lambda: holder["gw"].url, **timers)
        options = {} if schedule_interval is None else {"schedule_interval": schedule_interval}
        holder["gw"] = run_in_thread(str(ROOT), port=port, stage="dev", env=env, extra_routes=page.routes(),
                                     limits=limits or Limits(), **options)
        self.gateways.append(holder["gw"])
        return holder["gw"]


@pytest.fixture
def own_stage(contexts: Contexts, local_stack: RunningStack) -> Iterator[OwnStage]:
    """Pages are closed before the stage's gateways stop, then the table goes."""
    stage = OwnStage(local_stack)
    try:
        yield stage
    finally:
        contexts.close()
        for gateway in stage.gateways:
            gateway.stop()  # a no-op for one already stopped
        runtime.rebuild()
        local_stack.dynamodb.delete_table(TableName=stage.table)


HISTORY_RULES = json.dumps([{"topic": "chat/*", "subscribe": "any", "publish": "any", "history_seconds": 120},
                            {"topic": "public/**", "subscribe": "any", "publish": "any"},
                            {"topic": "user/{sub}/**", "subscribe": "self", "publish": "none"}])


def test_a_dropped_page_resumes_and_shows_what_it_missed_once(contexts: Contexts, local_stack: RunningStack,
                                                              own_stage: OwnStage) -> None:
    """The server closes bob's socket (a kick without revoke, as API Gateway's 2-hour cut would); a message
    is published meanwhile; the page reconnects with ``resume`` and shows the message exactly once."""
    import boto3

    gateway = own_stage.gateway(settings={"CHANNEL_RULES": HISTORY_RULES}, backoffBaseMs=400, backoffCapMs=1000)
    base = f"http://127.0.0.1:{gateway.port}"
    alice, bob = local_stack.user("alice"), local_stack.user("bob")
    alice_page, bob_page = sign_in(contexts.new(), base, alice), sign_in(contexts.new(), base, bob)
    topic = f"chat/room-{uuid.uuid4().hex[:6]}"
    for page in (alice_page, bob_page):
        page.fill("#topic", topic)
        page.click("#subscribe")
        expect(page.locator("#topics")).to_have_text(topic, timeout=WAIT_MS)
    alice_page.fill("#publish-data", "before the cut")
    alice_page.click("#publish")
    expect(bob_page.locator("#topic-log li", has_text="before the cut")).to_have_count(1, timeout=WAIT_MS)
    first_id = identity(bob_page)["connectionId"]
    lam = boto3.client("lambda", endpoint_url=base, region_name="us-east-1", aws_access_key_id="local",
                       aws_secret_access_key="local")
    closed = json.loads(lam.invoke(FunctionName="notify", Payload=json.dumps(
        {"userId": bob.sub, "disconnect": True}).encode())["Payload"].read())
    assert closed["closed"] == 1, closed
    alice_page.fill("#publish-data", "during the cut")
    alice_page.click("#publish")
    expect(bob_page.locator("#log li", has_text="resumed 1 topic(s)")).to_have_count(1, timeout=15_000)
    assert identity(bob_page)["connectionId"] != first_id
    expect(bob_page.locator("#topic-log li", has_text="during the cut")).to_have_count(1, timeout=WAIT_MS)
    expect(bob_page.locator("#topic-log li", has_text="before the cut")).to_have_count(1)  # not shown twice
    expect(bob_page.locator("#topic-refused")).to_have_text("")


def test_page_reconnects_after_the_gateway_restarts(contexts: Contexts, local_stack: RunningStack,
                                                     own_stage: OwnStage) -> None:
    timers = {"backoffBaseMs": 250, "backoffCapMs": 2000}
    gateway = own_stage.gateway(**timers)
    port = gateway.port
    base = f"http://127.0.0.1:{port}"
    alice, bob = local_stack.user("alice"), local_stack.user("bob")
    alice_page = sign_in(contexts.new(), base, alice)
    bob_page = sign_in(contexts.new(), base, bob)
    first_id = identity(alice_page)["connectionId"]

    gateway.stop()
    for page in (alice_page, bob_page):
        expect(page.locator("#status")).to_have_attribute("data-state", "reconnecting", timeout=WAIT_MS)
    time.sleep(1.5)  # a few refused attempts while it is down
    own_stage.gateway(port=port, **timers)

    expect_connected(alice_page, alice, timeout=15_000)
    expect_connected(bob_page, bob, timeout=15_000)
    assert identity(alice_page)["connectionId"] != first_id
    expect(alice_page.locator("#log li", has_text="reconnecting in")).not_to_have_count(0)
    chat(alice_page, "back again")
    expect(chat_line(bob_page, alice.username, "back again")).to_have_count(1, timeout=WAIT_MS)
    chat(bob_page, "welcome back")
    expect(chat_line(alice_page, bob.username, "welcome back")).to_have_count(1, timeout=WAIT_MS)

    # The good connection's whoami answer (its id, "hello") reset the backoff: a second outage starts over.
    own_stage.gateways[-1].stop()
    expect(alice_page.locator("#status")).to_have_attribute("data-state", "reconnecting", timeout=WAIT_MS)
    expect(alice_page.locator("#log li", has_text="(attempt 1)")).to_have_count(2, timeout=WAIT_MS)


def test_keepalive_and_planned_reconnect(contexts: Contexts, local_stack: RunningStack, own_stage: OwnStage) -> None:
    """Below the idle timeout the keepalive holds the connection; before the lifetime
    limit the page opens a new connection and then closes the old one (no gap, no duplicates)."""
    # Scaled-down API Gateway limits: 2.5 s idle, 6 s lifetime.
    gateway = own_stage.gateway(limits=Limits(idle_timeout=2.5, max_lifetime=6), keepaliveSeconds=1,
                                plannedReconnectSeconds=4)
    alice = local_stack.user("alice")
    page = sign_in(contexts.new(), f"http://127.0.0.1:{gateway.port}", alice)
    first_id = identity(page)["connectionId"]
    expect(page.locator("#identity")).not_to_contain_text(first_id, timeout=8_000)
    page.wait_for_timeout(4_500)  # past both the idle timeout and the first connection's lifetime
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    assert int(page.locator("#keepalives").text_content() or "0") >= 4
    logs = page.locator("#log li").all_text_contents()
    assert any("planned reconnect: new connection open" in line for line in logs), logs
    assert not any("connection closed" in line for line in logs), logs


def test_duplicates_are_dropped_by_message_id(contexts: Contexts, local_stack: RunningStack) -> None:
    alice = local_stack.user("alice")
    page = sign_in(contexts.new(), local_stack.http_url, alice)
    connection_id = identity(page)["connectionId"]
    frame = json.dumps({"type": "notification", "data": "once", "messageId": str(uuid.uuid4())})
    api = boto3.client("apigatewaymanagementapi", endpoint_url=local_stack.management_url, region_name="us-east-1",
                       aws_access_key_id="local", aws_secret_access_key="local")
    for _ in range(2):  # an at-least-once retry: the same bytes, the same messageId
        api.post_to_connection(ConnectionId=connection_id, Data=frame.encode())
    expect(page.locator("#dupes")).to_have_text("1", timeout=WAIT_MS)
    expect(page.locator("#notifications li", has_text="once")).to_have_count(1)


def test_make_web_config_for_a_deployed_stage() -> None:
    """``make web STAGE=dev``'s config: the stage's pool and client, the callback URL it lists."""
    config = stage_config("dev", "wss://abc123.execute-api.us-east-1.amazonaws.com/dev",
                          "https://wsauth-dev.auth.us-east-1.amazoncognito.com/", None)
    stage = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]["dev"]
    assert config["userPoolId"] == stage["environment_variables"]["COGNITO_USER_POOL_ID"]
    assert config["clientId"] == stage["environment_variables"]["COGNITO_APP_CLIENT_IDS"].split(",")[0]
    assert config["redirectUri"] == stage["stage_resources"]["callback_urls"][0] == "http://localhost:8000/callback"
    assert config["hostedUiDomain"] == "https://wsauth-dev.auth.us-east-1.amazoncognito.com"
    assert config["signIn"] == "hosted-ui" and not config["cookieMode"] and config["region"] == "us-east-1"
    assert config["cognitoEndpoint"] == "https://cognito-idp.us-east-1.amazonaws.com/"


def test_screenshot_for_the_readme_exists() -> None:
    assert (ROOT / "docs" / "browser-client.png").stat().st_size > 10_000


class _PageServer:
    """``devtools.web``'s page alone (as ``make web`` serves it), on a free port, on its own loop thread."""

    def __init__(self, config: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0

        async def start() -> Any:
            app = web.Application()
            app.add_routes(WebPage(lambda: config(self)).routes())
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self.port = runner.addresses[0][1]
            return runner

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_hosted_ui_sign_in_with_pkce(contexts: Contexts, local_stack: RunningStack) -> None:
    """A deployed stage's sign-in: the hosted UI (authorization code + PKCE), then the token
    endpoint. Cognito's hosted UI is played by Playwright routes (with the local pool's real
    tokens); the page, its PKCE and the WebSocket connection are real."""
    domain = "https://wsauth-test.auth.us-east-1.amazoncognito.com"
    pool = local_stack.pool
    server = _PageServer(lambda s: page_config(
        ws_url=local_stack.ws_url, region=pool.region, pool_id=pool.pool_id, client_id=pool.client_id, stage="dev",
        hosted_ui_domain=domain, redirect_uri=f"{s.url}/callback"))
    alice = local_stack.user("alice")
    seen: dict[str, Any] = {}

    def hosted_ui(route: Any) -> None:
        request = route.request
        url = urlsplit(request.url)
        if url.path == "/oauth2/authorize":
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            seen["authorize"] = query
            back = f"{query['redirect_uri']}?{urlencode({'code': 'the-code', 'state': query['state']})}"
            route.fulfill(status=200, content_type="text/html",
                          body=f'<title>hosted UI</title><a id="login" href="{back}">Sign in</a>')
        elif url.path == "/oauth2/token" and request.method == "POST":
            form = {k: v[0] for k, v in parse_qs(request.post_data or "").items()}
            seen["token"] = form
            challenge = base64.urlsafe_b64encode(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
            ok = (form.get("code") == "the-code" and form.get("grant_type") == "authorization_code"
                  and challenge.decode().rstrip("=") == seen["authorize"]["code_challenge"])
            body = ({"access_token": alice.access_token, "id_token": alice.id_token, "token_type": "Bearer",
                     "expires_in": 3600} if ok else {"error": "invalid_grant"})
            route.fulfill(status=200 if ok else 400, content_type="application/json", body=json.dumps(body),
                          headers={"Access-Control-Allow-Origin": server.url})
        else:
            route.fulfill(status=404, body="not found")

    try:
        context = contexts.new()
        context.route(domain + "/**", hosted_ui)
        page = context.new_page()
        page.goto(server.url + "/")
        expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
        expect(page.locator("#password-form")).to_be_hidden()
        page.click("#signin-hosted")
        expect(page).to_have_title("hosted UI", timeout=WAIT_MS)
        query = seen["authorize"]
        assert query["response_type"] == "code" and query["client_id"] == pool.client_id, query
        assert query["code_challenge_method"] == "S256" and query["redirect_uri"] == server.url + "/callback"
        page.click("#login")
        expect(page.locator("#me")).to_have_text(alice.username, timeout=WAIT_MS)
        assert seen["token"]["redirect_uri"] == server.url + "/callback"
        assert urlsplit(page.url).path == "/" and "code=" not in page.url  # the code is not left in the URL
        assert page.evaluate("localStorage.length") == 0
        assert page.evaluate("Object.keys(sessionStorage)") == ["ws-cognito.tokens"]
        expect_connected(page, alice)  # back from the hosted UI: connected without a click
    finally:
        contexts.close()
        server.stop()


def test_token_renewed_on_the_open_socket(contexts: Contexts, local_stack: RunningStack) -> None:
    """On the server's token_expiring warning the page renews its token with the refresh
    token (REFRESH_TOKEN_AUTH) and sends it with the refresh action on the same socket."""
    alice = local_stack.user("alice")
    page = sign_in(contexts.new(), local_stack.http_url, alice)
    before = identity(page)
    page.wait_for_timeout(1100)  # the renewed token's exp is a later second
    api = boto3.client("apigatewaymanagementapi", endpoint_url=local_stack.management_url, region_name="us-east-1",
                       aws_access_key_id="local", aws_secret_access_key="local")
    warning = {"type": "token_expiring", "expiresAt": before["claims"]["exp"], "messageId": str(uuid.uuid4())}
    api.post_to_connection(ConnectionId=before["connectionId"], Data=json.dumps(warning).encode())
    expect(page.locator("#renewals")).to_have_text("1", timeout=WAIT_MS)
    expect(page.locator("#log li", has_text="server accepted the renewed token")).to_have_count(1, timeout=WAIT_MS)
    page.click("#whoami")
    expect(page.locator("#identity")).not_to_contain_text(f'"exp": {before["claims"]["exp"]}', timeout=WAIT_MS)
    after = identity(page)
    assert after["connectionId"] == before["connectionId"]  # the same socket
    assert int(after["claims"]["exp"]) > int(before["claims"]["exp"])
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")


def _short_lived(access_token: str, seconds: int) -> str:
    """The same access token, expiring in ``seconds``, signed with the local Cognito's key
    (moto's server signs every token with the key it ships): Cognito's are an hour."""
    from moto.utilities.utils import load_resource

    key = load_resource("cognitoidp/resources/jwks-private.json")
    claims = jwt.decode(access_token, options={"verify_signature": False})
    now = int(time.time())
    claims.update(iat=now, auth_time=now, exp=now + seconds)
    return jwt.encode(claims, jwt.PyJWK(key).key, algorithm="RS256", headers={"kid": key["kid"]})


def test_short_lived_token_renewed_and_the_connection_outlives_it(contexts: Contexts, local_stack: RunningStack,
                                                                   own_stage: OwnStage) -> None:
    """The server closes a connection once its token expires (the expiry sweep, run every
    second here); the page renews its token before then with REFRESH_TOKEN_AUTH and sends
    it with the refresh action, so its connection stays open past the old expiry. A page
    that cannot renew (no refresh token) is closed: the check that the sweep runs."""
    lifetime = 12
    gateway = own_stage.gateway(settings={"TOKEN_EXPIRY_WARNING_SECONDS": "4"}, schedule_interval=1.0)
    base = f"http://127.0.0.1:{gateway.port}"

    def shorten(drop_refresh: bool) -> Any:
        def handler(route: Any) -> None:
            answer = route.fetch()
            body = answer.json()
            if json.loads(route.request.post_data or "{}").get("AuthFlow") == "USER_PASSWORD_AUTH":
                result = body["AuthenticationResult"]
                result["AccessToken"] = _short_lived(result["AccessToken"], lifetime)
                if drop_refresh:
                    del result["RefreshToken"]
            route.fulfill(response=answer, json=body)
        return handler

    alice, bob = local_stack.user("alice"), local_stack.user("bob")
    alice_context, bob_context = contexts.new(), contexts.new()
    alice_context.route("**/_web/cognito", shorten(drop_refresh=False))
    bob_context.route("**/_web/cognito", shorten(drop_refresh=True))
    alice_page = sign_in(alice_context, base, alice)
    bob_page = sign_in(bob_context, base, bob)
    first = identity(alice_page)
    old_exp = int(first["claims"]["exp"])
    assert old_exp - time.time() <= lifetime + 1, first["claims"]

    expect(alice_page.locator("#renewals")).to_have_text("1", timeout=lifetime * 1000)
    expect(alice_page.locator("#log li", has_text="server accepted the renewed token")).to_have_count(
        1, timeout=WAIT_MS)
    # Past the old token's expiry (and a few sweeps): bob's connection is closed, alice's is not.
    expect(bob_page.locator("#log li", has_text="connection closed")).not_to_have_count(
        0, timeout=(lifetime + 8) * 1000)
    alice_page.wait_for_timeout(max(0.0, old_exp + 3 - time.time()) * 1000)
    assert time.time() > old_exp + 2
    expect(alice_page.locator("#status")).to_have_attribute("data-state", "connected")
    assert not any("connection closed" in line for line in alice_page.locator("#log li").all_text_contents())
    alice_page.click("#whoami")
    expect(alice_page.locator("#identity")).not_to_contain_text(f'"exp": {old_exp}', timeout=WAIT_MS)
    assert identity(alice_page)["connectionId"] == first["connectionId"]
