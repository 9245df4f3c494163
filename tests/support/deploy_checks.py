"""What ``make deploy`` made, read back from the emulator it deployed to (MiniStack), and what a second
deploy and ``make delete`` change. Used by ``tests/test_ministack_e2e.py`` on the ``make deploy-local`` stage.

The authorizer on ``$connect`` (one, no orphans; the stage refusing a connect without a token), the stage's
deployment and throttling, the REST API behind its authorizer, the EventBridge rules and their targets, the
invoke permissions, each role's inline policy (least privilege), the queue, its DLQ and its event source.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from chalicelib.event_contract import cognito_signout_pattern, event_pattern
from devtools.deploy.aws import emulator_urls
from devtools.ministack import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from tests.support.builders import ROOT

APP = "ws-cognito"
STAGE = "dev"
ACCOUNT_ARN = "arn:aws:{service}:us-east-1:000000000000"
LOGS_ACTIONS = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
FANOUT_QUEUE_ARN = f"arn:aws:sqs:us-east-1:000000000000:{APP}-{STAGE}-fanout"


def REMOVAL(table_arn: str) -> dict[str, set[str]]:  # noqa: N802 - reads as the constant it stands for
    """What removing a connection takes on the table (its item, its count, its tombstone, its
    subscriptions: a GetItem, one transaction, a Query and a batch delete); $connect's transaction too."""
    actions = ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem", "Query", "BatchWriteItem")
    return {f"dynamodb:{action}": {table_arn} for action in actions}


class Deployment:
    """A project copy, MiniStack's environment and helpers to look at what exists."""

    def __init__(self, project: Path, env: dict[str, str]) -> None:
        self.project = project
        self.env = env  # AWS_ENDPOINT_URL: the emulator
        self.session = emulator_session(env["AWS_ENDPOINT_URL"])

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

    def committed(self) -> dict[str, bytes]:
        """Every file of the project outside .chalice/deployed/: what git would see."""
        return {str(p.relative_to(self.project)): p.read_bytes() for p in sorted(self.project.rglob("*"))
                if p.is_file() and "deployed" not in p.relative_to(self.project).parts and "__pycache__" not in p.parts}

    def api_id(self) -> str:
        deployed = json.loads((self.workspace / ".chalice" / "deployed" / f"{STAGE}.json").read_text())
        return next(r["websocket_api_id"] for r in deployed["resources"] if r["resource_type"] == "websocket_api")

    def deployment_id(self, api_id: str) -> str:
        """The deployment the stage points at."""
        return str(self.session.client("apigatewayv2").get_stage(ApiId=api_id, StageName=STAGE)["DeploymentId"])

    def refuses_a_connect_without_a_token(self, api_id: str) -> bool:
        ws_url, _ = emulator_urls(self.env["AWS_ENDPOINT_URL"], api_id, "", STAGE)
        try:
            connect(ws_url, open_timeout=60).close()
        except InvalidStatus as refused:
            return refused.response.status_code == 401
        return False

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


def emulator_session(endpoint_url: str) -> Any:
    import boto3

    class _Session(boto3.session.Session):
        def client(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            kwargs.setdefault("endpoint_url", endpoint_url)
            kwargs.setdefault("region_name", "us-east-1")
            return super().client(*args, **kwargs)

    return _Session(aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY, region_name="us-east-1")


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
    assert d.deployment_id(api_id), "the stage was never deployed"
    stage = api.get_stage(ApiId=api_id, StageName=STAGE)
    assert stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] == 100  # the dev stage's route_throttling
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == 50
    assert d.refuses_a_connect_without_a_token(api_id)  # the stage serves $connect behind the authorizer
    policy = json.loads(d.session.client("lambda").get_policy(FunctionName=f"{APP}-{STAGE}-ws_authorizer")["Policy"])
    source_arns = [s["Condition"]["ArnLike"]["AWS:SourceArn"] for s in policy["Statement"]
                   if s["Principal"] == {"Service": "apigateway.amazonaws.com"}]
    assert source_arns == [f"arn:aws:execute-api:us-east-1:000000000000:{api_id}/authorizers/{authorizer['AuthorizerId']}"]
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
    assert set(rules) == {f"{APP}-{STAGE}-eventbridge_push-event", f"{APP}-{STAGE}-token_expiry-event",
                          f"{APP}-{STAGE}-cognito_signout-event"}
    signout = rules[f"{APP}-{STAGE}-cognito_signout-event"]  # Cognito's sign-outs, through CloudTrail
    assert json.loads(signout["EventPattern"]) == cognito_signout_pattern()
    assert [t["Arn"] for t in events.list_targets_by_rule(Rule=signout["Name"])["Targets"]] == [
        f"{ACCOUNT_ARN.format(service='lambda')}:function:{APP}-{STAGE}-cognito_signout"]
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
        "websocket_connect": f"policy-{STAGE}-connection.json", "websocket_disconnect": f"policy-{STAGE}-connection.json",
        "cognito_signout": f"policy-{STAGE}-push.json"}
    for authorizer_function in ("ws_authorizer", "rest_authorizer"):
        assert set(_grants(d.role_policy(authorizer_function))) == LOGS_ACTIONS, authorizer_function
    table_arn = f"{ACCOUNT_ARN.format(service='dynamodb')}:table/{table}"
    post = f"{ACCOUNT_ARN.format(service='execute-api')}:{ws_api_id}/{STAGE}/POST/@connections/*"
    close = post.replace("/POST/", "/DELETE/")
    for push_function in ("api_handler", "eventbridge_push", "cognito_signout"):  # push (POST) and kick (DELETE)
        grants = _grants(d.role_policy(push_function))
        assert {a: r for a, r in grants.items() if not a.startswith("logs:")} == {
            "dynamodb:Scan": {table_arn}, **REMOVAL(table_arn),
            "dynamodb:Query": {table_arn, f"{table_arn}/index/*"}, "execute-api:ManageConnections": {post, close},
            "dynamodb:DescribeTable": {table_arn}, "sqs:SendMessage": {FANOUT_QUEUE_ARN}}, push_function
    grants = _grants(d.role_policy("fanout_worker"))  # its queue only; slices of the table; POST
    assert {a: r for a, r in grants.items() if not a.startswith("logs:")} == {
        "sqs:ReceiveMessage": {FANOUT_QUEUE_ARN}, "sqs:DeleteMessage": {FANOUT_QUEUE_ARN},
        "sqs:GetQueueAttributes": {FANOUT_QUEUE_ARN}, "dynamodb:Scan": {table_arn}, **REMOVAL(table_arn),
        "dynamodb:Query": {table_arn, f"{table_arn}/index/*"}, "execute-api:ManageConnections": {post}}
    announce = {  # presence: member_removed to the topic's subscribers (the topic index, POST, the queue)
        "dynamodb:Query": {table_arn, f"{table_arn}/index/byTopic"}, "dynamodb:DescribeTable": {table_arn},
        "sqs:SendMessage": {FANOUT_QUEUE_ARN}, "execute-api:ManageConnections": {post}}
    for connector in ("websocket_connect", "websocket_disconnect"):  # their items, and announcing a leave
        grants = _grants(d.role_policy(connector))
        assert {a: r for a, r in grants.items() if not a.startswith("logs:")} == {**REMOVAL(table_arn), **announce}
    for enqueuer in ("websocket_message", "notify"):  # the stage policy: SendMessage on this queue only
        assert _grants(d.role_policy(enqueuer))["sqs:SendMessage"] == {FANOUT_QUEUE_ARN}, enqueuer
    grants = _grants(d.role_policy("token_expiry"))  # Query on the expiry index only; POST (warn), DELETE (close)
    connections = f"{ACCOUNT_ARN.format(service='execute-api')}:{ws_api_id}/{STAGE}/%s/@connections/*"
    assert {a: r for a, r in grants.items() if not a.startswith("logs:")} == {
        **REMOVAL(table_arn), "dynamodb:Query": {table_arn, f"{table_arn}/index/byTokenExpiry",
                                                 f"{table_arn}/index/byTopic"},
        "execute-api:ManageConnections": {connections % "POST", connections % "DELETE"},
        "dynamodb:DescribeTable": {table_arn}, "sqs:SendMessage": {FANOUT_QUEUE_ARN}}
    for function in ("ws_authorizer", "rest_authorizer", "api_handler", "eventbridge_push", "notify", "token_expiry",
                     "websocket_connect", "websocket_message", "websocket_disconnect"):
        actions = set(_grants(d.role_policy(function)))
        assert not any(a.startswith("events:") or a.endswith("*") for a in actions), (function, actions)
        assert "lambda:InvokeFunction" not in actions, function


def _assert_fanout(d: Deployment, env: dict[str, str]) -> None:
    """The fan-out queue and DLQ (resources stack), its URL recorded, Chalice's event source mapping."""
    sqs = d.session.client("sqs")
    url = sqs.get_queue_url(QueueName=f"{APP}-{STAGE}-fanout")["QueueUrl"]
    # The stack's Ref names the same queue.
    assert env["FANOUT_QUEUE_URL"].endswith(f"/000000000000/{APP}-{STAGE}-fanout") and url.endswith(
        f"/000000000000/{APP}-{STAGE}-fanout")
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=sqs.get_queue_url(QueueName=f"{APP}-{STAGE}-fanout-dlq")["QueueUrl"],
                                       AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}
    timeout = d.session.client("lambda").get_function_configuration(
        FunctionName=f"{APP}-{STAGE}-fanout_worker")["Timeout"]
    assert int(attributes["VisibilityTimeout"]) > timeout
    worker_arn = f"{ACCOUNT_ARN.format(service='lambda')}:function:{APP}-{STAGE}-fanout_worker"
    mappings = [m for m in d.session.client("lambda").list_event_source_mappings()["EventSourceMappings"]
                if m["FunctionArn"] == worker_arn]
    assert [(m["EventSourceArn"], m["BatchSize"]) for m in mappings] == [(FANOUT_QUEUE_ARN, 1)]


def check_first_deploy(d: Deployment, out: str) -> dict[str, str]:
    """What ``make deploy`` made, read back (``out``: what it printed); the stage's environment."""
    assert "[1/5]" in out and "[5/5]" in out and "==> done: ws://127.0.0.1:" in out

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
    _assert_wired(d, api_id)
    _assert_rest_api_and_rule(d, api_id, env["CONNECTIONS_TABLE"])
    _assert_fanout(d, env)
    assert "REST API http://127.0.0.1:" in out

    # Least privilege: this table and its indexes, this API's connections.
    policy = json.loads((d.workspace / ".chalice" / f"policy-{STAGE}.json").read_text())
    resources = [r for s in policy["Statement"] for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])]
    assert any(r.endswith(f":table/{env['CONNECTIONS_TABLE']}") for r in resources)
    assert any(f":{api_id}/" in r and "@connections" in r for r in resources)
    assert not any(r == "*" for r in resources)
    actions = {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert "lambda:InvokeFunction" not in actions and "dynamodb:*" not in actions
    return env


def check_second_deploy(d: Deployment, env: dict[str, str]) -> None:
    """Run again: Chalice recreates $connect without the authorizer in the draft; the wiring puts the same
    authorizer back and publishes; nothing else changes, and the committed tree is never written."""
    api_id = d.api_id()
    first_authorizer = _assert_wired(d, api_id)
    first_deployment = d.deployment_id(api_id)
    tree = d.committed()
    config_before = (d.workspace / ".chalice" / "config.json").read_text()
    policy_before = (d.workspace / ".chalice" / f"policy-{STAGE}.json").read_text()
    push_policy_before = (d.workspace / ".chalice" / f"policy-{STAGE}-push.json").read_text()
    out = d.run("deploy")
    assert "is up to date" in out
    assert "created authorizer" not in out
    assert _assert_wired(d, api_id) == first_authorizer
    _assert_rest_api_and_rule(d, api_id, env["CONNECTIONS_TABLE"])  # no second rule, permission or authorizer
    _assert_fanout(d, env)  # one queue, one event source mapping
    assert d.deployment_id(api_id) != first_deployment
    assert (d.workspace / ".chalice" / "config.json").read_text() == config_before
    assert d.committed() == tree
    assert (d.workspace / ".chalice" / f"policy-{STAGE}.json").read_text() == policy_before
    assert (d.workspace / ".chalice" / f"policy-{STAGE}-push.json").read_text() == push_policy_before


def check_deleted(d: Deployment, api_id: str, env: dict[str, str]) -> None:
    """``make delete`` removed everything deploy made."""
    d.run("delete")
    dynamodb = d.session.client("dynamodb")
    assert not any(name.startswith(f"{APP}-{STAGE}-") for name in d.function_names())
    assert api_id not in {a["ApiId"] for a in d.session.client("apigatewayv2").get_apis()["Items"]}
    assert APP not in {a["name"] for a in d.session.client("apigateway").get_rest_apis()["items"]}
    assert not [r for r in d.session.client("events").list_rules()["Rules"] if r["Name"].startswith(f"{APP}-")]
    assert env["CONNECTIONS_TABLE"] not in dynamodb.list_tables()["TableNames"]
    assert not d.session.client("sqs").list_queues(QueueNamePrefix=f"{APP}-{STAGE}-").get("QueueUrls")
    assert not d.session.client("lambda").list_event_source_mappings()["EventSourceMappings"]
    pools = d.session.client("cognito-idp").list_user_pools(MaxResults=60)["UserPools"]
    assert env["COGNITO_USER_POOL_ID"] not in {p["Id"] for p in pools}
    stacks = d.session.client("cloudformation").list_stacks()["StackSummaries"]
    assert all(s["StackStatus"] == "DELETE_COMPLETE" for s in stacks)
