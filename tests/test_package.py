"""``make package``: one CloudFormation template with everything, checked offline
(cfn-lint, structure), and a Lambda zip with runtime code only."""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from chalicelib.event_contract import event_pattern
from devtools.deploy import functions as app_functions
from devtools.deploy import package as packaging

ROOT = Path(__file__).resolve().parent.parent


def _project_copy(destination: Path) -> Path:
    """The deployable part of the repo, so packaging cannot touch the working tree."""
    for name in ("app.py", "requirements.txt"):
        shutil.copy(ROOT / name, destination / name)
    shutil.copytree(ROOT / "chalicelib", destination / "chalicelib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / ".chalice", destination / ".chalice",
                    ignore=shutil.ignore_patterns("deployed", "deployments"))
    # Stray dev code next to the app must still stay out of the zip.
    for stray in ("tests", "devtools", "bench"):
        (destination / stray).mkdir()
        (destination / stray / "marker.py").write_text("raise SystemExit('dev only')\n")
    return destination


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = _project_copy(tmp_path_factory.mktemp("project"))
    done = subprocess.run([sys.executable, "-m", "devtools.deploy", "package", "--stage", "prod",
                           "--project-dir", str(project)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[3/3]" in done.stdout
    return project / "dist" / "prod"


@pytest.fixture(scope="module")
def template(packaged: Path) -> dict[str, Any]:
    return json.loads((packaged / "sam.json").read_text())


def _removal(table: Any) -> dict[str, list[Any]]:
    """What removing a connection takes on the table (a GetItem, one transaction, a Query, a batch delete)."""
    actions = ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem", "Query", "BatchWriteItem")
    return {f"dynamodb:{action}": [table] for action in actions}


def _of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def test_template_passes_cfn_lint(packaged: Path) -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    done = subprocess.run([str(cfn_lint), str(packaged / "sam.json")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_authorizer_is_attached_to_connect(template: dict[str, Any]) -> None:
    authorizers = _of_type(template, "AWS::ApiGatewayV2::Authorizer")
    assert list(authorizers) == [packaging.AUTHORIZER]
    authorizer = authorizers[packaging.AUTHORIZER]["Properties"]
    assert authorizer["AuthorizerType"] == "REQUEST"
    assert authorizer["ApiId"] == {"Ref": packaging.API}
    assert "${WsAuthorizer.Arn}" in authorizer["AuthorizerUri"]["Fn::Sub"]
    assert authorizer["IdentitySource"] == []  # four token sources enabled: none may be required
    routes = {r["Properties"]["RouteKey"]: r["Properties"] for r in _of_type(template, "AWS::ApiGatewayV2::Route").values()}
    assert set(routes) == {"$connect", "$default", "$disconnect"}
    assert routes["$connect"]["AuthorizationType"] == "CUSTOM"
    assert routes["$connect"]["AuthorizerId"] == {"Ref": packaging.AUTHORIZER}
    assert all(r.get("AuthorizationType", "NONE") != "NONE" for k, r in routes.items() if k == "$connect")


def test_invoke_permission_source_arn(template: dict[str, Any]) -> None:
    permission = template["Resources"][packaging.AUTHORIZER_PERMISSION]["Properties"]
    assert permission["FunctionName"] == {"Ref": packaging.AUTHORIZER_FUNCTION}
    assert permission["Principal"] == "apigateway.amazonaws.com"
    assert permission["Action"] == "lambda:InvokeFunction"
    assert permission["SourceArn"] == {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:"
                                                  "${AWS::AccountId}:${WebsocketAPI}/authorizers/${WebsocketAuthorizer}"}


def test_stage_resources_and_outputs(template: dict[str, Any]) -> None:
    table = _of_type(template, "AWS::DynamoDB::Table")["ConnectionsTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}  # prod
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    indexes = {g["IndexName"]: g for g in table["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"byUserId", "byUsername", "byTopic", "byTokenExpiry"}
    assert [k["AttributeName"] for k in indexes["byTokenExpiry"]["KeySchema"]] == ["expiryShard", "tokenExp"]
    client = _of_type(template, "AWS::Cognito::UserPoolClient")["UserPoolClient"]["Properties"]
    assert {"ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH"} <= set(client["ExplicitAuthFlows"])
    assert client["AllowedOAuthFlows"] == ["code"]
    assert client["CallbackURLs"] == ["https://app.example.com/callback"]
    assert _of_type(template, "AWS::Cognito::UserPoolDomain")
    for output in ("WebsocketConnectEndpointURL", "UserPoolId", "UserPoolClientId", "ConnectionsTableName"):
        assert output in template["Outputs"]


def test_handlers_are_pointed_at_the_templates_own_resources(template: dict[str, Any]) -> None:
    for name in map(app_functions.function_logical_id, app_functions.load(ROOT).all):
        env = template["Resources"][name]["Properties"]["Environment"]["Variables"]
        assert env["COGNITO_USER_POOL_ID"] == {"Ref": "UserPool"}, name
        assert env["COGNITO_APP_CLIENT_IDS"] == {"Ref": "UserPoolClient"}, name
        assert env["CONNECTIONS_TABLE"] == {"Ref": "ConnectionsTable"}, name


def test_deployment_is_remade_when_routes_or_authorizer_change(template: dict[str, Any]) -> None:
    deployments = _of_type(template, "AWS::ApiGatewayV2::Deployment")
    assert len(deployments) == 1
    (logical_id, deployment), = deployments.items()
    assert template["Resources"][packaging.STAGE_RESOURCE]["Properties"]["DeploymentId"] == {"Ref": logical_id}
    assert packaging.CONNECT_ROUTE in deployment["DependsOn"]
    assert packaging.AUTHORIZER in deployment["DependsOn"]
    assert packaging.deployment_logical_id(template)[0] == logical_id
    changed = copy.deepcopy(template)
    changed["Resources"][packaging.AUTHORIZER]["Properties"]["IdentitySource"] = ["route.request.header.Authorization"]
    assert packaging.deployment_logical_id(changed)[0] != logical_id
    rerouted = copy.deepcopy(template)
    rerouted["Resources"][packaging.CONNECT_ROUTE]["Properties"]["AuthorizationType"] = "NONE"
    assert packaging.deployment_logical_id(rerouted)[0] != logical_id


def test_every_function_is_pointed_at_the_templates_own_resources(template: dict[str, Any]) -> None:
    functions = app_functions.load(ROOT)
    assert {"rest_authorizer", "api_handler", "eventbridge_push", "token_expiry"} <= set(functions.all)
    lambdas = _of_type(template, "AWS::Serverless::Function")
    assert set(lambdas) == {app_functions.function_logical_id(name) for name in functions.all}
    for name, function in lambdas.items():
        env = function["Properties"]["Environment"]["Variables"]
        assert env["CONNECTIONS_TABLE"] == {"Ref": "ConnectionsTable"}, name
        assert env["COGNITO_USER_POOL_ID"] == {"Ref": "UserPool"}, name


def test_rest_api_routes_are_all_behind_the_token_authorizer(template: dict[str, Any]) -> None:
    (api,) = _of_type(template, "AWS::Serverless::Api").values()
    swagger = api["Properties"]["DefinitionBody"]
    authorizer = swagger["securityDefinitions"]["rest_authorizer"]
    assert authorizer["x-amazon-apigateway-authtype"] == "custom"
    assert (authorizer["in"], authorizer["name"]) == ("header", "Authorization")
    settings = authorizer["x-amazon-apigateway-authorizer"]
    assert settings["type"] == "token"
    assert "${RestAuthorizer.Arn}" in settings["authorizerUri"]["Fn::Sub"]
    methods = {(path, verb): m for path, item in swagger["paths"].items() for verb, m in item.items()}
    assert ("/me", "get") in methods and ("/messages", "post") in methods, sorted(methods)
    for key, method in methods.items():
        assert method["security"] == [{"rest_authorizer": []}], key
        assert "${APIHandler.Arn}" in method["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"], key
    for permission, function in (("APIHandlerInvokePermission", {"Ref": "APIHandler"}),
                                 ("RestAuthorizerInvokePermission", {"Fn::GetAtt": ["RestAuthorizer", "Arn"]})):
        properties = template["Resources"][permission]["Properties"]
        assert (properties["FunctionName"], properties["Principal"]) == (function, "apigateway.amazonaws.com")
        assert "${RestAPIId}/*" in properties["SourceArn"]["Fn::Sub"][0]
        assert properties["SourceArn"]["Fn::Sub"][1] == {"RestAPIId": {"Ref": packaging.REST_API}}


def test_eventbridge_rule_targets_the_push_handler(template: dict[str, Any]) -> None:
    """SAM turns the function's CloudWatchEvent source into the rule and its invoke permission."""
    handler = template["Resources"]["EventbridgePush"]["Properties"]
    (source,) = handler["Events"].values()
    assert source == {"Type": "CloudWatchEvent", "Properties": {"Pattern": event_pattern("ws-cognito")}}
    assert handler["Handler"] == "app.eventbridge_push"


def _grants(document: dict[str, Any]) -> dict[str, list[Any]]:
    grants: dict[str, list[Any]] = {}
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        for action in statement["Action"]:
            resources = statement["Resource"]
            grants.setdefault(action, []).extend(resources if isinstance(resources, list) else [resources])
    return grants


def _role_policy(template: dict[str, Any], function: str) -> dict[str, Any]:
    (policy,) = template["Resources"][app_functions.role_logical_id(function)]["Properties"]["Policies"]
    document: dict[str, Any] = policy["PolicyDocument"]
    return document


def test_each_role_gets_least_privilege(template: dict[str, Any]) -> None:
    logs = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
    for authorizer in ("ws_authorizer", "rest_authorizer"):
        assert set(_grants(_role_policy(template, authorizer))) == logs, authorizer
    post = {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
                       "${WebsocketAPI}/prod/POST/@connections/*"}
    close = {"Fn::Sub": post["Fn::Sub"].replace("/POST/", "/DELETE/")}
    for pusher in ("api_handler", "eventbridge_push"):  # push (POST) and kick (DELETE)
        grants = _grants(_role_policy(template, pusher))
        assert {a: r for a, r in grants.items() if a not in logs} == {
            **_removal({"Fn::GetAtt": ["ConnectionsTable", "Arn"]}),
            "dynamodb:Scan": [{"Fn::GetAtt": ["ConnectionsTable", "Arn"]}],
            "dynamodb:Query": [{"Fn::GetAtt": ["ConnectionsTable", "Arn"]},
                               {"Fn::Sub": "${ConnectionsTable.Arn}/index/*"}],
            "dynamodb:DescribeTable": [{"Fn::GetAtt": ["ConnectionsTable", "Arn"]}],  # sizes a queued broadcast
            "sqs:SendMessage": [{"Fn::GetAtt": ["FanoutQueue", "Arn"]}],  # enqueues large fan-outs, this queue only
            "execute-api:ManageConnections": [post, close]}, pusher
    grants = _grants(_role_policy(template, "fanout_worker"))  # its queue, slices of the table, POST
    table_arn = {"Fn::GetAtt": ["ConnectionsTable", "Arn"]}
    queue_arn = {"Fn::GetAtt": ["FanoutQueue", "Arn"]}
    assert {a: r for a, r in grants.items() if a not in logs} == {
        "sqs:ReceiveMessage": [queue_arn], "sqs:DeleteMessage": [queue_arn], "sqs:GetQueueAttributes": [queue_arn],
        "dynamodb:Scan": [table_arn], **_removal(table_arn),
        "dynamodb:Query": [table_arn, {"Fn::Sub": "${ConnectionsTable.Arn}/index/*"}],
        "execute-api:ManageConnections": [post]}
    announce = {  # presence: member_removed to the topic's subscribers (the topic index, POST, the queue)
        "dynamodb:Query": [table_arn, {"Fn::Sub": "${ConnectionsTable.Arn}/index/byTopic"}],
        "dynamodb:DescribeTable": [table_arn], "sqs:SendMessage": [queue_arn], "execute-api:ManageConnections": [post]}
    for connector in ("websocket_connect", "websocket_disconnect"):  # their items, and announcing a leave
        grants = _grants(_role_policy(template, connector))
        assert {a: r for a, r in grants.items() if a not in logs} == {**_removal(table_arn), **announce}, connector
    handler = _grants(_role_policy(template, "websocket_message"))
    assert handler["sqs:SendMessage"] == [queue_arn] and not any(a.startswith("sqs:Receive") for a in handler)
    grants = _grants(_role_policy(template, "token_expiry"))  # the schedule: the expiry index, warn and close
    table = {"Fn::GetAtt": ["ConnectionsTable", "Arn"]}
    connections = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebsocketAPI}/prod/%s/@connections/*"
    assert {a: r for a, r in grants.items() if a not in logs} == {
        **_removal(table), "dynamodb:Query": [table, {"Fn::Sub": "${ConnectionsTable.Arn}/index/byTokenExpiry"},
                                              {"Fn::Sub": "${ConnectionsTable.Arn}/index/byTopic"}],
        "execute-api:ManageConnections": [{"Fn::Sub": connections % "POST"}, {"Fn::Sub": connections % "DELETE"}],
        "dynamodb:DescribeTable": [table], "sqs:SendMessage": [queue_arn]}
    roles = _of_type(template, "AWS::IAM::Role")
    assert set(roles) == {app_functions.role_logical_id(n) for n in app_functions.load(ROOT).all}
    for name, role in roles.items():
        (policy,) = role["Properties"]["Policies"]
        actions = set(_grants(policy["PolicyDocument"]))
        assert not any(a.startswith("events:") or a.endswith("*") for a in actions), (name, actions)
        assert "lambda:InvokeFunction" not in actions, name


def test_zip_holds_runtime_code_and_linux_wheels_only(packaged: Path) -> None:
    with zipfile.ZipFile(packaged / "deployment.zip") as archive:
        names = archive.namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert "app.py" in tops and "chalicelib" in tops
    assert not tops & {"tests", "devtools", "bench", "node_modules", ".venv"}
    assert not any(name.split("/", 1)[0].lower().startswith(("requests", "boto3", "moto", "pytest", "orjson",
                                                             "pybase64"))
                   for name in names)
    assert "jwt/api_jwt.py" in names, "PyJWT is missing from the zip"
    for package in ("cryptography",):
        binaries = [n for n in names if n.startswith(f"{package}/") and n.endswith(".so")]
        assert binaries, f"{package}'s compiled bindings are missing"
        assert any("x86_64-linux-gnu" in n or "abi3" in n for n in binaries), binaries
        wheel_files = [n for n in names if n.startswith(f"{package}-") and n.endswith(".dist-info/WHEEL")]
        assert wheel_files, f"{package} was not installed from a wheel"
        with zipfile.ZipFile(packaged / "deployment.zip") as archive:
            tags = archive.read(wheel_files[0]).decode()
        # The Lambda platform's wheel, not whatever this machine would build or pick.
        assert "manylinux" in tags and "x86_64" in tags, tags


def test_stage_resources_templates_pass_cfn_lint(tmp_path: Path) -> None:
    """The ``make deploy`` resources stack, for every stage, is valid CloudFormation too."""
    from devtools.deploy.config import ProjectConfig
    from devtools.deploy.templates import resources_template

    config = ProjectConfig.load(ROOT)
    paths = []
    for stage in config.stage_names():
        template = resources_template(config.resources(stage), "123456789012")
        table = template["Resources"]["ConnectionsTable"]["Properties"]
        assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": stage == "prod"}
        domain = template["Resources"]["UserPoolDomain"]["Properties"]["Domain"]
        # Cognito refuses domain prefixes containing these words.
        assert not any(word in domain for word in ("cognito", "aws", "amazon")), domain
        path = tmp_path / f"{stage}-resources.json"
        path.write_text(json.dumps(template))
        paths.append(str(path))
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    done = subprocess.run([str(cfn_lint), *paths], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_fanout_queue_dlq_and_event_source(template: dict[str, Any]) -> None:
    """The worker's SQS event source reads the template's own queue, with its batch size and concurrency."""
    resources = template["Resources"]
    queue, dlq = resources["FanoutQueue"], resources["FanoutDeadLetterQueue"]
    assert (queue["Type"], dlq["Type"]) == ("AWS::SQS::Queue", "AWS::SQS::Queue")
    assert queue["Properties"]["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": ["FanoutDeadLetterQueue",
                                                                                           "Arn"]},
                                                    "maxReceiveCount": 5}
    worker = resources[app_functions.function_logical_id("fanout_worker")]
    timeout = worker["Properties"]["Timeout"]
    assert worker["Properties"]["MemorySize"] == 1769  # one vCPU: the per-worker rate bench/README.md models
    assert queue["Properties"]["VisibilityTimeout"] > timeout  # never visible again while a worker posts it
    event = worker["Properties"]["Events"][app_functions.sqs_event_logical_id("fanout_worker")]
    assert event == {"Type": "SQS", "Properties": {
        "Queue": {"Fn::GetAtt": ["FanoutQueue", "Arn"]}, "BatchSize": 1, "MaximumBatchingWindowInSeconds": 0,
        "ScalingConfig": {"MaximumConcurrency": 20}}}
    for name in app_functions.load(ROOT).all:  # every function can enqueue (or is told where the queue is)
        variables = resources[app_functions.function_logical_id(name)]["Properties"]["Environment"]["Variables"]
        assert variables["FANOUT_QUEUE_URL"] == {"Ref": "FanoutQueue"}, name
    assert template["Outputs"]["FanoutQueueUrl"] == {"Value": {"Ref": "FanoutQueue"}}


def test_the_websocket_stage_is_throttled_as_the_stage_says(template: dict[str, Any]) -> None:
    (stage,) = _of_type(template, "AWS::ApiGatewayV2::Stage").values()
    assert stage["Properties"]["DefaultRouteSettings"] == {"ThrottlingBurstLimit": 2000, "ThrottlingRateLimit": 1000.0}


@pytest.mark.parametrize("value, problem", [
    ({"burst_limit": 10}, "must be"), ({"burst_limit": -1, "rate_limit": 5}, "burst_limit"),
    ({"burst_limit": 10, "rate_limit": "fast"}, "rate_limit"), ("500", "must be"),
])
def test_a_bad_route_throttling_is_refused_naming_the_stage(value: Any, problem: str) -> None:
    from devtools.deploy.config import ProjectConfig
    from devtools.deploy.errors import DeployError

    config = ProjectConfig.load(ROOT)
    config.data["stages"]["dev"]["stage_resources"]["route_throttling"] = value
    with pytest.raises(DeployError, match=f"stage 'dev'.*{problem}"):
        config.resources("dev")


def test_one_step_to_an_emulator_and_outputs_for_back_ends(template: dict[str, Any]) -> None:
    """One parameter for an emulator (empty on AWS): set, the functions' JWKS and @connections URLs are built
    from it and the stack's own pool and API; and outputs naming what a back-end calls (notify) or publishes
    to (the rule), and the queue."""
    assert {name: p["Default"] for name, p in template["Parameters"].items()} == {
        "EmulatorEndpoint": "", "CloseOnCognitoSignOut": "false"}
    assert template["Conditions"]["OnEmulator"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "EmulatorEndpoint"}, ""]}]}
    for function in _of_type(template, "AWS::Serverless::Function").values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["COGNITO_JWKS_URL"] == {"Fn::If": [
            "OnEmulator", {"Fn::Sub": "${EmulatorEndpoint}/${UserPool}/.well-known/jwks.json"}, ""]}
        assert variables["WEBSOCKET_MANAGEMENT_URL"] == {"Fn::If": [
            "OnEmulator", {"Fn::Sub": "${EmulatorEndpoint}/_aws/execute-api/${WebsocketAPI}/prod"}, ""]}
    outputs = template["Outputs"]
    assert outputs["NotifyFunctionName"]["Value"] == {"Ref": "Notify"}
    assert outputs["NotifyFunctionArn"]["Value"] == {"Fn::GetAtt": ["Notify", "Arn"]}
    assert outputs["PushEventRuleName"]["Value"] == {"Ref": "EventbridgePushEventbridgePushEvent"}
    assert {"FanoutQueueUrl", "FanoutQueueArn"} <= set(outputs)


def test_the_committed_tree_cannot_be_deployed_with_roles_that_cannot_push(tmp_path: Path) -> None:
    """The policy files the committed config names are written by make deploy/package into a workspace only:
    Chalice run on the committed tree itself stops at the missing file."""
    (tmp_path / "project").mkdir()
    project = _project_copy(tmp_path / "project")
    assert not list((project / ".chalice").glob("policy-*.json"))
    done = subprocess.run([str(Path(sys.executable).with_name("chalice")), "package", "--stage", "prod",
                           str(tmp_path / "out")], cwd=project, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"})
    assert done.returncode != 0 and "policy-prod" in done.stdout + done.stderr, done.stdout + done.stderr


def test_closing_on_cognito_sign_out_is_an_opt_in(template: dict[str, Any]) -> None:
    """The CloudTrail rule of Cognito's sign-outs targets its handler, DISABLED unless the parameter says true;
    the same parameter sets CLOSE_ON_COGNITO_SIGNOUT on the functions."""
    from chalicelib.event_contract import cognito_signout_pattern

    signout = template["Resources"]["CognitoSignout"]
    (event,) = signout["Properties"]["Events"].values()
    assert event["Type"] == "CloudWatchEvent" and event["Properties"]["Pattern"] == cognito_signout_pattern()
    assert event["Properties"]["State"] == {"Fn::If": ["ClosesOnCognitoSignOut", "ENABLED", "DISABLED"]}
    assert template["Conditions"]["ClosesOnCognitoSignOut"] == {"Fn::Equals": [{"Ref": "CloseOnCognitoSignOut"},
                                                                               "true"]}
    variables = signout["Properties"]["Environment"]["Variables"]
    assert variables["CLOSE_ON_COGNITO_SIGNOUT"] == {"Fn::If": ["ClosesOnCognitoSignOut", "true", "false"]}
