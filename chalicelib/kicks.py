"""Kick: close every connection of one user from a back-end; with ``revoke``, refuse their older tokens too.

Three entry points share this: ``POST /users/{userId}/disconnect`` (callers in
``ADMIN_GROUPS``/``ADMIN_SCOPES``), an EventBridge ``Disconnect`` event, and
``notify`` with ``"disconnect": true``. The revocation is written first, so a
client reconnecting while its connections are being closed is already refused.
Each connection is closed through ``DELETE @connections/{id}`` (API Gateway then
runs its ``$disconnect``); one already gone is removed from the store.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from .audience import User
from .broadcaster import DELIVERED, GONE
from .errors import AppError, ErrorCode
from .logs import log_event
from .validation import check_id

if TYPE_CHECKING:
    from .components import Components

logger = logging.getLogger("ws.kick")
KickResult = dict[str, Any]


@dataclass(frozen=True)
class Kick:
    user: User
    revoke: bool = False


def kick_request(payload: Mapping[str, object], *, allowed: tuple[str, ...] = ("userId", "username", "revoke"),
                 what: str = "a disconnect") -> Kick:
    """``{"userId"|"username": ..., "revoke": bool}``: exactly one names the user; nothing else is allowed."""
    unknown = sorted(set(payload) - set(allowed))
    if unknown:
        raise AppError(ErrorCode.BAD_REQUEST, f"{what} does not take {', '.join(map(repr, unknown))}")
    user_id, username = payload.get("userId"), payload.get("username")
    if (user_id is None) == (username is None):
        raise AppError(ErrorCode.BAD_REQUEST, f"{what} names the user with exactly one of 'userId' or 'username'")
    revoke = payload.get("revoke", False)
    if not isinstance(revoke, bool):
        raise AppError(ErrorCode.BAD_REQUEST, "'revoke' must be true or false")
    if user_id is not None:
        return Kick(User(check_id(user_id, "'userId'", ErrorCode.BAD_REQUEST), "sub"), revoke)
    return Kick(User(check_id(username, "'username'", ErrorCode.BAD_REQUEST), "username"), revoke)


def kick(request: Kick, app: Components) -> KickResult:
    """Revoke (if asked), then close every connection of the user; how many were closed."""
    user = request.user
    if request.revoke:
        app.revocations.revoke(user_id=user.name if user.by == "sub" else None,
                               username=user.name if user.by == "username" else None)
    ids = list(user.ids(app.audiences))
    closed: list[str] = []
    gone: list[str] = []
    failed = 0
    for connection_id in ids:
        record = app.connections.get(connection_id)
        if record is None:
            continue  # its $disconnect ran meanwhile
        outcome = app.management.broadcaster(app.management.endpoint(record.endpoint)).disconnect(connection_id)
        if outcome == DELIVERED:
            closed.append(connection_id)
        elif outcome == GONE:
            gone.append(connection_id)
        else:
            failed += 1
    if gone:
        app.connections.delete_many(gone)
    log_event(logger, "kick", connectionId=None, by=user.by, revoked=request.revoke, closed=len(closed),
              gone=len(gone), failed=failed)
    return {"ok": True, "connections": len(ids), "closed": len(closed), "gone": len(gone), "failed": failed,
            "revoked": request.revoke}


def signout_kick(detail: object, pool_ids: tuple[str, ...]) -> Kick | None:
    """The kick a CloudTrail ``cognito-idp`` sign-out event asks for (revoked), or None when it is for another
    pool. Cognito may hide ``username`` (``HIDDEN_DUE_TO_SECURITY_REASONS``); ``additionalEventData.sub``,
    when present, names the user instead. ``bad_request`` when neither names one."""
    parameters = detail.get("requestParameters") if isinstance(detail, Mapping) else None
    if not isinstance(detail, Mapping) or not isinstance(parameters, Mapping):
        raise AppError(ErrorCode.BAD_REQUEST, "the event has no requestParameters")
    pool = parameters.get("userPoolId")
    if not isinstance(pool, str):
        raise AppError(ErrorCode.BAD_REQUEST, "the event does not name the userPoolId")
    if pool not in pool_ids:
        return None
    extra = detail.get("additionalEventData")
    sub = extra.get("sub") if isinstance(extra, Mapping) else None
    if isinstance(sub, str) and sub:
        return Kick(User(check_id(sub, "'sub'", ErrorCode.BAD_REQUEST), "sub"), revoke=True)
    username = parameters.get("username")
    if isinstance(username, str) and username and not username.startswith("HIDDEN_"):
        return Kick(User(check_id(username, "'username'", ErrorCode.BAD_REQUEST), "username"), revoke=True)
    raise AppError(ErrorCode.BAD_REQUEST, "the event names no user (no additionalEventData.sub, username hidden)")


__all__ = ["Kick", "KickResult", "kick", "kick_request", "signout_kick"]
