"""``make run``: the whole project on one machine, in the foreground.

Starts DynamoDB Local (the connections table created from ``chalicelib.schema``,
the definition deployment uses), a local Cognito on moto's server (a user
pool, an app client and a demo user), the WebSocket gateway serving
``app.py`` with the stage's settings pointed at those two, and the app's REST
API (Chalice's local server, ``devtools.chalice_local.RestServer``) on the
gateway's port + 1 with the same settings. Ctrl-C stops all of it.
The running stack's endpoints are written to ``.local/stack.json`` for
``make token`` and the end-to-end tests.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from chalicelib.fanout import DEFAULT_INLINE_MAX
from devtools import cognito_local
from devtools.signals import stop_event
from devtools.state import DEFAULT_STATE_FILE, ROOT, clear_state, write_state

READY_LINE = "LOCAL_STACK_READY"


def _stage_env(stage: str) -> tuple[str, dict[str, str]]:
    """The app's name and the stage's environment variables, from .chalice/config.json."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    if stage not in config.get("stages", {}):
        raise SystemExit(f"error: stage {stage!r} is not in .chalice/config.json "
                         f"(stages: {', '.join(config.get('stages', {}))})")
    env = dict(config.get("environment_variables", {}))
    env.update(config["stages"][stage].get("environment_variables", {}))
    from chalicelib.channels import ChannelRules, RuleError

    try:  # what every request would fail on: said once, at start-up
        ChannelRules.parse(env.get("CHANNEL_RULES"))
    except RuleError as error:
        raise SystemExit(f"error: stage {stage!r}: CHANNEL_RULES: {error}") from None
    return str(config["app_name"]), env


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


class LocalStack:
    """The local services, started in order and stopped in reverse."""

    def __init__(self, stage: str, host: str, port: int, demo_user: str, state_file: Path,
                 env_overrides: dict[str, str] | None = None, rest_port: int | None = None,
                 fanout_workers: int = 2, fanout_visibility_timeout: int = 30, fanout_max_receive: int = 3,
                 schedule_interval: float | None = None) -> None:
        self.stage = stage
        self.host = host
        self.port = port
        # The REST API: the gateway's port + 1, or any free port when the gateway's is.
        self.rest_port = rest_port
        self.demo_user = demo_user
        self.state_file = state_file
        self.env_overrides = env_overrides or {}
        # The fan-out queue (moto's SQS) and Lambda's event source mapping for the app's worker:
        # invocations at once, the queue's visibility timeout, and receives before the DLQ.
        self.fanout_workers = fanout_workers
        self.fanout_visibility_timeout = fanout_visibility_timeout
        self.fanout_max_receive = fanout_max_receive
        self.schedule_interval = schedule_interval  # None: each @app.schedule at its rate (or the gateway's env)
        self.fanout: Any = None
        self.dynamodb: Any = None
        self.moto: Any = None
        self.gateway: Any = None
        self.rest: Any = None

    async def start(self) -> dict[str, Any]:
        from devtools.dynamodb_local import DynamoDBLocal
        from devtools.gateway import LocalGateway
        from devtools.moto_server import MotoServer

        from chalicelib import schema

        app_name, stage_env = _stage_env(self.stage)
        prefix = f"{app_name}-{self.stage}"  # what the stage's resources are called on AWS too
        os.environ.setdefault("AWS_REGION", "us-east-1")
        os.environ.setdefault("AWS_DEFAULT_REGION", os.environ["AWS_REGION"])
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")

        _say("starting DynamoDB Local")
        self.dynamodb = DynamoDBLocal().start()
        table = stage_env.get("CONNECTIONS_TABLE") or f"{prefix}-connections"
        schema.create_table(self.dynamodb.client(), table)
        _say(f"DynamoDB Local at {self.dynamodb.endpoint_url}, table {table}")

        _say("starting local Cognito (moto server)")
        self.moto = MotoServer().start()
        pool = cognito_local.create_pool(self.moto.endpoint_url, name=prefix,
                                         region=os.environ["AWS_REGION"])
        cognito_local.sign_up(pool, self.demo_user)
        _say(f"Cognito user pool {pool.pool_id}, app client {pool.client_id}, user {self.demo_user!r}")

        import boto3

        sqs = boto3.client("sqs", endpoint_url=self.moto.endpoint_url, region_name=os.environ["AWS_REGION"])
        self._queue_name, self._pool = f"{prefix}-fanout", pool
        queues = self.create_queues(sqs)
        _say(f"fan-out queue {queues['queue_url']} (DLQ after {self.fanout_max_receive} receives, "
             f"visibility timeout {self.fanout_visibility_timeout} s)")

        origins = {o for o in stage_env.get("ALLOWED_ORIGINS", "").split(",") if o}
        env = {
            "COGNITO_USER_POOL_ID": pool.pool_id,
            "COGNITO_APP_CLIENT_IDS": pool.client_id,
            "COGNITO_REGION": pool.region,
            "COGNITO_JWKS_URL": pool.jwks_url,
            "CONNECTIONS_TABLE": table,
            "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb.endpoint_url,
            "FANOUT_QUEUE_URL": queues["queue_url"],
            "AWS_ENDPOINT_URL_SQS": self.moto.endpoint_url,
            **self.env_overrides,
        }
        _say("starting the WebSocket gateway")
        from devtools.web import local_page  # the browser client, on the gateway's origin

        self.page = local_page(stage_env, self.stage, pool, lambda: self.gateway.url,
                               demo=(self.demo_user, cognito_local.DEFAULT_PASSWORD))
        self._app_env, self._sqs = env, sqs
        await self._start_app()
        # The origins the local page and wscat use need the real port, known after start.
        origins |= {f"http://localhost:{self.gateway.port}", f"http://127.0.0.1:{self.gateway.port}"}
        if "ALLOWED_ORIGINS" not in self.env_overrides:
            os.environ["ALLOWED_ORIGINS"] = ",".join(sorted(origins))

        state = {
            "pid": os.getpid(),
            "stage": self.stage,
            "ws_url": self.gateway.url,
            "http_url": f"http://{self.host}:{self.gateway.port}",
            "management_url": self.gateway.management_url,
            "rest_url": self.rest.url,
            "dynamodb_endpoint": self.dynamodb.endpoint_url,
            "table": table,
            "cognito": {"endpoint_url": pool.endpoint_url, "region": pool.region,
                        "pool_id": pool.pool_id, "client_id": pool.client_id},
            "demo_user": self.demo_user,
            "password": cognito_local.DEFAULT_PASSWORD,
            "allowed_origins": sorted(origins),
            "fanout": {"queue_url": queues["queue_url"], "dlq_url": queues["dlq_url"],
                       "sqs_endpoint": self.moto.endpoint_url, "workers": self.fanout_workers,
                       "inline_max": os.environ.get("FANOUT_INLINE_MAX", str(DEFAULT_INLINE_MAX))},
        }
        write_state(state, self.state_file)
        return state

    async def _start_app(self) -> None:
        """What runs the app's code: the gateway, the fan-out workers and the REST server."""
        from devtools.chalice_local import RestServer
        from devtools.gateway import LocalGateway
        from devtools.sqs_mapping import SqsEventSourceMapping

        self.gateway = LocalGateway(str(ROOT), stage=self.stage, host=self.host, port=self.port, env=self._app_env,
                                    extra_routes=self.page.routes(), schedule_interval=self.schedule_interval)
        await self.gateway.start()
        any_port, self.port = self.port == 0, self.gateway.port  # a reload serves on the same port
        self.fanout = SqsEventSourceMapping(self.gateway.app, str(ROOT), self.stage, self._sqs,
                                            workers=self.fanout_workers, region=os.environ["AWS_REGION"])
        self.fanout.recreate_queues = self._recreate_queues
        for mapping in self.fanout.start():
            _say(f"SQS event source mapping: {mapping.queue_url} -> {mapping.function} "
                 f"(batch {mapping.batch_size}, {mapping.concurrency} worker processes)")
        if self.rest is not None:
            rest_port = self.rest.port
        elif self.rest_port is not None:
            rest_port = self.rest_port
        else:
            rest_port = 0 if any_port else self.gateway.port + 1
        self.rest = RestServer(self.stage, self.host, rest_port).start()
        _say(f"REST API at {self.rest.url} (the same settings)")

    def create_queues(self, sqs: Any = None) -> dict[str, str]:
        """The fan-out queue and its DLQ (idempotent: the same names give the same URLs)."""
        from devtools.sqs_mapping import create_queues

        return create_queues(sqs or self._sqs, self._queue_name, visibility_timeout=self.fanout_visibility_timeout,
                             max_receive_count=self.fanout_max_receive)

    def _recreate_queues(self) -> None:
        """The queue's server lost it (restarted): make it again, say so."""
        try:
            urls = self.create_queues()
        except Exception as error:  # noqa: BLE001 - still down: the poller retries, and so does this
            _say(f"the fan-out queue is gone and cannot be created yet ({type(error).__name__}); retrying")
            return
        _say(f"the fan-out queue was gone (its server restarted): created again, {urls['queue_url']}")

    async def check_parts(self) -> None:
        """Restart moto (local Cognito, SQS) if it died, on its port, and recreate what the stack owns there."""
        if self.moto is None or not self.moto.exited():
            return
        from devtools.moto_server import MotoServer

        port = self.moto.port
        _say(f"moto (local Cognito, SQS) exited: starting it again on port {port}")
        try:
            self.moto = MotoServer(port=port).start()
        except Exception as error:  # noqa: BLE001 - say what to do instead of failing silently
            _say(f"moto could not be started again ({error}); stop this stack (Ctrl-C) and run `make run` again")
            return
        self._recreate_queues()
        _say(f"the local Cognito lost user pool {self._pool.pool_id}: tokens already issued keep working until "
             "they expire (their keys are cached), new sign-ins fail; for new tokens, stop (Ctrl-C) and run "
             "`make run` again")

    async def _stop_app(self) -> None:
        if self.fanout is not None:
            self.fanout.stop()
        if self.rest is not None:
            self.rest.stop()
        if self.gateway is not None:
            await self.gateway.stop()

    async def reload(self, changed: Path) -> None:
        """Serve the app's new code on the same ports; DynamoDB Local, Cognito and the queues stay.

        Open connections are closed (1001, as when the gateway stops); clients reconnect.
        """
        _say(f"{changed.relative_to(ROOT)} changed: reloading the app; open connections are dropped")
        await self._stop_app()
        for name in [m for m in sys.modules if m in ("app", "chalicelib") or m.startswith("chalicelib.")]:
            del sys.modules[name]
        await self._start_app()
        _say(f"app reloaded: {self.gateway.url}, REST {self.rest.url}")

    async def stop(self) -> None:
        await self._stop_app()
        for service in (self.moto, self.dynamodb):
            if service is not None:
                service.stop()
        clear_state(self.state_file)


def _banner(state: dict[str, Any]) -> str:
    pool = state["cognito"]
    return f"""
Local stack ready (stage {state['stage']}).
  WebSocket URL    {state['ws_url']}
  Management API   {state['management_url']}
  REST API         {state['rest_url']}  (GET /me; POST /users/<sub>/messages, /topics/<t>/messages, /messages)
  Browser client   {state['http_url']}/  (or http://localhost:{state['http_url'].rsplit(':', 1)[1]}/)
  Lambda invoke    {state['http_url']}  (aws lambda invoke --endpoint-url ... --function-name notify)
  EventBridge      {state['http_url']}  (aws events put-events --endpoint-url ... : PutEvents for the app's rules)
  Cognito          {pool['endpoint_url']}  pool {pool['pool_id']}  client {pool['client_id']}
  DynamoDB Local   {state['dynamodb_endpoint']}  table {state['table']}
  Fan-out queue    {state['fanout']['queue_url']}  ({state['fanout']['workers']} workers; pushes to over {state['fanout']['inline_max']} connections are queued; "SQS fanout_worker" lines show them arrive)

Get a token (user {state['demo_user']!r}, password {cognito_local.DEFAULT_PASSWORD!r}, exists; any other name is signed up):
  make token USER={state['demo_user']}
Connect:
  TOKEN=$(make -s token USER={state['demo_user']} FIELD=access)
  npx wscat -c "{state['ws_url']}" -H "Authorization: Bearer $TOKEN"
  > {{"action":"sendmessage","data":"hello"}}
Who am I, over REST:
  curl -H "Authorization: Bearer $TOKEN" {state['rest_url']}/me
Ctrl-C stops everything.
"""


RELOAD_POLL_SECONDS = 1.0


def watched_sources() -> list[Path]:
    """The app's code: ``app.py`` and every file under ``chalicelib/`` (what ``chalice local`` reloads on)."""
    return [ROOT / "app.py", ROOT / "chalicelib"]


class SourceWatcher:
    """Polls modification times (no inotify needed); ``changed`` names a file changed since the last call."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = roots
        self._seen = self._snapshot()

    def _snapshot(self) -> dict[Path, float]:
        found: dict[Path, float] = {}
        for root in self.roots:
            files = [root] if root.is_file() else [p for p in root.rglob("*.py") if "__pycache__" not in p.parts]
            for path in files:
                try:
                    found[path] = path.stat().st_mtime
                except FileNotFoundError:
                    continue
        return found

    def changed(self) -> Path | None:
        now = self._snapshot()
        differing = [p for p in now.keys() | self._seen.keys() if now.get(p) != self._seen.get(p)]
        self._seen = now
        return sorted(differing)[0] if differing else None


async def _run(args: argparse.Namespace) -> int:
    stack = LocalStack(args.stage, args.host, args.port, args.demo_user, args.state_file,
                       dict(kv.split("=", 1) for kv in args.set), args.rest_port,
                       fanout_workers=args.fanout_workers, fanout_visibility_timeout=args.fanout_visibility_timeout,
                       fanout_max_receive=args.fanout_max_receive, schedule_interval=args.schedule_interval)
    started = time.monotonic()
    with stop_event() as stop:
        try:
            state = await stack.start()
            print(_banner(state), flush=True)
            print(f"{READY_LINE} {json.dumps(state)} ({time.monotonic() - started:.1f}s)", flush=True)
            watcher = SourceWatcher(watched_sources())
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), timeout=RELOAD_POLL_SECONDS)
                except asyncio.TimeoutError:
                    await stack.check_parts()
                    changed = watcher.changed()
                    if changed is not None and not args.no_reload:
                        await stack.reload(changed)
            _say("stopping")
        finally:
            await stack.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    parser = argparse.ArgumentParser(description="Run the project locally (DynamoDB Local, local Cognito, gateway).")
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")),
                        help="gateway port (0 = any free port)")
    parser.add_argument("--rest-port", type=int, default=None,
                        help="REST API port (default: the gateway's port + 1; any free port with --port 0)")
    parser.add_argument("--demo-user", default="demo")
    parser.add_argument("--state-file", type=Path, default=DEFAULT_STATE_FILE)
    parser.add_argument("--fanout-workers", type=int, default=2, metavar="N",
                        help="fan-out worker invocations at once, each in its own process (default 2)")
    parser.add_argument("--fanout-visibility-timeout", type=int, default=30, metavar="SECONDS",
                        help="the fan-out queue's visibility timeout: how soon a failed work item comes back")
    parser.add_argument("--fanout-max-receive", type=int, default=3, metavar="N",
                        help="receives of a work item before SQS moves it to the dead-letter queue")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the app (e.g. REQUIRED_GROUPS=admins)")
    parser.add_argument("--no-reload", action="store_true",
                        help="keep serving the code loaded at start when app.py or chalicelib/ changes")
    parser.add_argument("--schedule-interval", type=float, default=None, metavar="SECONDS",
                        help="run every @app.schedule function this often instead of at its rate "
                             "(the token expiry sweep runs every minute otherwise)")
    args = parser.parse_args(argv)
    for kv in args.set:
        if "=" not in kv:
            parser.error(f"--set takes KEY=VALUE, not {kv!r}")
    try:
        return asyncio.run(_run(args))
    except OSError as error:
        print(f"error: {error} (is port {args.port} in use? try PORT=8001 make run)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
