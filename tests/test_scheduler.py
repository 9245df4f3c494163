"""The gateway's scheduler: each ``@app.schedule`` invoked at its rate with EventBridge's scheduled event."""
from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest
from chalice import Chalice, Cron, Rate

from devtools.gateway.scheduler import Scheduler, rate_seconds


def _app() -> Chalice:
    app = Chalice(app_name="sched-app")

    @app.schedule(Rate(1, unit=Rate.MINUTES), name="every_minute")
    def every_minute(event: Any) -> None:
        return None

    @app.schedule(Cron(0, 10, "*", "*", "?", "*"), name="daily")
    def daily(event: Any) -> None:
        return None

    return app


@pytest.mark.parametrize("expression, seconds", [
    (Rate(1, unit=Rate.MINUTES), 60.0), (Rate(2, unit=Rate.HOURS), 7200.0), ("rate(5 minutes)", 300.0),
    ("rate(1 day)", 86400.0), (Cron(0, 10, "*", "*", "?", "*"), None), ("cron(0 10 * * ? *)", None),
])
def test_rates_are_read_and_cron_is_not(expression: Any, seconds: float | None) -> None:
    assert rate_seconds(expression) == seconds


def test_each_schedule_gets_eventbridges_scheduled_event_at_its_interval() -> None:
    calls: list[tuple[str, dict[str, Any], float]] = []

    async def call(name: str, event: Any) -> None:
        calls.append((name, event, asyncio.get_running_loop().time()))

    async def run() -> None:
        app = _app()
        scheduler = Scheduler(app=lambda: app, call=call, log=logging.getLogger("test"), stage="dev",
                              account_id="123456789012", region=lambda: "eu-west-1", interval=0.2)
        started = asyncio.get_running_loop().time()
        scheduler.start()
        await asyncio.sleep(0.7)
        await scheduler.stop()
        assert calls and calls[0][2] - started >= 0.19  # the first run one period after start, as on AWS
        periods.append((asyncio.get_running_loop().time() - started) / 0.2)

    periods: list[float] = []
    asyncio.run(run())
    names = [name for name, _, _ in calls]
    # One run of each per 0.2 s period that passed (a loaded machine may oversleep the 0.7 s).
    most = int(periods[0])
    assert 3 <= names.count("every_minute") <= most and 3 <= names.count("daily") <= most  # the interval overrides both
    event = calls[0][1]
    assert set(event) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources",
                          "detail"}
    assert (event["version"], event["detail-type"], event["source"], event["account"], event["region"],
            event["detail"]) == ("0", "Scheduled Event", "aws.events", "123456789012", "eu-west-1", {})
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["time"])
    rules = {e["resources"][0] for _, e, _ in calls}
    assert rules == {"arn:aws:events:eu-west-1:123456789012:rule/sched-app-dev-every_minute-event",
                     "arn:aws:events:eu-west-1:123456789012:rule/sched-app-dev-daily-event"}
    assert len({e["id"] for _, e, _ in calls}) == len(calls)


def test_without_an_interval_a_cron_schedule_is_skipped_and_a_rate_waits_its_period(
        caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    async def call(name: str, event: Any) -> None:
        calls.append(name)

    async def run() -> None:
        app = _app()
        scheduler = Scheduler(app=lambda: app, call=call, log=logging.getLogger("test"), stage="dev",
                              account_id="1", region=lambda: "us-east-1")
        scheduler.start()
        await asyncio.sleep(0.3)
        await scheduler.stop()

    with caplog.at_level(logging.INFO, logger="test"):
        asyncio.run(run())
    assert calls == []  # a minute has not passed
    assert any("daily" in r.getMessage() and "not run locally" in r.getMessage() for r in caplog.records)
