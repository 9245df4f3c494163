"""The EventBridge rule's handler: one ``<app>.push`` event, one push.

EventBridge invokes the Lambda asynchronously, and Lambda retries an
invocation that raised (twice, then drops it or hands it to a dead-letter
target). Bad input fails the same way on every try, so it must never raise:
it is logged with its reason and dropped, having sent nothing (EventBridge's
one mapping of ``AppError``). A failure of DynamoDB (reading the audience)
does raise: it happens before any post is sent, so Lambda's retry can only
help and never delivers twice. Posts that fail are counted in the delivery
report, not raised: a retry would repeat the posts that succeeded. Pure: the
delivery itself is injected (``pushes.push``).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .errors import AppError, ErrorCode
from .event_contract import DISCONNECT_DETAIL_TYPE
from .kicks import Kick, KickResult, kick_request, signout_kick
from .logs import log_event
from .push import Push, event_push

if TYPE_CHECKING:  # types only: this module must not pull the stores (boto3) in
    from .delivery import PushResult

logger = logging.getLogger("ws.events")

PushEventResult = dict[str, Any]  # the handler's answer (EventBridge ignores it; tests and logs read it)
_RETRYABLE = (ErrorCode.UNAVAILABLE, ErrorCode.INTERNAL_ERROR)


def handle(event: Mapping[str, Any], deliver: Callable[[Push], PushResult],
           disconnect: Callable[[Kick], KickResult] | None = None) -> PushEventResult:
    """Read the event's detail-type + detail into a Push and deliver it (a ``Disconnect``: a kick); bad input
    is dropped."""
    event_id = str(event.get("id") or "")
    detail_type = event.get("detail-type")
    detail = event.get("detail")
    if detail_type == DISCONNECT_DETAIL_TYPE and disconnect is not None:
        return _kick(event_id, detail, disconnect)
    try:
        push = event_push(detail_type, detail)
        result = deliver(push)
    except AppError as error:
        if error.code in _RETRYABLE:
            raise
        log_event(logger, "push_event_dropped", logging.WARNING, reason=error.code.value, message=error.message,
                  eventId=event_id, source=str(event.get("source") or ""), detailType=str(detail_type or ""))
        return {"ok": False, "error": error.to_dict()}
    counts = result.counts()  # per-connection counts, or {"queued": items} for a queued fan-out
    log_event(logger, "push_event", eventId=event_id, detailType=str(detail_type), audience=push.audience.kind,
              **counts)
    return {"ok": True, **counts}


def _kick(event_id: str, detail: object, disconnect: Callable[[Kick], KickResult]) -> PushEventResult:
    try:
        if not isinstance(detail, Mapping):
            raise AppError(ErrorCode.BAD_REQUEST, "detail must be a JSON object")
        result = disconnect(kick_request(detail, what=f"a {DISCONNECT_DETAIL_TYPE} detail"))
    except AppError as error:
        if error.code in _RETRYABLE:
            raise
        log_event(logger, "push_event_dropped", logging.WARNING, reason=error.code.value, message=error.message,
                  eventId=event_id, detailType=DISCONNECT_DETAIL_TYPE)
        return {"ok": False, "error": error.to_dict()}
    return result


def handle_signout(event: Mapping[str, Any], enabled: bool, pool_ids: tuple[str, ...],
                   disconnect: Callable[[Kick], KickResult]) -> PushEventResult:
    """A CloudTrail ``cognito-idp`` sign-out (``event_contract.cognito_signout_pattern``): with
    ``CLOSE_ON_COGNITO_SIGNOUT`` on and the stage's pool, the user is kicked and revoked; else ignored."""
    event_id = str(event.get("id") or "")
    detail = event.get("detail")
    call = str(detail.get("eventName") or "") if isinstance(detail, Mapping) else ""
    try:
        request = signout_kick(detail, pool_ids)
    except AppError as error:
        log_event(logger, "push_event_dropped", logging.WARNING, reason=error.code.value, message=error.message,
                  eventId=event_id, detailType=call)
        return {"ok": False, "error": error.to_dict()}
    if request is None or not enabled:
        reason = "another_pool" if request is None else "close_on_cognito_signout_off"
        log_event(logger, "cognito_signout_ignored", eventId=event_id, call=call, reason=reason)
        return {"ok": True, "ignored": reason}
    result = disconnect(request)
    log_event(logger, "cognito_signout", eventId=event_id, call=call, closed=result.get("closed"))
    return result
