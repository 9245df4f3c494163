"""EventBridge's ``PutEvents`` for the app's ``on_cw_event`` rules, on the gateway's port.

Back-end services publish with ``boto3.client("events").put_events(...)`` or
``aws events put-events``; pointing ``endpoint_url`` at the gateway runs the
same call locally. The protocol is AWS JSON 1.1: ``POST /`` with
``X-Amz-Target: AWSEvents.PutEvents``, answered with
``{"FailedEntryCount": n, "Entries": [{"EventId": ...} | {"ErrorCode", "ErrorMessage"}]}``.

Each accepted entry becomes the event EventBridge delivers (``version``,
``id``, ``detail-type``, ``source``, ``account``, ``time``, ``region``,
``resources``, ``detail``), is matched against every rule the app registered
(Chalice keeps them in ``app.event_sources`` as ``CloudWatchEventConfig``),
and each matching rule's handler is invoked with it, asynchronously: as on
AWS, the answer does not wait for the handlers. A handler error is logged;
Lambda's two retries of a failed asynchronous invocation are not emulated.

Validation, as EventBridge answers it: 1 to 10 entries and at most 256 KB
in all (else ``ValidationException``); per entry, a missing ``Source``,
``DetailType`` or ``Detail`` is ``InvalidArgument``, a ``Detail`` that is not
a JSON object is ``MalformedDetail``, an ``aws.*`` source is
``NotAuthorizedForSourceException`` (one exception: the local stack plays CloudTrail, so an
``aws.cognito-idp`` entry of detail-type ``AWS API Call via CloudTrail`` is accepted, the event
CloudTrail hands EventBridge when Cognito signs a user out; on AWS only CloudTrail sends it). Only the default event bus exists
(Chalice's rules live there): another ``EventBusName`` is a
``ResourceNotFoundException``, as moto's server answers it. Patterns are
matched by ``event_patterns`` (see there for the supported filters); a rule
whose pattern it cannot match fails the request with an ``InternalException``
naming the rule, rather than silently matching wrongly. Not emulated: request
signing checks, ``EndpointId``, ``TraceHeader``, archives, input transformers.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from aiohttp import web
from chalice.app import CloudWatchEventConfig

from .event_patterns import InvalidPattern, matches
from .events import eventbridge_event, new_request_id
from .management import error_response

Call = Callable[[str, Any], Awaitable[Any]]
Event = dict[str, Any]

TARGET_PREFIX = "AWSEvents."
PUT_EVENTS = TARGET_PREFIX + "PutEvents"
CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_ENTRIES = 10
MAX_REQUEST_BYTES = 256 * 1024
DEFAULT_BUS = "default"
TIME_ENTRY_BYTES = 14  # how EventBridge counts a Time parameter towards the size limit


class _RequestError(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def _json_response(body: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), status=status, content_type=CONTENT_TYPE,
                        headers={"x-amzn-RequestId": new_request_id()})


def _error(error: _RequestError) -> web.Response:
    """AWS JSON 1.1 errors: ``__type`` names the exception (botocore reads it as the error code)."""
    return _json_response({"__type": error.error_type, "message": error.message}, error.status)


def entry_size(entry: Mapping[str, Any]) -> int:
    """EventBridge's documented size of one PutEventsRequestEntry (UTF-8 bytes, Time as 14)."""
    size = TIME_ENTRY_BYTES if entry.get("Time") is not None else 0
    for name in ("Source", "DetailType", "Detail"):
        value = entry.get(name)
        if isinstance(value, str):
            size += len(value.encode("utf-8"))
    for resource in entry.get("Resources") or []:
        if isinstance(resource, str):
            size += len(resource.encode("utf-8"))
    return size


def _event_time(value: object) -> str:
    """``time`` as EventBridge writes it (``2024-02-09T18:11:43Z``), from the entry's Time or now.

    boto3 and the CLI send Time as epoch seconds; an ISO 8601 string is accepted too.
    """
    moment: datetime | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value, tz=timezone.utc)
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
    if moment is None:
        moment = datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _valid_time(value: object) -> bool:
    """An entry's Time: absent, an ISO 8601 string, or epoch seconds a date can hold (no NaN, no 1e300)."""
    if value is None or isinstance(value, str):
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        datetime.fromtimestamp(value, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return False
    return True


# What the local stack plays in CloudTrail's place (see the module's docstring).
CLOUDTRAIL_STAND_IN = ("aws.cognito-idp", "AWS API Call via CloudTrail")


def _entry_error(entry: object) -> tuple[dict[str, str] | None, Any]:
    """(an ErrorCode/ErrorMessage entry, None) for a refused entry, else (None, its parsed Detail)."""
    if not isinstance(entry, Mapping):
        return {"ErrorCode": "InvalidArgument", "ErrorMessage": "Entry is not valid."}, None
    for name in ("Source", "DetailType", "Detail"):
        if not isinstance(entry.get(name), str) or not entry[name]:
            return {"ErrorCode": "InvalidArgument",
                    "ErrorMessage": f"Parameter {name} is not valid. Reason: {name} is a required argument."}, None
    if entry["Source"].startswith("aws.") and (entry["Source"], entry["DetailType"]) != CLOUDTRAIL_STAND_IN:
        return {"ErrorCode": "NotAuthorizedForSourceException", "ErrorMessage": "Not authorized for the source."}, None
    try:
        detail = json.loads(entry["Detail"])
    except (ValueError, RecursionError):  # not JSON, or nested past what can be read
        detail = None
    if not isinstance(detail, dict):
        return {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}, None
    return None, detail


class EventBridgeApi:
    """``PutEvents`` over the app's rules. Routes are added before the app is loaded: looked up per call."""

    def __init__(self, *, app: Callable[[], Any], call: Call, log: Any, account_id: str,
                 region: Callable[[], str]) -> None:
        self._app = app
        self._call = call
        self._log = log
        self._account_id = account_id
        self._region = region
        self._tasks: set[asyncio.Task[Any]] = set()

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/", self.handle)]

    def rules(self) -> list[CloudWatchEventConfig]:
        """The app's ``on_cw_event`` registrations (schedules and other event sources are not rules here)."""
        app = self._app()
        if app is None:
            return []
        return [source for source in app.event_sources if isinstance(source, CloudWatchEventConfig)]

    def _bus_is_default(self, name: object) -> bool:
        if name in (None, "", DEFAULT_BUS):
            return True
        default_arn_tail = f":{self._account_id}:event-bus/{DEFAULT_BUS}"
        return isinstance(name, str) and name.startswith("arn:") and name.endswith(default_arn_tail)

    def event(self, entry: Mapping[str, Any], detail: dict[str, Any]) -> Event:
        """The event EventBridge delivers to a rule's target for one accepted entry."""
        resources = entry.get("Resources")
        return eventbridge_event(
            source=entry["Source"], detail_type=entry["DetailType"], detail=detail, account=self._account_id,
            region=self._region(), resources=[str(r) for r in resources] if isinstance(resources, list) else [],
            time=_event_time(entry.get("Time")))

    def _validate(self, body: object) -> list[Any]:
        if not isinstance(body, Mapping):
            raise _RequestError(400, "SerializationException", "the request body must be a JSON object")
        entries = body.get("Entries")
        if not isinstance(entries, list) or not entries:
            raise _RequestError(400, "ValidationException", "1 validation error detected: Value at 'entries' "
                                "failed to satisfy constraint: Member must have length greater than or equal to 1")
        if len(entries) > MAX_ENTRIES:
            raise _RequestError(400, "ValidationException", "1 validation error detected: Value at 'entries' "
                                "failed to satisfy constraint: Member must have length less than or equal to 10")
        if sum(entry_size(e) for e in entries if isinstance(e, Mapping)) > MAX_REQUEST_BYTES:
            raise _RequestError(400, "ValidationException", "Total size of the entries in the request is over "
                                "the limit.")
        for entry in entries:
            if isinstance(entry, Mapping) and not self._bus_is_default(entry.get("EventBusName")):
                raise _RequestError(400, "ResourceNotFoundException",
                                    f"Event bus {entry['EventBusName']} does not exist.")
            if isinstance(entry, Mapping) and not _valid_time(entry.get("Time")):
                raise _RequestError(400, "ValidationException", "1 validation error detected: Value at "
                                    "'entries.member.time' failed to satisfy constraint: not a valid timestamp")
        return entries

    def _targets(self, event: Event) -> list[str]:
        names = []
        for rule in self.rules():
            try:
                if matches(rule.event_pattern, event):
                    names.append(rule.name)
            except InvalidPattern as error:
                raise _RequestError(500, "InternalException",
                                    f"the app's rule {rule.name!r} cannot be matched locally: {error}") from None
        return names

    async def handle(self, request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        if not target.startswith(TARGET_PREFIX):
            return error_response(403, "ForbiddenException", "Forbidden")  # what the port answered before
        if target != PUT_EVENTS:
            return _error(_RequestError(400, "UnknownOperationException",
                                        f"{target[len(TARGET_PREFIX):]} is not supported by the local gateway"))
        try:
            try:
                body = json.loads(await request.read() or b"{}")
            except (ValueError, RecursionError):
                raise _RequestError(400, "SerializationException", "the request body is not JSON") from None
            entries = self._validate(body)
            answers: list[dict[str, str]] = []
            deliveries: list[tuple[str, Event]] = []
            for entry in entries:
                refused, detail = _entry_error(entry)
                if refused is not None:
                    answers.append(refused)
                    continue
                event = self.event(entry, detail)
                names = self._targets(event)
                self._log.info("%s PUTEVENTS %s %s %s -> %s", request.remote, event["source"], event["detail-type"],
                               event["id"], ",".join(names) or "no rule")
                deliveries.extend((name, event) for name in names)
                answers.append({"EventId": event["id"]})
        except _RequestError as error:
            return _error(error)
        for name, event in deliveries:
            task = asyncio.ensure_future(self._deliver(name, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        failed = sum(1 for answer in answers if "ErrorCode" in answer)
        return _json_response({"FailedEntryCount": failed, "Entries": answers})

    async def _deliver(self, name: str, event: Event) -> None:
        started = time.perf_counter()
        try:
            await self._call(name, event)
            outcome = "ok"
        except Exception:  # an asynchronous invocation: the error goes to the function's log only
            self._log.exception("EVENTBRIDGE %s %s handler failed", name, event["id"])
            outcome = "error"
        elapsed = (time.perf_counter() - started) * 1000
        self._log.info("EVENTBRIDGE %s %s %s %.1fms", name, event["id"], outcome, elapsed)
