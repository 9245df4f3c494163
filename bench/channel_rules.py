"""Channel rule decisions: the default 3 rules against 1,000, side by side in one run.

The rules are compiled once into a trie keyed by segment, so a decision should
cost about the same with 1,000 rules as with 3 (the goal: under 50 us, and the
ratio near 1). The 1,000 rules are realistic: literal prefixes (``team-<n>/...``),
placeholders and wildcards, with the matching rule near the end of the list.
"""
from __future__ import annotations

import json
import time

from bench.common import Goal, Result, check, table
from chalicelib.channels import ChannelRules, channel_decision
from chalicelib.identity import Identity

CALLER = Identity(sub="u-1", username="alice", groups=("team-997", "staff"), scopes=("news/read",))
TOPICS = ("public/news", "user/u-1/inbox", "group/staff/chat", "team-997/room/general", "nowhere/at/all")


def thousand_rules() -> ChannelRules:
    rules = []
    for n in range(996):
        rules.append({"topic": f"team-{n}/{{group}}/**" if n % 3 == 0 else f"team-{n}/room/*",
                      "subscribe": {"groups": [f"team-{n}"]}, "publish": "self" if n % 3 == 0 else "none"})
    rules += [{"topic": "public/**", "subscribe": "any", "publish": "any"},
              {"topic": "user/{sub}/**", "subscribe": "self", "publish": "none"},
              {"topic": "group/{group}/**", "subscribe": "self", "publish": "self"},
              {"topic": "*/room/*", "subscribe": "any", "publish": "none"}]
    return ChannelRules.parse(json.dumps(rules))


def per_decision_us(rules: ChannelRules, rounds: int = 20_000) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for i in range(rounds):
            channel_decision(rules, CALLER, TOPICS[i % len(TOPICS)], "subscribe")
        best = min(best, (time.perf_counter() - started) / rounds * 1e6)
    return best


def run() -> Result:
    small, large = ChannelRules.default(), thousand_rules()
    check(len(large.rules) == 1000, "the large rule set has 1,000 rules")
    expected = {"public/news": True, "user/u-1/inbox": True, "group/staff/chat": True,
                "team-997/room/general": True, "nowhere/at/all": False}
    check({t: channel_decision(large, CALLER, t, "subscribe").allowed for t in TOPICS} == expected,
          "the 1,000 rules decide as written")
    started = time.perf_counter()
    thousand_rules()
    compile_ms = (time.perf_counter() - started) * 1e3
    small_us, large_us = per_decision_us(small), per_decision_us(large)
    result = Result("channel_rules")
    result.tables.append(table(["rules", "decision (us)", "compile (ms)"],
                               [[3, small_us, "-"], [1000, large_us, compile_ms]]))
    result.goals.append(Goal("a decision with 1,000 rules", large_us, 50.0, unit=" us"))
    result.goals.append(Goal("1,000 rules / 3 rules, per decision", large_us / small_us, 2.0))
    return result
