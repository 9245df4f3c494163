"""CloudFormation pieces shared by ``deploy`` (stage resources stack) and ``package`` (one template).

The table comes from ``chalicelib.schema`` so the key schema and indexes are
defined once. Everything here is pure: dicts in, dicts out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

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


def fanout_queue_arn(partition: str, region: str, account_id: str, queue_name: str) -> str:
    """The queue's ARN from its name (``StageResources.fanout_queue_name``, the one place it is made)."""
    return f"arn:{partition}:sqs:{region}:{account_id}:{queue_name}"


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
#
# One builder per kind of function (see ``devtools.deploy.functions``), over a ``PolicyArns``:
# ``make deploy`` fills it with literal ARNs (``literal_arns``), ``make package`` with
# CloudFormation references to the template's own resources, so both write the same grants.

DYNAMODB_ACTIONS = (
    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:BatchWriteItem",
)
# Removing a connection (chalicelib/connections.py ``delete``): GetItem its item, then one
# transaction (DeleteItem it, UpdateItem its user's count, PutItem its tombstone, or a
# ConditionCheckItem), then Query + BatchWriteItem its subscriptions. Every role that
# removes connections needs all of it: $disconnect, the 410 clean-up, the sweep's close.
REMOVE_CONNECTION_ACTIONS = (
    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem", "dynamodb:Query", "dynamodb:BatchWriteItem",
)
# $connect is a transaction too (PutItem the connection, ConditionCheckItem its tombstone,
# UpdateItem its user's count): within the same actions.
CONNECTION_TABLE_ACTIONS = REMOVE_CONNECTION_ACTIONS
# What a push reads: the audience from the indexes (a user's or a topic's connections),
# a connection's record (its endpoint; GET /me) and, for a broadcast, a Scan of the table;
# and it removes a connection that answered 410 Gone.
PUSH_TABLE_ACTIONS = ("dynamodb:Scan",) + REMOVE_CONNECTION_ACTIONS
# The expiry sweep (chalicelib/expiry.py): one Query per shard of the expiry index; GetItem
# (re-read an expired connection's exp), UpdateItem (record a warning), and the removal.
SCHEDULE_TABLE_ACTIONS = REMOVE_CONNECTION_ACTIONS
# POST: the token_expiring warning; DELETE: the close.
SCHEDULE_CONNECTION_METHODS = ("POST", "DELETE")
# The worker: Lambda's event source mapping receives and deletes with the
# function's role (GetQueueAttributes too); it reads slices (Scan segments,
# index Query pages, a user's connections) and deletes gone connections.
WORKER_QUEUE_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
WORKER_TABLE_ACTIONS = ("dynamodb:Scan",) + REMOVE_CONNECTION_ACTIONS
# Every kind that reads an index only queries it.
INDEX_ACTIONS = ("dynamodb:Query",)
# What a handler that may enqueue a fan-out needs on top of its own policy:
# SendMessage (which also authorizes SendMessageBatch) on the stage's queue
# only, and DescribeTable on the table (its ItemCount sizes a broadcast's segments).
ENQUEUE_ACTIONS = ("sqs:SendMessage",)
SIZE_ACTIONS = ("dynamodb:DescribeTable",)
LOGS_ACTIONS = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents")


@dataclass(frozen=True)
class PolicyArns:
    """The resources the policies name: literal ARNs or CloudFormation references, the grants alike."""

    logs: Any  # the Logs statement's Resource: the stage's functions' log groups
    table: Any  # the connections table
    index: Callable[[str], Any]  # one of the table's indexes, by name ("*": all of them)
    queue: Any  # the fan-out queue
    # This WebSocket API's connections for one method ("*", "POST", "DELETE"). None before the
    # API exists (a first deploy): the execute-api statements are left out, and the deploy
    # rewrites the policies once it has the id.
    connections: Callable[[str], Any] | None
    # The push handlers' Logs Resource, when ``logs`` misses one of their log groups; None: ``logs``.
    push_logs: Any = None


def literal_arns(settings: StageResources, *, partition: str, region: str, account_id: str,
                 table_name: str, api_id: str | None, api_stage: str) -> PolicyArns:
    """The ARNs of a deployed stage (``make deploy``), for the policy files Chalice attaches."""
    table = f"arn:{partition}:dynamodb:{region}:{account_id}:table/{table_name}"
    groups = f"arn:{partition}:logs:{region}:{account_id}:log-group:/aws/lambda/{settings.app_name}-{settings.stage}"
    api = f"arn:{partition}:execute-api:{region}:{account_id}:{api_id}/{api_stage}"
    return PolicyArns(
        logs=f"{groups}-*",
        table=table,
        index=lambda name: f"{table}/index/{name}",
        queue=fanout_queue_arn(partition, region, account_id, settings.fanout_queue_name),
        connections=(lambda method: f"{api}/{method}/@connections/*") if api_id else None,
        # Chalice names the REST handler <app>-<stage>, with no suffix: its log group is that name.
        push_logs=[f"{groups}-*", groups, f"{groups}:*"],
    )


def _allow(sid: str, actions: tuple[str, ...], resource: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": resource}


def _policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _query_indexes(sid: str, arns: PolicyArns, name: str) -> dict[str, Any]:
    """Query on one index (``*``: any): what every kind that reads an index needs, and no more."""
    return _allow(sid, INDEX_ACTIONS, [arns.index(name)])


def _manage_connections(sid: str, arns: PolicyArns, *methods: str) -> list[dict[str, Any]]:
    """ManageConnections for these methods on this API's connections; none while there is no API."""
    if arns.connections is None:
        return []
    return [_allow(sid, ("execute-api:ManageConnections",), [arns.connections(method) for method in methods])]


def _enqueue(arns: PolicyArns) -> list[dict[str, Any]]:
    return [_allow("EnqueueFanout", ENQUEUE_ACTIONS, [arns.queue]),
            _allow("SizeBroadcast", SIZE_ACTIONS, [arns.table])]


def handler_policy(arns: PolicyArns) -> dict[str, Any]:
    """The stage's policy (``$default``, ``notify``...): the table and its indexes, enqueue, this API's connections."""
    return _policy(
        _allow("Logs", LOGS_ACTIONS, arns.logs),
        _allow("ConnectionsTable", DYNAMODB_ACTIONS, [arns.table, arns.index("*")]),
        *_enqueue(arns),
        *_manage_connections("ManageConnections", arns, "*"),
    )


def connection_policy(arns: PolicyArns) -> dict[str, Any]:
    """The $connect and $disconnect handlers' policy: their items in the table; and, for the presence
    topics a closing connection leaves, ``member_removed`` to the topic's subscribers (the topic index,
    POST, the queue for a large one). No other index, no GET or DELETE of connections."""
    return _policy(
        _allow("Logs", LOGS_ACTIONS, arns.logs),
        _allow("ConnectionItems", CONNECTION_TABLE_ACTIONS, [arns.table]),
        *_announce(arns),
    )


def _announce(arns: PolicyArns) -> list[dict[str, Any]]:
    """What announcing a presence change takes: the topic's subscribers, a POST each, or the queue."""
    return [_query_indexes("TopicIndex", arns, schema.BY_TOPIC_INDEX), *_enqueue(arns),
            *_manage_connections("Announce", arns, "POST")]


def push_policy(arns: PolicyArns) -> dict[str, Any]:
    """The REST handler's and the EventBridge handler's policy: read the table, post to this API, kick.

    They deliver back-end messages and kick users: their writes are the delete
    of a connection that answered 410 Gone (the broadcaster's clean-up) and a
    revocation item; POST (a push) and DELETE (a kick) on connections, no GET,
    and no ``events:PutEvents`` (publishing is the back-end services' business).
    """
    return _policy(
        _allow("Logs", LOGS_ACTIONS, arns.logs if arns.push_logs is None else arns.push_logs),
        _allow("ReadConnections", PUSH_TABLE_ACTIONS, [arns.table]),
        _query_indexes("QueryIndexes", arns, "*"),
        *_enqueue(arns),
        *_manage_connections("PostAndClose", arns, "POST", "DELETE"),
    )


def schedule_policy(arns: PolicyArns) -> dict[str, Any]:
    """The scheduled functions' policy (the token expiry sweep): the expiry index, warn and close.

    Query on the one index it reads (``schema.BY_TOKEN_EXPIRY_INDEX``), the
    table actions it makes (no PutItem, no Scan), and ``ManageConnections``
    for POST (the warning) and DELETE (the close) on this API's connections.
    """
    return _policy(
        _allow("Logs", LOGS_ACTIONS, arns.logs),
        _allow("ConnectionItems", SCHEDULE_TABLE_ACTIONS, [arns.table]),
        _query_indexes("ExpiryIndex", arns, schema.BY_TOKEN_EXPIRY_INDEX),
        *_manage_connections("WarnAndClose", arns, *SCHEDULE_CONNECTION_METHODS),
        _query_indexes("TopicIndex", arns, schema.BY_TOPIC_INDEX), *_enqueue(arns),  # presence: member_removed
    )


def worker_policy(arns: PolicyArns) -> dict[str, Any]:
    """The fan-out worker's policy: its queue (receive, delete), read slices, delete gone ones, POST."""
    return _policy(
        _allow("Logs", LOGS_ACTIONS, arns.logs),
        _allow("FanoutQueue", WORKER_QUEUE_ACTIONS, [arns.queue]),
        _allow("ReadSlices", WORKER_TABLE_ACTIONS, [arns.table]),
        _query_indexes("QueryIndexes", arns, "*"),
        *_manage_connections("PostToConnections", arns, "POST"),
    )


def authorizer_policy(arns: PolicyArns) -> dict[str, Any]:
    """The authorizer reads only the JWKS over HTTPS: logs, nothing else."""
    return _policy(_allow("Logs", LOGS_ACTIONS, arns.logs))


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


