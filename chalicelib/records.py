"""What is stored about a connection: its identity, where it came from, and how to reach it.

Pure dataclasses; ``items`` turns them into DynamoDB items and back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .identity import Identity


@dataclass(frozen=True)
class Endpoint:
    """Where a connection was made: the management API that reaches it is built from these."""

    domain: str = ""
    stage: str = ""
    api_id: str = ""


@dataclass(frozen=True)
class ConnectionRecord:
    """One open connection (its ``$connect``), as the connection store keeps it."""

    connection_id: str
    identity: Identity
    connected_at: int
    ttl: int
    endpoint: Endpoint = Endpoint()
    source_ip: str = ""
    user_agent: str = ""

    @property
    def user_id(self) -> str:
        return self.identity.sub

    @property
    def username(self) -> str:
        return self.identity.username

    @property
    def token_exp(self) -> int | None:
        """The token's ``exp``: puts the item in the expiry index. None: never swept."""
        return self.identity.expires_at

    def who(self) -> dict[str, str]:
        """The sender as peers see it (``from`` of a message)."""
        return {"userId": self.identity.sub, "username": self.identity.username}

    def describe(self) -> dict[str, Any]:
        """What the ``whoami`` action and an echo show the client about its own connection."""
        return {
            "connectionId": self.connection_id,
            "userId": self.identity.sub,
            "username": self.identity.username,
            "claims": self.identity.flat_claims(),
            "connectedAt": self.connected_at,
            "sourceIp": self.source_ip,
            "userAgent": self.user_agent,
            "clientParams": dict(self.identity.client_params),
            "tokenSource": self.identity.source,
        }


@dataclass(frozen=True)
class ExpiringConnection:
    """One entry of the expiry index: what the sweep needs to warn or close a connection."""

    connection_id: str
    token_exp: int
    warned_exp: int | None  # the ``exp`` the client was already warned about
    endpoint: Endpoint


__all__ = ["ConnectionRecord", "Endpoint", "ExpiringConnection"]
