"""Lambda events exactly as API Gateway builds them for a WebSocket API.

Plain functions over two small records (``Api``: which API/stage, and
``ClientInfo``: what one client sent on its upgrade request) so that tests
elsewhere can build realistic events without running the gateway::

    api = Api(stage="dev")
    client = ClientInfo(headers={"Authorization": "Bearer x"}, query=[("token", "t")])
    authorizer_event(api, client)      # REQUEST authorizer input
    connect_event(api, client)         # $connect (CONNECT)
    message_event(api, client, '{"action": "ping"}')
    disconnect_event(api, client, 1000, "bye")

Shapes follow the API Gateway developer guide (REQUEST authorizer input for
WebSocket APIs) and real Lambda proxy events for CONNECT/MESSAGE/DISCONNECT.
Known, deliberate choices where AWS is loosely documented:

* ``queryStringParameters``/``multiValueQueryStringParameters`` are ``null``
  in the $connect event when the URL has no query, and ``{}`` in the
  authorizer event (as the REST REQUEST authorizer does).
* ``requestContext.authorizer`` is ``{**context, "principalId": ...}`` and is
  repeated on every MESSAGE/DISCONNECT of that connection, as AWS does.
* Single-value ``headers``/``queryStringParameters`` keep the *last* value of
  a repeated name; the multi-value forms keep all, in order.
"""
from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Union

DEFAULT_API_ID = "localwsapi"
DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"

Pairs = Sequence[tuple[str, str]]
PairsLike = Union[Mapping[str, str], Iterable[tuple[str, str]]]


def now_ms() -> int:
    return int(time.time() * 1000)


def _aws_id(nbytes: int) -> str:
    """Base64 of random bytes, like API Gateway ids, minus '+' and '/'.

    Real ids can contain them, but a '/' would need escaping in the
    ``@connections/{id}`` path; rejecting those draws keeps ids URL-safe
    while staying the same length and alphabet otherwise.
    """
    while True:
        text = base64.b64encode(os.urandom(nbytes)).decode("ascii")
        if "+" not in text and "/" not in text:
            return text


def new_connection_id() -> str:
    """16 characters, e.g. ``L0SM9cOFvHcCIhw=``, as API Gateway issues them."""
    return _aws_id(11)


def new_request_id() -> str:
    """Same format as connection ids; used for requestId/extendedRequestId/messageId."""
    return _aws_id(11)


def request_time(epoch_ms: int) -> str:
    """API Gateway's ``requestTime`` format: ``09/Feb/2024:18:11:43 +0000``."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc)
    return moment.strftime("%d/%b/%Y:%H:%M:%S +0000")


def iso8601(epoch_ms: int) -> str:
    """Management API timestamps: ``2024-02-09T18:11:43.419Z``."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def _pairs(value: PairsLike | None) -> list[tuple[str, str]]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [(str(k), str(v)) for k, v in value.items()]
    return [(str(k), str(v)) for k, v in value]


def _single(pairs: Pairs) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, value in pairs:
        result[name] = value
    return result


def _multi(pairs: Pairs) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for name, value in pairs:
        result.setdefault(name, []).append(value)
    return result


@dataclass(frozen=True)
class Api:
    """Which WebSocket API and stage an event claims to come from."""

    api_id: str = DEFAULT_API_ID
    stage: str = "dev"
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    domain_name: str | None = None
    stage_variables: Mapping[str, str] | None = None

    @property
    def domain(self) -> str:
        """The host clients connect to; AWS's execute-api host unless overridden."""
        if self.domain_name:
            return self.domain_name
        return f"{self.api_id}.execute-api.{self.region}.amazonaws.com"

    def method_arn(self, route_key: str = "$connect") -> str:
        return (
            f"arn:aws:execute-api:{self.region}:{self.account_id}:"
            f"{self.api_id}/{self.stage}/{route_key}"
        )


@dataclass
class ClientInfo:
    """One client's connection, as seen on its upgrade request.

    ``headers`` and ``query`` keep the request's order and repeats (pairs);
    a mapping is accepted for convenience. ``authorizer`` is what the
    authorizer granted (``{**context, "principalId": ...}``), or None.
    """

    headers: PairsLike = ()
    query: PairsLike = ()
    source_ip: str = "127.0.0.1"
    connection_id: str = field(default_factory=new_connection_id)
    connected_at_ms: int = field(default_factory=now_ms)
    authorizer: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.headers = _pairs(self.headers)
        self.query = _pairs(self.query)

    @property
    def user_agent(self) -> str | None:
        found = None
        for name, value in self.headers:  # type: ignore[misc]
            if name.lower() == "user-agent":
                found = value
        return found


def _request_context(
    api: Api,
    client: ClientInfo,
    *,
    route_key: str,
    event_type: str,
    at_ms: int,
    identity: dict[str, Any],
) -> dict[str, Any]:
    request_id = new_request_id()
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": request_time(at_ms),
        "messageDirection": "IN",
        "stage": api.stage,
        "connectedAt": client.connected_at_ms,
        "requestTimeEpoch": at_ms,
        "identity": identity,
        "requestId": request_id,
        "domainName": api.domain,
        "connectionId": client.connection_id,
        "apiId": api.api_id,
    }


def _identity(client: ClientInfo, *, with_user_agent: bool) -> dict[str, Any]:
    identity: dict[str, Any] = {"sourceIp": client.source_ip}
    if with_user_agent:
        identity["userAgent"] = client.user_agent
    return identity


def authorizer_event(api: Api, client: ClientInfo, *, at_ms: int | None = None) -> dict[str, Any]:
    """Input of the REQUEST authorizer on ``$connect`` (no ``authorizer`` key yet)."""
    at = now_ms() if at_ms is None else at_ms
    headers: Pairs = client.headers  # type: ignore[assignment]
    query: Pairs = client.query  # type: ignore[assignment]
    return {
        "type": "REQUEST",
        "methodArn": api.method_arn("$connect"),
        "headers": _single(headers),
        "multiValueHeaders": _multi(headers),
        "queryStringParameters": _single(query),
        "multiValueQueryStringParameters": _multi(query),
        "stageVariables": dict(api.stage_variables or {}),
        "requestContext": _request_context(
            api,
            client,
            route_key="$connect",
            event_type="CONNECT",
            at_ms=at,
            identity=_identity(client, with_user_agent=False),
        ),
    }


def _with_authorizer(context: dict[str, Any], client: ClientInfo) -> dict[str, Any]:
    if client.authorizer is not None:
        context["authorizer"] = dict(client.authorizer)
    return context


def connect_event(api: Api, client: ClientInfo, *, at_ms: int | None = None) -> dict[str, Any]:
    """``$connect`` proxy event: the upgrade request's headers and query."""
    at = now_ms() if at_ms is None else at_ms
    headers: Pairs = client.headers  # type: ignore[assignment]
    query: Pairs = client.query  # type: ignore[assignment]
    context = _request_context(
        api,
        client,
        route_key="$connect",
        event_type="CONNECT",
        at_ms=at,
        identity=_identity(client, with_user_agent=True),
    )
    return {
        "headers": _single(headers),
        "multiValueHeaders": _multi(headers),
        "queryStringParameters": _single(query) if query else None,
        "multiValueQueryStringParameters": _multi(query) if query else None,
        "requestContext": _with_authorizer(context, client),
        "isBase64Encoded": False,
    }


def message_event(
    api: Api,
    client: ClientInfo,
    body: str | bytes,
    *,
    route_key: str = "$default",
    at_ms: int | None = None,
) -> dict[str, Any]:
    """MESSAGE proxy event; a binary frame arrives base64-encoded."""
    at = now_ms() if at_ms is None else at_ms
    context = _request_context(
        api,
        client,
        route_key=route_key,
        event_type="MESSAGE",
        at_ms=at,
        identity=_identity(client, with_user_agent=False),
    )
    context["messageId"] = new_request_id()
    if isinstance(body, bytes):
        text, encoded = base64.b64encode(body).decode("ascii"), True
    else:
        text, encoded = body, False
    return {
        "requestContext": _with_authorizer(context, client),
        "body": text,
        "isBase64Encoded": encoded,
    }


def disconnect_event(
    api: Api,
    client: ClientInfo,
    status_code: int,
    reason: str,
    *,
    at_ms: int | None = None,
) -> dict[str, Any]:
    """DISCONNECT proxy event, with AWS's placeholder headers."""
    at = now_ms() if at_ms is None else at_ms
    headers = {"Host": api.domain, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    context = _request_context(
        api,
        client,
        route_key="$disconnect",
        event_type="DISCONNECT",
        at_ms=at,
        identity=_identity(client, with_user_agent=True),
    )
    context["disconnectStatusCode"] = status_code
    context["disconnectReason"] = reason
    return {
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "requestContext": _with_authorizer(context, client),
        "isBase64Encoded": False,
    }


def eventbridge_event(*, source: str, detail_type: str, detail: dict[str, Any], account: str, region: str,
                      resources: list[str], time: str | None = None) -> dict[str, Any]:
    """The event EventBridge delivers to a rule's target (an ``on_cw_event`` or a schedule).

    ``time`` as EventBridge writes it (``2024-02-09T18:11:43Z``); now when not given.
    """
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": account,
        "time": time or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": resources,
        "detail": detail,
    }
