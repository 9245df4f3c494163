"""The scheduled sweep that keeps a connection from outliving its token.

API Gateway runs the authorizer only at ``$connect``; a Cognito access token
lives an hour, a WebSocket connection up to two. Each connection item holds
its token's ``exp`` in the sparse ``byTokenExpiry`` index (see
``schema.py``), and a scheduled Lambda (Chalice's ``@app.schedule``, every
minute) runs ``sweep``:

1. one Query per expiry shard: every connection whose ``exp`` is at or
   before now + ``TOKEN_EXPIRY_WARNING_SECONDS``;
2. a connection inside the warning window that was not warned about this
   ``exp`` gets ``{"type": "token_expiring", "expiresAt": exp}``, once: the
   warning is recorded first, by a conditional update (``mark_warned``), so
   overlapping sweeps cannot warn twice, and a refresh (a new ``exp``) re-arms it;
3. a connection whose ``exp`` (plus ``JWT_LEEWAY_SECONDS``, as the verifier
   allows) has passed is re-read consistently (the index may lag a refresh
   just written) and, if still expired, closed through the management API
   (``DELETE @connections/{id}``; API Gateway then runs ``$disconnect``), and
   its items deleted here too, so nothing lingers if that ``$disconnect`` is lost.

A client keeps its connection by sending ``{"action": "refresh", "token": ...}``
before then (``actions.refresh``). ``TOKEN_EXPIRY=ignore`` makes the sweep
do nothing. The close happens within one schedule period after ``exp``.
No boto3 here: the connection store and the management API are injected.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from .broadcaster import DELIVERED, GONE
from .logs import log_event
from .management import Management
from .protocol import outgoing
from .records import ExpiringConnection
from .settings import Settings

if TYPE_CHECKING:  # the stores import boto3; they are injected
    from .connections import ConnectionStore
    from .expiries import TokenExpiries

logger = logging.getLogger("ws.expiry")


@dataclass
class SweepReport:
    """What one sweep did, for its log line and the handler's return value."""

    skipped: bool = False
    candidates: int = 0
    warned: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, int | bool]:
        return {"skipped": self.skipped, "candidates": self.candidates, "warned": len(self.warned),
                "closed": len(self.closed), "gone": len(self.gone), "failed": len(self.failed)}


def warning_frame(token_exp: int) -> bytes:
    """The warning a client gets before its connection is closed (with a ``messageId``, like every frame)."""
    return outgoing({"type": "token_expiring", "expiresAt": token_exp})


def sweep(settings: Settings, connections: ConnectionStore, expiries: TokenExpiries, management: Management,
          clock: Callable[[], float] = time.time) -> SweepReport:
    """Warn, then close, the connections whose token expires; see the module docstring."""
    report = SweepReport()
    if settings.token_expiry != "close":
        report.skipped = True
        return report
    now = int(clock())
    leeway = settings.jwt_leeway
    deadline = max(now + settings.token_expiry_warning_seconds, now - leeway)
    entries = expiries.expiring_before(deadline)
    report.candidates = len(entries)
    for entry in entries:
        try:
            _act(settings, expiries, management, entry, now, report)
        except Exception as error:  # noqa: BLE001 - one connection's failure must not stop the sweep
            report.failed.append(entry.connection_id)
            log_event(logger, "handler_error", logging.ERROR, route="token_expiry",
                      connectionId=entry.connection_id, error=type(error).__name__)
    done = report.closed + report.gone
    if done:
        connections.delete_many(done)
    log_event(logger, "token_expiry_sweep", **report.to_dict())
    return report


def _act(settings: Settings, expiries: TokenExpiries, management: Management, entry: ExpiringConnection,
         now: int, report: SweepReport) -> None:
    broadcaster = management.broadcaster(management.endpoint(entry.endpoint))
    if entry.token_exp + settings.jwt_leeway <= now:
        current = expiries.token_expiry(entry.connection_id)  # consistent: a refresh may have just landed
        if current is None or current + settings.jwt_leeway > now:
            return
        outcome = broadcaster.disconnect(entry.connection_id)
        if outcome == DELIVERED:
            report.closed.append(entry.connection_id)
        elif outcome == GONE:
            report.gone.append(entry.connection_id)
        else:
            report.failed.append(entry.connection_id)
        log_event(logger, "token_expired", connectionId=entry.connection_id, exp=entry.token_exp, outcome=outcome)
        return
    if settings.token_expiry_warning_seconds and entry.warned_exp != entry.token_exp:
        if expiries.mark_warned(entry.connection_id, entry.token_exp):
            broadcaster.send(entry.connection_id, warning_frame(entry.token_exp))
            report.warned.append(entry.connection_id)


__all__ = ["SweepReport", "sweep", "warning_frame"]
