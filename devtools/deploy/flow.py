"""``deploy`` and ``delete`` for one stage: the steps, in order, with progress lines."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import templates, workspace
from .aws import Aws, all_items, connect, emulator_endpoint, emulator_endpoints, emulator_urls, error_code
from .chalice_cli import deployed_path, read_deployed, run_chalice, websocket_url
from .config import ProjectConfig
from .errors import DeployError
from .functions import API_HANDLER, WEBSOCKET_FUNCTIONS, WS_AUTHORIZER, AppFunctions
from .functions import load as load_functions
from .stack import delete_stack, deploy_stack
from .wiring import wire

Report = Callable[[str], None]


@dataclass
class DeploySummary:
    stage: str
    stack_changed: bool = False
    config_changed: bool = False
    policy_changed: bool = False
    chalice_runs: int = 0
    api_id: str = ""
    authorizer_id: str = ""
    deployment_id: str = ""
    websocket_url: str = ""
    rest_api_url: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    functions: dict[str, str] = field(default_factory=dict)  # chalice's name -> the deployed function's ARN
    wiring_changes: tuple[str, ...] = ()


def _write_json_if_changed(path: Path, document: dict[str, Any]) -> bool:
    text = json.dumps(document, indent=2) + "\n"
    try:
        if json.loads(path.read_text()) == document:
            return False
    except (FileNotFoundError, ValueError):
        pass
    path.write_text(text)
    return True


def write_policies(config: ProjectConfig, stage: str, aws: Aws, table_name: str, api_id: str | None,
                   functions: AppFunctions) -> tuple[bool, list[str]]:
    """The stage's policy files from known ARNs, and which function uses which.

    One file per kind: the stage's ($default, notify), the connection
    handlers' ($connect/$disconnect: their items only), the authorizers'
    (logs only), the push handlers' (REST handler, EventBridge handlers:
    read the table, post to this API), the scheduled functions' (the
    token expiry sweep: the expiry index, warn and close connections) and the
    fan-out workers' (their queue, slices of the table, POST). ``lambda_functions`` in
    ``.chalice/config.json`` is pointed at them for every function the app has
    (see ``functions``), so a new authorizer or rule cannot fall back to the
    stage's wider policy. Returns whether anything changed and the files'
    names (the stage's first), for the progress line.
    """
    arns = templates.literal_arns(config.resources(stage), partition=aws.partition, region=aws.region,
                                  account_id=aws.account_id, table_name=table_name, api_id=api_id,
                                  api_stage=config.api_gateway_stage(stage))
    changed = _write_json_if_changed(config.policy_file(stage), templates.handler_policy(arns))
    # (kind, its functions, the function whose iam_policy_file names the kind's file (None: the
    # first of them), the policy). In this order, new lambda_functions entries keep their old order.
    kinds = (
        ("authorizer", functions.authorizers, WS_AUTHORIZER, templates.authorizer_policy),
        ("connection", functions.connectors, WEBSOCKET_FUNCTIONS["$connect"], templates.connection_policy),
        ("push", functions.pushers, API_HANDLER, templates.push_policy),
        ("schedule", functions.schedules, None, templates.schedule_policy),
        ("worker", functions.workers, None, templates.worker_policy),
    )
    present = [(config.kind_policy_name(stage, kind, named_by or names[0]), names, policy)
               for kind, names, named_by, policy in kinds if names]
    files = {function: filename for filename, names, _ in present for function in names}
    changed = config.assign_policy_files(stage, files) or changed
    policy_dir = config.policy_file(stage).parent
    for filename, _, policy in present:
        changed = _write_json_if_changed(policy_dir / filename, policy(arns)) or changed
    return changed, [config.policy_file(stage).name] + [filename for filename, _, _ in present]


def _existing_api_id(aws: Aws, project_dir: Path, stage: str) -> str | None:
    deployed = read_deployed(project_dir, stage)
    if deployed is None or not deployed.websocket_api_id:
        return None
    api = aws.client("apigatewayv2")
    try:
        api.get_api(ApiId=deployed.websocket_api_id)
    except Exception as error:
        if error_code(error) == "NotFoundException":
            return None
        raise
    return deployed.websocket_api_id


def seed_websocket_api(aws: Aws, project_dir: Path, app_name: str, stage: str, api_stage: str,
                       report: Report) -> str:
    """Create the API Chalice would create, and record it where Chalice looks.

    Chalice's first deploy of a WebSocket API creates it, deploys it and
    creates the stage at once: ``$connect`` would be public, with no
    authorizer, until the wiring ran. Given an API recorded in
    ``.chalice/deployed/<stage>.json``, Chalice takes its update path instead,
    which only changes the draft; the stage is then created by the wiring
    step, after the authorizer is attached. Same name and settings as Chalice's
    own ``create_websocket_api``.
    """
    api = aws.client("apigatewayv2")
    name = f"{app_name}-{stage}-websocket-api"
    existing = [item for item in all_items(api, "get_apis") if item.get("Name") == name]
    if existing:
        api_id = str(existing[0]["ApiId"])
        report(f"    reusing {name} ({api_id})")
    else:
        api_id = str(api.create_api(Name=name, ProtocolType="WEBSOCKET",
                                    RouteSelectionExpression="$request.body.action")["ApiId"])
        report(f"    created {name} ({api_id}), no stage yet")
    path = deployed_path(project_dir, stage)
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        record = {"resources": [], "schema_version": "2.0", "backend": "api"}
    record["resources"] = [r for r in record.get("resources") or [] if r.get("resource_type") != "websocket_api"]
    record["resources"].append({
        "name": "websocket_api", "resource_type": "websocket_api", "websocket_api_id": api_id,
        "websocket_api_url": websocket_url(api_id, aws.region, api_stage) + "/"})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return api_id


def deploy(project: Path, stage: str, report: Report = print, aws: Aws | None = None) -> DeploySummary:
    """Deploy ``stage`` of the project at ``project``; Chalice runs in the stage's workspace (``workspace``)."""
    ProjectConfig.load(project).policy_file(stage)  # the stage must name its policy files (checked first)
    config = workspace.prepare(project, stage)
    project_dir = config.project_dir
    functions = load_functions(project)
    aws = aws or connect()
    summary = DeploySummary(stage=stage)
    report(f"==> deploying {config.app_name} stage {stage!r} to account {aws.account_id} in {aws.region}")

    settings = config.resources(stage)
    report(f"[1/5] resources stack {settings.stack_name} (table, user pool, app client, hosted UI domain, "
           "fan-out queue and its DLQ)")
    result = deploy_stack(aws.client("cloudformation"), settings.stack_name,
                          templates.resources_template(settings, aws.account_id),
                          {"app": config.app_name, "stage": stage}, report)
    summary.stack_changed = result.changed
    summary.outputs = result.outputs
    summary.config_changed = config.record_outputs(stage, result.outputs)
    report(f"    recorded outputs into the workspace's config ({project_dir.relative_to(project)})")
    table_name = result.outputs.get("ConnectionsTableName") or settings.table_name

    api_stage = config.api_gateway_stage(stage)
    report("[2/5] WebSocket API (created empty before Chalice sees it, so nothing is published yet)")
    api_id = _existing_api_id(aws, project_dir, stage)
    if api_id is None:
        api_id = seed_websocket_api(aws, project_dir, config.app_name, stage, api_stage, report)
    else:
        report(f"    {api_id} (from the workspace's deploy state)")

    endpoint = emulator_endpoint()
    pool_id = result.outputs.get("UserPoolId")
    if endpoint is not None and pool_id:
        derived = emulator_endpoints(endpoint, pool_id, api_id, api_stage)
        config.record_environment(stage, derived)
        report(f"    an emulator ({endpoint}): the functions fetch the JWKS from {derived['COGNITO_JWKS_URL']} "
               f"and post to {derived['WEBSOCKET_MANAGEMENT_URL']}")

    report("[3/5] IAM policies (least privilege: this table and its indexes, this API's connections)")
    summary.policy_changed, names = write_policies(config, stage, aws, table_name, api_id, functions)
    report(f"    {', '.join(names)} " + ("written" if summary.policy_changed else "unchanged"))

    report(f"[4/5] chalice deploy --stage {stage} (Lambdas, roles, routes in the API's draft"
           + (", the REST API and its authorizer" if functions.rest_api else "")
           + (", EventBridge rules" if functions.event_rules else "") + ")")
    run_chalice(project_dir, ["deploy", "--stage", stage])
    summary.chalice_runs += 1
    deployed = read_deployed(project_dir, stage)
    if deployed is None or deployed.websocket_api_id != api_id:
        raise DeployError(f"chalice deploy did not use the websocket API {api_id} "
                          f"(.chalice/deployed/{stage}.json says {deployed and deployed.websocket_api_id!r})")
    summary.api_id = deployed.websocket_api_id
    summary.rest_api_url = deployed.rest_api_url
    summary.functions = dict(deployed.lambda_arns)

    report("[5/5] authorizer wiring: REQUEST authorizer on $connect, invoke permission, then the stage")
    wiring = wire(aws, app_name=config.app_name, stage=stage, api_stage=config.api_gateway_stage(stage),
                  api_id=deployed.websocket_api_id, authorizer_arn=deployed.lambda_arn("ws_authorizer"),
                  env=config.environment(stage), report=report,
                  route_settings=config.resources(stage).route_settings())
    summary.authorizer_id = wiring.authorizer_id
    summary.deployment_id = wiring.deployment_id
    summary.wiring_changes = wiring.changes
    summary.websocket_url = websocket_url(deployed.websocket_api_id, aws.region, api_stage)
    if endpoint is not None:  # the emulator's own URLs: the amazonaws.com ones do not exist
        summary.websocket_url, summary.rest_api_url = emulator_urls(endpoint, api_id, deployed.rest_api_id,
                                                                    api_stage)
    report(f"==> done: {summary.websocket_url}")
    if summary.rest_api_url:
        report(f"    REST API {summary.rest_api_url}")
    report(f"    user pool {result.outputs.get('UserPoolId')}, app client {result.outputs.get('UserPoolClientId')}, "
           f"table {table_name}")
    if result.outputs.get("HostedUiDomain"):
        report(f"    hosted UI {result.outputs['HostedUiDomain']}")
    return summary


def delete(project: Path, stage: str, report: Report = print, aws: Aws | None = None) -> None:
    config = workspace.prepare(project, stage)
    project_dir = config.project_dir
    aws = aws or connect()
    settings = config.resources(stage)
    report(f"==> deleting {config.app_name} stage {stage!r} from account {aws.account_id} in {aws.region}")
    report(f"[1/2] chalice delete --stage {stage} (Lambdas, roles, the WebSocket API with its authorizer)")
    if read_deployed(project_dir, stage) is None:
        report("    nothing deployed by chalice for this stage")
    else:
        run_chalice(project_dir, ["delete", "--stage", stage])
    report(f"[2/2] resources stack {settings.stack_name} (table, user pool)")
    delete_stack(aws.client("cloudformation"), settings.stack_name, report)
    report("==> deleted")
