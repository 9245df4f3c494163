"""The EventBridge contract for back-end pushes: the ``source`` and ``detail-type`` values.

Kept apart from chalicelib.push (which validates what the events carry) so
app.py can build its rule's pattern at import time without importing the
push validation: the authorizer Lambda imports app.py on every cold start.
"""
from __future__ import annotations

from typing import Final

# detail-type -> the audience (a chalicelib.push Kind) its detail names.
EVENT_DETAIL_TYPES: Final[dict[str, str]] = {"UserNotification": "user", "TopicMessage": "topic", "Broadcast": "all"}
# Not a push: closes a user's connections (chalicelib/kicks.py), ``{"userId"|"username": ..., "revoke": bool}``.
DISCONNECT_DETAIL_TYPE: Final = "Disconnect"


def event_source(app_name: str) -> str:
    """The ``source`` back-end services put on their push events: ``<app>.push``."""
    return f"{app_name}.push"


def event_pattern(app_name: str) -> dict[str, list[str]]:
    """The EventBridge rule's pattern: this app's push source, the three detail-types."""
    return {"source": [event_source(app_name)], "detail-type": [*EVENT_DETAIL_TYPES, DISCONNECT_DETAIL_TYPE]}
