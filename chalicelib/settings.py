"""Settings: every knob comes from environment variables set per stage.

They are read and validated once per container (see ``get_settings``), so a
misconfigured stage fails on its first invocation with an error that names the
variable, instead of letting connections in with half a configuration.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping

from .channels import ChannelRules, RuleError

TOKEN_SOURCE_NAMES = ("header", "query", "protocol", "cookie")
# TOKEN_SOURCES unset: these, plus "cookie" when ALLOWED_ORIGINS is set (cookie
# auth needs an Origin allow-list, so a stage without one still loads).
DEFAULT_TOKEN_SOURCES = ("header", "query", "protocol")
TOKEN_USES = ("access", "id")
TOKEN_EXPIRY_MODES = ("close", "ignore")

_POOL_ID = re.compile(r"^(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)_[0-9A-Za-z]+$")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


class SettingsError(ValueError):
    """A configuration variable is missing or malformed."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


def issuer_url(region: str, pool_id: str) -> str:
    """The Cognito issuer (``iss``) of a user pool."""
    return f"https://cognito-idp.{region}.amazonaws.com/{pool_id}"


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one stage."""

    user_pool_ids: tuple[str, ...]
    issuers: Mapping[str, str]  # issuer -> JWKS URL
    app_client_ids: frozenset[str]
    token_uses: frozenset[str]
    required_groups: frozenset[str] = frozenset()
    required_scopes: frozenset[str] = frozenset()
    # Who may push over the REST routes (any-of); both empty: nobody (fail closed).
    push_groups: frozenset[str] = frozenset()
    push_scopes: frozenset[str] = frozenset()
    # Who may kick users over REST (POST /users/{userId}/disconnect); both empty: nobody.
    admin_groups: frozenset[str] = frozenset()
    admin_scopes: frozenset[str] = frozenset()
    token_sources: tuple[str, ...] = DEFAULT_TOKEN_SOURCES
    token_header: str = "authorization"
    token_query_params: tuple[str, ...] = ("access_token", "ID_Token")
    token_cookie: str = "JWT"
    csrf_cookie: str = "CSRF-TOKEN"
    csrf_param: str = "csrf"
    protocol_marker: str = "cognito-jwt"
    allowed_origins: frozenset[str] = frozenset()
    jwt_leeway: int = 0
    max_token_bytes: int = 8192
    jwks_timeout: float = 2.0
    jwks_cooldown: float = 60.0
    context_query_params: tuple[str, ...] = ()
    context_headers: tuple[str, ...] = ()
    context_claims: tuple[str, ...] = ()
    connections_table: str = ""
    management_url: str | None = None
    connection_ttl_seconds: int = 2 * 3600 + 15 * 60
    # Each subscription is one DynamoDB item written per subscribe: bounded per connection.
    max_subscriptions_per_connection: int = 100
    # Open connections one user may hold at once, enforced at $connect (429 past it); 0: no limit.
    max_connections_per_user: int = 20
    # Fan-out (see chalicelib/fanout.py): audiences over fanout_inline_max go
    # to the queue as work items; no queue URL: everything is posted inline.
    fanout_inline_max: int = 100
    fanout_queue_url: str | None = None
    fanout_segment_size: int = 1000  # connections per work item: a scan segment's aim, a topic page
    # API Gateway authorizes only at $connect, and a connection (2 h) outlives an
    # access token (1 h): "close" closes it once its token expired, unless the
    # client sent a fresh one ({"action": "refresh"}); "ignore" leaves it open.
    token_expiry: str = "close"
    # How long before that close the client gets {"type": "token_expiring"} (0: no warning).
    token_expiry_warning_seconds: int = 300
    # A CloudTrail sign-out of the pool (AdminUserGlobalSignOut...) closes the user's connections and revokes.
    close_on_cognito_signout: bool = False
    # The most messages one subscribe's replay sends (docs/history.md); a larger gap answers resumed: false.
    max_replay_messages: int = 1000
    # Members one presence topic may hold (Pusher's presence channels hold 100); one more: presence_full.
    max_presence_members: int = 100
    # Who may subscribe, publish and push to which topic (chalicelib/channels.py; docs/channels.md).
    channel_rules: ChannelRules = field(default_factory=ChannelRules.default)


def _csv(value: str | None) -> list[str]:
    if not value:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def _names(env: Mapping[str, str], var: str, default: str) -> tuple[str, ...]:
    names = _csv(env.get(var, default))
    for name in names:
        if not _NAME.match(name):
            raise SettingsError(var, f"{name!r} is not a valid name")
    return tuple(names)


def _single(env: Mapping[str, str], var: str, default: str) -> str:
    names = _names(env, var, default)
    if len(names) > 1:
        raise SettingsError(var, "takes one name")
    return names[0] if names else default


def _number(env: Mapping[str, str], var: str, default: float, *, low: float,
            high: float, integer: bool = False) -> float:
    raw = env.get(var)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise SettingsError(var, f"{raw!r} is not {kind}") from None
    if not low <= value <= high:
        raise SettingsError(var, f"{value} is outside {low}..{high}")
    return value


def _pools(env: Mapping[str, str]) -> tuple[tuple[str, ...], dict[str, str]]:
    pool_ids = tuple(_csv(env.get("COGNITO_USER_POOL_ID")))
    if not pool_ids:
        raise SettingsError("COGNITO_USER_POOL_ID", "required (one pool id, or several comma-separated)")
    region_override = (env.get("COGNITO_REGION") or "").strip()
    jwks_override = (env.get("COGNITO_JWKS_URL") or "").strip()
    jwks_overrides = _csv(jwks_override)
    if jwks_overrides and len(jwks_overrides) != len(pool_ids):
        raise SettingsError("COGNITO_JWKS_URL", "give one URL per pool in COGNITO_USER_POOL_ID, same order")
    issuers: dict[str, str] = {}
    for index, pool_id in enumerate(pool_ids):
        match = _POOL_ID.match(pool_id)
        if not match:
            raise SettingsError("COGNITO_USER_POOL_ID", f"{pool_id!r} is not a pool id like us-east-1_AbC123")
        region = region_override or match.group("region")
        issuer = issuer_url(region, pool_id)
        jwks = jwks_overrides[index] if jwks_overrides else f"{issuer}/.well-known/jwks.json"
        if not jwks.startswith(("https://", "http://")):
            raise SettingsError("COGNITO_JWKS_URL", f"{jwks!r} is not an http(s) URL")
        issuers[issuer] = jwks
    return pool_ids, issuers


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; raises SettingsError naming the variable."""
    env = os.environ if env is None else env
    pool_ids, issuers = _pools(env)

    client_ids = frozenset(_csv(env.get("COGNITO_APP_CLIENT_IDS")))
    if not client_ids:
        raise SettingsError("COGNITO_APP_CLIENT_IDS", "required (comma-separated app client ids)")

    token_uses = frozenset(_csv(env.get("COGNITO_TOKEN_USE", "access,id")))
    if not token_uses or not token_uses <= set(TOKEN_USES):
        raise SettingsError("COGNITO_TOKEN_USE", "must be 'access', 'id' or 'access,id'")

    origins = frozenset(o.rstrip("/") for o in _csv(env.get("ALLOWED_ORIGINS")))
    raw_sources = env.get("TOKEN_SOURCES")
    if raw_sources is None or raw_sources.strip() == "":
        sources = DEFAULT_TOKEN_SOURCES + (("cookie",) if origins else ())
    else:
        sources = tuple(s.lower() for s in _csv(raw_sources))
    unknown = [s for s in sources if s not in TOKEN_SOURCE_NAMES]
    if not sources or unknown or len(set(sources)) != len(sources):
        raise SettingsError("TOKEN_SOURCES", f"must be an ordered list of distinct {', '.join(TOKEN_SOURCE_NAMES)}")
    if "cookie" in sources and not origins:
        raise SettingsError("ALLOWED_ORIGINS", "required when TOKEN_SOURCES includes cookie "
                                               "(or remove cookie from TOKEN_SOURCES)")
    for origin in origins:
        if not re.match(r"^https?://[^/\s]+$", origin):
            raise SettingsError("ALLOWED_ORIGINS", f"{origin!r} is not an origin like https://app.example.com")

    table = (env.get("CONNECTIONS_TABLE") or "").strip()
    if not re.match(r"^[A-Za-z0-9_.\-]{3,255}$", table):
        raise SettingsError("CONNECTIONS_TABLE", "required: a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)")

    management_url = (env.get("WEBSOCKET_MANAGEMENT_URL") or "").strip().rstrip("/") or None
    if management_url and not management_url.startswith(("https://", "http://")):
        raise SettingsError("WEBSOCKET_MANAGEMENT_URL", f"{management_url!r} is not an http(s) URL")

    marker = (env.get("TOKEN_PROTOCOL_MARKER") or "cognito-jwt").strip()
    if not _NAME.match(marker):
        raise SettingsError("TOKEN_PROTOCOL_MARKER", f"{marker!r} is not a valid subprotocol name")

    token_expiry = (env.get("TOKEN_EXPIRY") or "close").strip().lower()
    if token_expiry not in TOKEN_EXPIRY_MODES:
        raise SettingsError("TOKEN_EXPIRY", f"must be one of {', '.join(TOKEN_EXPIRY_MODES)}")

    return Settings(
        user_pool_ids=pool_ids,
        issuers=issuers,
        app_client_ids=client_ids,
        token_uses=token_uses,
        required_groups=frozenset(_csv(env.get("REQUIRED_GROUPS"))),
        required_scopes=frozenset(_csv(env.get("REQUIRED_SCOPES"))),
        push_groups=frozenset(_csv(env.get("PUSH_GROUPS"))),
        push_scopes=frozenset(_csv(env.get("PUSH_SCOPES"))),
        admin_groups=frozenset(_csv(env.get("ADMIN_GROUPS"))),
        admin_scopes=frozenset(_csv(env.get("ADMIN_SCOPES"))),
        token_sources=sources,
        token_header=_single(env, "TOKEN_HEADER", "Authorization").lower(),
        token_query_params=_names(env, "TOKEN_QUERY_PARAMS", "access_token,ID_Token") or ("access_token",),
        token_cookie=_single(env, "TOKEN_COOKIE", "JWT"),
        csrf_cookie=_single(env, "CSRF_COOKIE", "CSRF-TOKEN"),
        csrf_param=_single(env, "CSRF_PARAM", "csrf"),
        protocol_marker=marker,
        allowed_origins=origins,
        jwt_leeway=int(_number(env, "JWT_LEEWAY_SECONDS", 0, low=0, high=300, integer=True)),
        max_token_bytes=int(_number(env, "MAX_TOKEN_BYTES", 8192, low=512, high=65536, integer=True)),
        jwks_timeout=_number(env, "JWKS_TIMEOUT_SECONDS", 2.0, low=0.1, high=10.0),
        jwks_cooldown=_number(env, "JWKS_REFRESH_COOLDOWN_SECONDS", 60.0, low=1.0, high=86400.0),
        context_query_params=_names(env, "CONTEXT_QUERY_PARAMS", ""),
        context_headers=tuple(h.lower() for h in _names(env, "CONTEXT_HEADERS", "")),
        context_claims=_names(env, "CONTEXT_CLAIMS", ""),
        connections_table=table,
        management_url=management_url,
        connection_ttl_seconds=int(_number(env, "CONNECTION_TTL_SECONDS", 2 * 3600 + 15 * 60,
                                           low=60, high=7 * 86400, integer=True)),
        max_subscriptions_per_connection=int(_number(env, "MAX_SUBSCRIPTIONS_PER_CONNECTION", 100,
                                                     low=1, high=10000, integer=True)),
        max_connections_per_user=int(_number(env, "MAX_CONNECTIONS_PER_USER", 20, low=0, high=100000,
                                             integer=True)),
        token_expiry=token_expiry,
        fanout_inline_max=int(_number(env, "FANOUT_INLINE_MAX", 100, low=0, high=100000, integer=True)),
        fanout_queue_url=_queue_url(env),
        fanout_segment_size=int(_number(env, "FANOUT_SEGMENT_SIZE", 1000, low=10, high=1000000, integer=True)),
        token_expiry_warning_seconds=int(_number(env, "TOKEN_EXPIRY_WARNING_SECONDS", 300,
                                                 low=0, high=3600, integer=True)),
        channel_rules=_channel_rules(env),
        max_replay_messages=int(_number(env, "MAX_REPLAY_MESSAGES", 1000, low=1, high=10000, integer=True)),
        max_presence_members=int(_number(env, "MAX_PRESENCE_MEMBERS", 100, low=1, high=10000, integer=True)),
        close_on_cognito_signout=_flag(env, "CLOSE_ON_COGNITO_SIGNOUT"),
    )


def _flag(env: Mapping[str, str], var: str) -> bool:
    value = (env.get(var) or "false").strip().lower()
    if value not in ("true", "false"):
        raise SettingsError(var, f"must be true or false, not {value!r}")
    return value == "true"


def _channel_rules(env: Mapping[str, str]) -> ChannelRules:
    try:
        return ChannelRules.parse(env.get("CHANNEL_RULES"))
    except RuleError as error:
        raise SettingsError("CHANNEL_RULES", str(error)) from None


def _queue_url(env: Mapping[str, str]) -> str | None:
    """``FANOUT_QUEUE_URL``: an SQS queue URL (``https://sqs.<region>.amazonaws.com/<account>/<name>``), or unset."""
    url = (env.get("FANOUT_QUEUE_URL") or "").strip()
    if not url:
        return None
    if not re.match(r"^https?://[^/\s]+/[0-9A-Za-z_-]+/[0-9A-Za-z_-]{1,80}$", url):
        raise SettingsError("FANOUT_QUEUE_URL", f"{url!r} is not an SQS queue URL like "
                                                "https://sqs.us-east-1.amazonaws.com/123456789012/name")
    return url


def queue_name(url: str | None, default: str) -> str:
    """The queue's name, the last part of its URL (what ``@app.on_sqs_message(queue=...)`` takes)."""
    return url.rstrip("/").rsplit("/", 1)[-1] if url else default
