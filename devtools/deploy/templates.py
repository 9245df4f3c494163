"""CloudFormation pieces shared by ``deploy`` (stage resources stack) and ``package`` (one template).

The table comes from ``chalicelib.schema`` so the key schema and indexes are
defined once. Everything here is pure: dicts in, dicts out.
"""
from __future__ import annotations

from typing import Any, Mapping

from chalicelib import schema
from chalicelib.settings import DEFAULT_TOKEN_SOURCES

from .config import StageResources

TEMPLATE_VERSION = "2010-09-09"

TABLE = "ConnectionsTable"
USER_POOL = "UserPool"
USER_POOL_CLIENT = "UserPoolClient"
USER_POOL_DOMAIN = "UserPoolDomain"
FANOUT_QUEUE = "FanoutQueue"
FANOUT_DLQ = "FanoutDeadLetterQueue"
# Receives of a work item before SQS moves it to the dead-letter queue.
FANOUT_MAX_RECEIVE = 5
# AWS's advice for an SQS event source: a visibility timeout of six times the function's timeout.
VISIBILITY_PER_TIMEOUT = 6

# Sources the app can read a token from (TOKEN_SOURCES), in API Gateway's terms.
PROTOCOL_HEADER = "Sec-WebSocket-Protocol"


def group_logical_id(group: str) -> str:
    return "UserPoolGroup" + "".join(part.capitalize() for part in _alnum_words(group))


def _alnum_words(text: str) -> list[str]:
    word, words = "", []
    for char in text:
        if char.isalnum():
            word += char
        elif word:
            words.append(word)
            word = ""
    if word:
        words.append(word)
    return words or ["Group"]


def stage_resources(settings: StageResources, table_name: str | None, domain_prefix: str | Any) -> dict[str, Any]:
    """Resources: table, user pool, app client, hosted UI domain, groups."""
    resources: dict[str, Any] = {
        TABLE: {
            "Type": "AWS::DynamoDB::Table",
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": schema.cloudformation_properties(table_name, settings.point_in_time_recovery),
        },
        USER_POOL: {
            "Type": "AWS::Cognito::UserPool",
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "UserPoolName": settings.user_pool_name,
                "AutoVerifiedAttributes": ["email"],
                "Schema": [{"Name": "email", "AttributeDataType": "String", "Required": False, "Mutable": True}],
                "Policies": {"PasswordPolicy": {
                    "MinimumLength": 8, "RequireLowercase": True, "RequireUppercase": True,
                    "RequireNumbers": True, "RequireSymbols": False}},
                "AccountRecoverySetting": {"RecoveryMechanisms": [{"Name": "verified_email", "Priority": 1}]},
                "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": False},
                "UserPoolTags": {"app": settings.app_name, "stage": settings.stage},
            },
        },
        USER_POOL_CLIENT: {
            "Type": "AWS::Cognito::UserPoolClient",
            "Properties": _client_properties(settings),
        },
        USER_POOL_DOMAIN: {
            "Type": "AWS::Cognito::UserPoolDomain",
            "Properties": {"Domain": domain_prefix, "UserPoolId": {"Ref": USER_POOL}},
        },
    }
    resources.update(fanout_queues(settings, named=table_name is not None))
    for group in settings.groups:
        resources[group_logical_id(group)] = {
            "Type": "AWS::Cognito::UserPoolGroup",
            "Properties": {"GroupName": group, "UserPoolId": {"Ref": USER_POOL},
                           "Description": f"{settings.app_name} {settings.stage} group {group}"},
        }
    return resources


def _client_properties(settings: StageResources) -> dict[str, Any]:
    """A public client (no secret): the CLI flows, and code + PKCE for the hosted UI.

    Cognito requires PKCE-capable flows for public clients by design: with no
    secret the code is only redeemable with the verifier the browser holds.
    """
    properties: dict[str, Any] = {
        "ClientName": f"{settings.app_name}-{settings.stage}-client",
        "UserPoolId": {"Ref": USER_POOL},
        "GenerateSecret": False,
        "ExplicitAuthFlows": ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        "PreventUserExistenceErrors": "ENABLED",
        "EnableTokenRevocation": True,
        "SupportedIdentityProviders": ["COGNITO"],
    }
    if settings.callback_urls:
        properties.update({
            "AllowedOAuthFlowsUserPoolClient": True,
            "AllowedOAuthFlows": ["code"],
            "AllowedOAuthScopes": ["openid", "email", "profile"],
            "CallbackURLs": list(settings.callback_urls),
            "LogoutURLs": list(settings.logout_urls or settings.callback_urls),
        })
    return properties


def fanout_queues(settings: StageResources, named: bool = True) -> dict[str, Any]:
    """The fan-out queue and its dead-letter queue (``chalicelib/fanout.py``).

    The redrive policy moves a work item received ``FANOUT_MAX_RECEIVE``
    times to the DLQ (kept 14 days, for inspection and redrive). The
    visibility timeout is six times the worker's timeout, so an item still
    being posted never becomes visible to a second worker. ``named``: the
    stage's fixed names (``make deploy``; app.py's ``on_sqs_message`` names
    the queue), else CloudFormation's (``make package``, which points the
    event source at the template's own queue).
    """
    queue: dict[str, Any] = {
        "VisibilityTimeout": VISIBILITY_PER_TIMEOUT * settings.worker_timeout,
        "MessageRetentionPeriod": 4 * 86400,
        "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": [FANOUT_DLQ, "Arn"]},
                          "maxReceiveCount": FANOUT_MAX_RECEIVE},
        "SqsManagedSseEnabled": True,
    }
    dlq: dict[str, Any] = {"MessageRetentionPeriod": 14 * 86400, "SqsManagedSseEnabled": True}
    if named:
        queue["QueueName"] = settings.fanout_queue_name
        dlq["QueueName"] = settings.fanout_dlq_name
    return {
        FANOUT_DLQ: {"Type": "AWS::SQS::Queue", "DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete",
                     "Properties": dlq},
        FANOUT_QUEUE: {"Type": "AWS::SQS::Queue", "DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete",
                       "Properties": queue},
    }


def fanout_queue_arn(partition: str, region: str, account_id: str, app_name: str, stage: str) -> str:
    return f"arn:{partition}:sqs:{region}:{account_id}:{app_name}-{stage}-fanout"


def stage_outputs() -> dict[str, Any]:
    return {
        "ConnectionsTableName": {"Value": {"Ref": TABLE}},
        "ConnectionsTableArn": {"Value": {"Fn::GetAtt": [TABLE, "Arn"]}},
        "UserPoolId": {"Value": {"Ref": USER_POOL}},
        "UserPoolArn": {"Value": {"Fn::GetAtt": [USER_POOL, "Arn"]}},
        "UserPoolClientId": {"Value": {"Ref": USER_POOL_CLIENT}},
        "HostedUiDomain": {"Value": {"Fn::Sub": "https://${UserPoolDomain}.auth.${AWS::Region}.amazoncognito.com"}},
        "FanoutQueueUrl": {"Value": {"Ref": FANOUT_QUEUE}},
        "FanoutQueueArn": {"Value": {"Fn::GetAtt": [FANOUT_QUEUE, "Arn"]}},
        "FanoutDeadLetterQueueUrl": {"Value": {"Ref": FANOUT_DLQ}},
    }


def resources_template(settings: StageResources, account_id: str) -> dict[str, Any]:
    """The stage's own resources stack (``make deploy`` step 1)."""
    return {
        "AWSTemplateFormatVersion": TEMPLATE_VERSION,
        "Description": f"{settings.app_name} {settings.stage}: connections table and Cognito user pool",
        "Resources": stage_resources(settings, settings.table_name, settings.domain_prefix(account_id)),
        "Outputs": stage_outputs(),
    }


# --- IAM -------------------------------------------------------------------------------------

DYNAMODB_ACTIONS = (
    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:BatchWriteItem",
)


def _logs_statement(log_group_arn: Any) -> dict[str, Any]:
    return {"Sid": "Logs", "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": log_group_arn}


def handler_policy(*, partition: str, region: str, account_id: str, app_name: str, stage: str,
                   table_name: str, api_id: str | None, api_stage: str) -> dict[str, Any]:
    """Least privilege for the handlers: the table and its indexes, this API's connections.

    ``api_id`` None (first deploy, the API does not exist yet) leaves out the
    execute-api statement; the deploy then rewrites the policy with the id.
    """
    table_arn = f"arn:{partition}:dynamodb:{region}:{account_id}:table/{table_name}"
    statements: list[dict[str, Any]] = [
        _logs_statement(f"arn:{partition}:logs:{region}:{account_id}:log-group:/aws/lambda/{app_name}-{stage}-*"),
        {"Sid": "ConnectionsTable", "Effect": "Allow", "Action": list(DYNAMODB_ACTIONS),
         "Resource": [table_arn, f"{table_arn}/index/*"]},
        *enqueue_statements(table_arn, fanout_queue_arn(partition, region, account_id, app_name, stage)),
    ]
    if api_id:
        statements.append({
            "Sid": "ManageConnections", "Effect": "Allow", "Action": ["execute-api:ManageConnections"],
            "Resource": [f"arn:{partition}:execute-api:{region}:{account_id}:{api_id}/{api_stage}/*/@connections/*"]})
    return {"Version": "2012-10-17", "Statement": statements}


# $connect stores the connection (a conditional PutItem); $disconnect deletes it
# with its subscriptions (Query the partition, BatchWriteItem the keys).
CONNECTION_TABLE_ACTIONS = ("dynamodb:PutItem", "dynamodb:Query", "dynamodb:BatchWriteItem")


def connection_policy(*, partition: str, region: str, account_id: str, app_name: str, stage: str,
                      table_name: str, api_id: str | None, api_stage: str) -> dict[str, Any]:
    """The $connect and $disconnect handlers' policy: their items in the table, nothing else
    (no index, no post to a connection, no queue)."""
    table_arn = f"arn:{partition}:dynamodb:{region}:{account_id}:table/{table_name}"
    return {"Version": "2012-10-17", "Statement": [
        _logs_statement(f"arn:{partition}:logs:{region}:{account_id}:log-group:/aws/lambda/{app_name}-{stage}-*"),
        {"Sid": "ConnectionItems", "Effect": "Allow", "Action": list(CONNECTION_TABLE_ACTIONS),
         "Resource": [table_arn]},
    ]}


# What a push reads: the audience from the indexes (a user's or a topic's connections),
# a connection's record (its endpoint; GET /me) and, for a broadcast, a Scan of the table.
# Query/BatchWriteItem on the table: the broadcaster deletes the record of a
# connection that answered 410 Gone (its item and subscriptions, by key).
PUSH_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:Scan", "dynamodb:Query", "dynamodb:BatchWriteItem")
PUSH_INDEX_ACTIONS = ("dynamodb:Query",)


def push_policy(*, partition: str, region: str, account_id: str, app_name: str, stage: str,
                table_name: str, api_id: str | None, api_stage: str) -> dict[str, Any]:
    """The REST handler's and the EventBridge handler's policy: read the table, post to this API.

    They only deliver back-end messages: the one write they may make is the
    delete of a connection that answered 410 Gone (the broadcaster's clean-up);
    no GET or DELETE of connections, and no ``events:PutEvents`` (publishing is
    the back-end services' business).
    ``api_id`` None leaves out the execute-api statement, as in ``handler_policy``.
    """
    table_arn = f"arn:{partition}:dynamodb:{region}:{account_id}:table/{table_name}"
    # Chalice names the REST handler <app>-<stage>, with no suffix: its log group is that name.
    groups = f"arn:{partition}:logs:{region}:{account_id}:log-group:/aws/lambda/{app_name}-{stage}"
    statements: list[dict[str, Any]] = [
        _logs_statement([f"{groups}-*", groups, f"{groups}:*"]),
        {"Sid": "ReadConnections", "Effect": "Allow", "Action": list(PUSH_TABLE_ACTIONS), "Resource": [table_arn]},
        {"Sid": "QueryIndexes", "Effect": "Allow", "Action": list(PUSH_INDEX_ACTIONS),
         "Resource": [f"{table_arn}/index/*"]},
        *enqueue_statements(table_arn, fanout_queue_arn(partition, region, account_id, app_name, stage)),
    ]
    if api_id:
        statements.append({
            "Sid": "PostToConnections", "Effect": "Allow", "Action": ["execute-api:ManageConnections"],
            "Resource": [f"arn:{partition}:execute-api:{region}:{account_id}:{api_id}/{api_stage}/POST/@connections/*"]})
    return {"Version": "2012-10-17", "Statement": statements}


# The expiry sweep (chalicelib/expiry.py): one Query per shard of the expiry index;
# GetItem (re-read an expired connection's exp), UpdateItem (record a warning),
# Query + BatchWriteItem (delete a closed connection's items, by key) on the table.
SCHEDULE_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query", "dynamodb:BatchWriteItem")
SCHEDULE_INDEX_ACTIONS = ("dynamodb:Query",)
# POST: the token_expiring warning; DELETE: the close.
SCHEDULE_CONNECTION_METHODS = ("POST", "DELETE")


def schedule_policy(*, partition: str, region: str, account_id: str, app_name: str, stage: str,
                    table_name: str, api_id: str | None, api_stage: str) -> dict[str, Any]:
    """The scheduled functions' policy (the token expiry sweep): the expiry index, warn and close.

    Query on the one index it reads (``schema.BY_TOKEN_EXPIRY_INDEX``), the
    table actions it makes (no PutItem, no Scan), and ``ManageConnections``
    for POST (the warning) and DELETE (the close) on this API's connections.
    ``api_id`` None leaves out the execute-api statement, as in ``handler_policy``.
    """
    from chalicelib.schema import BY_TOKEN_EXPIRY_INDEX

    table_arn = f"arn:{partition}:dynamodb:{region}:{account_id}:table/{table_name}"
    statements: list[dict[str, Any]] = [
        _logs_statement(f"arn:{partition}:logs:{region}:{account_id}:log-group:/aws/lambda/{app_name}-{stage}-*"),
        {"Sid": "ConnectionItems", "Effect": "Allow", "Action": list(SCHEDULE_TABLE_ACTIONS), "Resource": [table_arn]},
        {"Sid": "ExpiryIndex", "Effect": "Allow", "Action": list(SCHEDULE_INDEX_ACTIONS),
         "Resource": [f"{table_arn}/index/{BY_TOKEN_EXPIRY_INDEX}"]},
    ]
    if api_id:
        statements.append({
            "Sid": "WarnAndClose", "Effect": "Allow", "Action": ["execute-api:ManageConnections"],
            "Resource": [f"arn:{partition}:execute-api:{region}:{account_id}:{api_id}/{api_stage}/{method}/@connections/*"
                         for method in SCHEDULE_CONNECTION_METHODS]})
    return {"Version": "2012-10-17", "Statement": statements}


# What a handler that may enqueue a fan-out needs on top of its own policy:
# SendMessage (which also authorizes SendMessageBatch) on the stage's queue
# only, and DescribeTable on the table (its ItemCount sizes a broadcast's segments).
ENQUEUE_ACTIONS = ("sqs:SendMessage",)
SIZE_ACTIONS = ("dynamodb:DescribeTable",)
# The worker: Lambda's event source mapping receives and deletes with the
# function's role (GetQueueAttributes too); it reads slices (Scan segments,
# index Query pages, a user's connections) and deletes gone connections.
WORKER_QUEUE_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
WORKER_TABLE_ACTIONS = ("dynamodb:Scan", "dynamodb:Query", "dynamodb:BatchWriteItem")
WORKER_INDEX_ACTIONS = ("dynamodb:Query",)


def enqueue_statements(table_arn: Any, queue_arn: Any) -> list[dict[str, Any]]:
    return [{"Sid": "EnqueueFanout", "Effect": "Allow", "Action": list(ENQUEUE_ACTIONS), "Resource": [queue_arn]},
            {"Sid": "SizeBroadcast", "Effect": "Allow", "Action": list(SIZE_ACTIONS), "Resource": [table_arn]}]


def worker_policy(*, partition: str, region: str, account_id: str, app_name: str, stage: str,
                  table_name: str, api_id: str | None, api_stage: str) -> dict[str, Any]:
    """The fan-out worker's policy: its queue (receive, delete), read slices, delete gone ones, POST.

    ``api_id`` None leaves out the execute-api statement, as in ``handler_policy``.
    """
    table_arn = f"arn:{partition}:dynamodb:{region}:{account_id}:table/{table_name}"
    statements: list[dict[str, Any]] = [
        _logs_statement(f"arn:{partition}:logs:{region}:{account_id}:log-group:/aws/lambda/{app_name}-{stage}-*"),
        {"Sid": "FanoutQueue", "Effect": "Allow", "Action": list(WORKER_QUEUE_ACTIONS),
         "Resource": [fanout_queue_arn(partition, region, account_id, app_name, stage)]},
        {"Sid": "ReadSlices", "Effect": "Allow", "Action": list(WORKER_TABLE_ACTIONS), "Resource": [table_arn]},
        {"Sid": "QueryIndexes", "Effect": "Allow", "Action": list(WORKER_INDEX_ACTIONS),
         "Resource": [f"{table_arn}/index/*"]},
    ]
    if api_id:
        statements.append({
            "Sid": "PostToConnections", "Effect": "Allow", "Action": ["execute-api:ManageConnections"],
            "Resource": [f"arn:{partition}:execute-api:{region}:{account_id}:{api_id}/{api_stage}/POST/@connections/*"]})
    return {"Version": "2012-10-17", "Statement": statements}


def authorizer_policy(*, partition: str, region: str, account_id: str, app_name: str, stage: str) -> dict[str, Any]:
    """The authorizer reads only the JWKS over HTTPS: logs, nothing else."""
    return {"Version": "2012-10-17", "Statement": [
        _logs_statement(f"arn:{partition}:logs:{region}:{account_id}:log-group:/aws/lambda/{app_name}-{stage}-*")]}


# --- Authorizer ------------------------------------------------------------------------------

def identity_sources(env: Mapping[str, str]) -> list[str]:
    """``IdentitySource`` for the REQUEST authorizer, derived from ``TOKEN_SOURCES``.

    API Gateway answers 401 without calling the Lambda when a listed identity
    source is missing, so a source may be listed only when it is the one place
    a token can come from: exactly one source enabled (and, for ``query``,
    exactly one parameter name). Otherwise none: the Lambda sees every request.
    """
    sources = [s.strip() for s in (env.get("TOKEN_SOURCES") or "").split(",") if s.strip()]
    if not sources:  # the app's default (settings.py): cookie joins only with ALLOWED_ORIGINS
        sources = list(DEFAULT_TOKEN_SOURCES) + (["cookie"] if (env.get("ALLOWED_ORIGINS") or "").strip() else [])
    if len(sources) != 1:
        return []
    source = sources[0]
    if source == "header":
        return [f"route.request.header.{env.get('TOKEN_HEADER') or 'Authorization'}"]
    if source == "query":
        params = [p.strip() for p in (env.get("TOKEN_QUERY_PARAMS") or "access_token,ID_Token").split(",") if p.strip()]
        return [f"route.request.querystring.{params[0]}"] if len(params) == 1 else []
    if source == "protocol":
        return [f"route.request.header.{PROTOCOL_HEADER}"]
    if source == "cookie":
        return ["route.request.header.Cookie"]
    return []


def authorizer_name(app_name: str, stage: str) -> str:
    return f"{app_name}-{stage}-cognito-jwt"


def authorizer_uri(partition: str, region: str, function_arn: str) -> str:
    return f"arn:{partition}:apigateway:{region}:lambda:path/2015-03-31/functions/{function_arn}/invocations"


def authorizer_source_arn(partition: str, region: str, account_id: str, api_id: str, authorizer_id: str) -> str:
    return f"arn:{partition}:execute-api:{region}:{account_id}:{api_id}/authorizers/{authorizer_id}"


