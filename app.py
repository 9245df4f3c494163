"""The Chalice app: wiring only. Logic lives in chalicelib/.

Lambdas: ``ws_authorizer`` (the WebSocket API's REQUEST authorizer), the
``$connect``/``$default``/``$disconnect`` handlers, and ``notify`` for other
back-end services; ``eventbridge_push``, the target of an EventBridge rule on
``<app>.push`` events, delivers the same way. Importing this module must stay
cheap and must not import boto3: the authorizer Lambda imports it on every
cold start.

The REST API (``rest_authorizer``, a TOKEN authorizer on the same verifier;
``GET /me`` and the push routes, served by Chalice's ``api_handler``) is for
back-end services over HTTPS and for quick checks with ``chalice local``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice import Chalice
from chalice.app import AuthRequest, AuthResponse, CloudWatchEvent, Rate, SQSEvent, WebsocketEvent
from chalice.app import Response as RestResponse

from chalicelib import runtime
from chalicelib.event_contract import cognito_signout_pattern, event_pattern
from chalicelib.ws_request import WsRequest

if TYPE_CHECKING:  # names only: the authorizer's cold start imports nothing it does not run
    from chalicelib.authorizer import Policy
    from chalicelib.messages import Response
    from chalicelib.push_events import PushEventResult
    from chalicelib.pushes import NotifyResult

app = Chalice(app_name="ws-cognito")
# Chalice 1.x still gates deploying/packaging WebSocket handlers behind this flag.
app.experimental_feature_flags.update(["WEBSOCKETS"])


@app.lambda_function(name="ws_authorizer")
def ws_authorizer(event: dict[str, Any], context: object) -> Policy:
    """REQUEST authorizer: raises Exception('Unauthorized') (401), or returns a Deny/Allow policy."""
    return runtime.authorize(event)


@app.on_ws_connect()
def connect(event: WebsocketEvent) -> Response:
    return runtime.on_connect(WsRequest.from_event(event.to_dict()))


@app.on_ws_message()
def message(event: WebsocketEvent) -> Response:
    """Chalice registers only $default, so the app dispatches on the frame's ``action`` (chalicelib/actions.py)."""
    return runtime.on_message(WsRequest.from_event(event.to_dict()))


@app.on_ws_disconnect()
def disconnect(event: WebsocketEvent) -> Response:
    return runtime.on_disconnect(WsRequest.from_event(event.to_dict()))


# -- REST API: the same verifier and settings; pushes need PUSH_GROUPS / PUSH_SCOPES --------


# ttl_seconds=0: API Gateway calls the authorizer on every request, so a token's
# expiry is honoured to the second (a cached Allow would outlive it).
@app.authorizer(ttl_seconds=0, header="Authorization")
def rest_authorizer(auth_request: AuthRequest) -> AuthResponse | Policy:
    """TOKEN authorizer: raises 'Unauthorized' (401), or a Deny (403), or the routes allowed."""
    return runtime.rest_authorize(auth_request)


@app.route("/me", methods=["GET"], authorizer=rest_authorizer)
def me() -> RestResponse:
    """The verified identity and the caller's own open WebSocket connections."""
    return runtime.rest_me(app.current_request)


@app.route("/users/{userId}/messages", methods=["POST"], authorizer=rest_authorizer)
def push_to_user(userId: str) -> RestResponse:  # noqa: N803 (Chalice passes the path parameter by name)
    """``{"data": ...}`` to every connection of one user (by sub, or ``?by=username``)."""
    return runtime.rest_push(app.current_request, "user", userId)


@app.route("/topics/{topic}/messages", methods=["POST"], authorizer=rest_authorizer)
def push_to_topic(topic: str) -> RestResponse:
    """``{"data": ...}`` to the topic's subscribers."""
    return runtime.rest_push(app.current_request, "topic", topic)


@app.route("/topics/{topic}/members", methods=["GET"], authorizer=rest_authorizer)
def topic_members(topic: str) -> RestResponse:
    """A presence topic's members, for a caller who may subscribe to it."""
    return runtime.rest_members(app.current_request, topic)


@app.route("/users/{userId}/disconnect", methods=["POST"], authorizer=rest_authorizer)
def disconnect_user(userId: str) -> RestResponse:  # noqa: N803 (Chalice passes the path parameter by name)
    """Close every connection of one user (``ADMIN_GROUPS``/``ADMIN_SCOPES``); ``{"revoke": true}``: and refuse
    their tokens issued before now."""
    return runtime.rest_disconnect(app.current_request, userId)


@app.route("/messages", methods=["POST"], authorizer=rest_authorizer)
def push_to_all() -> RestResponse:
    """``{"data": ...}`` to every connection."""
    return runtime.rest_push(app.current_request, "all")


@app.lambda_function(name="notify")
def notify(event: dict[str, Any], context: object) -> NotifyResult:
    """``{"userId"|"username": ..., "data": ...}`` -> pushed to all that user's connections."""
    return runtime.notify(event)


@app.schedule(Rate(1, unit=Rate.MINUTES), name="token_expiry")
def token_expiry(event: CloudWatchEvent) -> dict[str, int | bool]:
    """Every minute: warn, then close, connections whose token expired (API Gateway authorizes only at $connect).

    TOKEN_EXPIRY=ignore turns it into a no-op; {"action": "refresh"} keeps a connection open.
    """
    return runtime.expire_tokens(event.to_dict())


# Fan-out beyond one Lambda (chalicelib/fanout.py): one work item per invocation
# (Chalice has no ReportBatchItemFailures, so a failure stays that item's);
# at most FANOUT_WORKER_CONCURRENCY workers at once (the SQS event source's
# MaximumConcurrency): the account's @connections quota, not Lambda, is the
# limit beyond it (bench/README.md, "Fan-out model").
FANOUT_WORKER_CONCURRENCY = 20


@app.on_sqs_message(queue=runtime.fanout_queue_name(app.app_name), batch_size=1,
                    maximum_concurrency=FANOUT_WORKER_CONCURRENCY, name="fanout_worker")
def fanout_worker(event: SQSEvent) -> dict[str, Any]:
    """Post one queued work item (a scan segment, a topic page or a user) to its connections."""
    return runtime.fanout_work(event.to_dict())


@app.on_cw_event(event_pattern(app.app_name), name="eventbridge_push")
def eventbridge_push(event: CloudWatchEvent) -> PushEventResult:
    """EventBridge ``<app>.push`` events (UserNotification, TopicMessage, Broadcast): notify's delivery.

    Bad detail is logged and dropped, never raised: Lambda would retry it.
    """
    return runtime.push_event(event.to_dict())


@app.on_cw_event(cognito_signout_pattern(), name="cognito_signout")
def cognito_signout(event: CloudWatchEvent) -> PushEventResult:
    """Cognito's AdminUserGlobalSignOut, AdminDisableUser and AdminDeleteUser, through CloudTrail: with
    ``CLOSE_ON_COGNITO_SIGNOUT=true``, the user's connections are closed and their tokens revoked."""
    return runtime.cognito_signout(event.to_dict())
