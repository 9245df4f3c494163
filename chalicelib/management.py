"""The management API (``@connections``) of each endpoint a connection came through.

One ``Broadcaster`` per endpoint for the container's life (replies and inline
fan-out, standard retries), and one for fan-out workers (adaptive retries);
their clients come from ``aws.Clients``. Gone connections a broadcast finds are
deleted from the connection store.
"""
from __future__ import annotations

import re
import threading
from typing import Any, Callable, Protocol

from .broadcaster import Broadcaster
from .records import Endpoint

_EXECUTE_API = re.compile(
    r"^[a-z0-9]+\.execute-api\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$", re.IGNORECASE)


class ManagementClients(Protocol):
    def management(self, endpoint_url: str) -> Any: ...
    def worker_management(self, endpoint_url: str) -> Any: ...


def management_endpoint(domain_name: str, stage: str, api_id: str | None = None,
                        region: str | None = None, override: str | None = None) -> str:
    """The management API URL for connections made through ``domain_name``/``stage``.

    A custom domain cannot be used: its base-path mapping (which may hide or
    rename the stage) is not in the event, so the API's own execute-api host is
    built from the api id and region instead.
    """
    if override:
        return override.rstrip("/")
    domain = (domain_name or "").strip().rstrip(".").lower()
    stage = (stage or "").strip().strip("/")
    if not stage:
        raise ValueError("cannot build the management endpoint: the event has no stage")
    if _EXECUTE_API.match(domain):
        return f"https://{domain}/{stage}"
    if api_id and region:
        suffix = ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"
        return f"https://{api_id}.execute-api.{region}{suffix}/{stage}"
    raise ValueError(
        f"cannot build the management endpoint for domain {domain_name!r}: it is not an "
        "execute-api domain and the api id or region is missing; set WEBSOCKET_MANAGEMENT_URL")


class Management:
    """Broadcasters by endpoint, built once each."""

    def __init__(self, clients: ManagementClients, on_gone: Callable[[list[str]], object], *,
                 region: str | None = None, override: str | None = None) -> None:
        self._clients = clients
        self._on_gone = on_gone
        self.region = region
        self.override = override
        self._made: dict[tuple[bool, str], Broadcaster] = {}
        self._lock = threading.Lock()

    def endpoint(self, where: Endpoint) -> str:
        """The management URL of connections made at ``where`` (``WEBSOCKET_MANAGEMENT_URL`` wins)."""
        return management_endpoint(where.domain, where.stage, api_id=where.api_id or None, region=self.region,
                                   override=self.override)

    def broadcaster(self, endpoint: str) -> Broadcaster:
        """Replies and inline fan-out: botocore's standard retries, never after a post may have landed."""
        return self._get(False, endpoint)

    def worker_broadcaster(self, endpoint: str) -> Broadcaster:
        """The fan-out worker's posts: adaptive retries (``aws.worker_management_client``)."""
        return self._get(True, endpoint)

    def _get(self, worker: bool, endpoint: str) -> Broadcaster:
        key = (worker, endpoint)
        made = self._made.get(key)
        if made is None:
            with self._lock:
                made = self._made.get(key)
                if made is None:
                    client = (self._clients.worker_management if worker else self._clients.management)(endpoint)
                    made = self._made[key] = Broadcaster(client, on_gone=self._on_gone)
        return made


__all__ = ["Management", "management_endpoint"]
