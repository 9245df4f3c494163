"""The browser client (dev only): a plain HTML + JavaScript page and what serves it.

``WebPage(config).routes()`` are aiohttp routes; ``make run`` mounts them on
the gateway's own origin (``http://127.0.0.1:8000`` / ``http://localhost:8000``),
``python -m devtools.web --stage dev`` serves them alone against a deployed
stage (``make web STAGE=dev``). The page reads everything it needs from
``GET /config.json``, written here from the running stack or the stage's
deployed resources; nothing is hard-coded in the page.

Routes:

* ``GET /`` and ``GET /callback`` (the hosted UI's redirect URI): the page;
  ``GET /web/<file>``: its script and style sheet.
* ``GET /config.json``: WebSocket URL, region, pool, app client, hosted UI
  domain, Cognito endpoint, timers.
* ``POST /_web/cognito`` (local only): the page's ``InitiateAuth`` calls,
  forwarded to the local Cognito (moto's server), so the page's origin is the
  only one it talks to; only ``InitiateAuth`` is forwarded.
* ``POST /_web/session`` / ``DELETE /_web/session`` (local only): cookie mode.
  Sets the http-only token cookie and the readable CSRF cookie from the
  ``Authorization: Bearer`` token it is given (or clears them); the page then
  connects with ``?csrf=<the CSRF cookie>``. It checks nothing: the gateway's
  authorizer verifies the token on the upgrade, as on AWS.
"""
from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

STATIC = Path(__file__).resolve().parent / "static"
INITIATE_AUTH = "AWSCognitoIdentityProviderService.InitiateAuth"
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
# Defaults of the page's timers, in seconds. API Gateway closes an idle
# connection after 10 minutes and any connection after 2 hours.
KEEPALIVE_SECONDS = 300
PLANNED_RECONNECT_SECONDS = 2 * 3600 - 5 * 60
REFRESH_MARGIN_SECONDS = 120

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self' ws: wss: https:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def page_config(*, ws_url: str, region: str, pool_id: str, client_id: str, stage: str,
                hosted_ui_domain: str | None = None, redirect_uri: str | None = None,
                cognito_endpoint: str | None = None, local: bool = False, demo: tuple[str, str] | None = None,
                token_cookie: str = "JWT", csrf_cookie: str = "CSRF-TOKEN", csrf_param: str = "csrf",
                **timers: Any) -> dict[str, Any]:
    """What ``/config.json`` answers. ``local``: sign-in with a password through the
    page's origin and cookie mode; otherwise the hosted UI, and Cognito's own endpoint. ``demo``:
    the local demo user and password, shown as the sign-in form's placeholders."""
    config: dict[str, Any] = {
        "stage": stage,
        "wsUrl": ws_url,
        "region": region,
        "userPoolId": pool_id,
        "clientId": client_id,
        "signIn": "password" if local else "hosted-ui",
        "cognitoEndpoint": "/_web/cognito" if local else (cognito_endpoint or f"https://cognito-idp.{region}.amazonaws.com/"),
        "hostedUiDomain": hosted_ui_domain,
        "redirectUri": redirect_uri,
        "cookieMode": local,
        "sessionEndpoint": "/_web/session" if local else None,
        "tokenCookie": token_cookie,
        "csrfCookie": csrf_cookie,
        "csrfParam": csrf_param,
        "keepaliveSeconds": KEEPALIVE_SECONDS,
        "plannedReconnectSeconds": PLANNED_RECONNECT_SECONDS,
        "refreshMarginSeconds": REFRESH_MARGIN_SECONDS,
        "backoffBaseMs": 500,
        "backoffCapMs": 30000,
    }
    if demo is not None:
        config["demoUser"], config["demoPassword"] = demo
    config.update(timers)
    return config


class WebPage:
    """The page's routes over a config (a dict, or a callable for one known only after start).

    ``same_host_ws``: the config's ``wsUrl`` is on this origin (``make run``): it
    is answered with the request's own host, so a page opened on
    ``localhost:8000`` connects to ``ws://localhost:8000/dev`` (its cookies go
    with it) and one on ``127.0.0.1:8000`` to ``ws://127.0.0.1:8000/dev``.
    ``cognito_endpoint``: where ``/_web/cognito`` forwards (the local Cognito).
    """

    def __init__(self, config: dict[str, Any] | Callable[[], dict[str, Any]], *,
                 cognito_endpoint: str | None = None, same_host_ws: bool = False) -> None:
        self._config = config
        self.cognito_endpoint = cognito_endpoint
        self.same_host_ws = same_host_ws

    def config(self, request: web.Request | None = None) -> dict[str, Any]:
        config = dict(self._config() if callable(self._config) else self._config)
        if self.same_host_ws and request is not None and config.get("wsUrl"):
            scheme, rest = config["wsUrl"].split("://", 1)
            path = rest.split("/", 1)[1] if "/" in rest else ""
            config["wsUrl"] = f"{scheme}://{request.host}/{path}"
        return config

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/", self.index),
            web.get("/callback", self.index),
            web.get("/config.json", self.config_json),
            web.get("/web/{name}", self.asset),
            web.post("/_web/cognito", self.cognito),
            web.post("/_web/session", self.session),
            web.delete("/_web/session", self.end_session),
        ]

    # ------------------------------------------------------------------ page
    @staticmethod
    def _headers() -> dict[str, str]:
        return {"Cache-Control": "no-store", "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer"}

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={**self._headers(), "Content-Type": "text/html"})

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        if "/" in name or name.startswith(".") or name == "index.html" or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers=self._headers())

    async def config_json(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.config(request), headers={"Cache-Control": "no-store"})

    # --------------------------------------------------------- local Cognito
    async def cognito(self, request: web.Request) -> web.StreamResponse:
        if not self.cognito_endpoint:
            raise web.HTTPNotFound()
        if request.headers.get("X-Amz-Target") != INITIATE_AUTH:
            return web.json_response({"__type": "InvalidAction", "message": "only InitiateAuth is forwarded"},
                                     status=400)
        body = await request.read()
        async with ClientSession(timeout=ClientTimeout(total=10)) as session:
            async with session.post(self.cognito_endpoint, data=body, headers={
                "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": INITIATE_AUTH,
                # moto reads the region from a signature; the call itself needs none.
                "Authorization": "AWS4-HMAC-SHA256 Credential=local/20260101/"
                                 f"{self.config().get('region', 'us-east-1')}/cognito-idp/aws4_request",
            }) as answer:
                payload = await answer.read()
                return web.Response(status=answer.status, body=payload, content_type="application/x-amz-json-1.1",
                                    headers={"Cache-Control": "no-store"})

    # ----------------------------------------------------------- cookie mode
    async def session(self, request: web.Request) -> web.StreamResponse:
        config = self.config(request)
        if not config.get("cookieMode"):
            raise web.HTTPNotFound()
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not _JWT.match(token):
            return web.json_response({"error": "send Authorization: Bearer <jwt>"}, status=400)
        csrf = secrets.token_urlsafe(24)
        response = web.json_response({"csrf": csrf}, headers={"Cache-Control": "no-store"})
        response.set_cookie(config["tokenCookie"], token, httponly=True, samesite="Strict", path="/")
        response.set_cookie(config["csrfCookie"], csrf, samesite="Strict", path="/")
        return response

    async def end_session(self, request: web.Request) -> web.StreamResponse:
        config = self.config(request)
        if not config.get("cookieMode"):
            raise web.HTTPNotFound()
        response = web.json_response({"ok": True})
        response.del_cookie(config["tokenCookie"], path="/")
        response.del_cookie(config["csrfCookie"], path="/")
        return response



def local_page(stage_env: dict[str, str], stage: str, pool: Any, ws_url: Callable[[], str],
               demo: tuple[str, str] | None = None, **timers: Any) -> WebPage:
    """The page for a local stack (``make run``, tests): password sign-in through the page's
    origin to the local Cognito ``pool`` (a ``devtools.cognito_local.LocalPool``), cookie mode
    on, the WebSocket URL read when asked (the gateway's port is known once it serves)."""
    def config() -> dict[str, Any]:
        return page_config(ws_url=ws_url(), region=pool.region, pool_id=pool.pool_id, client_id=pool.client_id,
                           stage=stage, local=True, demo=demo,
                           token_cookie=stage_env.get("TOKEN_COOKIE") or "JWT",
                           csrf_cookie=stage_env.get("CSRF_COOKIE") or "CSRF-TOKEN",
                           csrf_param=stage_env.get("CSRF_PARAM") or "csrf", **timers)

    return WebPage(config, cognito_endpoint=pool.endpoint_url, same_host_ws=True)
