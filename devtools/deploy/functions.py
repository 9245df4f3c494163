"""The app's Lambda functions as Chalice deploys them, sorted by the IAM policy each gets.

Chalice, with ``autogen_policy: false``, gives every function its own role
with the stage's ``iam_policy_file`` unless ``lambda_functions.<name>``
names another file. Least privilege needs three policies:

- ``authorizers`` (``ws_authorizer`` and every ``@app.authorizer``): logs only;
  they read the JWKS over HTTPS and nothing in AWS.
- ``pushers`` (Chalice's REST ``api_handler`` and every ``on_cw_event``
  handler): read the connections table and its indexes, post to this
  WebSocket API's connections; they store nothing.
- ``schedules`` (every ``@app.schedule`` function: the token expiry sweep):
  Query the expiry index, read and update connection items and delete the
  expired ones, post the warning to and close (``DELETE``) this API's
  connections; nothing else.
- ``workers`` (every ``on_sqs_message`` handler: the fan-out worker): receive
  and delete on the fan-out queue, read the table (scan segments, index
  pages), delete gone connections, post to this API's connections.
- ``connectors`` (the ``$connect`` and ``$disconnect`` handlers): the table
  only (store a connection, delete it with its subscriptions); they post
  nothing and enqueue nothing.
- ``handlers`` (``$default``, ``notify`` and anything else): the stage's
  policy, which also writes subscriptions, posts to connections and may
  enqueue a fan-out.

Read from the app itself (Chalice's own registries), so a renamed or added
authorizer, route or rule gets the right policy without a list kept by hand.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chalice.app import Chalice, CloudWatchEventConfig, ScheduledEventConfig, SQSEventConfig
from chalice.utils import to_cfn_resource_name

API_HANDLER = "api_handler"  # Chalice's name for the one Lambda behind every REST route
WS_AUTHORIZER = "ws_authorizer"
# Chalice's function names for the WebSocket routes (its deployer names them, not the app).
WEBSOCKET_FUNCTIONS = {"$connect": "websocket_connect", "$default": "websocket_message",
                       "$disconnect": "websocket_disconnect"}


@dataclass(frozen=True)
class AppFunctions:
    """Chalice resource names (``lambda_functions`` keys; ``<app>-<stage>-<name>`` on Lambda)."""

    authorizers: tuple[str, ...]
    pushers: tuple[str, ...]
    handlers: tuple[str, ...]
    rest_api: bool
    event_rules: tuple[str, ...]  # the on_cw_event handlers, each with its own EventBridge rule
    schedules: tuple[str, ...] = ()  # the @app.schedule functions, each with its own scheduled rule
    workers: tuple[str, ...] = ()  # the on_sqs_message handlers (the fan-out worker)
    connectors: tuple[str, ...] = ()  # the $connect and $disconnect handlers

    @property
    def all(self) -> tuple[str, ...]:
        return self.authorizers + self.pushers + self.schedules + self.workers + self.connectors + self.handlers


def classify(app: Chalice) -> AppFunctions:
    """Sort the app's functions by the policy each gets (see the module docstring)."""
    pure = [function.name for function in app.pure_lambda_functions]
    websocket = [WEBSOCKET_FUNCTIONS[key] for key in WEBSOCKET_FUNCTIONS if key in app.websocket_handlers]
    rules = [source.name for source in app.event_sources if isinstance(source, CloudWatchEventConfig)]
    schedules = [source.name for source in app.event_sources if isinstance(source, ScheduledEventConfig)]
    workers = [source.name for source in app.event_sources if isinstance(source, SQSEventConfig)]
    other_sources = [source.name for source in app.event_sources
                     if not isinstance(source, (CloudWatchEventConfig, ScheduledEventConfig, SQSEventConfig))]
    authorizers = [name for name in pure if name == WS_AUTHORIZER]
    authorizers += [handler.name for handler in app.builtin_auth_handlers]
    pushers = ([API_HANDLER] if app.routes else []) + rules
    connectors = [WEBSOCKET_FUNCTIONS[key] for key in ("$connect", "$disconnect") if key in app.websocket_handlers]
    handlers = [name for name in pure + websocket + other_sources
                if name not in authorizers and name not in pushers and name not in connectors]
    return AppFunctions(authorizers=tuple(authorizers), pushers=tuple(pushers), handlers=tuple(handlers),
                        rest_api=bool(app.routes), event_rules=tuple(rules), schedules=tuple(schedules),
                        workers=tuple(workers), connectors=tuple(connectors))


def load(project_dir: Path) -> AppFunctions:
    """Import the project's ``app.py`` (as Chalice does when it deploys) and classify it."""
    from devtools.gateway.appload import load_app

    _, app = load_app(str(project_dir))
    return classify(app)


def function_logical_id(name: str) -> str:
    """The function's logical id in ``chalice package``'s template (``api_handler`` is ``APIHandler``)."""
    return "APIHandler" if name == API_HANDLER else to_cfn_resource_name(name)


def sqs_event_logical_id(name: str) -> str:
    """The SAM ``SQS`` event of an ``on_sqs_message`` function (Chalice's ``<name>-sqs-event-source``)."""
    return to_cfn_resource_name(f"{name}-sqs-event-source")


def role_logical_id(name: str) -> str:
    """Its role's logical id (Chalice names it from ``<name>_role``: ``ApiHandlerRole``, ``WsAuthorizerRole``)."""
    return to_cfn_resource_name(f"{name}_role")
