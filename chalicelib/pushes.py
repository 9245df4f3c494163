"""Back-end pushes: one delivery path for ``notify``, the REST routes and EventBridge.

A ``push.Push`` is validated, its frame encoded (with its ``messageId``; over
128 KB is refused, as API Gateway would) before anything is read or sent, then
handed to ``delivery``. ``notify`` is the Lambda-invoke transport's one mapping
of ``AppError``: ``{"ok": false, "error": {...}}``, never a Lambda error.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping

from .errors import classify
from .logs import log_event, log_failure
from .protocol import now_ms, outgoing
from .audience import Topic
from .channels import check_push
from .history import numbered
from .push import Push, user_push, validate_push

if TYPE_CHECKING:
    from .components import Components
    from .identity import Identity
    from .delivery import PushResult

logger = logging.getLogger("ws.service")

NotifyResult = dict[str, Any]  # notify's JSON answer


def push(message: Push, app: Components, caller: Identity | None = None) -> PushResult:
    """Deliver one back-end message to its audience; raises AppError for bad input.

    A topic must match a channel rule whose ``push`` allows back-ends (``forbidden`` otherwise);
    ``caller``: the REST caller, whom a rule's ``push`` may narrow to groups or scopes.
    """
    validate_push(message)
    audience = message.audience
    if isinstance(audience, Topic):
        check_push(app.settings.channel_rules, audience.name, caller)
    frame: bytes | dict[str, object] = {**audience.frame(message.data), "timestamp": now_ms()}
    if isinstance(audience, Topic):  # a history topic numbers and keeps it (docs/history.md)
        frame = numbered(frame, audience.name, app.settings.channel_rules.history_seconds(audience.name), app.history)
    else:
        frame = outgoing(frame)
    result = app.delivery.deliver(audience, frame)
    log_event(logger, "push", connectionId=None, audience=audience.kind, target=audience.target, **result.counts())
    return result


def notify(payload: Mapping[str, Any], app: Components) -> NotifyResult:
    """Deliver ``data`` to every connection of one user (by sub or username); always notify's shape.

    Bad input answers its code; a dependency that is down ``unavailable``
    (retry later); anything else ``internal_error``, with one log line.
    """
    try:
        if isinstance(payload, Mapping) and "disconnect" in payload:
            return _disconnect(payload, app)
        result = push(user_push(payload), app)
    except Exception as error:  # noqa: BLE001 - the caller gets the documented shape
        failure = classify(error)
        if failure is not error:
            log_failure(logger, "notify", None, error)
        return {"ok": False, "error": failure.to_dict()}
    return {"ok": True, **result.counts()}


def _disconnect(payload: Mapping[str, Any], app: Components) -> NotifyResult:
    """``{"userId"|"username": ..., "disconnect": true, "revoke": bool}``: a kick instead of a push."""
    from .errors import AppError, ErrorCode
    from .kicks import kick, kick_request

    if payload["disconnect"] is not True:
        raise AppError(ErrorCode.BAD_REQUEST, "'disconnect' must be true (or absent, for a push)")
    return kick(kick_request({k: v for k, v in payload.items() if k != "disconnect"}, what="notify's disconnect"),
                app)


__all__ = ["NotifyResult", "notify", "push"]
