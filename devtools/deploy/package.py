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
API: the builders ``make deploy`` uses, in ``templates``; see
``devtools.deploy.functions`` for who gets which) and every function's env
vars that name the pool, client and table.

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

from . import templates, workspace
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
PUSH_EVENT = "EventbridgePushEvent"  # Chalice's name for the on_cw_event's event of eventbridge_push
# One parameter for an emulator: empty on AWS (the functions derive the JWKS URL from the pool and
# @connections from each connection). Set, both URLs are built from it and the ids this stack creates,
# in the same forms ``make deploy`` uses (``aws.emulator_endpoints``), so an emulator takes one step.
EMULATOR_PARAMETER = "EmulatorEndpoint"
ON_EMULATOR = "OnEmulator"
# Opt-in: Cognito's own sign-outs (CloudTrail) close the user's connections (docs/channels.md).
SIGNOUT_PARAMETER = "CloseOnCognitoSignOut"
ON_SIGNOUT = "ClosesOnCognitoSignOut"
SIGNOUT_FUNCTION = "cognito_signout"
EMULATOR_DESCRIPTION = ("An AWS emulator's endpoint (http://127.0.0.1:4566); empty on AWS. Set: the functions "
                        "fetch the pool's JWKS and post to @connections there")


def _template_arns(api_stage: str) -> templates.PolicyArns:
    """The policies' resources as references to the template's own table, queue and API.

    Every function's log group is ``${AWS::StackName}-*``: CloudFormation names
    the functions after the stack (the REST handler's too).
    """
    api = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${%s}/%s" % (API, api_stage)
    return templates.PolicyArns(
        logs={"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:"
                         "log-group:/aws/lambda/${AWS::StackName}-*"},
        table={"Fn::GetAtt": [templates.TABLE, "Arn"]},
        index=lambda name: {"Fn::Sub": "${%s.Arn}/index/%s" % (templates.TABLE, name)},
        queue={"Fn::GetAtt": [templates.FANOUT_QUEUE, "Arn"]},
        connections=lambda method: {"Fn::Sub": f"{api}/{method}/@connections/*"},
    )


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
        **_emulator_variables(env, api_stage),
        "CLOSE_ON_COGNITO_SIGNOUT": {"Fn::If": [ON_SIGNOUT, "true", "false"]},
    }
    for name in functions.all:
        resources[function_logical_id(name)] = {"Properties": {"Environment": {"Variables": variables}}}
    arns = _template_arns(api_stage)
    kinds = (
        (functions.authorizers, templates.authorizer_policy), (functions.pushers, templates.push_policy),
        (functions.schedules, templates.schedule_policy), (functions.workers, templates.worker_policy),
        (functions.connectors, templates.connection_policy), (functions.handlers, templates.handler_policy))
    documents = {name: policy(arns) for names, policy in kinds for name in names}
    for name, document in documents.items():
        role = role_logical_id(name)
        resources[role] = {"Properties": {"Policies": [{"PolicyName": f"{role}Policy", "PolicyDocument": document}]}}
    outputs = templates.stage_outputs()
    outputs["HostedUiDomain"] = {"Value": {"Fn::Sub": "https://${%s}.auth.${AWS::Region}.amazoncognito.com"
                                                      % templates.USER_POOL_DOMAIN}}
    outputs["WebsocketAuthorizerId"] = {"Value": {"Ref": AUTHORIZER}}
    # What a back-end calls or publishes to, by the names CloudFormation gave them.
    notify = function_logical_id("notify")
    outputs["NotifyFunctionName"] = {"Value": {"Ref": notify}}
    outputs["NotifyFunctionArn"] = {"Value": {"Fn::GetAtt": [notify, "Arn"]}}
    push = function_logical_id("eventbridge_push")
    outputs["PushEventRuleName"] = {"Value": {"Ref": f"{push}{PUSH_EVENT}"}}  # SAM's <function><event> rule
    if SIGNOUT_FUNCTION in functions.event_rules:  # the rule exists either way; off, it is DISABLED
        signout = function_logical_id(SIGNOUT_FUNCTION)
        resources[signout]["Properties"]["Events"] = {f"{signout}Event": {"Properties": {
            "State": {"Fn::If": [ON_SIGNOUT, "ENABLED", "DISABLED"]}}}}
    parameters = {EMULATOR_PARAMETER: {"Type": "String", "Default": "", "Description": EMULATOR_DESCRIPTION},
                  SIGNOUT_PARAMETER: {"Type": "String", "Default": "false", "AllowedValues": ["true", "false"],
                                      "Description": "Close a user's connections and revoke their tokens when "
                                                     "Cognito signs them out (needs a CloudTrail trail)"}}
    conditions = {ON_EMULATOR: {"Fn::Not": [{"Fn::Equals": [{"Ref": EMULATOR_PARAMETER}, ""]}]},
                  ON_SIGNOUT: {"Fn::Equals": [{"Ref": SIGNOUT_PARAMETER}, "true"]}}
    return {"Parameters": parameters, "Conditions": conditions, "Resources": resources, "Outputs": outputs}


def _emulator_variables(env: dict[str, str], api_stage: str) -> dict[str, Any]:
    """``COGNITO_JWKS_URL`` and ``WEBSOCKET_MANAGEMENT_URL``: on an emulator, its URLs for this stack's pool
    and API; otherwise what the stage's config sets (usually nothing)."""
    derived = {"COGNITO_JWKS_URL": "${%s}/${%s}/.well-known/jwks.json" % (EMULATOR_PARAMETER, templates.USER_POOL),
               "WEBSOCKET_MANAGEMENT_URL": "${%s}/_aws/execute-api/${%s}/%s" % (EMULATOR_PARAMETER, API, api_stage)}
    return {variable: {"Fn::If": [ON_EMULATOR, {"Fn::Sub": form}, env.get(variable, "")]}
            for variable, form in derived.items()}


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


def package(project: Path, stage: str, report: Report = print) -> Path:
    """``dist/<stage>/``: the template and the zip; Chalice runs in the stage's workspace (``workspace``)."""
    project_dir = project.resolve()
    config = workspace.prepare(project_dir, stage)
    workspace.placeholder_policies(config, stage)
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
    run_chalice(config.project_dir, ["package", "--stage", stage, "--merge-template", str(merge_path), str(out)])
    sam_path = out / "sam.json"
    report("[3/3] deployment re-made when routes or the authorizer change")
    template = finish_template(json.loads(sam_path.read_text()))
    template["Resources"][STAGE_RESOURCE]["Properties"]["DefaultRouteSettings"] = \
        config.resources(stage).route_settings()  # the stage's route throttling
    sam_path.write_text(json.dumps(template, indent=2) + "\n")
    report(f"==> {sam_path.relative_to(project_dir)} and {(out / 'deployment.zip').relative_to(project_dir)}")
    report("    deploy it with: aws cloudformation package / deploy (see docs/deploying.md)")
    return out
