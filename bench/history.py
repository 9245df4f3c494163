"""History's cost, side by side in one run: the app's ``$default`` handler (``runtime.on_message``) on DynamoDB
Local and a local management API.

1. A publish to a topic with 100 subscribers, with history and without: handler time (median of interleaved
   rounds) and the DynamoDB calls each makes. Goal: history at most 1.3x the time of the same publish.
2. A reconnect that replays 1,000 missed messages: the time from the ``resume`` frame to the last replayed
   frame posted. Goal: under 2 s on the local stack.
3. Presence at 100 members: a join and a leave, the frames each sends (one per other subscriber) and the time.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any

from bench.audience import use_bench_credentials
from bench.common import Goal, Result, check, table

SUBSCRIBERS = 100
ROUNDS = 15
REPLAYED = 1000
RULES = json.dumps([{"topic": "chat/*", "subscribe": "any", "publish": "any", "history_seconds": 600},
                    {"topic": "plain/*", "subscribe": "any", "publish": "any"},
                    {"topic": "room/*", "subscribe": "any", "publish": "any", "presence": True}])


def _request(connection_id: str, body: dict[str, Any], management: Any) -> Any:
    from chalicelib.identity import Identity
    from chalicelib.records import Endpoint
    from chalicelib.ws_request import WsRequest

    return WsRequest(connection_id=connection_id, endpoint=Endpoint("127.0.0.1", "dev", "bench"),
                     identity=Identity(sub=f"user-{connection_id}", username=connection_id),
                     body=json.dumps(body))


def _presence(runtime: Any, components: Any, management: Any, members: list[str]) -> str:
    """100 members in ``room/bench`` (99 joined through the store, the 100th through the handler), then one
    leaves: the frames each change sends and its handler time."""
    from chalicelib.identity import Identity

    for connection_id in members[:-1]:
        components.subscriptions.subscribe(connection_id, "room/bench")
        components.presence.join("room/bench", Identity(sub=f"user-{connection_id}", username=connection_id), 100)
    before = sum(len(v) for v in management.received.values())
    started = time.perf_counter()
    runtime.on_message(_request(members[-1], {"action": "subscribe", "topic": "room/bench"}, management))
    join_s = time.perf_counter() - started
    joined = sum(len(v) for v in management.received.values()) - before
    check(joined == len(members), f"a join sends one frame per other member and the answer, not {joined}")
    before += joined
    started = time.perf_counter()
    runtime.on_message(_request(members[-1], {"action": "unsubscribe", "topic": "room/bench"}, management))
    leave_s = time.perf_counter() - started
    left = sum(len(v) for v in management.received.values()) - before
    check(left == len(members), f"a leave sends one frame per other member and the answer, not {left}")
    return table(["presence at 100 members", "frames sent", "handler ms"],
                 [["join (member_added to 99, the answer)", joined, join_s * 1e3],
                  ["leave (member_removed to 99, the answer)", left, leave_s * 1e3]])


def run() -> Result:
    use_bench_credentials()
    from chalicelib import runtime, schema
    from devtools.dynamodb_local import DynamoDBLocal
    from tests.support.dynamodb import make_record
    from tests.support.management_api import ManagementApiServer

    result = Result("history")
    management = ManagementApiServer()
    saved: dict[str, str | None] = {}  # the process's variables this run sets, put back after
    try:
        with DynamoDBLocal() as dynamodb:
            client = dynamodb.client()
            schema.create_table(client, "bench-history")
            env = {"COGNITO_USER_POOL_ID": "us-east-1_Bench", "COGNITO_APP_CLIENT_IDS": "bench",
                   "CONNECTIONS_TABLE": "bench-history", "AWS_ENDPOINT_URL_DYNAMODB": dynamodb.endpoint_url,
                   "WEBSOCKET_MANAGEMENT_URL": management.endpoint_url, "AWS_REGION": "us-east-1",
                   "CHANNEL_RULES": RULES, "MAX_REPLAY_MESSAGES": str(REPLAYED)}
            saved.update({name: os.environ.get(name) for name in env})
            os.environ.update(env)  # botocore reads the DynamoDB endpoint from the process's environment
            app = runtime.rebuild(env)
            components = app.components
            ids = [f"sub-{i:03d}" for i in range(SUBSCRIBERS)] + ["publisher", "returning"]
            management.add(*ids)
            for connection_id in ids:
                components.connections.put(make_record(connection_id, user_id=f"user-{connection_id}",
                                                       username=connection_id))
            for connection_id in ids[:SUBSCRIBERS]:
                for topic in ("chat/room", "plain/room"):
                    components.subscriptions.subscribe(connection_id, topic)
            calls: list[str] = []
            components.connections.table.client.meta.events.register(
                "before-call.dynamodb", lambda model, **_: calls.append(model.name))
            times: dict[str, list[float]] = {"plain/room": [], "chat/room": []}
            counted: dict[str, list[str]] = {}
            for n in range(ROUNDS):
                for topic in ("plain/room", "chat/room") if n % 2 else ("chat/room", "plain/room"):
                    calls.clear()
                    started = time.perf_counter()
                    runtime.on_message(_request("publisher", {"action": "publish", "topic": topic, "data": n},
                                                management))
                    times[topic].append(time.perf_counter() - started)
                    counted[topic] = list(calls)
            plain, chat = statistics.median(times["plain/room"]), statistics.median(times["chat/room"])
            check(len(management.received.get("sub-000", [])) >= 2 * ROUNDS, "every publish reached a subscriber")
            extra = list(counted["chat/room"])
            for name in counted["plain/room"]:
                extra.remove(name)
            check(sorted(extra) == ["PutItem", "UpdateItem"], f"history adds two writes, not {extra}")
            result.tables.append(table(
                ["publish to 100 subscribers", "handler ms (median)", "DynamoDB calls"],
                [["without history", plain * 1e3, ", ".join(sorted(set(counted["plain/room"])))],
                 ["with history", chat * 1e3, ", ".join(sorted(set(counted["chat/room"])))]]))
            result.goals.append(Goal("publish with history / without, handler time", chat / plain, 1.3))

            # A reconnect that replays 1,000 missed messages.
            components.subscriptions.subscribe("returning", "chat/missed")
            components.connections.delete("returning")
            for n in range(REPLAYED):
                runtime.on_message(_request("publisher", {"action": "publish", "topic": "chat/missed", "data": n},
                                            management))
            components.connections.put(make_record("back", user_id="user-returning", username="returning"))
            management.add("back")
            calls.clear()
            started = time.perf_counter()
            runtime.on_message(_request("back", {"action": "resume", "connectionId": "returning",
                                                 "since": {"chat/missed": 0}}, management))
            replay_s = time.perf_counter() - started
            frames = [json.loads(raw) for raw in management.received.get("back", [])]
            seqs = [m["seq"] for f in frames[:-1] for m in f["messages"]]
            check(seqs == list(range(1, REPLAYED + 1)), "the replay is whole, in order")
            check(frames[-1].get("type") == "resumed", "the resume answered after the replay")
            result.tables.append(table(["resume replaying 1,000 messages", "seconds", "Query calls", "replay frames"],
                                       [["resume -> last replayed frame", replay_s, calls.count("Query"),
                                         len(frames) - 1]]))
            result.goals.append(Goal("resume replaying 1,000 messages", replay_s, 2.0, unit=" s"))
            result.tables.append(_presence(runtime, components, management, ids[:SUBSCRIBERS]))
    finally:
        management.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        runtime.rebuild()
    return result
