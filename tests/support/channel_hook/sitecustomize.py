"""A channel hook registered in the local stack's own process, as an app's ``app.py`` would register one
(``tests/test_channels_e2e.py`` starts a stack with this folder on ``PYTHONPATH``).

Members of ``rooms/<room>`` are the users whose username starts with ``member-``; ``rooms/broken`` raises
and ``rooms/slow`` outlasts the hook's time limit: both must refuse.
"""
import time

from chalicelib import channels


@channels.authorizer
def can_join(identity, topic, action):  # type: ignore[no-untyped-def]
    if topic == "rooms/broken":
        raise RuntimeError("the membership table is down")
    if topic == "rooms/slow":
        time.sleep(3)
        return True
    return identity.username.startswith("member-")
