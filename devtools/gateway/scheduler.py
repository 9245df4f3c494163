"""The app's ``@app.schedule`` functions, invoked on their rate as EventBridge would.

On AWS an EventBridge rule with a ``ScheduleExpression`` invokes the function
asynchronously on its rate, with a scheduled event::

    {"version": "0", "id": "<uuid>", "detail-type": "Scheduled Event", "source": "aws.events",
     "account": "<account>", "time": "2024-02-09T18:11:00Z", "region": "<region>",
     "resources": ["arn:aws:events:<region>:<account>:rule/<app>-<stage>-<name>-event"], "detail": {}}

(the rule name is the one Chalice's deployer gives it). The gateway runs one
task per schedule that sends exactly that event to the function at its rate,
so behaviour driven by a schedule (the token expiry sweep) is seen under
``make run`` as it would be deployed. ``interval`` (``--schedule-interval``,
or the environment variable ``LOCAL_GATEWAY_SCHEDULE_INTERVAL``) replaces
every rate, for tests that cannot wait a minute; it is also the only way a
``cron(...)`` schedule runs locally (cron expressions are not evaluated here:
without it they are logged and skipped). As on AWS, the first invocation
comes one period after start; a run that outlasts its period delays the next
one rather than overlapping it; an error is logged and does not stop the schedule.
"""
from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Any, Awaitable, Callable

from chalice import Chalice
from chalice.app import Rate, ScheduledEventConfig

from .events import eventbridge_event

Call = Callable[[str, Any], Awaitable[Any]]

SCHEDULE_INTERVAL_ENV = "LOCAL_GATEWAY_SCHEDULE_INTERVAL"
_UNIT_SECONDS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minutes?|hours?|days?)\s*\)$", re.IGNORECASE)


def interval_from_env() -> float | None:
    """``LOCAL_GATEWAY_SCHEDULE_INTERVAL`` in seconds, or None (each schedule's own rate)."""
    raw = os.environ.get(SCHEDULE_INTERVAL_ENV, "").strip()
    if not raw:
        return None
    value = float(raw)
    if not 0 < value <= 86400:
        raise ValueError(f"{SCHEDULE_INTERVAL_ENV} must be 0 < seconds <= 86400, got {raw!r}")
    return value


def rate_seconds(expression: object) -> float | None:
    """Seconds between runs of a ``Rate`` or a ``rate(...)`` string; None for cron (not evaluated locally)."""
    if isinstance(expression, Rate):
        return float(expression.value * _UNIT_SECONDS[expression.unit.lower()])
    if isinstance(expression, str):
        match = _RATE.match(expression.strip())
        if match:
            return float(int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()])
    return None


def expression_text(expression: object) -> str:
    to_string = getattr(expression, "to_string", None)
    return str(to_string()) if callable(to_string) else str(expression)


class Scheduler:
    """One asyncio task per ``@app.schedule`` of the app, started with the gateway and stopped with it."""

    def __init__(self, *, app: Callable[[], Chalice | None], call: Call, log: Any, stage: str,
                 account_id: str, region: Callable[[], str], interval: float | None = None) -> None:
        self._app = app
        self._call = call
        self._log = log
        self._stage = stage
        self._account_id = account_id
        self._region = region
        self.interval = interval
        self._tasks: list[asyncio.Task[None]] = []
        self.runs: dict[str, int] = {}

    def schedules(self) -> list[ScheduledEventConfig]:
        app = self._app()
        if app is None:
            return []
        return [source for source in app.event_sources if isinstance(source, ScheduledEventConfig)]

    def rule_name(self, config: ScheduledEventConfig) -> str:
        app = self._app()
        return f"{app.app_name if app else 'app'}-{self._stage}-{config.name}-event"

    def event(self, config: ScheduledEventConfig) -> dict[str, Any]:
        """The scheduled event EventBridge sends the rule's target."""
        region = self._region()
        return eventbridge_event(
            source="aws.events", detail_type="Scheduled Event", detail={}, account=self._account_id, region=region,
            resources=[f"arn:aws:events:{region}:{self._account_id}:rule/{self.rule_name(config)}"])

    def start(self) -> None:
        for config in self.schedules():
            period = self.interval or rate_seconds(config.schedule_expression)
            text = expression_text(config.schedule_expression)
            if period is None:
                self._log.warning("SCHEDULE %s %s is not run locally (cron is not evaluated; "
                                  "use --schedule-interval)", config.name, text)
                continue
            self._log.info("SCHEDULE %s %s -> every %gs", config.name, text, period)
            self._tasks.append(asyncio.ensure_future(self._run(config, period)))

    async def _run(self, config: ScheduledEventConfig, period: float) -> None:
        due = time.monotonic() + period
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            event = self.event(config)
            started = time.perf_counter()
            try:
                result = await self._call(config.name, event)
                outcome = f"ok {result}" if result is not None else "ok"
            except asyncio.CancelledError:
                raise
            except Exception:  # an asynchronous invocation: the error goes to the log only
                self._log.exception("SCHEDULE %s %s handler failed", config.name, event["id"])
                outcome = "error"
            self.runs[config.name] = self.runs.get(config.name, 0) + 1
            self._log.info("SCHEDULE %s %s %s %.1fms", config.name, event["id"], outcome,
                           (time.perf_counter() - started) * 1000)
            due = max(due + period, time.monotonic())

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
