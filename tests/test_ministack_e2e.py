"""The stage deployed to MiniStack, an AWS emulator that runs what it deploys, with IAM enforced; both ways.

Path A: ``make deploy-local`` (MiniStack, then the real ``make deploy`` flow: the
resources stack, ``chalice deploy``, the authorizer's wiring). Path B: ``make
package``, then a CloudFormation create-stack of its SAM template. Against each
deployed stage, real clients (``websockets``, and ``wscat`` under ``script``)
check the seeds' and the README's flows; every Lambda runs with its own role's
credentials, so a least-privilege policy lacking an action fails here. The deploy,
MiniStack and its Lambdas run under the loopback guard: a request beyond
127.0.0.1 is refused and fails the run. MiniStack's defects are worked around in
``devtools/ministack/workarounds.py`` only.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from devtools.deploy.aws import emulator_urls
from devtools.deploy_local import copy_project, guard_env
from devtools.ministack import MiniStack
from tests.support.builders import ROOT
from tests.support.deploy_checks import Deployment, check_deleted, check_first_deploy, check_second_deploy
from tests.support.deployed import DeployedStage, deploy_local, guard_lines, guarded_environment, run_deploy_command
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(1200)
STAGE = "dev"
# For this run only: a broadcast to three connections goes through the queue and its worker, and every
# connection is warned at the first sweep (MiniStack's tokens live an hour).
OVERRIDES = {"FANOUT_INLINE_MAX": "2", "TOKEN_EXPIRY_WARNING_SECONDS": "3600"}
WAIT = 60.0


@dataclass
class Run:
    stage: DeployedStage
    guard_log: Path
    watcher: ClientConnection  # open since the deploy: the sweep's warning is waited for on it
    delete: Any  # removes the stage the way its path made it
    deployment: Deployment | None = None  # Path A: the project make deploy ran on, to read back and redeploy
    first_output: str = ""  # Path A: what make deploy printed


def frame(ws: ClientConnection, timeout: float = WAIT) -> dict[str, Any]:
    """The next frame that is not the sweep's warning (every connection gets one in this run)."""
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message.get("type") != "token_expiring":
            return dict(message)


def until(ws: ClientConnection, wanted: Any, timeout: float = WAIT) -> dict[str, Any]:
    """The first frame ``wanted`` accepts, the others skipped (the watcher sees every broadcast)."""
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if wanted(message):
            return dict(message)


def open_ws(stage: DeployedStage, token: str) -> ClientConnection:
    return connect(stage.ws_url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=WAIT)


@pytest.fixture(scope="module", params=["deploy", "package"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    work = tmp_path_factory.mktemp(request.param)
    guard_log = work / "loopback-guard.log"
    if request.param == "deploy":
        with deploy_local(work / "deploy-local.json", guard_log, work / "deploy-local.out", OVERRIDES) as stage:
            project = Path(json.loads((work / "deploy-local.json").read_text())["project_dir"])
            deployment = Deployment(project, {**guarded_environment(guard_log), "AWS_ENDPOINT_URL": stage.endpoint_url})

            def delete() -> None:
                check_deleted(deployment, deployment.api_id(),
                              deployment.config()["stages"][STAGE]["environment_variables"])
            for made in _with_watcher(stage, guard_log, delete):
                made.deployment, made.first_output = deployment, (work / "deploy-local.out").read_text()
                yield made
    else:
        with MiniStack(extra_env=guard_env(str(guard_log))) as ms:
            stage, delete = _create_packaged_stack(ms, work)
            yield from _with_watcher(stage, guard_log, delete)


def _with_watcher(stage: DeployedStage, guard_log: Path, delete: Any) -> Iterator[Run]:
    with open_ws(stage, stage.tokens(f"watcher-{uuid.uuid4().hex[:6]}")["access"]) as watcher:
        yield Run(stage, guard_log, watcher, delete)


def _create_packaged_stack(ministack: MiniStack, work: Path) -> tuple[DeployedStage, Any]:
    """``make package`` on a copy of the project, then what ``aws cloudformation package``/``deploy`` do."""
    project = copy_project(ROOT, work / "project", STAGE, OVERRIDES)
    run_deploy_command("package", STAGE, project, {**os.environ, "PYTHONPATH": str(ROOT)})  # no AWS call
    stage = DeployedStage("package", ministack.endpoint_url, "", "", "", "", "", "")
    s3, cfn = stage.client("s3"), stage.client("cloudformation")
    s3.create_bucket(Bucket="packages")
    s3.upload_file(str(project / "dist" / STAGE / "deployment.zip"), "packages", "deployment.zip")
    template = json.loads((project / "dist" / STAGE / "sam.json").read_text())
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://packages/deployment.zip"
    name = f"ws-cognito-{STAGE}"
    # Over CloudFormation's 51,200-byte TemplateBody: from the bucket, as `aws cloudformation deploy --s3-bucket`.
    s3.put_object(Bucket="packages", Key="sam.json", Body=json.dumps(template).encode())
    cfn.create_stack(StackName=name, TemplateURL=f"{ministack.endpoint_url}/packages/sam.json",
                     Parameters=[{"ParameterKey": "EmulatorEndpoint", "ParameterValue": ministack.endpoint_url}],
                     Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"])
    try:
        cfn.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 300})
    except Exception:
        events = cfn.describe_stack_events(StackName=name)["StackEvents"]
        reasons = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}" for e in events
                   if "FAILED" in e["ResourceStatus"]]
        raise AssertionError(f"create-stack failed: {reasons}\n{ministack.log_tail()}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=name)["Stacks"][0]["Outputs"]}
    ws_url, rest_url = emulator_urls(ministack.endpoint_url, outputs["WebsocketAPIId"], outputs["RestAPIId"], STAGE)
    stage = DeployedStage("package", ministack.endpoint_url, ws_url, rest_url, outputs["UserPoolId"],
                          outputs["UserPoolClientId"], outputs["ConnectionsTableName"], outputs["NotifyFunctionName"])

    def delete() -> None:
        cfn.delete_stack(StackName=name)
        cfn.get_waiter("stack_delete_complete").wait(StackName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 300})
    return stage, delete


def wscat(url: str, *args: str, timeout: float = 60.0) -> str:
    """``wscat`` as a person runs it (it prints only to a terminal, hence ``script``); its whole output."""
    command = " ".join(shlex.quote(part) for part in ["npx", "--no-install", "wscat", "-c", url, *args])
    done = subprocess.run(["script", "-qc", command, "/dev/null"], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    return done.stdout


def test_a_connect_without_a_valid_token_is_refused(run: Run) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        with pytest.raises(InvalidStatus) as refused:
            connect(run.stage.ws_url, additional_headers=headers, open_timeout=WAIT)
        assert refused.value.response.status_code == 401, headers  # as API Gateway answers Unauthorized
    assert "Unexpected server response: 401" in wscat(run.stage.ws_url, "-w", "2")


def test_every_token_source_connects_and_the_subprotocol_is_selected(run: Run) -> None:
    """A header (whoami), ``?ID_Token=`` with an id token (wscat, as the broadcast seed does), and the subprotocol:
    the server selects the marker and never echoes the token."""
    tokens = run.stage.tokens(f"carol-{uuid.uuid4().hex[:6]}")
    with open_ws(run.stage, tokens["access"]) as ws:
        ws.send(json.dumps({"action": "whoami", "id": "w"}))
        who = frame(ws)
        assert (who["type"], who["id"], who["identity"]["tokenSource"]) == ("whoami", "w", "header")
    shown = wscat(f"{run.stage.ws_url}?ID_Token={tokens['id']}", "-x", json.dumps({"action": "whoami"}), "-w", "5")
    assert '"tokenSource":"query"' in shown and '"token_use":"id"' in shown, shown
    with connect(run.stage.ws_url, subprotocols=["cognito-jwt", tokens["access"]], open_timeout=WAIT) as ws:
        assert ws.subprotocol == "cognito-jwt"
        ws.send(json.dumps({"action": "whoami"}))
        assert frame(ws)["identity"]["tokenSource"] == "protocol"


def test_messages_topics_and_disconnect_under_iam(run: Run) -> None:
    """sendmessage between two connections, subscribe/publish, then $disconnect removes every item."""
    wait_until(lambda: len(run.stage.stored_items()) == 1, WAIT, "earlier tests' connections to be gone")
    before = 1  # the watcher
    alice = run.stage.tokens(f"alice-{uuid.uuid4().hex[:6]}")["access"]
    bob = run.stage.tokens(f"bob-{uuid.uuid4().hex[:6]}")["access"]
    with open_ws(run.stage, alice) as a, open_ws(run.stage, bob) as b:
        b.send(json.dumps({"action": "subscribe", "topic": "public/news", "id": 1}))
        assert frame(b)["type"] == "subscribed"
        a.send(json.dumps({"action": "sendmessage", "data": "hello", "id": 2}))
        assert frame(b)["data"] == "hello"
        ack = frame(a)  # to everyone else: bob and the watcher
        assert (ack["type"], ack["id"], ack["delivered"], ack["failed"]) == ("ack", 2, 2, 0), ack
        a.send(json.dumps({"action": "publish", "topic": "public/news", "data": "headline", "id": 3}))
        published = frame(b)
        assert (published["topic"], published["data"]) == ("public/news", "headline")
        assert frame(a)["type"] == "ack"
        assert len(run.stage.stored_items()) == before + 3  # two connections and one subscription
    wait_until(lambda: len(run.stage.stored_items()) == before, WAIT, "$disconnect to remove the items")


def test_rest_me_a_publishers_push_and_a_non_publishers_403(run: Run) -> None:
    user = run.stage.tokens(f"dave-{uuid.uuid4().hex[:6]}")["access"]
    publisher = run.stage.tokens(f"pub-{uuid.uuid4().hex[:6]}", groups=("publishers",))["access"]
    with open_ws(run.stage, user) as ws:
        me = requests.get(f"{run.stage.rest_url}me", headers={"Authorization": f"Bearer {user}"}, timeout=WAIT)
        assert me.status_code == 200 and len(me.json()["connections"]) == 1, me.text
        url = f"{run.stage.rest_url}users/{me.json()['sub']}/messages"
        refused = requests.post(url, json={"data": "no"}, headers={"Authorization": f"Bearer {user}"}, timeout=WAIT)
        assert refused.status_code == 403, refused.text
        pushed = requests.post(url, json={"data": "yes"}, headers={"Authorization": f"Bearer {publisher}"},
                               timeout=WAIT)
        assert pushed.status_code == 200 and pushed.json()["delivered"] == 1, pushed.text
        assert frame(ws)["data"] == "yes"


def test_notify_by_the_name_the_stack_gives_and_an_eventbridge_push(run: Run) -> None:
    token = run.stage.tokens(f"erin-{uuid.uuid4().hex[:6]}")["access"]
    with open_ws(run.stage, token) as ws:
        ws.send(json.dumps({"action": "whoami"}))
        user_id = frame(ws)["identity"]["userId"]
        answer = run.stage.client("lambda").invoke(FunctionName=run.stage.notify_function,
                                                   Payload=json.dumps({"userId": user_id, "data": "by notify"}))
        assert json.loads(answer["Payload"].read())["delivered"] == 1
        assert frame(ws)["data"] == "by notify"
        ws.send(json.dumps({"action": "subscribe", "topic": "public/events", "id": "s"}))
        assert frame(ws)["type"] == "subscribed"
        put = run.stage.client("events").put_events(Entries=[{
            "Source": "ws-cognito.push", "DetailType": "TopicMessage",
            "Detail": json.dumps({"topic": "public/events", "data": "by eventbridge"})}])
        assert put["FailedEntryCount"] == 0
        pushed = frame(ws)
        assert (pushed["topic"], pushed["data"]) == ("public/events", "by eventbridge")


def test_a_disconnect_event_and_notify_close_a_users_connections_under_iam(run: Run) -> None:
    """A kick: EventBridge's Disconnect (the push role's DELETE on @connections) and notify's disconnect."""
    token = run.stage.tokens(f"kim-{uuid.uuid4().hex[:6]}")["access"]
    for kick in ("event", "notify"):
        with open_ws(run.stage, token) as ws:
            ws.send(json.dumps({"action": "whoami"}))
            user_id = frame(ws)["identity"]["userId"]
            if kick == "event":
                put = run.stage.client("events").put_events(Entries=[{
                    "Source": "ws-cognito.push", "DetailType": "Disconnect", "Detail": json.dumps({"userId": user_id})}])
                assert put["FailedEntryCount"] == 0
            else:
                answer = run.stage.client("lambda").invoke(FunctionName=run.stage.notify_function, Payload=json.dumps(
                    {"userId": user_id, "disconnect": True}))
                assert json.loads(answer["Payload"].read())["closed"] == 1
            with pytest.raises(ConnectionClosed):
                while True:
                    frame(ws)


def test_a_broadcast_above_the_inline_limit_is_delivered_by_the_queue_worker(run: Run) -> None:
    publisher = run.stage.tokens(f"pub-{uuid.uuid4().hex[:6]}", groups=("publishers",))["access"]
    tokens = [run.stage.tokens(f"fan-{i}-{uuid.uuid4().hex[:6]}")["access"] for i in range(3)]
    sockets = [open_ws(run.stage, token) for token in tokens]
    try:
        answer = requests.post(f"{run.stage.rest_url}messages", json={"data": "to everyone"},
                               headers={"Authorization": f"Bearer {publisher}"}, timeout=WAIT)
        assert answer.status_code == 200 and answer.json().get("queued", 0) >= 1, answer.text  # not inline
        for ws in sockets:
            assert frame(ws)["data"] == "to everyone"
        until(run.watcher, lambda message: message.get("data") == "to everyone")
    finally:
        for ws in sockets:
            ws.close()


@pytest.mark.parametrize("run", ["deploy"], indirect=True)
def test_the_commands_make_deploy_local_prints_work_as_written(run: Run) -> None:
    """The token, wscat and curl lines it prints, run in a shell as a person pastes them."""
    printed = run.first_output.splitlines()
    start = printed.index("Get a token from the emulator's Cognito and connect (in another terminal):")
    token_line, wscat_line, curl_line = (line.strip() for line in printed[start + 1:start + 4])
    assert token_line.startswith("TOKEN=$(make -s token USER=alice") and wscat_line.startswith("npx wscat -c ")
    script = (f"set -e\n{token_line}\nexport TOKEN\n"  # for the shell ``script`` starts wscat in
              f"script -qc {shlex.quote(wscat_line + ' -x ' + shlex.quote(json.dumps({'action': 'whoami'})) + ' -w 5')}"
              f" /dev/null\n{curl_line} -s\n")
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert '"type":"whoami"' in done.stdout and '"username":"alice"' in done.stdout, done.stdout
    assert '"token_use":"access","groups":[]' in done.stdout, done.stdout  # GET /me's answer


@pytest.mark.parametrize("run", ["deploy"], indirect=True)
def test_what_make_deploy_made_and_a_second_deploy_changes_only_the_stages_deployment(run: Run) -> None:
    """Read back: the authorizer on $connect, throttling, the REST API, the rules, the permissions, every role's
    least-privilege policy, the queue. Then make deploy again: the same authorizer, a new deployment, nothing
    else written; the stage still answers."""
    assert run.deployment is not None
    env = check_first_deploy(run.deployment, run.first_output)
    check_second_deploy(run.deployment, env)
    with open_ws(run.stage, run.stage.tokens(f"again-{uuid.uuid4().hex[:6]}")["access"]) as ws:
        ws.send(json.dumps({"action": "whoami", "id": "again"}))
        assert frame(ws)["id"] == "again"


def test_the_scheduled_sweep_warns_of_the_tokens_expiry(run: Run) -> None:
    """Every minute the sweep warns connections whose token expires within TOKEN_EXPIRY_WARNING_SECONDS."""
    warning = until(run.watcher, lambda message: message.get("type") == "token_expiring", timeout=150)
    assert warning["expiresAt"] > time.time()


def test_make_delete_leaves_nothing_and_nothing_reached_beyond_127_0_0_1(run: Run) -> None:
    """Last for each path: the stage's functions, APIs, table and pool are gone (Path A: its REST API, rules,
    queues and event source too); the guard logged nothing."""
    run.watcher.close()
    run.delete()
    stage = run.stage
    functions = stage.client("lambda").list_functions()["Functions"]
    assert not [f["FunctionName"] for f in functions if f["FunctionName"].startswith("ws-cognito-dev")]
    assert stage.ws_url.rsplit("/", 2)[-2] not in {a["ApiId"] for a in stage.client("apigatewayv2").get_apis()["Items"]}
    assert stage.table not in stage.client("dynamodb").list_tables()["TableNames"]
    pools = stage.client("cognito-idp").list_user_pools(MaxResults=60)["UserPools"]
    assert stage.pool_id not in {p["Id"] for p in pools}
    assert guard_lines(run.guard_log) == []
