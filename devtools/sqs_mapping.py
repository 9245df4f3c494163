"""Lambda's SQS event source mapping, locally: poll a queue, invoke the app's handler, delete or not.

On AWS, ``@app.on_sqs_message`` becomes an event source mapping: Lambda's
pollers long-poll the queue, invoke the function with a batch in the SQS
event shape, delete the batch when the invocation succeeds and leave it
alone when it fails, so it becomes visible again after the queue's
visibility timeout; after ``maxReceiveCount`` receives, SQS itself moves it
to the dead-letter queue named by the queue's ``RedrivePolicy``. This does
the same against moto's SQS server:

- ``workers`` poller threads per mapping (at most the mapping's
  ``maximum_concurrency``), each holding one invocation at a time, like one
  Lambda instance per concurrent batch;
- each invocation runs in a worker *process* (a ``spawn`` process pool, each
  child importing the app once, like a warm Lambda container), so N workers
  use N cores instead of sharing one GIL with the gateway;
- the event is Lambda's: ``{"Records": [{"messageId", "receiptHandle",
  "body", "attributes": {"ApproximateReceiveCount", "SentTimestamp",
  "SenderId", "ApproximateFirstReceiveTimestamp"}, "messageAttributes",
  "md5OfBody", "eventSource": "aws:sqs", "eventSourceARN", "awsRegion"}]}``;
- success: ``DeleteMessageBatch``; failure (the handler raised): nothing, so
  the visibility timeout brings the batch back;
- the dead-letter queue: moto's server honours ``RedrivePolicy`` (its
  ``ReceiveMessage`` moves a message received ``maxReceiveCount`` times to
  the DLQ, as SQS does), so the poller does not move anything itself.

One log line per invocation: ``SQS fanout_worker <messageId> receive #2 error 12.3ms``.
Not emulated: partial batch responses (Chalice cannot ask for them),
batching windows, the pollers' own scaling curve.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

LOG = logging.getLogger("devtools.sqs")
WAIT_SECONDS = 1  # long-poll per ReceiveMessage; short, so stop() is quick (Lambda uses 20)
MAX_BACKOFF_SECONDS = 8.0  # between receives while the queue's server is down
FAILURE_LOG_SECONDS = 5  # one log line per distinct failure this often, at most
MISSING_QUEUE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})

_worker_app: Any = None
_worker_config: Any = None
_worker_stage = ""


def _init_worker(project_dir: str, stage: str) -> None:
    """In each worker process: import the app once (a warm container)."""
    global _worker_app, _worker_config, _worker_stage
    import signal

    from devtools.gateway.appload import ProjectConfig, load_app

    # Ctrl-C reaches the whole process group: the stack stops the pool itself, after its pollers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    _, _worker_app = load_app(project_dir)
    _worker_config = ProjectConfig(project_dir, stage)
    _worker_stage = stage


def _invoke(name: str, event: dict[str, Any]) -> tuple[bool, str]:
    """Run the handler in the worker process; (ok, error text). Exceptions stay here: they may not pickle."""
    context = _worker_config.function_settings(name).context(_worker_app.app_name, _worker_stage, name)
    try:
        _worker_app.handler_map[name](event, context)
    except Exception as error:  # noqa: BLE001 - the invocation failed, as Lambda would record it
        return False, f"{type(error).__name__}: {error}"
    return True, ""


def lambda_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's SQS poller sends, from ReceiveMessage's answer."""
    records = []
    for message in messages:
        attributes = message.get("Attributes") or {}
        records.append({
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""),
            "attributes": {name: str(attributes[name]) for name in (
                "ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp")
                if name in attributes},
            "messageAttributes": {
                name: {"stringValue": value.get("StringValue"), "binaryValue": value.get("BinaryValue"),
                       "stringListValues": [], "binaryListValues": [], "dataType": value.get("DataType")}
                for name, value in (message.get("MessageAttributes") or {}).items()},
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        })
    return {"Records": records}


@dataclass(frozen=True)
class Mapping:
    """One ``@app.on_sqs_message``: its handler, the queue it reads and its batch settings."""

    function: str
    queue_url: str
    queue_arn: str
    batch_size: int
    concurrency: int


class SqsEventSourceMapping:
    """Pollers for every ``on_sqs_message`` of the app; ``start()`` / ``stop()``."""

    def __init__(self, app: Any, project_dir: str, stage: str, sqs_client: Any, *, workers: int = 2,
                 region: str = "us-east-1", log: logging.Logger | None = None) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.app = app
        self.project_dir = project_dir
        self.stage = stage
        self.sqs = sqs_client
        self.workers = workers
        self.region = region
        self.log = log or LOG
        self.mappings: list[Mapping] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool: ProcessPoolExecutor | None = None
        self.invocations = 0
        self.failures = 0
        self._count_lock = threading.Lock()
        # Called when the queue is gone (its server restarted): the stack makes it again, same name and URL.
        self.recreate_queues: Callable[[], object] | None = None
        self._recreated_at = -FAILURE_LOG_SECONDS
        self._logged: dict[tuple[str, str], float] = {}

    def _discover(self) -> list[Mapping]:
        from chalice.app import SQSEventConfig

        found = []
        for source in self.app.event_sources:
            if not isinstance(source, SQSEventConfig):
                continue
            name = source.queue or str(source.queue_arn).rsplit(":", 1)[-1]
            url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
            arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            limit = source.maximum_concurrency or self.workers
            found.append(Mapping(source.name, url, arn, max(1, min(10, source.batch_size)),
                                 max(1, min(self.workers, limit))))
        return found

    def start(self) -> list[Mapping]:
        self.mappings = self._discover()
        if not self.mappings:
            return []
        total = sum(m.concurrency for m in self.mappings)
        # spawn: a clean interpreter per worker, never a fork of a process running threads and a loop.
        self._pool = ProcessPoolExecutor(max_workers=total, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_worker, initargs=(self.project_dir, self.stage))
        warm: list[Future[Any]] = [self._pool.submit(os.getpid) for _ in range(total)]
        for future in warm:  # every process started and the app imported before the first poll
            future.result(timeout=120)
        for mapping in self.mappings:
            for index in range(mapping.concurrency):
                thread = threading.Thread(target=self._poll, args=(mapping,), daemon=True,
                                          name=f"sqs-{mapping.function}-{index}")
                thread.start()
                self._threads.append(thread)
        return self.mappings

    def worker_pids(self) -> list[int]:
        """The worker processes' ids (for CPU accounting); empty before ``start()``."""
        return sorted(self._pool._processes) if self._pool is not None else []

    def _poll(self, mapping: Mapping) -> None:
        """Receive and run, as Lambda's poller does; on failure back off (0.5 s doubling to 8 s) and log
        each distinct failure once per ``FAILURE_LOG_SECONDS``; a queue that is gone is recreated
        (``recreate_queues``), as the stack owns it."""
        delay = 0.0
        while not self._stop.is_set():
            try:
                answer = self.sqs.receive_message(
                    QueueUrl=mapping.queue_url, MaxNumberOfMessages=mapping.batch_size, WaitTimeSeconds=WAIT_SECONDS,
                    AttributeNames=["All"], MessageAttributeNames=["All"])
            except Exception as error:  # noqa: BLE001 - the queue server went away or lost the queue
                delay = min(MAX_BACKOFF_SECONDS, max(0.5, delay * 2))
                self._failed(mapping, error, delay)
                if self._stop.wait(delay):
                    return
                continue
            if delay:
                delay = 0.0
                self.log.info("SQS %s receiving again", mapping.function)
            messages = answer.get("Messages") or []
            if messages:
                self._run(mapping, messages)

    def _failed(self, mapping: Mapping, error: BaseException, delay: float) -> None:
        code = ((getattr(error, "response", None) or {}).get("Error") or {}).get("Code") or type(error).__name__
        if code in MISSING_QUEUE_CODES and self.recreate_queues is not None:
            with self._count_lock:
                if time.monotonic() - self._recreated_at > FAILURE_LOG_SECONDS:
                    self._recreated_at = time.monotonic()
                    self.recreate_queues()
        key = (mapping.function, code)
        now = time.monotonic()
        with self._count_lock:
            if now - self._logged.get(key, -FAILURE_LOG_SECONDS) < FAILURE_LOG_SECONDS:
                return
            self._logged[key] = now
        self.log.warning("SQS %s receive failed: %s (retrying in %.1f s; logged once per %d s)",
                         mapping.function, code, delay, FAILURE_LOG_SECONDS)

    def _run(self, mapping: Mapping, messages: list[dict[str, Any]]) -> None:
        assert self._pool is not None
        event = lambda_event(messages, mapping.queue_arn, self.region)
        started = time.perf_counter()
        try:
            ok, error = self._pool.submit(_invoke, mapping.function, event).result()
        except Exception as crash:  # noqa: BLE001 - the worker process died: a failed invocation
            ok, error = False, f"{type(crash).__name__}: {crash}"
        elapsed = (time.perf_counter() - started) * 1000
        with self._count_lock:
            self.invocations += 1
            self.failures += 0 if ok else 1
        receives = ",".join(str((m.get("Attributes") or {}).get("ApproximateReceiveCount", "?")) for m in messages)
        ids = ",".join(m["MessageId"] for m in messages)
        if ok:
            self.sqs.delete_message_batch(QueueUrl=mapping.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
            self.log.info("SQS %s %s receive #%s ok %.1fms", mapping.function, ids, receives, elapsed)
        else:  # left on the queue: visible again after the visibility timeout, then the DLQ
            self.log.warning("SQS %s %s receive #%s error %.1fms: %s (left for the visibility timeout)",
                             mapping.function, ids, receives, elapsed, error[:300])

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=WAIT_SECONDS + 30)
        self._threads.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def create_queues(sqs_client: Any, name: str, *, visibility_timeout: int, max_receive_count: int) -> dict[str, str]:
    """The fan-out queue and its dead-letter queue, with the redrive policy (idempotent, as SQS's CreateQueue)."""
    import json

    dlq_url = sqs_client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs_client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs_client.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": str(visibility_timeout),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}),
    })["QueueUrl"]
    return {"queue_url": url, "dlq_url": dlq_url, "dlq_arn": dlq_arn}
