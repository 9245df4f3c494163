"""The channel rule language (``chalicelib/channels.py``): patterns, placeholders, first match, deny by default,
bad rules refused at start-up, and the app's hook (which can refuse but never allows by failing)."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib import channel_hook, channels
from chalicelib.channels import ChannelRules, RuleError, channel_decision, check_push
from chalicelib.errors import AppError
from chalicelib.identity import Identity
from chalicelib.settings import SettingsError, load_settings
from tests.support.builders import settings_env

ALICE = Identity(sub="a-sub", username="alice", groups=("staff", "chess"), scopes=("news/read",))
BOB = Identity(sub="b-sub", username="bob")


def rules(*entries: dict[str, Any]) -> ChannelRules:
    return ChannelRules.parse(json.dumps(list(entries)))


def allowed(rule_set: ChannelRules, who: Identity, topic: str, operation: channels.Operation) -> bool:
    return channel_decision(rule_set, who, topic, operation).allowed


def test_the_default_rules() -> None:
    """public/** for everyone; user/{sub}/** read by that user only, written by back-ends only;
    group/{group}/** for members; anything else refused."""
    default = ChannelRules.default()
    assert allowed(default, BOB, "public/news", "subscribe") and allowed(default, BOB, "public/a/b", "publish")
    assert allowed(default, ALICE, "user/a-sub/inbox", "subscribe")
    assert not allowed(default, BOB, "user/a-sub/inbox", "subscribe")
    assert not allowed(default, ALICE, "user/a-sub/inbox", "publish")  # back-ends only
    assert allowed(default, ALICE, "group/chess/moves", "subscribe") and allowed(default, ALICE, "group/chess/x",
                                                                                  "publish")
    assert not allowed(default, BOB, "group/chess/moves", "subscribe")
    for topic in ("news", "public", "user/a-sub", "private/a-sub/x"):  # ** needs one segment or more
        assert not allowed(default, ALICE, topic, "subscribe"), topic


def test_every_placeholder_binds_from_the_identity() -> None:
    rule_set = rules({"topic": "by-sub/{sub}", "subscribe": "self", "publish": "self"},
                     {"topic": "by-name/{username}/**", "subscribe": "self", "publish": "none"},
                     {"topic": "team/{group}/{sub}", "subscribe": "self", "publish": "any"})
    assert allowed(rule_set, ALICE, "by-sub/a-sub", "subscribe") and not allowed(rule_set, BOB, "by-sub/a-sub",
                                                                                  "subscribe")
    assert allowed(rule_set, ALICE, "by-name/alice/x", "subscribe")
    assert not allowed(rule_set, ALICE, "by-name/bob/x", "subscribe")
    assert allowed(rule_set, ALICE, "team/staff/a-sub", "subscribe")  # every placeholder must bind
    assert not allowed(rule_set, ALICE, "team/staff/b-sub", "subscribe")
    assert not allowed(rule_set, ALICE, "team/admins/a-sub", "subscribe")
    assert allowed(rule_set, BOB, "team/admins/a-sub", "publish")  # 'any': the placeholders only match


def test_wildcards_groups_scopes_and_the_first_match_decides() -> None:
    rule_set = rules({"topic": "rooms/lobby", "subscribe": "any", "publish": {"groups": ["staff"]}},
                     {"topic": "rooms/*", "subscribe": {"scopes": ["news/read"]}, "publish": "none"},
                     {"topic": "rooms/**", "subscribe": "any", "publish": "any"})
    assert allowed(rule_set, BOB, "rooms/lobby", "subscribe") and not allowed(rule_set, BOB, "rooms/lobby", "publish")
    assert allowed(rule_set, ALICE, "rooms/lobby", "publish")
    assert allowed(rule_set, ALICE, "rooms/den", "subscribe") and not allowed(rule_set, BOB, "rooms/den", "subscribe")
    assert not allowed(rule_set, ALICE, "rooms/den", "publish")  # rule 2 decides, not the laxer rule 3
    assert allowed(rule_set, BOB, "rooms/den/tv", "publish")  # * is one segment: rule 3
    assert rule_set.rule_for("rooms/den").index == 2 and rule_set.rule_for("elsewhere") is None


def test_a_later_literal_does_not_beat_an_earlier_wildcard() -> None:
    rule_set = rules({"topic": "a/*", "subscribe": "none", "publish": "none"},
                     {"topic": "a/b", "subscribe": "any", "publish": "any"})
    assert rule_set.rule_for("a/b").index == 1


def test_deny_by_default_and_for_no_identity() -> None:
    rule_set = rules({"topic": "only/this", "subscribe": "any", "publish": "any"})
    assert not allowed(rule_set, ALICE, "only/that", "subscribe")
    assert channel_decision(rule_set, None, "only/this", "subscribe").allowed is False


@pytest.mark.parametrize("value, problem", [
    ("not json", "not JSON"),
    ("{}", "non-empty JSON list"),
    ("[]", "non-empty JSON list"),
    ('["public/**"]', "rule 1: must be an object"),
    ('[{"topic": "a/**/b", "subscribe": "any", "publish": "any"}]', "rule 1 ('a/**/b'): '**' only as the last"),
    ('[{"topic": "a//b", "subscribe": "any", "publish": "any"}]', "empty segment"),
    ('[{"topic": "a/b*", "subscribe": "any", "publish": "any"}]', "'*' must be a whole segment"),
    ('[{"topic": "a/{userId}", "subscribe": "any", "publish": "any"}]', "unknown placeholder '{userId}'"),
    ('[{"topic": "a", "subscribe": "self", "publish": "any"}]', "subscribe 'self' needs a placeholder"),
    ('[{"topic": "a", "subscribe": "any"}]', "needs both 'subscribe' and 'publish'"),
    ('[{"topic": "a", "subscribe": "all", "publish": "any"}]', "subscribe must be one of"),
    ('[{"topic": "a", "subscribe": {"groups": []}, "publish": "any"}]', "subscribe must be one of"),
    ('[{"topic": "a", "subscribe": "any", "publish": "any", "push": "hook"}]', "push cannot be 'hook'"),
    ('[{"topic": "a", "subscribe": "any", "publish": "any", "history": 5}]', "unknown key(s) ['history']"),
    ('[{"topic": "a", "subscribe": "any", "publish": "any", "history_seconds": 0}]', "history_seconds must be"),
    ('[{"topic": "a", "subscribe": "any", "publish": "any", "history_seconds": 86401}]', "1 to 86400"),
    ('[{"topic": "a", "subscribe": "any", "publish": "any", "history_seconds": "120"}]', "history_seconds must"),
    ('[{"topic": "a", "subscribe": "any", "publish": "any", "history_seconds": true}]', "history_seconds must"),
    ('[{"topic": "ok", "subscribe": "any", "publish": "any"}, {"topic": "", "subscribe": "any", "publish": "any"}]',
     "rule 2 (''): 'topic' must be"),
])
def test_bad_rules_fail_at_start_up_naming_the_rule(value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(settings_env(CHANNEL_RULES=value))
    assert str(refused.value).startswith("CHANNEL_RULES: ") and problem in str(refused.value), str(refused.value)


def test_history_is_a_rules_option() -> None:
    rule_set = rules({"topic": "chat/*", "subscribe": "any", "publish": "any", "history_seconds": 120},
                     {"topic": "public/**", "subscribe": "any", "publish": "any"})
    assert (rule_set.history_seconds("chat/lobby"), rule_set.history_seconds("public/x"),
            rule_set.history_seconds("nowhere")) == (120, None, None)


def test_a_stage_without_channel_rules_gets_the_defaults() -> None:
    assert load_settings(settings_env()).channel_rules == ChannelRules.default()
    assert load_settings(settings_env(CHANNEL_RULES=" ")).channel_rules == ChannelRules.default()


def test_back_end_pushes_need_a_rule_and_its_push_access() -> None:
    rule_set = rules({"topic": "alerts/**", "subscribe": "any", "publish": "none", "push": {"groups": ["ops"]}},
                     {"topic": "quiet/**", "subscribe": "any", "publish": "any", "push": "none"},
                     {"topic": "user/{sub}/**", "subscribe": "self", "publish": "none"})
    check_push(rule_set, "user/a-sub/inbox", None)  # notify/EventBridge (IAM): the rule's default, any
    check_push(rule_set, "alerts/disk", Identity(sub="ops-1", groups=("ops",)))
    for topic, caller in (("alerts/disk", BOB), ("quiet/x", None), ("nowhere", None)):
        with pytest.raises(AppError) as refused:
            check_push(rule_set, topic, caller)
        assert refused.value.code.value == "forbidden", topic


# -- the hook -------------------------------------------------------------------------------------------

HOOKED = rules({"topic": "room/*", "subscribe": "hook", "publish": "hook"})


@pytest.fixture
def hook() -> Iterator[list[tuple[str, str, str]]]:
    calls: list[tuple[str, str, str]] = []
    yield calls
    channels.authorizer(None)


def test_the_hook_decides_hook_rules_with_the_verified_identity(hook: list[tuple[str, str, str]]) -> None:
    @channels.authorizer
    def members_only(identity: Identity, topic: str, action: str) -> bool:
        hook.append((identity.sub, topic, action))
        return topic == "room/chess" and "chess" in identity.groups

    assert allowed(HOOKED, ALICE, "room/chess", "subscribe") and not allowed(HOOKED, BOB, "room/chess", "subscribe")
    assert not allowed(HOOKED, ALICE, "room/go", "publish")
    assert hook == [("a-sub", "room/chess", "subscribe"), ("b-sub", "room/chess", "subscribe"),
                    ("a-sub", "room/go", "publish")]


@pytest.mark.parametrize("answer", [None, 1, "yes", [True]])
def test_only_true_allows(hook: list[Any], answer: Any) -> None:
    channels.authorizer(lambda identity, topic, action: answer)
    assert not allowed(HOOKED, ALICE, "room/chess", "subscribe")


def test_an_exception_or_a_timeout_in_the_hook_refuses(hook: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(identity: Identity, topic: str, action: str) -> bool:
        raise RuntimeError("the membership table is down")

    channels.authorizer(broken)
    assert not allowed(HOOKED, ALICE, "room/chess", "subscribe")
    release = threading.Event()

    def slow(identity: Identity, topic: str, action: str) -> bool:
        release.wait(5)
        return True

    monkeypatch.setattr(channel_hook, "HOOK_TIMEOUT_SECONDS", 0.2)
    channels.authorizer(slow)
    started = time.monotonic()
    assert not allowed(HOOKED, ALICE, "room/chess", "subscribe")
    assert time.monotonic() - started < 1.0
    release.set()


def test_a_hook_rule_without_a_registered_hook_refuses(hook: list[Any]) -> None:
    assert not allowed(HOOKED, ALICE, "room/chess", "subscribe")
