"""MiniStack's defects, worked around inside MiniStack's own process (``launch.py`` applies them at start-up).

Only here: the project's code never bends toward the emulator. Each entry says what
MiniStack does, what AWS does, and how to tell that a newer MiniStack fixed it (then
delete the entry; the e2e test in ``tests/test_ministack_e2e.py`` says whether the
deploy still works without it). Written against ministack 1.5.33.
"""
from __future__ import annotations

import json
from contextvars import ContextVar
from typing import Any


def compression_size_removal() -> None:
    """Defect 1. ``UpdateRestApi`` with ``/minimumCompressionSize`` set to ``""`` is stored as ``""`` and echoed
    back, and botocore fails to parse the answer; every ``chalice deploy`` of an app with REST routes sends it.
    AWS reads ``""`` as "remove". Fixed when ``apigateway_v1._update_rest_api`` drops an empty value."""
    from ministack.services import apigateway_v1 as v1

    original = v1._update_rest_api

    def update_rest_api(api_id: str, data: dict[str, Any]) -> Any:
        operations = [{"op": "remove", "path": op["path"]}
                      if op.get("path") == "/minimumCompressionSize" and op.get("value") in ("", None) else op
                      for op in data.get("patchOperations") or []]
        return original(api_id, {**data, "patchOperations": operations})

    v1._update_rest_api = update_rest_api


def swagger_import() -> None:
    """Defect 2. ``ImportRestApi`` (POST /restapis?mode=import) and ``PutRestApi`` (PUT /restapis/{id}) are not
    routed to MiniStack's Swagger importer: the import silently creates an empty API. AWS builds the API from
    the document (Chalice deploys its REST API this way). Fixed when ``apigateway_v1.handle_request`` routes them."""
    from ministack.services import apigateway_v1 as v1

    original = v1.handle_request

    async def handle_request(method: str, path: str, headers: Any, body: bytes, query_params: Any) -> Any:
        parts = [p for p in path.strip("/").split("/") if p]
        mode = query_params.get("mode")
        mode = mode[0] if isinstance(mode, list) else mode
        if parts == ["restapis"] and method == "POST" and mode == "import":
            api_id = v1._import_rest_api(json.loads(body))
            return v1._v1_response(v1._rest_api_view(v1._rest_apis[api_id]), 201)
        if len(parts) == 2 and parts[0] == "restapis" and method == "PUT" and parts[1] in v1._rest_apis:
            api_id, spec = parts[1], json.loads(body)
            v1._resources[api_id] = {rid: {k: v for k, v in res.items() if k != "resourceMethods"}
                                     for rid, res in v1._resources.get(api_id, {}).items() if res.get("path") == "/"}
            v1._authorizers_v1.pop(api_id, None)
            schemes = v1._import_security_schemes(api_id, spec)
            for route, item in (spec.get("paths") or {}).items():
                v1._import_path_item(api_id, route, item, schemes, spec.get("security"))
            return v1._v1_response(v1._rest_api_view(v1._rest_apis[api_id]))
        return await original(method, path, headers, body, query_params)

    v1.handle_request = handle_request


class _Unauthorized(Exception):
    pass


def websocket_unauthorized() -> None:
    """Defect 3. A WebSocket REQUEST authorizer that raises ``Unauthorized`` is answered 500; AWS answers 401
    (MiniStack's REST path is right). Fixed when ``apigateway._invoke_request_authorizer_lambda`` tells an
    ``Unauthorized`` error from a failure: then a connect without a token is refused 401 without this entry."""
    from ministack.services import apigateway

    original_connect = apigateway._authorize_ws_connect

    async def invoke(authorizer: Any, event: Any, account_id: str, region: str) -> Any:
        from ministack.services import lambda_svc

        ref = apigateway._extract_lambda_ref_from_integration_uri(authorizer.get("authorizerUri", ""))
        data, config, _name = lambda_svc._get_func_record_for_ref_in_scope(ref, account_id=account_id, region=region)
        if data is None or config is None:
            return None
        record = lambda_svc._execution_record_for_config(data, config)
        result = await apigateway.run_reentrant(lambda_svc._execute_function_with_config_scope, record, event,
                                                thread_name="ministack-apigw-authorizer")
        body = (result or {}).get("body")
        try:
            payload = json.loads(body) if isinstance(body, (str, bytes)) else body
        except ValueError:
            payload = None
        if (result or {}).get("error"):
            if isinstance(payload, dict) and payload.get("errorMessage") == "Unauthorized":
                raise _Unauthorized()
            return None
        return payload if isinstance(payload, dict) else None

    async def authorize_ws_connect(*args: Any, **kwargs: Any) -> Any:
        try:
            return await original_connect(*args, **kwargs)
        except _Unauthorized:
            return (401, "Unauthorized"), None

    apigateway._invoke_request_authorizer_lambda = invoke
    apigateway._authorize_ws_connect = authorize_ws_connect


_SELECTED: ContextVar[str | None] = ContextVar("ministack_selected_subprotocol", default=None)


def selected_subprotocol() -> None:
    """Defect 4. The ``$connect`` answer's ``Sec-WebSocket-Protocol`` header is dropped: no subprotocol is
    selected, and clients that offered one (browsers, ``wscat``, ``websockets``) fail the handshake. AWS sends
    the selected one back. Fixed when ``apigateway.handle_websocket`` accepts with the answer's subprotocol."""
    from ministack.services import apigateway

    original_invoke, original_handle = apigateway._invoke_ws_lambda, apigateway.handle_websocket

    async def invoke(*args: Any, **kwargs: Any) -> Any:
        answer = await original_invoke(*args, **kwargs)
        headers = (answer or {}).get("headers") or {}
        chosen = next((v for k, v in headers.items() if str(k).lower() == "sec-websocket-protocol"), None)
        if chosen:
            _SELECTED.set(str(chosen))  # the same task as handle_websocket: it reads it at accept
        return answer

    async def handle_websocket(scope: Any, receive: Any, send: Any, *args: Any, **kwargs: Any) -> Any:
        async def send_selected(message: dict[str, Any]) -> None:
            if message.get("type") == "websocket.accept" and not message.get("subprotocol") and _SELECTED.get():
                message = {**message, "subprotocol": _SELECTED.get()}
            await send(message)

        return await original_handle(scope, receive, send_selected, *args, **kwargs)

    apigateway._invoke_ws_lambda = invoke
    apigateway.handle_websocket = handle_websocket


def websocket_deployment_resource() -> None:
    """Defect 5. CloudFormation does not know ``AWS::ApiGatewayV2::Deployment``: a packaged stack fails to create
    ("Unsupported resource type"). AWS creates a deployment of the API (the stage then points at it). Fixed when
    ``cloudformation.provisioners._RESOURCE_HANDLERS`` has the type: then delete this entry."""
    from ministack.services import apigateway
    from ministack.services.cloudformation import provisioners

    def create(logical_id: str, props: dict[str, Any], stack_name: str) -> tuple[str, dict[str, str]]:
        answer = provisioners._apigw_v2_result(
            apigateway._create_deployment(props.get("ApiId", ""), {"description": props.get("Description", "")}),
            "AWS::ApiGatewayV2::Deployment create")
        return str(answer["deploymentId"]), {"DeploymentId": str(answer["deploymentId"])}

    def delete(physical_id: str, props: dict[str, Any]) -> None:
        provisioners._apigw_v2_result(apigateway._delete_deployment(props.get("ApiId", ""), physical_id),
                                      "AWS::ApiGatewayV2::Deployment delete", missing_ok=True)

    provisioners._RESOURCE_HANDLERS.setdefault("AWS::ApiGatewayV2::Deployment", {"create": create, "delete": delete})


# What AWS authorizes each SQS batch call as (the SQS Developer Guide: a batch needs the single action).
_BATCH_ACTIONS = {"sqs:SendMessageBatch": "sqs:SendMessage", "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
                  "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility"}


def sqs_batch_actions() -> None:
    """Defect 6. Under IAM enforcement ``SendMessageBatch`` is checked as ``sqs:SendMessageBatch``, an action
    that does not exist in IAM, so a role allowed ``sqs:SendMessage`` is refused a batch. AWS authorizes a batch
    as its single action. Fixed when a role with only ``sqs:SendMessage`` may ``SendMessageBatch``."""
    from ministack.core import iam_actions

    original = iam_actions.extract_iam_action

    def extract_iam_action(*args: Any, **kwargs: Any) -> str | None:
        action = original(*args, **kwargs)
        return _BATCH_ACTIONS.get(action or "", action)

    iam_actions.extract_iam_action = extract_iam_action


ALL = (compression_size_removal, swagger_import, websocket_unauthorized, selected_subprotocol,
       websocket_deployment_resource, sqs_batch_actions)


def apply() -> list[str]:
    """Every workaround; their names, for the start-up log line."""
    for workaround in ALL:
        workaround()
    return [workaround.__name__ for workaround in ALL]
