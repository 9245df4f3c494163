"""``make deploy`` / ``make delete`` end to end against moto's server.

The product makes the calls it makes against AWS, through ``AWS_ENDPOINT_URL``.
Moto 5.2 lacks API Gateway v2 deployments, stage updates and authorizer
listing, CloudFormation's Cognito resources, and a Swagger 2.0 import of a
REST API with its custom authorizers (Chalice's REST deploy):
``tests.support.moto_extensions`` adds them inside the moto server process
(test harness only, never product code). That harness also records which
routes each deployment published, so these tests check what the *stage*
serves, not just the API's draft. The REST API, the EventBridge rule, their
invoke permissions and each role's inline policy are read back from moto as
Chalice deployed them.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from chalicelib.event_contract import event_pattern

ROOT = Path(__file__).resolve().parent.parent
APP = "ws-cognito"
STAGE = "dev"
ACCOUNT_ARN = "arn:aws:{service}:us-east-1:123456789012"
LOGS_ACTIONS = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
FANOUT_QUEUE_ARN = f"arn:aws:sqs:us-east-1:123456789012:{APP}-{STAGE}-fanout"

pytestmark = pytest.mark.timeout(600)


def REMOVAL(table_arn: str) -> dict[str, set[str]]:  # noqa: N802 - reads as the constant it stands for
    """What removing a connection takes on the table (its item, its count, its tombstone, its
    subscriptions: a GetItem, one transaction, a Query and a batch delete); $connect's transaction too."""
    actions = ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem", "Query", "BatchWriteItem")
    return {f"dynamodb:{action}": {table_arn} for action in actions}


class Deployment:
    """A project copy, the moto environment and helpers to look at what exists."""

    def __init__(self, project: Path, env: dict[str, str], session: Any) -> None:
        self.project = project
        self.env = env
        self.session = session

    def run(self, command: str) -> str:
        done = subprocess.run([sys.executable, "-m", "devtools.deploy", command, "--stage", STAGE,
                               "--project-dir", str(self.project)], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    @property
    def workspace(self) -> Path:
        """Where the deploy runs Chalice and writes what it generates (never the committed tree)."""
        return self.project / ".chalice" / "deployed" / f"{STAGE}-workspace"

    def config(self) -> dict[str, Any]:
        """The config Chalice deployed with: the committed one plus the generated values."""
        return json.loads((self.workspace / ".chalice" / "config.json").read_text())

    def committed(self) -> dict[str, str]:
        """Every file of the project outside .chalice/deployed/, as text: what git would see."""
        return {str(p.relative_to(self.project)): p.read_text() for p in sorted(self.project.rglob("*"))
                if p.is_file() and "deployed" not in p.relative_to(self.project).parts and "__pycache__" not in p.parts}

    def api_id(self) -> str:
        deployed = json.loads((self.workspace / ".chalice" / "deployed" / f"{STAGE}.json").read_text())
        return next(r["websocket_api_id"] for r in deployed["resources"] if r["resource_type"] == "websocket_api")

    def published(self, api_id: str) -> dict[str, Any]:
        """What each stage serves (harness view of the deployment it points at)."""
        url = f"{self.env['AWS_ENDPOINT_URL']}/moto-api/harness/apigatewayv2/{api_id}"
        with urllib.request.urlopen(url, timeout=10) as answer:
            return json.loads(answer.read())

    def function_names(self) -> set[str]:
        lam = self.session.client("lambda")
        return {f["FunctionName"] for f in lam.list_functions()["Functions"]}

    def role_policy(self, function: str) -> dict[str, Any]:
        """The inline policy Chalice put on the function's own role (what AWS would enforce)."""
        iam = self.session.client("iam")
        role = f"{APP}-{STAGE}-{function}"
        names = iam.list_role_policies(RoleName=role)["PolicyNames"]
        assert names == [role], names
        document: dict[str, Any] = iam.get_role_policy(RoleName=role, PolicyName=role)["PolicyDocument"]
        return document

    def invoke_statements(self, function_name: str) -> list[dict[str, Any]]:
        policy = json.loads(self.session.client("lambda").get_policy(FunctionName=function_name)["Policy"])
        statements: list[dict[str, Any]] = policy["Statement"]
        return statements


@pytest.fixture
def deployment(tmp_path: Path, moto_env: dict[str, str], moto_session: Any) -> Deployment:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("app.py", "requirements.txt"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "chalicelib", project / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / ".chalice", project / ".chalice", ignore=shutil.ignore_patterns("deployed", "deployments"))
    env = dict(moto_env, PYTHONPATH=str(ROOT))
    return Deployment(project, env, moto_session)


def _connect_route(api: Any, api_id: str) -> dict[str, Any]:
    return next(r for r in api.get_routes(ApiId=api_id)["Items"] if r["RouteKey"] == "$connect")


def _assert_wired(d: Deployment, api_id: str) -> str:
    api = d.session.client("apigatewayv2")
    authorizers = api.get_authorizers(ApiId=api_id)["Items"]
    assert len(authorizers) == 1, authorizers  # no orphans
    authorizer = authorizers[0]
    assert authorizer["AuthorizerType"] == "REQUEST"
    assert f"function:{APP}-{STAGE}-ws_authorizer/invocations" in authorizer["AuthorizerUri"]
    assert authorizer.get("IdentitySource", []) == []  # several token sources: none may be required
    route = _connect_route(api, api_id)
    assert (route["AuthorizationType"], route["AuthorizerId"]) == ("CUSTOM", authorizer["AuthorizerId"])
    published = d.published(api_id)["stages"][STAGE]
    assert published["deploymentId"], "the stage was never deployed"
    stage = api.get_stage(ApiId=api_id, StageName=STAGE)
    assert stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] == 100  # the dev stage's route_throttling
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == 50
    assert published["routes"]["$connect"] == {"authorizationType": "CUSTOM",
                                               "authorizerId": authorizer["AuthorizerId"],
                                               "target": route["Target"]}
    policy = json.loads(d.session.client("lambda").get_policy(FunctionName=f"{APP}-{STAGE}-ws_authorizer")["Policy"])
    source_arns = [s["Condition"]["ArnLike"]["AWS:SourceArn"] for s in policy["Statement"]
                   if s["Principal"] == {"Service": "apigateway.amazonaws.com"}]
    assert source_arns == [f"arn:aws:execute-api:us-east-1:123456789012:{api_id}/authorizers/{authorizer['AuthorizerId']}"]
    return str(authorizer["AuthorizerId"])


def _listed(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else list(value)


def _grants(policy: dict[str, Any]) -> dict[str, set[str]]:
    """action -> the resources the policy allows it on."""
    grants: dict[str, set[str]] = {}
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        for action in _listed(statement["Action"]):
            grants.setdefault(action, set()).update(_listed(statement["Resource"]))
    return grants


def _assert_rest_api_and_rule(d: Deployment, ws_api_id: str, table: str) -> None:
    """The REST API behind its authorizer, the EventBridge rule, their permissions and the policies."""
    apigateway = d.session.client("apigateway")
    (rest,) = [a for a in apigateway.get_rest_apis()["items"] if a["name"] == APP]
    (authorizer,) = apigateway.get_authorizers(restApiId=rest["id"])["items"]
    assert (authorizer["name"], authorizer["type"]) == ("rest_authorizer", "TOKEN")
    assert f"function:{APP}-{STAGE}-rest_authorizer/invocations" in authorizer["authorizerUri"]
    assert authorizer["identitySource"] == "method.request.header.Authorization"
    methods = {(r["path"], verb): m for r in apigateway.get_resources(restApiId=rest["id"], embed=["methods"])["items"]
               for verb, m in (r.get("resourceMethods") or {}).items()}
    assert ("/me", "GET") in methods and ("/messages", "POST") in methods, sorted(methods)
    assert all((m["authorizationType"], m["authorizerId"]) == ("CUSTOM", authorizer["id"]) for m in methods.values())
    assert [s["stageName"] for s in apigateway.get_stages(restApiId=rest["id"])["item"]] == [STAGE]
    rest_source = f"{ACCOUNT_ARN.format(service='execute-api')}:{rest['id']}/*"
    for function in (f"{APP}-{STAGE}", f"{APP}-{STAGE}-rest_authorizer"):  # Chalice names the REST handler <app>-<stage>
        grants = [(s["Principal"], s["Condition"]["ArnLike"]["AWS:SourceArn"]) for s in d.invoke_statements(function)]
        assert grants == [({"Service": "apigateway.amazonaws.com"}, rest_source)], (function, grants)

    events = d.session.client("events")
    rules = {r["Name"]: r for r in events.list_rules()["Rules"] if r["Name"].startswith(f"{APP}-{STAGE}-")}
    assert set(rules) == {f"{APP}-{STAGE}-eventbridge_push-event", f"{APP}-{STAGE}-token_expiry-event"}
    rule = rules[f"{APP}-{STAGE}-eventbridge_push-event"]
    assert (rule["State"], rule["EventBusName"]) == ("ENABLED", "default")
    assert json.loads(rule["EventPattern"]) == event_pattern(APP)
    function_arn = f"{ACCOUNT_ARN.format(service='lambda')}:function:{APP}-{STAGE}-eventbridge_push"
    assert [t["Arn"] for t in events.list_targets_by_rule(Rule=rule["Name"])["Targets"]] == [function_arn]
    statements = d.invoke_statements(f"{APP}-{STAGE}-eventbridge_push")
    assert [(s["Principal"], s["Action"], s["Condition"]["ArnLike"]["AWS:SourceArn"]) for s in statements] == [
        ({"Service": "events.amazonaws.com"}, "lambda:InvokeFunction", rule["Arn"])]
    schedule = rules[f"{APP}-{STAGE}-token_expiry-event"]  # the expiry sweep, every minute
    assert (schedule["State"], schedule["ScheduleExpression"]) == ("ENABLED", "rate(1 minute)")
    assert [t["Arn"] for t in events.list_targets_by_rule(Rule=schedule["Name"])["Targets"]] == [
        f"{ACCOUNT_ARN.format(service='lambda')}:function:{APP}-{STAGE}-token_expiry"]

    # Least privilege per function, as deployed on each role.
    functions = d.config()["stages"][STAGE]["lambda_functions"]
    assert {name: f["iam_policy_file"] for name, f in functions.items()} == {
        "ws_authorizer": f"policy-{STAGE}-authorizer.json", "rest_authorizer": f"policy-{STAGE}-authorizer.json",
        "api_handler": f"policy-{STAGE}-push.json", "eventbridge_push": f"policy-{STAGE}-push.json",
        "token_expiry": f"policy-{STAGE}-schedule.json", "fanout_worker": f"policy-{STAGE}-worker.json",
        "websocket_connect": f"policy-{STAGE}-connection.json", "websocket_disconnect": f"policy-{STAGE}-connection.json"}
    for authorizer_function in ("ws_authorizer", "rest_authorizer"):
        assert set(_grants(d.role_policy(authorizer_function))) == LOGS_ACTIONS, authorizer_function
    table_arn = f"{ACCOUNT_ARN.format(service='dynamodb')}:table/{table}"
    post = f"{ACCOUNT_ARN.format(service='execute-api')}:{ws_api_id}/{STAGE}/POST/@connections/*"
    for push_function in ("api_handler", "eventbridge_push"):
        grants = _grants(d.role_policy(push_function))
        assert {a: r for a, r in grants.items() if not a.startswith("logs:")} == {
            "dynamodb:Scan": {table_arn}, **REMOVAL(table_arn),
            "dynamodb:Query": {table_arn, f"{table_arn}/index/*"}, "execute-api:ManageConnections": {post},
            "dynamodb:DescribeTable": {table_arn}, "sqs:SendMessage": {FANOUT_QUEUE_ARN}}, push_function
    grants = _grants(d.role_policy("fanout_worker"))  # its queue only; slices of the table; POST
    assert {a: r for a, r in grants.items() if not a.startswith("logs:")} == {
        "sqs:ReceiveMessage": {FANOUT_QUEUE_ARN}, "sqs:DeleteMessage": {FANOUT_QUEUE_ARN},
        "sqs:GetQueueAttributes": {FANOUT_QUEUE_ARN}, "dynamodb:Scan": {table_arn}, **REMOVAL(table_arn),
        "dynamodb:Query": {table_arn, f"{table_arn}/index/*"}, "execute-api:ManageConnections": {post}}
    for connector in ("websocket_connect", "websocket_disconnect"):  # their items only: no index, post or queue
        grants = _grants(d.role_policy(connector))
        assert {a: r for a, r in grants.items() if not a.startswith("logs:")} == REMOVAL(table_arn), connector
    for enqueuer in ("websocket_message", "notify"):  # the stage policy: SendMessage on this queue only
        assert _grants(d.role_policy(enqueuer))["sqs:SendMessage"] == {FANOUT_QUEUE_ARN}, enqueuer
    grants = _grants(d.role_policy("token_expiry"))  # Query on the expiry index only; POST (warn), DELETE (close)
    connections = f"{ACCOUNT_ARN.format(service='execute-api')}:{ws_api_id}/{STAGE}/%s/@connections/*"
    assert {a: r for a, r in grants.items() if not a.startswith("logs:")} == {
        **REMOVAL(table_arn), "dynamodb:Query": {table_arn, f"{table_arn}/index/byTokenExpiry"},
        "execute-api:ManageConnections": {connections % "POST", connections % "DELETE"}}
    for function in ("ws_authorizer", "rest_authorizer", "api_handler", "eventbridge_push", "notify", "token_expiry",
                     "websocket_connect", "websocket_message", "websocket_disconnect"):
        actions = set(_grants(d.role_policy(function)))
        assert not any(a.startswith("events:") or a.endswith("*") for a in actions), (function, actions)
        assert "lambda:InvokeFunction" not in actions, function


def _assert_fanout(d: Deployment, env: dict[str, str]) -> None:
    """The fan-out queue and DLQ (resources stack), its URL recorded, Chalice's event source mapping."""
    sqs = d.session.client("sqs")
    url = sqs.get_queue_url(QueueName=f"{APP}-{STAGE}-fanout")["QueueUrl"]
    # The stack's Ref (an AWS-style URL under moto's CloudFormation) names the same queue.
    assert env["FANOUT_QUEUE_URL"].endswith(f"/123456789012/{APP}-{STAGE}-fanout") and url.endswith(
        f"/123456789012/{APP}-{STAGE}-fanout")
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=sqs.get_queue_url(QueueName=f"{APP}-{STAGE}-fanout-dlq")["QueueUrl"],
                                       AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}
    timeout = d.session.client("lambda").get_function_configuration(
        FunctionName=f"{APP}-{STAGE}-fanout_worker")["Timeout"]
    assert int(attributes["VisibilityTimeout"]) > timeout
    worker_arn = f"{ACCOUNT_ARN.format(service='lambda')}:function:{APP}-{STAGE}-fanout_worker"
    mappings = [m for m in d.session.client("lambda").list_event_source_mappings()["EventSourceMappings"]
                if m["FunctionArn"] == worker_arn]  # moto's FunctionName filter matches no name
    assert [(m["EventSourceArn"], m["BatchSize"]) for m in mappings] == [(FANOUT_QUEUE_ARN, 1)]


def test_deploy_twice_then_delete(deployment: Deployment) -> None:
    d = deployment
    tree = d.committed()
    out = d.run("deploy")
    assert d.committed() == tree  # the committed tree is read, never written: no changed or new file
    assert "[1/5]" in out and "[5/5]" in out and "==> done: wss://" in out

    # Stage resources: the table and the pool, recorded into the stage's env vars.
    env = d.config()["stages"][STAGE]["environment_variables"]
    dynamodb = d.session.client("dynamodb")
    table = dynamodb.describe_table(TableName=env["CONNECTIONS_TABLE"])["Table"]
    assert {g["IndexName"] for g in table["GlobalSecondaryIndexes"]} == {"byUserId", "byUsername", "byTopic",
                                                                         "byTokenExpiry"}
    pool = d.session.client("cognito-idp").describe_user_pool(UserPoolId=env["COGNITO_USER_POOL_ID"])["UserPool"]
    # An emulator (AWS_ENDPOINT_URL): the functions reach its JWKS and @connections from the first deploy.
    endpoint = d.env["AWS_ENDPOINT_URL"]
    assert env["COGNITO_JWKS_URL"] == f"{endpoint}/{pool['Id']}/.well-known/jwks.json"
    assert env["WEBSOCKET_MANAGEMENT_URL"] == f"{endpoint}/_aws/execute-api/{d.api_id()}/{STAGE}"
    functions = d.session.client("lambda")
    variables = functions.get_function_configuration(FunctionName=f"{APP}-{STAGE}-notify")["Environment"]["Variables"]
    assert variables["COGNITO_JWKS_URL"] == env["COGNITO_JWKS_URL"]  # deployed with them, in the same run
    clients = d.session.client("cognito-idp").list_user_pool_clients(UserPoolId=pool["Id"], MaxResults=10)
    assert [c["ClientId"] for c in clients["UserPoolClients"]] == [env["COGNITO_APP_CLIENT_IDS"]]

    # Lambdas, and the authorizer wired and published.
    assert {f"{APP}-{STAGE}-{n}" for n in ("ws_authorizer", "notify", "websocket_connect", "websocket_message",
                                            "websocket_disconnect", "rest_authorizer", "eventbridge_push",
                                            "token_expiry")
            } | {f"{APP}-{STAGE}"} <= d.function_names()
    api_id = d.api_id()
    first_authorizer = _assert_wired(d, api_id)
    _assert_rest_api_and_rule(d, api_id, env["CONNECTIONS_TABLE"])
    _assert_fanout(d, env)
    assert "REST API https://" in out
    first_deployment = d.published(api_id)["stages"][STAGE]["deploymentId"]

    # Least privilege: this table and its indexes, this API's connections.
    policy = json.loads((d.workspace / ".chalice" / f"policy-{STAGE}.json").read_text())
    resources = [r for s in policy["Statement"] for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])]
    assert any(r.endswith(f":table/{env['CONNECTIONS_TABLE']}") for r in resources)
    assert any(f":{api_id}/" in r and "@connections" in r for r in resources)
    assert not any(r == "*" for r in resources)
    actions = {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert "lambda:InvokeFunction" not in actions and "dynamodb:*" not in actions

    # Second run: Chalice recreates $connect without the authorizer in the draft;
    # the wiring puts the same authorizer back and publishes; nothing else changes.
    config_before = (d.workspace / ".chalice" / "config.json").read_text()
    policy_before = (d.workspace / ".chalice" / f"policy-{STAGE}.json").read_text()
    push_policy_before = (d.workspace / ".chalice" / f"policy-{STAGE}-push.json").read_text()
    out = d.run("deploy")
    assert "is up to date" in out
    assert "created authorizer" not in out
    assert _assert_wired(d, api_id) == first_authorizer
    _assert_rest_api_and_rule(d, api_id, env["CONNECTIONS_TABLE"])  # no second rule, permission or authorizer
    _assert_fanout(d, env)  # one queue, one event source mapping
    assert d.published(api_id)["stages"][STAGE]["deploymentId"] != first_deployment
    assert (d.workspace / ".chalice" / "config.json").read_text() == config_before
    assert d.committed() == tree
    assert (d.workspace / ".chalice" / f"policy-{STAGE}.json").read_text() == policy_before
    assert (d.workspace / ".chalice" / f"policy-{STAGE}-push.json").read_text() == push_policy_before

    # Delete removes everything deploy made.
    d.run("delete")
    assert not any(name.startswith(f"{APP}-{STAGE}-") for name in d.function_names())
    assert api_id not in {a["ApiId"] for a in d.session.client("apigatewayv2").get_apis()["Items"]}
    assert APP not in {a["name"] for a in d.session.client("apigateway").get_rest_apis()["items"]}
    assert not [r for r in d.session.client("events").list_rules()["Rules"] if r["Name"].startswith(f"{APP}-")]
    assert env["CONNECTIONS_TABLE"] not in dynamodb.list_tables()["TableNames"]
    assert not d.session.client("sqs").list_queues(QueueNamePrefix=f"{APP}-{STAGE}-").get("QueueUrls")
    assert not d.session.client("lambda").list_event_source_mappings()["EventSourceMappings"]
    pools = d.session.client("cognito-idp").list_user_pools(MaxResults=60)["UserPools"]
    assert pool["Id"] not in {p["Id"] for p in pools}
    stacks = d.session.client("cloudformation").list_stacks()["StackSummaries"]
    assert all(s["StackStatus"] == "DELETE_COMPLETE" for s in stacks)


def test_single_token_source_becomes_the_identity_source(deployment: Deployment) -> None:
    d = deployment
    config = json.loads((d.project / ".chalice" / "config.json").read_text())  # the committed config, edited
    config["stages"][STAGE]["environment_variables"]["TOKEN_SOURCES"] = "header"
    (d.project / ".chalice" / "config.json").write_text(json.dumps(config, indent=2))
    d.run("deploy")
    api = d.session.client("apigatewayv2")
    authorizers = api.get_authorizers(ApiId=d.api_id())["Items"]
    assert [a["IdentitySource"] for a in authorizers] == [["route.request.header.Authorization"]]
    d.run("delete")


def test_deploy_refuses_an_unknown_stage(deployment: Deployment) -> None:
    done = subprocess.run([sys.executable, "-m", "devtools.deploy", "deploy", "--stage", "nope",
                           "--project-dir", str(deployment.project)], cwd=ROOT, env=deployment.env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "nope" in done.stderr and "error" in done.stderr


# -- the waiters and paginators, one call at a time ------------------------------------------

def _offline_client(service: str) -> Any:
    """A real client that never sends a request: a Stubber scripts its answers."""
    import boto3

    return boto3.client(service, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def _stack(status: str, outputs: dict[str, str] | None = None) -> dict[str, Any]:
    return {"Stacks": [{"StackName": "s", "CreationTime": "2026-01-01T00:00:00Z", "StackStatus": status,
                        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in (outputs or {}).items()]}]}


def test_stack_create_update_delete_against_moto(moto_session: Any) -> None:
    from devtools.deploy.stack import delete_stack, deploy_stack

    cfn = moto_session.client("cloudformation")
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
