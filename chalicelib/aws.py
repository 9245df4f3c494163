"""boto3 clients, created on first use and kept for the life of the container.

``Clients`` is the only runtime code that touches boto3, and only inside its
methods: the composition root (``components``) holds one and injects it, and
the authorizer Lambda never builds one, so it never pays boto3's import cost
(~200 ms cold). Clients are thread-safe once built, but building one through a
boto3 session is not, hence the lock.

Endpoints: botocore (>= 1.31) reads ``AWS_ENDPOINT_URL_DYNAMODB``,
``AWS_ENDPOINT_URL_SQS`` and ``AWS_ENDPOINT_URL`` from the environment itself,
so local services work by setting those variables.
"""
from __future__ import annotations

import threading
from typing import Any

from .broadcaster import BROADCAST_WORKERS

# Short timeouts: a Lambda invocation would rather fail a post than hang on it.
# DynamoDB accepts a connection in milliseconds from inside its region: an
# endpoint that does not is down, and a frame should be answered `unavailable`
# within seconds (4 attempts with backoff), not hang its Lambda.
DYNAMODB_CONNECT_TIMEOUT = 0.5
# DynamoDB answers in milliseconds; an attempt that waits 1.5 s is retried, and every
# entry point's total is bounded by its budget (``deadline``), whatever the attempts.
DYNAMODB_READ_TIMEOUT = 1.5
SQS_CONNECT_TIMEOUT = 0.5
SQS_READ_TIMEOUT = 2.0
MANAGEMENT_CONNECT_TIMEOUT = 2.0
MANAGEMENT_READ_TIMEOUT = 5.0
# Per post, the first try included: up to two retries, after ~0.5 s and ~1 s
# (throttling) or ~25 ms and ~50 ms (5xx) on average; a reply or a fan-out in
# a Lambda invocation would rather report one post failed than wait longer.
MANAGEMENT_MAX_ATTEMPTS = 3
NO_RETRY_AFTER_SEND_ID = "ws-cognito-no-retry-after-send"
# The fan-out worker's posts: botocore's adaptive mode, whose client-side rate
# limiter backs off on throttling, so many workers near the account's
# @connections limit slow down together instead of each burning its retries;
# more attempts than a reply gets, since an item that still fails is
# redelivered whole (at least once, same messageId).
WORKER_RETRY_MODE = "adaptive"
WORKER_MAX_ATTEMPTS = 5


class Clients:
    """The container's boto3 clients: one per service, one management client per endpoint and retry mode."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session: Any = None
        self._made: dict[str, Any] = {}

    def _build(self, key: str, service: str, **kwargs: Any) -> Any:
        client = self._made.get(key)
        if client is None:
            with self._lock:
                client = self._made.get(key)
                if client is None:
                    if self._session is None:
                        import boto3.session

                        self._session = boto3.session.Session()
                    client = self._session.client(service, **kwargs)
                    self._made[key] = client
        return client

    @property
    def dynamodb(self) -> Any:
        """DynamoDB: standard retries, small timeouts, the invocation's budget (``deadline``)."""
        return self._budgeted("dynamodb", DYNAMODB_CONNECT_TIMEOUT, DYNAMODB_READ_TIMEOUT, max_pool_connections=32)

    @property
    def sqs(self) -> Any:
        """SQS (the fan-out queue): the same."""
        return self._budgeted("sqs", SQS_CONNECT_TIMEOUT, SQS_READ_TIMEOUT)

    def _budgeted(self, service: str, connect_timeout: float, read_timeout: float, **config: Any) -> Any:
        client = self._made.get(service)
        if client is None:
            from botocore.config import Config

            client = _with_deadline(self._build(service, service, config=Config(
                connect_timeout=connect_timeout, read_timeout=read_timeout,
                retries={"mode": "standard", "max_attempts": 4}, tcp_keepalive=True, **config)))
        return client

    def management(self, endpoint_url: str, retry_mode: str = "standard",
                   max_attempts: int = MANAGEMENT_MAX_ATTEMPTS) -> Any:
        """The ``apigatewaymanagementapi`` client for one endpoint, cached per endpoint.

        One per endpoint for the container's life, so every Broadcaster post reuses
        its keep-alive connections and shares one retry quota. The connection pool
        holds ``BROADCAST_WORKERS`` connections, one per broadcast thread. Retries
        are botocore's ``standard`` mode: throttling (``LimitExceededException``,
        429), 5xx and connection errors are retried with jittered exponential
        backoff, a 410 ``GoneException`` or a 4xx is not, and a post that may
        already have been delivered is not either (``_refuse_retry_after_send``);
        ``adaptive`` mode would add a client-side rate limiter that, once tripped,
        blocks every later post of the container on a token bucket. Parameter validation is off: the
        Broadcaster always passes a str id and bytes, and validation is a
        measurable share of each post's CPU when thousands of posts share one GIL.
        """
        endpoint_url = endpoint_url.rstrip("/")
        key = f"management:{retry_mode}:{max_attempts}:{endpoint_url}"
        client = self._made.get(key)
        if client is not None:
            return client
        from botocore.config import Config

        config = Config(connect_timeout=MANAGEMENT_CONNECT_TIMEOUT, read_timeout=MANAGEMENT_READ_TIMEOUT,
                        retries={"mode": retry_mode, "total_max_attempts": max_attempts},
                        max_pool_connections=BROADCAST_WORKERS, parameter_validation=False, tcp_keepalive=True)
        client = self._build(key, "apigatewaymanagementapi", endpoint_url=endpoint_url, config=config)
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register_first(f"needs-retry.{service}", _refuse_retry_after_send,
                                          unique_id=NO_RETRY_AFTER_SEND_ID)
        return client

    def worker_management(self, endpoint_url: str) -> Any:
        """The management client a fan-out worker posts with (adaptive retries; see above)."""
        return self.management(endpoint_url, retry_mode=WORKER_RETRY_MODE, max_attempts=WORKER_MAX_ATTEMPTS)


_DEADLINE_HOOKS = "ws-cognito-deadline"


def _with_deadline(client: Any) -> Any:
    """Register the invocation budget's hooks (``deadline``) on ``client``, once."""
    from .deadline import refuse_call_when_spent, refuse_retry_when_spent

    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register_first(f"before-call.{service}", refuse_call_when_spent,
                                      unique_id=f"{_DEADLINE_HOOKS}-call")
    client.meta.events.register_first(f"needs-retry.{service}", refuse_retry_when_spent,
                                      unique_id=f"{_DEADLINE_HOOKS}-retry")
    return client


def _refuse_retry_after_send(caught_exception: BaseException | None = None, **_: Any) -> None:
    """A ``needs-retry`` handler: no retry for a post that may already have been delivered.

    botocore's ``standard`` mode retries every ``HTTPClientError``, the read
    timeout included, and a post that timed out while API Gateway was still
    answering has often been delivered: a slow reader got the same message
    up to three times. Only what cannot have been delivered may be retried:
    a ``ConnectionError`` (refused, connect timeout, TLS or proxy failure:
    the request never left), throttling (429) and 5xx answers (not
    exceptions; they reach the standard handler untouched). Any other
    ``HTTPClientError`` (``ReadTimeoutError``, ``ConnectionClosedError``: the
    request was sent, the answer lost) is re-raised here, which ends the call
    with that error: the Broadcaster reports the post ``failed``.

    Why this hook: ``Config(retries=...)`` has no per-error switch, and
    replacing the standard handler (a custom ``RetryPolicy`` with a narrower
    ``TransientRetryableChecker``) means rebuilding botocore's private
    ``register_retry_handler`` wiring and the ``retry-config-<service>``
    unique id it relies on. ``needs-retry.<service>`` is botocore's public
    event for this decision; this handler is registered first, so it runs
    before the standard one. It returns None otherwise ("no opinion"), and
    raising, botocore's usual way for a handler to end a call, works the same
    in every botocore version (newer ones also read a False answer as "do not
    retry", older ones as "retry now"). A vetoed post takes no retry quota.
    """
    from botocore.exceptions import ConnectionError as NotSentError, HTTPClientError

    if isinstance(caught_exception, HTTPClientError) and not isinstance(caught_exception, NotSentError):
        raise caught_exception
