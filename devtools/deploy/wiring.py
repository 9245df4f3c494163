"""What Chalice does not do for a WebSocket API: the REQUEST authorizer on ``$connect``.

Each step first reads what is there and changes only what differs, so a
second run leaves the same authorizer (same id), the same permission and no
orphans. Chalice recreates every route on each ``chalice deploy`` (without an
authorizer) and only changes the API's draft, so after it the ``$connect``
route is patched again and a new deployment is published to the stage: the
stage only ever serves a ``$connect`` that carries the authorizer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from . import templates
from .aws import Aws, all_items, error_code
from .errors import DeployError

Report = Callable[[str], None]


@dataclass(frozen=True)
class WiringResult:
    authorizer_id: str
    deployment_id: str
    changes: tuple[str, ...]


def permission_statement_id(app_name: str, stage: str) -> str:
    return f"{app_name}-{stage}-apigw-authorizer"


def ensure_authorizer(api: Any, api_id: str, name: str, uri: str, sources: list[str],
                      routes: list[dict[str, Any]], report: Report) -> tuple[str, list[str]]:
    """Create or update the one authorizer called ``name``; remove stale duplicates."""
    changes: list[str] = []
    ours = [a for a in all_items(api, "get_authorizers", ApiId=api_id) if a.get("Name") == name]
    wanted = {"AuthorizerType": "REQUEST", "AuthorizerUri": uri, "IdentitySource": sources}
    if ours:
        keep = ours[0]
        current = {"AuthorizerType": keep.get("AuthorizerType"), "AuthorizerUri": keep.get("AuthorizerUri"),
                   "IdentitySource": list(keep.get("IdentitySource") or [])}
        if current != wanted:
            api.update_authorizer(ApiId=api_id, AuthorizerId=keep["AuthorizerId"], Name=name, **wanted)
            changes.append(f"updated authorizer {keep['AuthorizerId']}")
            report(f"    updated authorizer {name} ({keep['AuthorizerId']}): identity sources {sources or 'none'}")
        else:
            report(f"    authorizer {name} ({keep['AuthorizerId']}) is up to date")
        authorizer_id = str(keep["AuthorizerId"])
        in_use = {r.get("AuthorizerId") for r in routes}
        for stale in ours[1:]:
            if stale["AuthorizerId"] in in_use:
                continue  # detached below once $connect points at ours
            api.delete_authorizer(ApiId=api_id, AuthorizerId=stale["AuthorizerId"])
            changes.append(f"deleted duplicate authorizer {stale['AuthorizerId']}")
            report(f"    deleted duplicate authorizer {stale['AuthorizerId']}")
    else:
        created = api.create_authorizer(ApiId=api_id, Name=name, **wanted)
        authorizer_id = str(created["AuthorizerId"])
        changes.append(f"created authorizer {authorizer_id}")
        report(f"    created authorizer {name} ({authorizer_id}): identity sources {sources or 'none'}")
    return authorizer_id, changes


def attach_to_connect(api: Any, api_id: str, authorizer_id: str, routes: list[dict[str, Any]],
                      report: Report) -> list[str]:
    connect = [r for r in routes if r.get("RouteKey") == "$connect"]
    if not connect:
        raise DeployError(f"API {api_id} has no $connect route: did `chalice deploy` finish?")
    route = connect[0]
    if route.get("AuthorizationType") == "CUSTOM" and route.get("AuthorizerId") == authorizer_id:
        report(f"    $connect ({route['RouteId']}) already uses authorizer {authorizer_id}")
        return []
    api.update_route(ApiId=api_id, RouteId=route["RouteId"], AuthorizationType="CUSTOM", AuthorizerId=authorizer_id)
    report(f"    $connect ({route['RouteId']}) now uses authorizer {authorizer_id}")
    return [f"attached authorizer to $connect {route['RouteId']}"]


def ensure_invoke_permission(lam: Any, function_arn: str, statement_id: str, source_arn: str,
                             report: Report) -> list[str]:
    """``lambda:InvokeFunction`` for API Gateway, for this authorizer only (its SourceArn)."""
    statements: list[dict[str, Any]] = []
    try:
        statements = json.loads(lam.get_policy(FunctionName=function_arn)["Policy"]).get("Statement") or []
    except Exception as error:
        if error_code(error) != "ResourceNotFoundException":
            raise
    current = [s for s in statements if s.get("Sid") == statement_id]
    if current:
        condition = current[0].get("Condition") or {}
        arn_like = (condition.get("ArnLike") or {}).get("AWS:SourceArn")
        if arn_like == source_arn:
            report("    invoke permission for the authorizer is up to date")
            return []
        lam.remove_permission(FunctionName=function_arn, StatementId=statement_id)
    lam.add_permission(FunctionName=function_arn, StatementId=statement_id, Action="lambda:InvokeFunction",
                       Principal="apigateway.amazonaws.com", SourceArn=source_arn)
    report(f"    granted apigateway.amazonaws.com lambda:InvokeFunction on ws_authorizer from {source_arn}")
    return ["granted invoke permission"]


def publish(api: Any, api_id: str, api_stage: str, report: Report,
            route_settings: Mapping[str, int | float] | None = None) -> str:
    """Snapshot the draft (now with the authorizer) and point the stage at it, with its route throttling."""
    throttling = {"DefaultRouteSettings": dict(route_settings)} if route_settings else {}
    deployment = api.create_deployment(ApiId=api_id, Description="make deploy: $connect with the Cognito authorizer")
    deployment_id = str(deployment["DeploymentId"])
    try:
        api.get_stage(ApiId=api_id, StageName=api_stage)
    except Exception as error:
        if error_code(error) != "NotFoundException":
            raise
        api.create_stage(ApiId=api_id, StageName=api_stage, DeploymentId=deployment_id, **throttling)
        report(f"    created stage {api_stage} with deployment {deployment_id}")
        return deployment_id
    api.update_stage(ApiId=api_id, StageName=api_stage, DeploymentId=deployment_id, **throttling)
    report(f"    deployed {deployment_id} to stage {api_stage}" + (
        f" (routes throttled at {route_settings['ThrottlingRateLimit']:g}/s, burst "
        f"{route_settings['ThrottlingBurstLimit']})" if route_settings else ""))
    return deployment_id


def wire(aws: Aws, *, app_name: str, stage: str, api_stage: str, api_id: str, authorizer_arn: str,
         env: Mapping[str, str], report: Report,
         route_settings: Mapping[str, int | float] | None = None) -> WiringResult:
    api = aws.client("apigatewayv2")
    lam = aws.client("lambda")
    routes = all_items(api, "get_routes", ApiId=api_id)
    name = templates.authorizer_name(app_name, stage)
    uri = templates.authorizer_uri(aws.partition, aws.region, authorizer_arn)
    authorizer_id, changes = ensure_authorizer(api, api_id, name, uri, templates.identity_sources(env), routes, report)
    changes += attach_to_connect(api, api_id, authorizer_id, routes, report)
    source_arn = templates.authorizer_source_arn(aws.partition, aws.region, aws.account_id, api_id, authorizer_id)
    changes += ensure_invoke_permission(lam, authorizer_arn, permission_statement_id(app_name, stage), source_arn,
                                        report)
    # Authorizers left behind by older runs (ours by name, no longer on any route) go too.
    routes = all_items(api, "get_routes", ApiId=api_id)
    in_use = {r.get("AuthorizerId") for r in routes}
    for other in all_items(api, "get_authorizers", ApiId=api_id):
        if other.get("Name") == name and other["AuthorizerId"] != authorizer_id and other["AuthorizerId"] not in in_use:
            api.delete_authorizer(ApiId=api_id, AuthorizerId=other["AuthorizerId"])
            changes.append(f"deleted orphaned authorizer {other['AuthorizerId']}")
            report(f"    deleted orphaned authorizer {other['AuthorizerId']}")
    deployment_id = publish(api, api_id, api_stage, report, route_settings)
    return WiringResult(authorizer_id=authorizer_id, deployment_id=deployment_id, changes=tuple(changes))
