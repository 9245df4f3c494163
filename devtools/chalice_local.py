"""The REST API on this machine: ``make local`` (``chalice local``) and ``make run``'s REST server.

``make local`` runs exactly ``chalice local --stage local --port <port>``
against the services ``make run`` started. The ``local`` stage of
``.chalice/config.json`` holds only what is the same on every machine
(``PUSH_GROUPS``...); what changes on every start of the stack (the local
pool's and client's ids, the JWKS URL, the DynamoDB and management
endpoints, the table) is read from ``.local/stack.json`` and handed to
``chalice local`` in its environment. Chalice puts a stage's
``environment_variables`` over the process's, so the ``local`` stage must not
name those variables (``FROM_STACK``); a test checks that it does not.

``RestServer`` is what ``make run`` serves on the gateway's port + 1: Chalice's
own local server (``chalice.local``, the server ``chalice local`` runs) in a
thread of the stack process, for the same app and the same environment as the
WebSocket gateway. Both run the app's ``rest_authorizer`` on every request.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, Mapping

from devtools.cognito_local import LocalPool
from devtools.state import DEFAULT_STATE_FILE, ROOT, running_state

LOCAL_STAGE = "local"
# The variables `make local` takes from .local/stack.json; the local stage must not set them.
FROM_STACK = ("COGNITO_USER_POOL_ID", "COGNITO_APP_CLIENT_IDS", "COGNITO_REGION", "COGNITO_JWKS_URL",
              "CONNECTIONS_TABLE", "AWS_ENDPOINT_URL_DYNAMODB", "WEBSOCKET_MANAGEMENT_URL", "FANOUT_QUEUE_URL",
              "AWS_ENDPOINT_URL_SQS")
# Credentials of nobody: everything chalice local talks to is a local service.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
_DROPPED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def stack_environment(state: Mapping[str, Any]) -> dict[str, str]:
    """The app's settings that point at a running stack (``FROM_STACK``), plus region and dummy keys.

    With the stack's fan-out queue in it too, so a large push from ``chalice
    local`` is queued and delivered by the stack's workers, as from ``make run``.
    """
    pool = LocalPool(**state["cognito"])
    env = {
        "COGNITO_USER_POOL_ID": pool.pool_id,
        "COGNITO_APP_CLIENT_IDS": pool.client_id,
        "COGNITO_REGION": pool.region,
        "COGNITO_JWKS_URL": pool.jwks_url,
        "CONNECTIONS_TABLE": state["table"],
        "AWS_ENDPOINT_URL_DYNAMODB": state["dynamodb_endpoint"],
        "WEBSOCKET_MANAGEMENT_URL": state["management_url"],
    }
    fanout = state.get("fanout") or {}
    if fanout.get("queue_url"):
        env.update(FANOUT_QUEUE_URL=fanout["queue_url"], AWS_ENDPOINT_URL_SQS=fanout["sqs_endpoint"])
    return {**env, "AWS_REGION": pool.region, "AWS_DEFAULT_REGION": pool.region, **LOCAL_CREDENTIALS}


def default_port(state: Mapping[str, Any]) -> int:
    """The gateway's port + 2 (``make run`` serves its own REST server on + 1)."""
    gateway_port = int(str(state["ws_url"]).rsplit(":", 1)[1].split("/", 1)[0])
    return gateway_port + 2


def command(port: int) -> list[str]:
    """``chalice local --stage local --port <port>``, with this virtualenv's ``chalice``."""
    return [str(Path(sys.executable).with_name("chalice")), "local", "--stage", LOCAL_STAGE, "--port", str(port)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make local", description="Run `chalice local --stage local` against the stack `make run` started.")
    parser.add_argument("--port", type=int, default=None, help="default: the gateway's port + 2 (8002)")
    parser.add_argument("--state-file", type=Path, default=DEFAULT_STATE_FILE)
    args = parser.parse_args(argv)
    state = running_state(args.state_file)
    port = args.port if args.port is not None else default_port(state)
    env = {name: value for name, value in os.environ.items() if name not in _DROPPED}
    env.update(stack_environment(state))
    # chalice local's reloader restarts the server when a file under the project
    # changes; the bytecode its own imports would write is such a change.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # devtools/chalice_site/sitecustomize.py: the local gateway answers a failing authorizer as AWS does.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "devtools" / "chalice_site"), str(ROOT)])
    argv_ = command(port)
    print(f"==> chalice local --stage {LOCAL_STAGE} --port {port}", flush=True)
    print(f"    with {', '.join(FROM_STACK)} from {args.state_file}", flush=True)
    print(f"    try: curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:{port}/me", flush=True)
    os.chdir(ROOT)
    os.execve(argv_[0], argv_, env)  # the make target's process becomes chalice local
    return 1  # not reached


class RestServer:
    """Chalice's local REST server for the app, in a thread (``make run``, on the gateway's port + 1).

    The app is imported as ``chalice local`` imports it (module ``app``), a
    copy of its own beside the gateway's; both share ``chalicelib.runtime``,
    so the same settings, verifier and connection service serve both. The
    environment is the process's, which the gateway has set by then.
    """

    def __init__(self, stage: str, host: str = "127.0.0.1", port: int = 0, project_dir: Path = ROOT) -> None:
        self.stage = stage
        self.host = host
        self.port = port
        self.project_dir = project_dir
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> RestServer:
        from chalice.config import Config
        from chalice.local import create_local_server

        from devtools.chalice_gateway import install

        install()
        if str(self.project_dir) not in sys.path:
            sys.path.insert(0, str(self.project_dir))
        app = importlib.import_module("app").app
        config = Config(chalice_stage=self.stage,
                        config_from_disk=json.loads((self.project_dir / ".chalice" / "config.json").read_text()))
        self._server = create_local_server(app, config, self.host, self.port)
        self.port = int(self._server.server.server_address[1])
        self._thread = threading.Thread(target=self._server.server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"rest-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.server.shutdown()
        self._server.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None


if __name__ == "__main__":
    sys.exit(main())
