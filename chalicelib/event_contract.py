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


# Cognito's own sign-outs, as CloudTrail hands them to EventBridge: the admin calls that end a user's
# sessions name the pool and the user (a user's own GlobalSignOut names neither: not here).
COGNITO_SIGNOUT_CALLS: Final = ("AdminUserGlobalSignOut", "AdminDisableUser", "AdminDeleteUser")


def cognito_signout_pattern() -> dict[str, object]:
    """The rule on CloudTrail's ``AWS API Call via CloudTrail`` events of those ``cognito-idp`` calls."""
    return {"source": ["aws.cognito-idp"], "detail-type": ["AWS API Call via CloudTrail"],
            "detail": {"eventSource": ["cognito-idp.amazonaws.com"], "eventName": list(COGNITO_SIGNOUT_CALLS)}}
