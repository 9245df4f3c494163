"""Builders shared by the tests: the app's settings and API Gateway events.

Settings
    ``SETTINGS_ENV`` is a complete, valid stage environment (one pool, one app
    client, one table, cookie auth allowed from ``ORIGIN``). ``settings_env``
    copies an environment with changes (None removes a variable) and
    ``settings`` loads it as the app does. ``chalice_config`` and
    ``stage_environment`` read the real stages of ``.chalice/config.json``.

Events
    ``request_event`` is the REQUEST authorizer input API Gateway sends on
    ``$connect``, built by ``devtools.gateway.events`` (the shapes the local
    gateway sends too). ``cookie_headers`` are a browser's upgrade headers
    for cookie auth.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chalicelib.settings import Settings, load_settings
from devtools.gateway.events import Api, ClientInfo, PairsLike, authorizer_event

ROOT = Path(__file__).resolve().parents[2]

# -- settings -----------------------------------------------------------------------

ORIGIN = "https://app.example.com"
SETTINGS_ENV: Mapping[str, str] = {
    "COGNITO_USER_POOL_ID": "us-east-1_Pool1",
    "COGNITO_APP_CLIENT_IDS": "c",
    "CONNECTIONS_TABLE": "tbl",
    "ALLOWED_ORIGINS": ORIGIN,
}


def settings_env(base: Mapping[str, str] = SETTINGS_ENV, /, **changes: str | None) -> dict[str, str]:
    """``base`` (by default ``SETTINGS_ENV``) with ``changes``; a None value removes the variable."""
    merged = {**base, **changes}
    return {name: value for name, value in merged.items() if value is not None}


def settings(**changes: str | None) -> Settings:
    """The app's settings loaded from ``SETTINGS_ENV`` with ``changes``."""
    return load_settings(settings_env(**changes))


def chalice_config() -> dict[str, Any]:
    """The project's ``.chalice/config.json``."""
    config: dict[str, Any] = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return config


def stage_environment(stage: str) -> dict[str, str]:
    """A stage's ``environment_variables`` in .chalice/config.json, global then stage's, as Chalice merges them."""
    config = chalice_config()
    return {**config.get("environment_variables", {}), **config["stages"][stage].get("environment_variables", {})}


# -- API Gateway events -------------------------------------------------------------

API = Api(api_id="abcdef1234")


def request_event(headers: PairsLike | None = None, query: PairsLike | None = None, *, api: Api = API,
                  **client: Any) -> dict[str, Any]:
    """The REQUEST authorizer input for an upgrade request with these headers and query.

    ``headers`` and ``query`` are mappings or (name, value) pairs; a repeated
    name keeps its last value in the single-value form and all of them in the
    multi-value form, as API Gateway does. ``client`` are further ``ClientInfo``
    fields (``connection_id``, ``source_ip``, ...).
    """
    return authorizer_event(api, ClientInfo(headers=headers or (), query=query or (), **client))


def cookie_headers(cookie: str, origin: str = ORIGIN, protocol: str | None = None) -> dict[str, str]:
    """A browser's upgrade headers for cookie auth: ``Cookie``, ``Origin`` and, if given, subprotocols."""
    headers = {"Cookie": cookie, "Origin": origin}
    if protocol:
        headers["Sec-WebSocket-Protocol"] = protocol
    return headers
