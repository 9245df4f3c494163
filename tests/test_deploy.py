"""``make deploy``'s parts against MiniStack, and its waiters and paginators one call at a time.

The whole deploy (twice, then ``make delete``), read back and driven with real clients,
is in ``tests/test_ministack_e2e.py`` (its ``make deploy-local`` stage): one deploy serves
both, since each takes most of a minute. Here: a stage that does not exist, the
authorizer's identity source when one token source is enabled, and the resources
stack's create/update/delete with its waiters.
"""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from devtools.deploy.aws import Aws
from devtools.deploy.wiring import wire
from devtools.ministack import MiniStack
from tests.support.builders import ROOT
from tests.support.deploy_checks import emulator_session
from tests.support.deployed import guarded_environment

pytestmark = pytest.mark.timeout(300)


def test_deploy_refuses_an_unknown_stage(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / ".chalice", project / ".chalice", ignore=shutil.ignore_patterns("deployed"))
    shutil.copy(ROOT / "app.py", project / "app.py")
    with MiniStack() as ministack:
        env = {**guarded_environment(tmp_path / "guard.log"), "AWS_ENDPOINT_URL": ministack.endpoint_url}
        done = subprocess.run([sys.executable, "-m", "devtools.deploy", "deploy", "--stage", "nope",
                               "--project-dir", str(project)], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 1
    assert "nope" in done.stderr and "error" in done.stderr


def test_deploy_refuses_bad_channel_rules_before_changing_anything(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / ".chalice", project / ".chalice", ignore=shutil.ignore_patterns("deployed"))
    shutil.copy(ROOT / "app.py", project / "app.py")
    config = json.loads((project / ".chalice" / "config.json").read_text())
    config["stages"]["dev"]["environment_variables"]["CHANNEL_RULES"] = json.dumps(
        [{"topic": "user/{userId}/**", "subscribe": "self", "publish": "none"}])
    (project / ".chalice" / "config.json").write_text(json.dumps(config))
    with MiniStack() as ministack:
        env = {**guarded_environment(tmp_path / "guard.log"), "AWS_ENDPOINT_URL": ministack.endpoint_url}
        done = subprocess.run([sys.executable, "-m", "devtools.deploy", "deploy", "--stage", "dev",
                               "--project-dir", str(project)], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
        stacks = emulator_session(ministack.endpoint_url).client("cloudformation").list_stacks()["StackSummaries"]
    assert done.returncode == 1 and stacks == []
    assert "CHANNEL_RULES: rule 1 ('user/{userId}/**'): unknown placeholder '{userId}'" in done.stderr, done.stderr


def _function(session: Any, name: str) -> str:
    """A Lambda to point the authorizer at (its code never runs here)."""
    role = session.client("iam").create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    raise Exception('Unauthorized')\n")
    return str(session.client("lambda").create_function(
        FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.handler",
        Code={"ZipFile": code.getvalue()})["FunctionArn"])


@pytest.mark.parametrize(("sources", "identity"), [
    ("header", ["route.request.header.Authorization"]),
    ("header,query,protocol", []),  # several: none may be required, or API Gateway refuses the others
])
def test_the_authorizers_identity_source_follows_the_token_sources(sources: str, identity: list[str]) -> None:
    """One enabled token source becomes the authorizer's identity source (API Gateway then answers 401
    without calling it when it is missing); a second wiring run changes nothing."""
    with MiniStack() as ministack:
        session = emulator_session(ministack.endpoint_url)
        api = session.client("apigatewayv2")
        api_id = api.create_api(Name="ws", ProtocolType="WEBSOCKET",
                                RouteSelectionExpression="$request.body.action")["ApiId"]
        api.create_route(ApiId=api_id, RouteKey="$connect")
        aws = Aws(session=session, region="us-east-1", account_id="000000000000", partition="aws")
        lines: list[str] = []
        arn = _function(session, "ws-cognito-dev-ws_authorizer")
        for _ in range(2):
            wire(aws, app_name="ws-cognito", stage="dev", api_stage="dev", api_id=api_id, authorizer_arn=arn,
                 env={"TOKEN_SOURCES": sources}, report=lines.append,
                 route_settings={"ThrottlingBurstLimit": 10, "ThrottlingRateLimit": 5})
        authorizers = api.get_authorizers(ApiId=api_id)["Items"]
        assert [a.get("IdentitySource", []) for a in authorizers] == [identity]
        assert sum("created authorizer" in line for line in lines) == 1, lines


# -- the waiters and paginators, one call at a time ------------------------------------------

def _offline_client(service: str) -> Any:
    """A real client that never sends a request: a Stubber scripts its answers."""
    import boto3

    return boto3.client(service, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def _stack(status: str, outputs: dict[str, str] | None = None) -> dict[str, Any]:
    return {"Stacks": [{"StackName": "s", "CreationTime": "2026-01-01T00:00:00Z", "StackStatus": status,
                        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in (outputs or {}).items()]}]}


def test_stack_create_update_delete_against_ministack() -> None:
    with MiniStack() as ministack:
        _create_update_delete(emulator_session(ministack.endpoint_url).client("cloudformation"))


def _create_update_delete(cfn: Any) -> None:
    from devtools.deploy.stack import delete_stack, deploy_stack

    lines: list[str] = []
    template: dict[str, Any] = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
                                "Outputs": {"QueueName": {"Value": {"Fn::GetAtt": ["Queue", "QueueName"]}}}}
    created = deploy_stack(cfn, "waiters", template, {"app": "t"}, lines.append)
    assert created.changed and created.outputs["QueueName"]
    assert "    stack waiters: CREATE_COMPLETE" in lines

    template["Outputs"]["Extra"] = {"Value": "x"}
    updated = deploy_stack(cfn, "waiters", template, {"app": "t"}, lines.append)
    assert updated.changed and updated.outputs == {"QueueName": created.outputs["QueueName"], "Extra": "x"}
    assert "    stack waiters: UPDATE_COMPLETE" in lines
    assert not deploy_stack(cfn, "waiters", template, {"app": "t"}, lines.append).changed

    assert delete_stack(cfn, "waiters", lines.append) is True
    assert lines[-1] == "    stack waiters: DELETE_COMPLETE"
    assert delete_stack(cfn, "waiters", lines.append) is False


def test_a_create_that_rolls_back_names_the_failed_resources() -> None:
    from botocore.stub import Stubber

    from devtools.deploy.errors import StackFailed
    from devtools.deploy.stack import deploy_stack

    cfn = _offline_client("cloudformation")
    stub = Stubber(cfn)
    stub.add_client_error("describe_stacks", "ValidationError", "Stack with id s does not exist")
    stub.add_response("create_stack", {"StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1"})
    stub.add_response("describe_stacks", _stack("ROLLBACK_COMPLETE"))  # the waiter: a failure state
    stub.add_response("describe_stacks", _stack("ROLLBACK_COMPLETE"))
    stub.add_response("describe_stack_events", {"StackEvents": [
        {"StackId": "s", "EventId": "2", "StackName": "s", "Timestamp": "2026-01-01T00:01:00Z",
         "LogicalResourceId": "s", "ResourceStatus": "ROLLBACK_COMPLETE"},
        {"StackId": "s", "EventId": "1", "StackName": "s", "Timestamp": "2026-01-01T00:00:30Z",
         "LogicalResourceId": "ConnectionsTable", "ResourceStatus": "CREATE_FAILED",
         "ResourceStatusReason": "Table already exists"}]})
    lines: list[str] = []
    expected = "stack s ended ROLLBACK_COMPLETE: ConnectionsTable: Table already exists"
    with stub, pytest.raises(StackFailed, match=expected):
        deploy_stack(cfn, "s", {"Resources": {}}, {}, lines.append)
    assert "    stack s: ROLLBACK_COMPLETE" in lines


def test_a_rolled_back_stack_is_deleted_then_created_again() -> None:
    from botocore.stub import Stubber

    from devtools.deploy.stack import deploy_stack

    cfn = _offline_client("cloudformation")
    stub = Stubber(cfn)
    stub.add_response("describe_stacks", _stack("ROLLBACK_COMPLETE"))
    stub.add_response("delete_stack", {})
    stub.add_client_error("describe_stacks", "ValidationError", "Stack with id s does not exist")  # waiter: gone
    stub.add_client_error("describe_stacks", "ValidationError", "Stack with id s does not exist")
    stub.add_response("create_stack", {"StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/2"})
    stub.add_response("describe_stacks", _stack("CREATE_COMPLETE", {"Out": "1"}))  # waiter: success
    stub.add_response("describe_stacks", _stack("CREATE_COMPLETE", {"Out": "1"}))
    lines: list[str] = []
    with stub:
        result = deploy_stack(cfn, "s", {"Resources": {}}, {}, lines.append)
    assert result.changed and result.outputs == {"Out": "1"}
    progress = [line for line in lines if line.startswith("    stack s: ")]
    assert progress == ["    stack s: DELETE_COMPLETE", "    stack s: CREATE_COMPLETE"]


def test_a_stack_still_in_progress_at_the_timeout_fails_clearly() -> None:
    from botocore.stub import Stubber

    from devtools.deploy.errors import StackFailed
    from devtools.deploy.stack import deploy_stack

    cfn = _offline_client("cloudformation")
    stub = Stubber(cfn)
    stub.add_client_error("describe_stacks", "ValidationError", "Stack with id s does not exist")
    stub.add_response("create_stack", {"StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1"})
    stub.add_response("describe_stacks", _stack("CREATE_IN_PROGRESS"))
    lines: list[str] = []
    with stub, pytest.raises(StackFailed, match=r"stack s still CREATE_IN_PROGRESS after 1 s"):
        deploy_stack(cfn, "s", {"Resources": {}}, {}, lines.append, timeout=1)
    assert "    stack s: CREATE_IN_PROGRESS" in lines


def test_all_items_follows_next_token_across_pages() -> None:
    from botocore.stub import Stubber

    from devtools.deploy.aws import all_items

    api = _offline_client("apigatewayv2")
    stub = Stubber(api)
    stub.add_response("get_routes", {"Items": [{"RouteKey": "$connect"}, {"RouteKey": "$default"}],
                                     "NextToken": "page-2"}, {"ApiId": "a1"})
    stub.add_response("get_routes", {"Items": [{"RouteKey": "$disconnect"}]}, {"ApiId": "a1", "NextToken": "page-2"})
    with stub:
        routes = all_items(api, "get_routes", ApiId="a1")
    assert [r["RouteKey"] for r in routes] == ["$connect", "$default", "$disconnect"]
