"""TEST HARNESS ONLY: what moto 5.2 lacks for the deploy flow, added inside the moto server.

Imported in the moto server's own process (``MotoServer(preload=[__name__])``),
never by product code. The product makes the calls it makes against AWS;
these fill the holes moto has, and nothing here changes how a call that moto
already supports behaves:

- API Gateway v2 has no ``CreateDeployment``/``GetDeployments``/``GetDeployment``,
  no ``UpdateStage`` and no ``GetAuthorizers``; stages do not carry a
  ``deploymentId``. Added here. A deployment also records a snapshot of the
  routes as they were when it was made (what real API Gateway publishes), which
  ``GET /moto-api/harness/apigatewayv2/<apiId>`` returns so a test can check
  what the stage actually serves, not just the draft.
- moto's CloudFormation skips ``AWS::Cognito::*`` resources (a Ref to them
  would be None). Minimal models for UserPool, UserPoolClient, UserPoolDomain
  and UserPoolGroup are added, creating the pools through moto's own
  cognito-idp backend, so the stage template deploys unchanged.
- API Gateway (REST) imports only OpenAPI 3 documents (``ImportRestApi`` and
  ``PutRestApi`` refuse Swagger 2.0, and ``ImportRestApi`` fails with a 500
  on a document without ``info.description``), and it ignores
  ``securityDefinitions``. Chalice deploys its REST API as Swagger 2.0 with
  its ``@app.authorizer`` functions there. Swagger 2.0 documents are let
  through moto's own import (same paths, methods and integrations), and
  their ``x-amazon-apigateway-authorizer`` definitions become moto
  authorizers attached to the methods that name them in ``security``, as
  API Gateway does on import.
- EventBridge rules and targets, and ``lambda:AddPermission`` for
  ``events.amazonaws.com`` (what Chalice deploys for ``on_cw_event``), need
  nothing: moto has them.
"""
from __future__ import annotations

import json
import random
import string
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

from moto.apigateway import models as rest_models
from moto.apigatewayv2 import models as apigw_models
from moto.apigatewayv2 import urls as apigw_urls
from moto.apigatewayv2.responses import ApiGatewayV2Response
from moto.cloudformation import parsing as cfn_parsing
from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
from moto.cognitoidp.models import cognitoidp_backends
from moto.core.common_models import CloudFormationModel
from moto.moto_api._internal import urls as moto_api_urls

# --- API Gateway v2: deployments, stage updates, authorizer listing ---------------------------

_ID_CHARS = string.ascii_lowercase + string.digits


def _deployments(api: Any) -> dict[str, dict[str, Any]]:
    """Kept on the Api object, so moto's reset (which drops the Api) drops them too."""
    if not hasattr(api, "_harness_deployments"):
        api._harness_deployments = {}
    return api._harness_deployments


def _route_snapshot(api: Any) -> dict[str, dict[str, Any]]:
    return {
        route.route_key: {"authorizationType": route.authorization_type or "NONE",
                          "authorizerId": route.authorizer_id, "target": route.target}
        for route in api.routes.values()
    }


def _api(response: ApiGatewayV2Response) -> Any:
    api_id = response.path.split("/v2/apis/")[1].split("/")[0]
    return response.apigatewayv2_backend.get_api(api_id)


def _create_deployment(self: ApiGatewayV2Response) -> Any:
    api = _api(self)
    params = json.loads(self.body or "{}")
    deployment_id = "".join(random.choice(_ID_CHARS) for _ in range(10))
    deployment = {
        "deploymentId": deployment_id,
        "deploymentStatus": "DEPLOYED",
        "createdDate": datetime.now(timezone.utc).isoformat(),
        "description": params.get("description", ""),
        "autoDeployed": False,
    }
    _deployments(api)[deployment_id] = dict(deployment, routes=_route_snapshot(api))
    stage_name = params.get("stageName")
    if stage_name and stage_name in api.stages:
        api.stages[stage_name].config["deploymentId"] = deployment_id
    return 201, {}, json.dumps(deployment)


def _public(deployment: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in deployment.items() if key != "routes"}


def _get_deployments(self: ApiGatewayV2Response) -> Any:
    items = [_public(d) for d in _deployments(_api(self)).values()]
    return 200, {}, json.dumps({"items": items})


def _get_deployment(self: ApiGatewayV2Response) -> Any:
    deployment_id = self.path.rstrip("/").split("/")[-1]
    deployment = _deployments(_api(self)).get(deployment_id)
    if deployment is None:
        return 404, {"x-amzn-errortype": "NotFoundException"}, json.dumps(
            {"message": f"Invalid Deployment identifier specified {deployment_id}"})
    return 200, {}, json.dumps(_public(deployment))


def _delete_deployment(self: ApiGatewayV2Response) -> Any:
    deployment_id = self.path.rstrip("/").split("/")[-1]
    _deployments(_api(self)).pop(deployment_id, None)
    return 204, {}, ""


def _update_stage(self: ApiGatewayV2Response) -> Any:
    api = _api(self)
    stage_name = unquote(self.path.rstrip("/").split("/")[-1])
    stage = api.stages.get(stage_name)
    if stage is None:
        return 404, {"x-amzn-errortype": "NotFoundException"}, json.dumps(
            {"message": f"Invalid stage identifier specified {stage_name}"})
    params = json.loads(self.body or "{}")
    if "deploymentId" in params:
        if params["deploymentId"] not in _deployments(api):
            return 400, {"x-amzn-errortype": "BadRequestException"}, json.dumps(
                {"message": f"Invalid deployment identifier specified {params['deploymentId']}"})
        stage.config["deploymentId"] = params["deploymentId"]
    if "description" in params:
        stage.description = params["description"]
    stage.updated = datetime.now()
    return 200, {}, json.dumps(stage.to_json())


def _get_authorizers(self: ApiGatewayV2Response) -> Any:
    items = [authorizer.to_json() for authorizer in _api(self).authorizers.values()]
    return 200, {}, json.dumps({"items": items})


_original_stage_to_json = apigw_models.Stage.to_json


def _stage_to_json(self: Any) -> dict[str, Any]:
    result = _original_stage_to_json(self)
    if self.config.get("deploymentId"):
        result["deploymentId"] = self.config["deploymentId"]
    return result


ApiGatewayV2Response.create_deployment = _create_deployment
ApiGatewayV2Response.get_deployments = _get_deployments
ApiGatewayV2Response.get_deployment = _get_deployment
ApiGatewayV2Response.delete_deployment = _delete_deployment
ApiGatewayV2Response.update_stage = _update_stage
ApiGatewayV2Response.get_authorizers = _get_authorizers
apigw_models.Stage.to_json = _stage_to_json
apigw_urls.url_paths.update({
    "{0}/v2/apis/(?P<api_id>[^/]+)/deployments$": ApiGatewayV2Response.dispatch,
    "{0}/v2/apis/(?P<api_id>[^/]+)/deployments/(?P<deployment_id>[^/]+)$": ApiGatewayV2Response.dispatch,
})


def _harness_view(request: Any, full_url: str, headers: Any) -> Any:
    """``GET /moto-api/harness/apigatewayv2/<apiId>``: stages, their deployments' route snapshots."""
    api_id = full_url.rstrip("/").split("/")[-1]
    for account_backends in apigw_models.apigatewayv2_backends.values():
        for backend in account_backends.values():
            api = backend.apis.get(api_id)
            if api is None:
                continue
            deployments = _deployments(api)
            stages = {
                name: {"deploymentId": stage.config.get("deploymentId"),
                       "routes": deployments.get(stage.config.get("deploymentId") or "", {}).get("routes")}
                for name, stage in api.stages.items()
            }
            return 200, {}, json.dumps({"apiId": api_id, "stages": stages,
                                        "deployments": list(deployments),
                                        "draft": _route_snapshot(api)})
    return 404, {}, json.dumps({"message": f"no api {api_id}"})


moto_api_urls.url_paths["{0}/moto-api/harness/apigatewayv2/(?P<api_id>[^/]+)$"] = _harness_view


# --- API Gateway (REST): Swagger 2.0 import with custom authorizers ---------------------------

_original_import_rest_api = rest_models.APIGatewayBackend.import_rest_api
_original_put_rest_api = rest_models.APIGatewayBackend.put_rest_api


def _is_swagger2(api_doc: Any) -> bool:
    return isinstance(api_doc, dict) and str(api_doc.get("swagger", "")).startswith("2")


def _import_rest_api(self: Any, api_doc: dict[str, Any], fail_on_warnings: bool) -> Any:
    if not _is_swagger2(api_doc):
        return _original_import_rest_api(self, api_doc, fail_on_warnings)
    info = api_doc.get("info") or {}
    api = self.create_rest_api(name=info.get("title", ""), description=info.get("description", ""))
    self.put_rest_api(api.id, api_doc, fail_on_warnings=fail_on_warnings)
    return api


def _put_rest_api(self: Any, function_id: str, api_doc: dict[str, Any], fail_on_warnings: bool,
                  mode: str = "merge") -> Any:
    if not _is_swagger2(api_doc):
        return _original_put_rest_api(self, function_id, api_doc, fail_on_warnings, mode=mode)
    # moto's path/method/integration reading is the same for both versions; only its
    # version check and its OpenAPI 3 validator refuse Swagger 2.0.
    as_openapi = {key: value for key, value in api_doc.items() if key != "swagger"}
    as_openapi["openapi"] = "3.0.1"
    api = _original_put_rest_api(self, function_id, as_openapi, False, mode=mode)
    _apply_authorizers(self, api, api_doc)
    return api


def _apply_authorizers(backend: Any, api: Any, api_doc: dict[str, Any]) -> None:
    """``securityDefinitions`` -> authorizers (replacing same-named ones); ``security`` -> CUSTOM methods."""
    ids: dict[str, str] = {}
    for name, definition in (api_doc.get("securityDefinitions") or {}).items():
        settings = (definition or {}).get("x-amazon-apigateway-authorizer")
        if not settings:
            continue
        for stale in [a for a in api.authorizers.values() if a.name == name]:
            del api.authorizers[stale.id]
        source = settings.get("identitySource") or (
            f"method.request.{definition.get('in', 'header')}.{definition.get('name', 'Authorization')}")
        authorizer = backend.create_authorizer(
            api.id, name, str(settings.get("type", "token")).upper(),
            auth_type=definition.get("x-amazon-apigateway-authtype"), authorizer_uri=settings.get("authorizerUri"),
            authorizer_credentials=settings.get("authorizerCredentials"), identity_source=source,
            authorizer_result_ttl=settings.get("authorizerResultTtlInSeconds"))
        ids[name] = authorizer.id
    for path, methods in (api_doc.get("paths") or {}).items():
        resource = api.get_resource_for_path(path)
        for verb, method_doc in (methods or {}).items():
            method = resource.resource_methods.get(verb.upper()) if resource is not None else None
            names = [name for requirement in (method_doc or {}).get("security") or [] for name in requirement]
            if method is not None and names and names[0] in ids:
                method.authorization_type = "CUSTOM"
                method.authorizer_id = ids[names[0]]


rest_models.APIGatewayBackend.import_rest_api = _import_rest_api
rest_models.APIGatewayBackend.put_rest_api = _put_rest_api


# --- CloudFormation: AWS::Cognito::* ---------------------------------------------------------

class _CognitoResource:
    """Common shape: wraps the moto cognito-idp object it created.

    A mixin, not a CloudFormationModel subclass: moto finds models through
    ``CloudFormationModel.__subclasses__()``, which lists direct subclasses only.
    """

    def __init__(self, physical_id: str, account_id: str, region: str, attributes: dict[str, str]) -> None:
        self._physical_id = physical_id
        self.account_id = account_id
        self.region = region
        self._attributes = attributes

    @property
    def physical_resource_id(self) -> str:
        return self._physical_id

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return True

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        if attribute_name not in self._attributes:
            # moto's own models answer an unknown Fn::GetAtt this way: CloudFormation
            # then reports the template as invalid, as it would on AWS.
            raise UnformattedGetAttTemplateException()
        return self._attributes[attribute_name]

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def update_from_cloudformation_json(cls, original_resource: Any, new_resource_name: str,  # type: ignore[misc, override]
                                        cloudformation_json: dict[str, Any], account_id: str,
                                        region_name: str) -> Any:
        # Harness limitation: updates keep the resource as it is (the deploy
        # flow skips a stack update whose template did not change).
        return original_resource


class HarnessUserPool(_CognitoResource, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Cognito::UserPool"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],  # type: ignore[misc, override]
                                        account_id: str, region_name: str, **kwargs: Any) -> "HarnessUserPool":
        properties = dict(cloudformation_json.get("Properties") or {})
        name = properties.pop("UserPoolName", resource_name)
        properties.pop("UserPoolTags", None)
        pool = cognitoidp_backends[account_id][region_name].create_user_pool(name, properties)
        return cls(pool.id, account_id, region_name, {
            "Arn": pool.arn, "ProviderName": f"cognito-idp.{region_name}.amazonaws.com/{pool.id}",
            "ProviderURL": f"https://cognito-idp.{region_name}.amazonaws.com/{pool.id}",
            "UserPoolId": pool.id})

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],  # type: ignore[misc, override]
                                        account_id: str, region_name: str) -> None:
        backend = cognitoidp_backends[account_id][region_name]
        if resource_name in backend.user_pools:
            backend.delete_user_pool(resource_name)


class HarnessUserPoolClient(_CognitoResource, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Cognito::UserPoolClient"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],  # type: ignore[misc, override]
                                        account_id: str, region_name: str, **kwargs: Any) -> "HarnessUserPoolClient":
        properties = dict(cloudformation_json.get("Properties") or {})
        pool_id = properties.pop("UserPoolId")
        generate_secret = bool(properties.pop("GenerateSecret", False))
        client = cognitoidp_backends[account_id][region_name].create_user_pool_client(
            pool_id, generate_secret, properties)
        harness = cls(client.id, account_id, region_name, {"ClientId": client.id, "Name": properties.get("ClientName", "")})
        harness._pool_id = pool_id
        return harness

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],  # type: ignore[misc, override]
                                        account_id: str, region_name: str) -> None:
        backend = cognitoidp_backends[account_id][region_name]
        for pool in backend.user_pools.values():
            pool.clients.pop(resource_name, None)


class HarnessUserPoolDomain(_CognitoResource, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Cognito::UserPoolDomain"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],  # type: ignore[misc, override]
                                        account_id: str, region_name: str, **kwargs: Any) -> "HarnessUserPoolDomain":
        properties = cloudformation_json.get("Properties") or {}
        domain = properties["Domain"]
        cognitoidp_backends[account_id][region_name].create_user_pool_domain(properties["UserPoolId"], domain)
        return cls(domain, account_id, region_name, {
            "CloudFrontDistribution": f"{domain}.cloudfront.invalid"})

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],  # type: ignore[misc, override]
                                        account_id: str, region_name: str) -> None:
        backend = cognitoidp_backends[account_id][region_name]
        backend.user_pool_domains.pop(resource_name, None)


class HarnessUserPoolGroup(_CognitoResource, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Cognito::UserPoolGroup"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],  # type: ignore[misc, override]
                                        account_id: str, region_name: str, **kwargs: Any) -> "HarnessUserPoolGroup":
        properties = cloudformation_json.get("Properties") or {}
        name = properties.get("GroupName") or resource_name
        pool_id = properties["UserPoolId"]
        cognitoidp_backends[account_id][region_name].create_group(
            pool_id, name, properties.get("Description", ""), properties.get("RoleArn", ""),
            properties.get("Precedence", 0))
        harness = cls(name, account_id, region_name, {})
        harness._pool_id = pool_id
        return harness

    def delete(self, account_id: str, region_name: str) -> None:
        backend = cognitoidp_backends[account_id][region_name]
        pool = backend.user_pools.get(self._pool_id)
        if pool is not None and self._physical_id in pool.groups:
            backend.delete_group(self._pool_id, self._physical_id)



# moto caches its model map on first use; make it see the classes above.
cfn_parsing.get_model_list.cache_clear()
cfn_parsing.get_model_map.cache_clear()
cfn_parsing.get_name_type_map.cache_clear()
