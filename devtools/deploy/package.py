"""``make package STAGE=S``: one CloudFormation (SAM) template with everything the stage needs.

``chalice package --merge-template`` writes ``dist/<stage>/sam.json`` and
``deployment.zip``. Chalice itself packages the REST API (``AWS::Serverless::Api``
with its TOKEN authorizer and their invoke permissions) and each
``on_cw_event`` rule (a SAM ``CloudWatchEvent`` event source of its function,
which SAM turns into the rule and its invoke permission). The merge template
(``dist/<stage>.merge.json``) adds the table, the user pool, client, domain
and groups, the WebSocket REQUEST authorizer, its invoke permission and
outputs; it patches ``$connect`` to ``CUSTOM`` with the authorizer, every
role's policy (least privilege, by reference to the template's own table and
API: see ``devtools.deploy.functions`` for who gets which) and every
function's env vars that name the pool, client and table.

Chalice's merge can add and override but not remove, so one step follows it:
Chalice's ``WebsocketAPIDeployment`` (made with no dependency on the routes)
is replaced by ``WebsocketAPIDeployment<hash>``, whose logical id hashes the
routes, integrations and authorizer: CloudFormation makes a new deployment
whenever one of them changes, and only after they exist (``DependsOn``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from . import templates
from .chalice_cli import run_chalice
from .config import ProjectConfig
from .errors import DeployError
from .functions import AppFunctions, function_logical_id, role_logical_id
from .functions import load as load_functions

Report = Callable[[str], None]

API = "WebsocketAPI"
STAGE_RESOURCE = "WebsocketAPIStage"
CHALICE_DEPLOYMENT = "WebsocketAPIDeployment"
CONNECT_ROUTE = "WebsocketConnectRoute"
AUTHORIZER = "WebsocketAuthorizer"
AUTHORIZER_PERMISSION = "WebsocketAuthorizerInvokePermission"
AUTHORIZER_FUNCTION = "WsAuthorizer"
REST_API = "RestAPI"


def _handler_policy(app_stage: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [
        _logs_statement(),
        {"Sid": "ConnectionsTable", "Effect": "Allow", "Action": list(templates.DYNAMODB_ACTIONS),
         "Resource": [{"Fn::GetAtt": [templates.TABLE, "Arn"]},
                      {"Fn::Sub": "${%s.Arn}/index/*" % templates.TABLE}]},
        {"Sid": "ManageConnections", "Effect": "Allow", "Action": ["execute-api:ManageConnections"],
         "Resource": [{"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
                                  "${%s}/%s/*/@connections/*" % (API, app_stage)}]},
        *_enqueue_statements(),
    ]}


def _connection_policy() -> dict[str, Any]:
    """$connect and $disconnect: store and delete their items; no index, no post, no queue."""
    return {"Version": "2012-10-17", "Statement": [
        _logs_statement(),
        {"Sid": "ConnectionItems", "Effect": "Allow", "Action": list(templates.CONNECTION_TABLE_ACTIONS),
         "Resource": [{"Fn::GetAtt": [templates.TABLE, "Arn"]}]},
    ]}


def _push_policy(app_stage: str) -> dict[str, Any]:
    """The REST and EventBridge handlers: read the table and its indexes, POST to this API's connections."""
    return {"Version": "2012-10-17", "Statement": [
        _logs_statement(),
        {"Sid": "ReadConnections", "Effect": "Allow", "Action": list(templates.PUSH_TABLE_ACTIONS),
         "Resource": [{"Fn::GetAtt": [templates.TABLE, "Arn"]}]},
        {"Sid": "QueryIndexes", "Effect": "Allow", "Action": list(templates.PUSH_INDEX_ACTIONS),
         "Resource": [{"Fn::Sub": "${%s.Arn}/index/*" % templates.TABLE}]},
        {"Sid": "PostToConnections", "Effect": "Allow", "Action": ["execute-api:ManageConnections"],
         "Resource": [{"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
                                  "${%s}/%s/POST/@connections/*" % (API, app_stage)}]},
        *_enqueue_statements(),
    ]}


def _enqueue_statements() -> list[dict[str, Any]]:
    """SendMessage on the template's own fan-out queue; DescribeTable (a broadcast's segment count)."""
    return templates.enqueue_statements({"Fn::GetAtt": [templates.TABLE, "Arn"]},
                                        {"Fn::GetAtt": [templates.FANOUT_QUEUE, "Arn"]})


def _worker_policy(app_stage: str) -> dict[str, Any]:
    """The fan-out worker: receive/delete on the queue, read slices, delete gone connections, POST."""
    return {"Version": "2012-10-17", "Statement": [
        _logs_statement(),
        {"Sid": "FanoutQueue", "Effect": "Allow", "Action": list(templates.WORKER_QUEUE_ACTIONS),
         "Resource": [{"Fn::GetAtt": [templates.FANOUT_QUEUE, "Arn"]}]},
        {"Sid": "ReadSlices", "Effect": "Allow", "Action": list(templates.WORKER_TABLE_ACTIONS),
         "Resource": [{"Fn::GetAtt": [templates.TABLE, "Arn"]}]},
        {"Sid": "QueryIndexes", "Effect": "Allow", "Action": list(templates.WORKER_INDEX_ACTIONS),
         "Resource": [{"Fn::Sub": "${%s.Arn}/index/*" % templates.TABLE}]},
        {"Sid": "PostToConnections", "Effect": "Allow", "Action": ["execute-api:ManageConnections"],
         "Resource": [{"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
                                  "${%s}/%s/POST/@connections/*" % (API, app_stage)}]},
    ]}


def _schedule_policy(app_stage: str) -> dict[str, Any]:
    """The scheduled functions (the token expiry sweep): the expiry index, warn (POST) and close (DELETE)."""
    from chalicelib.schema import BY_TOKEN_EXPIRY_INDEX

    connections = ("arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
                   "${%s}/%s/{method}/@connections/*" % (API, app_stage))
    return {"Version": "2012-10-17", "Statement": [
        _logs_statement(),
        {"Sid": "ConnectionItems", "Effect": "Allow", "Action": list(templates.SCHEDULE_TABLE_ACTIONS),
         "Resource": [{"Fn::GetAtt": [templates.TABLE, "Arn"]}]},
        {"Sid": "ExpiryIndex", "Effect": "Allow", "Action": list(templates.SCHEDULE_INDEX_ACTIONS),
         "Resource": [{"Fn::Sub": "${%s.Arn}/index/%s" % (templates.TABLE, BY_TOKEN_EXPIRY_INDEX)}]},
        {"Sid": "WarnAndClose", "Effect": "Allow", "Action": ["execute-api:ManageConnections"],
         "Resource": [{"Fn::Sub": connections.replace("{method}", method)}
                      for method in templates.SCHEDULE_CONNECTION_METHODS]},
    ]}


def _logs_statement() -> dict[str, Any]:
    return {"Sid": "Logs", "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:"
                                    "log-group:/aws/lambda/${AWS::StackName}-*"}}


def merge_template(config: ProjectConfig, stage: str, functions: AppFunctions) -> dict[str, Any]:
    settings = config.resources(stage)
    env = config.environment(stage)
    api_stage = config.api_gateway_stage(stage)
    prefix = settings.hosted_ui_domain_prefix or f"wsauth-{stage}"
    resources = templates.stage_resources(settings, None, {"Fn::Sub": prefix + "-pkg-${AWS::AccountId}"})
    resources[AUTHORIZER] = {
        "Type": "AWS::ApiGatewayV2::Authorizer",
        "Properties": {
            "ApiId": {"Ref": API},
            "Name": templates.authorizer_name(config.app_name, stage),
            "AuthorizerType": "REQUEST",
            "AuthorizerUri": {"Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/"
                                         "functions/${%s.Arn}/invocations" % AUTHORIZER_FUNCTION},
            "IdentitySource": templates.identity_sources(env),
        },
    }
    resources[AUTHORIZER_PERMISSION] = {
        "Type": "AWS::Lambda::Permission",
        "Properties": {
            "FunctionName": {"Ref": AUTHORIZER_FUNCTION},
            "Action": "lambda:InvokeFunction",
            "Principal": "apigateway.amazonaws.com",
            "SourceArn": {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
                                     "${%s}/authorizers/${%s}" % (API, AUTHORIZER)},
        },
    }
    resources[CONNECT_ROUTE] = {"Properties": {"AuthorizationType": "CUSTOM", "AuthorizerId": {"Ref": AUTHORIZER}}}
    variables = {
        "COGNITO_USER_POOL_ID": {"Ref": templates.USER_POOL},
        "COGNITO_APP_CLIENT_IDS": {"Ref": templates.USER_POOL_CLIENT},
        "CONNECTIONS_TABLE": {"Ref": templates.TABLE},
        "FANOUT_QUEUE_URL": {"Ref": templates.FANOUT_QUEUE},
    }
    for name in functions.all:
        resources[function_logical_id(name)] = {"Properties": {"Environment": {"Variables": variables}}}
    documents = {name: {"Version": "2012-10-17", "Statement": [_logs_statement()]} for name in functions.authorizers}
    documents.update({name: _push_policy(api_stage) for name in functions.pushers})
    documents.update({name: _schedule_policy(api_stage) for name in functions.schedules})
    documents.update({name: _worker_policy(api_stage) for name in functions.workers})
    documents.update({name: _connection_policy() for name in functions.connectors})
    documents.update({name: _handler_policy(api_stage) for name in functions.handlers})
    for name, document in documents.items():
        role = role_logical_id(name)
        resources[role] = {"Properties": {"Policies": [{"PolicyName": f"{role}Policy", "PolicyDocument": document}]}}
    outputs = templates.stage_outputs()
    outputs["HostedUiDomain"] = {"Value": {"Fn::Sub": "https://${%s}.auth.${AWS::Region}.amazoncognito.com"
                                                      % templates.USER_POOL_DOMAIN}}
    outputs["WebsocketAuthorizerId"] = {"Value": {"Ref": AUTHORIZER}}
    return {"Resources": resources, "Outputs": outputs}


def deployment_logical_id(template: dict[str, Any]) -> tuple[str, list[str]]:
    """``WebsocketAPIDeployment<hash of routes, integrations, authorizers>`` and what it depends on."""
    resources = template["Resources"]
    watched = {name: resource for name, resource in sorted(resources.items())
               if resource.get("Type") in ("AWS::ApiGatewayV2::Route", "AWS::ApiGatewayV2::Integration",
                                           "AWS::ApiGatewayV2::Authorizer")}
    digest = hashlib.sha256(json.dumps(watched, sort_keys=True).encode()).hexdigest()[:12]
    depends = [name for name, resource in watched.items()
               if resource["Type"] in ("AWS::ApiGatewayV2::Route", "AWS::ApiGatewayV2::Authorizer")]
    return f"{CHALICE_DEPLOYMENT}{digest}", depends


def finish_template(template: dict[str, Any]) -> dict[str, Any]:
    """Check the merge hit real resources; swap in the re-made-on-change deployment."""
    resources = template["Resources"]
    partial = sorted(name for name, resource in resources.items() if "Type" not in resource)
    if partial:
        raise DeployError(f"the merge template patched resources chalice package did not make: {partial} "
                          "(did Chalice's resource naming change?)")
    if CHALICE_DEPLOYMENT not in resources or STAGE_RESOURCE not in resources:
        raise DeployError("chalice package made no WebsocketAPIDeployment/WebsocketAPIStage")
    # Chalice names an SQS event's queue by name (``on_sqs_message(queue=...)``); the merge cannot
    # replace that Fn::Sub (it merges dicts), so the event is pointed at the template's own queue here.
    for resource in resources.values():
        if resource.get("Type") == "AWS::Serverless::Function":
            for event in (resource["Properties"].get("Events") or {}).values():
                if event.get("Type") == "SQS":
                    event["Properties"]["Queue"] = {"Fn::GetAtt": [templates.FANOUT_QUEUE, "Arn"]}
    del resources[CHALICE_DEPLOYMENT]
    logical_id, depends = deployment_logical_id(template)
    resources[logical_id] = {
        "Type": "AWS::ApiGatewayV2::Deployment",
        "DependsOn": depends,
        "Properties": {"ApiId": {"Ref": API}, "Description": "routes and authorizer " + logical_id[-12:]},
    }
    resources[STAGE_RESOURCE]["Properties"]["DeploymentId"] = {"Ref": logical_id}
    return template


def package(project_dir: Path, stage: str, report: Report = print) -> Path:
    config = ProjectConfig.load(project_dir)
    config.stage(stage)
    functions = load_functions(project_dir)
    dist = project_dir / "dist"
    out = dist / stage
    merge_path = dist / f"{stage}.merge.json"
    report(f"==> packaging {config.app_name} stage {stage!r} into {out.relative_to(project_dir)}/")
    dist.mkdir(parents=True, exist_ok=True)
    if out.exists():
        shutil.rmtree(out)
    report(f"[1/3] merge template {merge_path.relative_to(project_dir)}: table, user pool, client, domain, "
           "authorizer on $connect, invoke permission, policies of all "
           f"{len(functions.all)} functions, outputs")
    merge_path.write_text(json.dumps(merge_template(config, stage, functions), indent=2) + "\n")
    report(f"[2/3] chalice package --stage {stage} --merge-template {merge_path.relative_to(project_dir)}")
    # Packaging needs no credentials, but Chalice insists on a region; the template uses AWS::Region.
    os.environ.setdefault("AWS_DEFAULT_REGION", os.environ.get("AWS_REGION") or "us-east-1")
    run_chalice(project_dir, ["package", "--stage", stage, "--merge-template", str(merge_path), str(out)])
    sam_path = out / "sam.json"
    report("[3/3] deployment re-made when routes or the authorizer change")
    template = finish_template(json.loads(sam_path.read_text()))
    sam_path.write_text(json.dumps(template, indent=2) + "\n")
    report(f"==> {sam_path.relative_to(project_dir)} and {(out / 'deployment.zip').relative_to(project_dir)}")
    report('    deploy it with: aws cloudformation package / deploy (see README.md, "Deploying")')
    return out
