"""Presence announcements: ``member_added`` and ``member_removed`` to a presence topic's other subscribers.

A join or leave through ``subscribe``/``unsubscribe`` announces itself; every
other way a connection goes (``$disconnect``, the expiry sweep's close, a kick,
a 410 found by a broadcast) ends in ``ConnectionStore.delete``, whose ``on_left``
hook is ``leaver`` here. A failure to announce is logged, never raised: the
connection is gone either way.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from .audience import Topic
from .logs import log_event
from .protocol import outgoing

if TYPE_CHECKING:
    from .channels import ChannelRules
    from .delivery import Delivery
    from .presence import PresenceStore

logger = logging.getLogger("ws.presence")


def announce(delivery: Delivery, topic: str, kind: str, member: dict[str, str], exclude: tuple[str, ...] = ()) -> None:
    delivery.deliver(Topic(topic, exclude=exclude), outgoing({"type": kind, "topic": topic, "member": member}))


def leaver(rules: Callable[[], ChannelRules], presence: PresenceStore,
           delivery: Callable[[], Delivery]) -> Callable[[str, str, list[str]], None]:
    """The connection store's ``on_left``: the user leaves each presence topic the connection held."""
    def on_left(user_id: str, connection_id: str, topics: list[str]) -> None:
        for topic in topics:
            try:
                if not rules().is_presence(topic):
                    continue
                member = presence.leave(topic, user_id)
                if member is not None:
                    announce(delivery(), topic, "member_removed", member)
            except Exception as error:  # noqa: BLE001 - one line; the connection is gone either way
                log_event(logger, "presence_leave_failed", logging.WARNING, connectionId=connection_id,
                          error=type(error).__name__)
    return on_left


__all__ = ["announce", "leaver"]
