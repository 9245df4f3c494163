"""Per-container wiring: the objects app.py's handlers use, built once, lazily.

Lambda reuses a container for many invocations, so settings, the verifier (and
its JWKS cache), the repository and the broadcasters live here for the life of
the process. The authorizer path touches only settings and the verifier, so
it never imports boto3; the DynamoDB and management clients are created on the
first handler that needs them.
"""
from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Mapping

from . import authorizer as _authorizer
from .logs import configure as _configure_logs
from .settings import Settings, get_settings, queue_name, reset_settings
from .verifier import CognitoJwtVerifier

if TYPE_CHECKING:  # the authorizer path must not import these (boto3 behind them)
    from chalice.app import AuthRequest, AuthResponse, Request
    from chalice.app import Response as RestResponse

    from .expiry import SweepReport
    from .push_events import PushEventResult
    from .service import ConnectionService

_configure_logs(os.environ.get("LOG_LEVEL"))

_lock = threading.Lock()
_verifier: CognitoJwtVerifier | None = None
_service: ConnectionService | None = None
deny_hook: _authorizer.DenyHook | None = None


def settings() -> Settings:
    return get_settings()


def verifier() -> CognitoJwtVerifier:
    global _verifier
    with _lock:
        if _verifier is None:
            s = settings()
            _verifier = CognitoJwtVerifier(
                issuers=s.issuers,
                client_ids=s.app_client_ids,
                token_uses=s.token_uses,
                leeway=s.jwt_leeway,
                max_token_bytes=s.max_token_bytes,
                jwks_timeout=s.jwks_timeout,
                jwks_cooldown=s.jwks_cooldown,
            )
        return _verifier


def authorize(event: _authorizer.Event) -> _authorizer.Policy:
    """The ws_authorizer Lambda's answer for one upgrade request."""
    return _authorizer.authorize(event, settings(), verifier(), deny_hook)


def rest_authorize(request: AuthRequest) -> AuthResponse | _authorizer.Policy:
    """The REST API's TOKEN authorizer: the same settings and verifier as ws_authorizer.

    ``rest`` is imported here, not at the top: ws_authorizer's cold start never runs it.
    """
    from . import rest

    return rest.authorize(request, settings, verifier)


def rest_me(request: Request) -> RestResponse:
    """``GET /me``."""
    from . import rest

    return rest.me(request, service())


def rest_push(request: Request, kind: str, target: str = "") -> RestResponse:
    """A REST push route (``kind``: user, topic or all), through ``ConnectionService.push``."""
    from . import rest

    return rest.push(request, service(), kind, target)


def service() -> ConnectionService:
    """The ConnectionService, with a real DynamoDB and management API behind it."""
    global _service
    with _lock:
        if _service is None:
            _service = _build_service(settings())
        return _service


def push_event(event: Mapping[str, Any]) -> PushEventResult:
    """The EventBridge handler's answer for one push event (bad detail logged and dropped)."""
    from .push_events import handle

    return handle(event, service().push)


def expire_tokens(event: Mapping[str, Any]) -> dict[str, int | bool]:
    """The schedule's answer: warn, then close, connections whose token expires (``expiry.sweep``).

    The scheduled event carries nothing the sweep needs (the time is read
    from the clock), so it is accepted whatever its shape.
    """
    report: SweepReport = service().sweep_expired_tokens()
    return report.to_dict()


def fanout_queue_name(app_name: str) -> str:
    """The fan-out queue's name for ``@app.on_sqs_message``: from ``FANOUT_QUEUE_URL``, else ``<app>-fanout``.

    Read from the environment when app.py is imported: Chalice imports it with
    the stage's ``environment_variables`` set, so the event source mapping it
    deploys names the stage's own queue. Nothing else is read or validated here
    (the authorizer's cold start imports app.py too).
    """
    return queue_name(os.environ.get("FANOUT_QUEUE_URL", "").strip() or None, f"{app_name}-fanout")


def fanout_work(event: Mapping[str, Any]) -> dict[str, Any]:
    """The fan-out worker's answer for one SQS event (batch size 1: one work item).

    A work item that fails raises (``service.FanoutItemFailed``): Lambda leaves
    the message on the queue for redelivery. Chalice registers no
    ``ReportBatchItemFailures`` response type, so partial batch answers are
    not used; one item per invocation keeps a failure to that one item.
    """
    results = [service().run_work_item(str(record.get("body") or "")) for record in event.get("Records") or []]
    return {"items": len(results), "results": results}


def _build_service(s: Settings) -> ConnectionService:
    from . import aws
    from .broadcaster import Broadcaster
    from .repository import ConnectionRepository
    from .service import ConnectionService

    repository = ConnectionRepository(s.connections_table)

    def cached(client_for: Callable[[str], Any]) -> Callable[[str], Broadcaster]:
        """One broadcaster per endpoint for the container's life, on ``client_for(endpoint)``."""
        made: dict[str, Broadcaster] = {}

        def broadcaster_for(endpoint: str) -> Broadcaster:
            if endpoint not in made:
                made[endpoint] = Broadcaster(client_for(endpoint), on_gone=repository.delete_connections)
            return made[endpoint]

        return broadcaster_for

    def endpoint_for(domain: str, stage: str, api_id: str) -> str:
        return aws.management_endpoint(domain, stage, api_id=api_id or None,
                                       region=os.environ.get("AWS_REGION"), override=s.management_url)

    def verify(token: str) -> dict[str, Any]:
        # Looked up per call, not here: _lock is held while the service is built.
        return verifier().verify(token)

    queue = None
    if s.fanout_queue_url:
        from .fanout_queue import FanoutQueue

        queue = FanoutQueue(s.fanout_queue_url)

    return ConnectionService(s, repository, cached(aws.management_client), endpoint_for, verify=verify,
                             fanout_queue=queue, worker_broadcaster_for=cached(aws.worker_management_client))


def reset() -> None:
    """Forget everything built (tests change the environment between cases)."""
    global _verifier, _service
    with _lock:
        _verifier = None
        _service = None
    reset_settings()
