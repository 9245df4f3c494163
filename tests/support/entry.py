"""The runtime's entry points, called as app.py calls them, on components built for one test.

``Entry.build`` wires ``Components`` the way ``runtime`` does, with the test's
own DynamoDB (and SQS) clients; the management clients are the runtime's own.
"""
from __future__ import annotations

from typing import Any, Mapping

from chalicelib import messages, pushes
from chalicelib.aws import Clients
from chalicelib.components import Components
from chalicelib.delivery import PushResult
from chalicelib.expiry import SweepReport
from chalicelib.push import Push
from chalicelib.settings import Settings
from chalicelib.ws_request import WsRequest


class ClientsOn(Clients):
    """The runtime's clients, with this DynamoDB client (and SQS client, if given)."""

    def __init__(self, dynamodb: Any, sqs: Any = None) -> None:
        super().__init__()
        self._dynamodb, self._sqs = dynamodb, sqs

    @property
    def dynamodb(self) -> Any:
        return self._dynamodb

    @property
    def sqs(self) -> Any:
        return self._sqs if self._sqs is not None else super().sqs


class Entry:
    def __init__(self, app: Components) -> None:
        self.app = app

    @classmethod
    def build(cls, settings: Settings, dynamodb: Any, sqs: Any = None, verifier: Any = None,
              clock: Any = None) -> Entry:
        extra = {"clock": clock} if clock is not None else {}
        return cls(Components(settings, verifier, clients=ClientsOn(dynamodb, sqs), **extra))

    def on_connect(self, event: Mapping[str, Any]) -> Any:
        return messages.on_connect(WsRequest.from_event(event), self.app)

    def on_message(self, event: Mapping[str, Any]) -> Any:
        return messages.on_message(WsRequest.from_event(event), self.app)

    def on_disconnect(self, event: Mapping[str, Any]) -> Any:
        return messages.on_disconnect(WsRequest.from_event(event), self.app)

    def notify(self, payload: Mapping[str, Any]) -> Any:
        return pushes.notify(payload, self.app)

    def push(self, message: Push) -> PushResult:
        return pushes.push(message, self.app)

    def run_work_item(self, body: str) -> dict[str, Any]:
        return self.app.delivery.run_work_item(body)

    def sweep(self) -> SweepReport:
        return self.app.sweep()

    def close(self) -> None:
        """Stop the broadcasters' threads."""
        for broadcaster in self.app.management._made.values():
            broadcaster.close()
