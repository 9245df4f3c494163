"""The composition root: every store and service a handler uses, built from ``Settings``.

One ``Components`` per container (``runtime`` builds it on the first handler
that needs it). AWS clients come from one ``aws.Clients``, created lazily and
injected into the stores, the management API and the queue; the verifier is
the authorizer's, so the JWKS is fetched once per container.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Mapping

from .aws import Clients
from .connections import ConnectionStore
from .delivery import Delivery, FanoutQueue
from .expiries import TokenExpiries
from .expiry import SweepReport, sweep
from .management import Management
from .readers import AudienceReader
from .records import ConnectionRecord
from .settings import Settings
from .subscriptions import SubscriptionStore
from .history import HistoryStore
from .members import leaver
from .presence import PresenceStore
from .revocations import Revocations
from .table import Table
from .tombstones import Tombstones
from .verifier import CognitoJwtVerifier


class Components:
    def __init__(self, settings: Settings, verifier: CognitoJwtVerifier, *, clients: Clients | None = None,
                 region: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.verifier = verifier
        self.clients = clients or Clients()
        self.clock = clock
        table = Table(settings.connections_table, self.clients)
        self.connections = ConnectionStore(table)
        self.subscriptions = SubscriptionStore(table)
        self.expiries = TokenExpiries(table)
        self.audiences = AudienceReader(table)
        self.revocations = Revocations(table)
        self.tombstones = Tombstones(table)
        self.history = HistoryStore(table)
        self.management = Management(self.clients, self.connections.delete_many,
                                     region=region or os.environ.get("AWS_REGION"), override=settings.management_url)
        queue = FanoutQueue(settings.fanout_queue_url, self.clients) if settings.fanout_queue_url else None
        self.delivery = Delivery(settings, self.audiences, self.connections, self.management, queue)
        self.presence = PresenceStore(table)
        self.connections.on_left = leaver(lambda: settings.channel_rules, self.presence, lambda: self.delivery)

    def verify(self, token: str) -> Mapping[str, Any]:
        """The claims of a valid token (``refresh``), or ``Unauthorized``."""
        return self.verifier.verify(token)

    def sweep(self) -> SweepReport:
        """The scheduled expiry sweep (``expiry.sweep``)."""
        return sweep(self.settings, self.connections, self.expiries, self.management, self.clock)

    def connections_of(self, user_id: str) -> list[ConnectionRecord]:
        """The user's open connections, read through the user index (``GET /me``)."""
        records = (self.connections.get(i) for i in self.audiences.user_ids(user_id))
        return [record for record in records if record is not None]


__all__ = ["Components"]
