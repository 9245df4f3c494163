"""Local emulator of API Gateway's WebSocket API for any Chalice app (dev only).

``chalice local`` serves REST routes only; this serves a Chalice app's
``on_ws_*`` handlers the way API Gateway invokes them on AWS, so the same
code runs unchanged in both places:

* ``ws://<host>:<port>/<stage>``: the upgrade request goes through the app's
  REQUEST authorizer (``Unauthorized`` -> 401, Deny -> 403, failure -> 500,
  all before the upgrade), then ``$connect`` (non-2xx refuses; its
  ``Sec-WebSocket-Protocol`` answer header selects the subprotocol).
* Frames are routed on ``$request.body.action`` over the app's route keys,
  else ``$default``; handlers run in a thread pool, in order per connection.
  ``$disconnect`` runs after every close.
* ``POST|GET|DELETE /<stage>/@connections/<id>`` on the same port, with API
  Gateway's answers (410 Gone, 413 over 128 KB...), so a boto3
  ``apigatewaymanagementapi`` client works against ``WEBSOCKET_MANAGEMENT_URL``
  (set for the app to ``http://<host>:<port>/<stage>`` unless already set).
* Lambda's ``Invoke`` (``lambda_api``) for the app's pure functions, and
  EventBridge's ``PutEvents`` (``eventbridge_api``: ``POST /`` with
  ``X-Amz-Target: AWSEvents.PutEvents``) for its ``on_cw_event`` rules, so
  boto3 ``lambda``/``events`` clients and the AWS CLI work with
  ``--endpoint-url http://<host>:<port>``.
* Limits (``Limits``): 128 KB messages (1009 close), 10-minute idle and
  2-hour lifetime (1001 close), all configurable. One bad client slows
  nobody: a write to a client that is not reading may wait 10 s, then the
  connection is dropped (1006, ``$disconnect``, 410 after); each connection's
  outgoing queue holds 1 MiB (a POST over it answers 429
  ``LimitExceededException``) and its incoming queue 1,000 messages / 8 MiB
  (over it: close 1013); frames queued when a connection closes are dropped;
  the authorizer and ``$connect`` run on their own thread pool; upgrade
  headers over 10,240 bytes get a 431 that echoes nothing.
* One log line per CONNECT/MESSAGE/DISCONNECT/management request:
  ``127.0.0.1 CONNECT $connect L0SM9cOFvHcCIhw= 200 3.1ms``. No headers or
  query strings are logged (they carry tokens).

Command line (foreground)::

    python -m devtools.gateway --project-dir . --stage dev --port 8000

Programmatic::

    from devtools.gateway import LocalGateway, Limits, run_in_thread

    gateway = LocalGateway(".", stage="dev", port=0, limits=Limits(idle_timeout=5))
    await gateway.start(); ...; await gateway.stop()       # inside a running loop

    with run_in_thread("tests/gateway_app", authorizer="ws_authorizer") as gw:
        gw.url              # ws://127.0.0.1:<port>/dev
        gw.management_url   # http://127.0.0.1:<port>/dev  (boto3 endpoint_url)
        gw.app_module       # the imported app module (fresh copy per gateway)
        gw.connection_ids() # open connections
    # leaving the block: every connection closed (with $disconnect), env restored

``LocalGateway(project_dir=".", *, app_module="app", app=None, stage="dev",
host="127.0.0.1", port=8000, authorizer="ws_authorizer", limits=None,
env_from_config=True, env=None, handler_workers=32, connect_workers=16,
api_id="localwsapi", account_id="123456789012", logger=None,
lose_disconnects=None)``:
``authorizer=""``/``None`` runs without one; ``app`` skips importing; ``env``
overrides variables last.

Simulating a lost ``$disconnect`` (tests of stale-connection clean-up; off by
default): with ``lose_disconnects=True``, or ``None`` and the environment
variable ``LOCAL_GATEWAY_LOSE_DISCONNECTS=1``, a connection whose upgrade
request sent ``X-Local-Gateway-Lose-Disconnect: 1`` and that ends without a
close frame (TCP reset/EOF, code 1006) gets no ``$disconnect``, as happens on
AWS now and then. Its record stays until a post to it meets 410 Gone.

The app runs in this process, so its environment is ``os.environ``: the
gateway sets ``AWS_REGION``/``AWS_DEFAULT_REGION`` (default us-east-1) if
missing, then ``.chalice/config.json``'s global + stage
``environment_variables``, then ``WEBSOCKET_MANAGEMENT_URL``, then ``env``;
``stop()`` restores them. Two in-process gateways therefore share one
environment: nest their lifetimes (the inner one's URL wins while it runs).

Not emulated: authorizer result caching and identity-source pre-checks,
Lambda timeouts (reported by the context, not enforced), per-function
environment variables, route responses (a handler's return body is never
sent to the client; apps reply through the management API), request
signing checks, throttling.
"""
from __future__ import annotations

from .appload import GatewayConfigError
from .events import Api, ClientInfo, authorizer_event, connect_event, disconnect_event, message_event
from .limits import Limits
from .server import GatewayHandle, LocalGateway, run_in_thread

__all__ = [
    "Api",
    "ClientInfo",
    "GatewayConfigError",
    "GatewayHandle",
    "Limits",
    "LocalGateway",
    "authorizer_event",
    "connect_event",
    "disconnect_event",
    "message_event",
    "run_in_thread",
]
