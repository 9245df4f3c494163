"""``make deploy`` against MiniStack, an AWS emulator that runs what it deploys, with IAM enforced.

The real deploy (the resources stack, ``chalice deploy`` of the app, the
authorizer's wiring) into MiniStack on 127.0.0.1, then real WebSocket clients
against the deployed stage: every Lambda runs with its own role's credentials,
so a least-privilege policy that lacks an action fails here. MiniStack's own
defects are worked around in ``devtools/ministack/workarounds.py`` only.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from devtools.ministack import MiniStack
from tests.support.builders import ROOT
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(900)
STAGE = "dev"
PASSWORD = "Correct-Horse-9!"


class Deployed:
    """The deployed stage: its URLs and ids, a client factory, and a token maker on its pool."""

    def __init__(self, ministack: MiniStack, workspace: Path, run: Any) -> None:
        self.ministack = ministack
        self.run = run  # python -m devtools.deploy <command> against this emulator
        config = json.loads((workspace / ".chalice" / "config.json").read_text())
        self.env = config["stages"][STAGE]["environment_variables"]
        state = json.loads((workspace / ".chalice" / "deployed" / f"{STAGE}.json").read_text())
        self.api_id = next(r["websocket_api_id"] for r in state["resources"] if r["resource_type"] == "websocket_api")
        self.ws_url = ministack.websocket_url(self.api_id, STAGE)

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.ministack.endpoint_url, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")

    def token(self, username: str) -> str:
        pool, app_client = self.env["COGNITO_USER_POOL_ID"], self.env["COGNITO_APP_CLIENT_IDS"]
        idp = self.client("cognito-idp")
        idp.admin_create_user(UserPoolId=pool, Username=username, MessageAction="SUPPRESS")
        idp.admin_set_user_password(UserPoolId=pool, Username=username, Password=PASSWORD, Permanent=True)
        answer = idp.initiate_auth(ClientId=app_client, AuthFlow="USER_PASSWORD_AUTH",
                                   AuthParameters={"USERNAME": username, "PASSWORD": PASSWORD})
        return str(answer["AuthenticationResult"]["AccessToken"])

    def stored_items(self) -> list[dict[str, Any]]:
        table = self.env["CONNECTIONS_TABLE"]
        items = self.client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"]
        return [i for i in items if i["pk"]["S"].startswith("CONN#") and i["sk"]["S"] != "GONE"]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    project = tmp_path_factory.mktemp("project")
    for name in ("app.py", "requirements.txt"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "chalicelib", project / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / ".chalice", project / ".chalice", ignore=shutil.ignore_patterns("deployed"))
    with MiniStack() as ministack:
        env = {**os.environ, "AWS_ENDPOINT_URL": ministack.endpoint_url, "AWS_ACCESS_KEY_ID": "test",
               "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
               "PYTHONPATH": str(ROOT)}
        env.pop("AWS_PROFILE", None)
        def run(command: str) -> str:
            done = subprocess.run([sys.executable, "-m", "devtools.deploy", command, "--stage", STAGE,
                                   "--project-dir", str(project)], cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=600)
            assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{ministack.log_tail()}"
            return done.stdout

        run("deploy")
        yield Deployed(ministack, project / ".chalice" / "deployed" / f"{STAGE}-workspace", run)


def test_a_connect_without_a_valid_token_is_refused(deployed: Deployed) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        with pytest.raises(InvalidStatus) as refused:
            connect(deployed.ws_url, additional_headers=headers, open_timeout=60)
        assert refused.value.response.status_code == 401, headers  # as API Gateway answers Unauthorized
    assert deployed.stored_items() == []


def test_the_deployed_stage_answers_and_delivers_under_iam(deployed: Deployed) -> None:
    """Header token, whoami, a message from one connection to the other, then $disconnect removes the items:
    the authorizer, $connect, $default and $disconnect each run with their own least-privilege role."""
    alice, bob = deployed.token(f"alice-{uuid.uuid4().hex[:6]}"), deployed.token(f"bob-{uuid.uuid4().hex[:6]}")
    with connect(deployed.ws_url, additional_headers={"Authorization": f"Bearer {alice}"}, open_timeout=60) as a, \
            connect(deployed.ws_url, additional_headers={"Authorization": f"Bearer {bob}"}, open_timeout=60) as b:
        a.send(json.dumps({"action": "whoami", "id": "w"}))
        who = json.loads(a.recv(timeout=60))
        assert (who["type"], who["id"], who["identity"]["tokenSource"]) == ("whoami", "w", "header")
        b.send(json.dumps({"action": "subscribe", "topic": "public/news", "id": 1}))
        assert json.loads(b.recv(timeout=60))["type"] == "subscribed"
        a.send(json.dumps({"action": "sendmessage", "data": "hello", "id": 2}))
        assert json.loads(b.recv(timeout=60))["data"] == "hello"
        ack = json.loads(a.recv(timeout=60))
        assert (ack["type"], ack["delivered"], ack["failed"]) == ("ack", 1, 0)
        assert len(deployed.stored_items()) == 3  # two connections and one subscription
        # A back-end's push: notify, invoked by the name make deploy gives it, reaches alice's connection only.
        lam = deployed.client("lambda")
        answer = lam.invoke(FunctionName="ws-cognito-dev-notify",
                            Payload=json.dumps({"userId": who["identity"]["userId"], "data": "for alice"}))
        assert json.loads(answer["Payload"].read())["delivered"] == 1
        assert json.loads(a.recv(timeout=60))["data"] == "for alice"
    wait_until(lambda: deployed.stored_items() == [], 60.0, "$disconnect to remove every item")


def test_every_browser_token_source_connects_and_its_subprotocol_is_selected(deployed: Deployed) -> None:
    """The query (?access_token=, ?ID_Token=) and the subprotocol source: the server selects the marker,
    never echoes the token, and the handshake a browser would make succeeds."""
    token = deployed.token(f"carol-{uuid.uuid4().hex[:6]}")
    for url, protocols in ((f"{deployed.ws_url}?access_token={token}", None),
                           (deployed.ws_url, ["cognito-jwt", token])):
        with connect(url, subprotocols=protocols, open_timeout=60) as ws:
            assert ws.subprotocol == ("cognito-jwt" if protocols else None)
            ws.send(json.dumps({"action": "whoami", "id": "q"}))
            assert json.loads(ws.recv(timeout=60))["identity"]["tokenSource"] == ("protocol" if protocols else "query")


def test_make_delete_leaves_nothing_behind(deployed: Deployed) -> None:
    """Last in this file: the stage's functions, API, table and pool are gone."""
    deployed.run("delete")
    functions = deployed.client("lambda").list_functions()["Functions"]
    assert not [f["FunctionName"] for f in functions if f["FunctionName"].startswith("ws-cognito-dev")]
    assert deployed.api_id not in {a["ApiId"] for a in deployed.client("apigatewayv2").get_apis()["Items"]}
    assert deployed.env["CONNECTIONS_TABLE"] not in deployed.client("dynamodb").list_tables()["TableNames"]
    pools = deployed.client("cognito-idp").list_user_pools(MaxResults=60)["UserPools"]
    assert deployed.env["COGNITO_USER_POOL_ID"] not in {p["Id"] for p in pools}
