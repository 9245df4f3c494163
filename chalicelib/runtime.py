"""The container's runtime: settings, the verifier and the components, each built once, on first use.

Each handler runs under its time budget (``deadline``): about 3 s for a frame's
or a REST answer, 5 s for ``$connect``, the sweep's and the worker's inside
their Lambda timeout.

Lambda reuses a container for many invocations, so these live for the life of
the process. The authorizer path touches only the settings and the verifier,
so it never imports boto3; ``components`` (stores, management API, queue) and
the modules behind them are imported on the first handler that needs them.
``app.py``'s handlers call the functions below; tests build a fresh
``Runtime`` with ``rebuild()`` after changing the environment.
"""
from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Mapping

from . import authorizer as _authorizer
from . import deadline
from .logs import configure as _configure_logs
from .settings import Settings, load_settings, queue_name
from .verifier import CognitoJwtVerifier

if TYPE_CHECKING:  # the authorizer path must not import these (boto3 behind them)
    from chalice.app import AuthRequest, AuthResponse, Request
    from chalice.app import Response as RestResponse

    from .components import Components
    from .messages import Response
    from .push_events import PushEventResult
    from .pushes import NotifyResult
    from .ws_request import WsRequest

_configure_logs(os.environ.get("LOG_LEVEL"))


class Runtime:
    """Settings from the environment, the verifier on them, and the components on both."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = env
        self._lock = threading.Lock()
        self._settings: Settings | None = None
        self._verifier: CognitoJwtVerifier | None = None
        self._components: Components | None = None
        self.deny_hook: _authorizer.DenyHook | None = None

    @property
    def settings(self) -> Settings:
        """Read and validated once; a bad stage fails every invocation with an error naming the variable."""
        if self._settings is None:
            self._settings = load_settings(self._env)
        return self._settings

    @property
    def verifier(self) -> CognitoJwtVerifier:
        with self._lock:
            if self._verifier is None:
                s = self.settings
                self._verifier = CognitoJwtVerifier(
                    issuers=s.issuers, client_ids=s.app_client_ids, token_uses=s.token_uses, leeway=s.jwt_leeway,
                    max_token_bytes=s.max_token_bytes, jwks_timeout=s.jwks_timeout, jwks_cooldown=s.jwks_cooldown)
            return self._verifier

    @property
    def components(self) -> Components:
        if self._components is None:
            from .components import Components

            verifier = self.verifier
            with self._lock:
                if self._components is None:
                    self._components = Components(self.settings, verifier)
        return self._components


_current = Runtime()


def current() -> Runtime:
    return _current


def rebuild(env: Mapping[str, str] | None = None) -> Runtime:
    """A fresh runtime (tests change the environment between cases)."""
    global _current
    _current = Runtime(env)
    return _current


# -- what app.py's handlers call ------------------------------------------------------


def authorize(event: _authorizer.Event) -> _authorizer.Policy:
    """The ws_authorizer Lambda's answer for one upgrade request."""
    run = _current
    return _authorizer.authorize(event, run.settings, run.verifier, run.deny_hook)


def rest_authorize(request: AuthRequest) -> AuthResponse | _authorizer.Policy:
    """The REST API's TOKEN authorizer; ``rest`` is imported here, off ws_authorizer's cold start."""
    from . import rest

    run = _current
    return rest.authorize(request, lambda: run.settings, lambda: run.verifier)


def on_connect(request: WsRequest) -> Response:
    from . import messages

    with deadline.within(deadline.CONNECT):
        return messages.on_connect(request, _current.components)


def on_message(request: WsRequest) -> Response:
    from . import messages

    with deadline.within(deadline.FRAME):
        return messages.on_message(request, _current.components)


def on_disconnect(request: WsRequest) -> Response:
    from . import messages

    with deadline.within(deadline.CONNECT):
        return messages.on_disconnect(request, _current.components)


def notify(payload: Mapping[str, Any]) -> NotifyResult:
    from . import pushes

    with deadline.within(deadline.FRAME):
        return pushes.notify(payload, _current.components)


def rest_me(request: Request) -> RestResponse:
    from . import rest

    with deadline.within(deadline.FRAME):
        return rest.me(request, _current.components)


def rest_push(request: Request, kind: str, target: str = "") -> RestResponse:
    """A REST push route (``kind``: user, topic or all)."""
    from . import rest

    with deadline.within(deadline.FRAME):
        return rest.push(request, _current.components, kind, target)


def cognito_signout(event: Mapping[str, Any]) -> PushEventResult:
    """A CloudTrail sign-out event of the stage's pool: the user's connections closed, their tokens revoked."""
    from .kicks import kick
    from .push_events import handle_signout

    components = _current.components
    settings = components.settings
    with deadline.within(deadline.FRAME):
        return handle_signout(event, settings.close_on_cognito_signout, settings.user_pool_ids,
                              lambda request: kick(request, components))


def rest_members(request: Request, topic: str) -> RestResponse:
    """``GET /topics/{topic}/members``."""
    from . import rest

    with deadline.within(deadline.FRAME):
        return rest.members(request, _current.components, topic)


def rest_disconnect(request: Request, user: str) -> RestResponse:
    """``POST /users/{userId}/disconnect``: a kick by an admin."""
    from . import rest

    with deadline.within(deadline.FRAME):
        return rest.disconnect(request, _current.components, user)


def push_event(event: Mapping[str, Any]) -> PushEventResult:
    """The EventBridge handler's answer for one push event (bad detail logged and dropped)."""
    from . import pushes
    from .kicks import kick
    from .push_events import handle

    components = _current.components
    with deadline.within(deadline.FRAME):
        return handle(event, lambda message: pushes.push(message, components),
                      lambda request: kick(request, components))


def expire_tokens(event: Mapping[str, Any]) -> dict[str, int | bool]:
    """The schedule's answer (``expiry.sweep``); the event carries nothing the sweep needs."""
    with deadline.within(deadline.SWEEP):
        return _current.components.sweep().to_dict()


def fanout_work(event: Mapping[str, Any]) -> dict[str, Any]:
    """The fan-out worker's answer for one SQS event (batch size 1: one work item).

    A work item that fails raises (``delivery.FanoutItemFailed``): Lambda
    leaves the message on the queue for redelivery. Chalice registers no
    ``ReportBatchItemFailures`` response type, so one item per invocation
    keeps a failure to that one item.
    """
    delivery = _current.components.delivery
    with deadline.within(deadline.WORKER):
        results = [delivery.run_work_item(str(record.get("body") or "")) for record in event.get("Records") or []]
    return {"items": len(results), "results": results}


def fanout_queue_name(app_name: str) -> str:
    """The fan-out queue's name for ``@app.on_sqs_message``: from ``FANOUT_QUEUE_URL``, else ``<app>-fanout``.

    Read from the environment when app.py is imported: Chalice imports it with
    the stage's ``environment_variables`` set, so the event source mapping it
    deploys names the stage's own queue. Nothing else is read or validated here.
    """
    return queue_name(os.environ.get("FANOUT_QUEUE_URL", "").strip() or None, f"{app_name}-fanout")
