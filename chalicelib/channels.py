"""Channel rules: who may subscribe to a topic, publish to it, or push to it from a back-end.

A stage's ``CHANNEL_RULES`` (a JSON list; unset: ``DEFAULT_RULES``) is an ordered
list, and the first rule whose pattern matches the topic decides. A topic no rule
matches is refused: deny by default. Patterns are ``/``-separated segments: a
literal, ``*`` (any one segment), ``{sub}``/``{username}``/``{group}`` (one
segment, bound from the caller's verified identity), or a trailing ``**`` (one or
more segments). Pure and I/O-free: the rules are compiled once per container into
a trie, so a decision costs a few dictionary lookups however many rules there are.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Protocol

from .channel_hook import ask_hook, authorizer

__all__ = ["ChannelRules", "Decision", "RuleError", "authorizer", "channel_decision", "check_push"]

Operation = Literal["subscribe", "publish", "push"]
OPERATIONS: tuple[Operation, ...] = ("subscribe", "publish", "push")
PLACEHOLDERS = ("{sub}", "{username}", "{group}")
# Each operation's access: who may do it.
ANY, SELF, NONE, HOOK = "any", "self", "none", "hook"

# The rules of a stage that sets none (docs/channels.md): safe for a first deploy.
DEFAULT_RULES: tuple[Mapping[str, Any], ...] = (
    {"topic": "public/**", "subscribe": ANY, "publish": ANY},
    {"topic": "user/{sub}/**", "subscribe": SELF, "publish": NONE},
    {"topic": "group/{group}/**", "subscribe": SELF, "publish": SELF},
)
MAX_RULES = 5000
MAX_HISTORY_SECONDS = 86_400


class RuleError(ValueError):
    """A rule that cannot be compiled; the message names the rule and the problem."""


class Caller(Protocol):
    """What a decision reads of the caller (``identity.Identity``)."""

    @property
    def sub(self) -> str: ...
    @property
    def username(self) -> str: ...
    @property
    def groups(self) -> tuple[str, ...]: ...
    @property
    def scopes(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class Access:
    """Who may do one operation: ``any`` authenticated user, ``self`` (the identity the placeholders bind
    to), members of ``groups``, holders of ``scopes``, ``none`` (back-ends only), or the app's ``hook``."""

    kind: str
    names: frozenset[str] = frozenset()

    def allows(self, caller: Caller, bound: Mapping[str, str]) -> bool:
        if self.kind == ANY:
            return True
        if self.kind == SELF:
            return _binds_to(caller, bound)
        if self.kind == "groups":
            return bool(self.names.intersection(caller.groups))
        if self.kind == "scopes":
            return bool(self.names.intersection(caller.scopes))
        return False  # none; hook is decided by the caller of ``decide``

    def describe(self) -> str | dict[str, list[str]]:
        return {self.kind: sorted(self.names)} if self.names else self.kind


def _binds_to(caller: Caller, bound: Mapping[str, str]) -> bool:
    if not bound:
        return False
    for name, value in bound.items():
        if name.startswith("{group}"):
            if value not in caller.groups:
                return False
        elif value != (caller.sub if name.startswith("{sub}") else caller.username):
            return False
    return True


@dataclass(frozen=True)
class Rule:
    index: int  # 1-based, as the docs and errors count
    pattern: str
    segments: tuple[str, ...]
    access: Mapping[str, Access]
    history_seconds: int | None = None  # kept messages and sequence numbers (docs/history.md)
    presence: bool = False  # who is subscribed is known and announced (docs/history.md)

    def bind(self, topic: tuple[str, ...]) -> dict[str, str]:
        """The placeholders' values in ``topic`` (which this rule matches), keyed ``{name}#position``."""
        return {f"{segment}#{i}": topic[i] for i, segment in enumerate(self.segments) if segment in PLACEHOLDERS}


class Decision:
    """``allowed``; the ``rule`` that decided (None: no rule matches); ``ask_hook``: the app's function decides."""

    __slots__ = ("allowed", "rule", "ask_hook")

    def __init__(self, allowed: bool, rule: Rule | None, ask_hook: bool = False) -> None:
        self.allowed, self.rule, self.ask_hook = allowed, rule, ask_hook


class _Node:
    """One trie level: literal children, the one-segment child (``*`` and placeholders), and the rules that
    end exactly here or with ``**`` here. (Plain classes: a dataclass costs ~0.7 ms at import, on the
    authorizer's cold start.)"""

    __slots__ = ("literal", "one", "ends", "rest")

    def __init__(self) -> None:
        self.literal: dict[str, _Node] = {}
        self.one: _Node | None = None
        self.ends: list[int] = []
        self.rest: list[int] = []


class ChannelRules:
    """The compiled rules of a stage."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._root = _Node()
        for rule in rules:
            node = self._root
            for segment in rule.segments:
                if segment == "**":
                    node.rest.append(rule.index)
                    break
                if segment == "*" or segment in PLACEHOLDERS:
                    node.one = node.one or _Node()
                    node = node.one
                else:
                    node = node.literal.setdefault(segment, _Node())
            else:
                node.ends.append(rule.index)

    @classmethod
    def parse(cls, text: str | None) -> ChannelRules:
        """``CHANNEL_RULES``' JSON (unset or blank: the defaults); RuleError names the rule at fault."""
        if text is None or not text.strip():
            return cls.default()
        try:
            loaded = json.loads(text)
        except ValueError as error:
            raise RuleError(f"not JSON ({error})") from None
        if not isinstance(loaded, list) or not loaded:
            raise RuleError("must be a non-empty JSON list of rules")
        return cls.compile(loaded)

    @classmethod
    def compile(cls, entries: Any) -> ChannelRules:
        if len(entries) > MAX_RULES:
            raise RuleError(f"{len(entries)} rules; at most {MAX_RULES}")
        return cls([_compile(i, entry) for i, entry in enumerate(entries, start=1)])

    def rule_for(self, topic: str) -> Rule | None:
        """The first rule whose pattern matches ``topic``."""
        found = _search(self._root, tuple(topic.split("/")), 0)
        return self.rules[min(found) - 1] if found else None

    def history_seconds(self, topic: str) -> int | None:
        """How long the topic's messages are kept (None: no history), from its rule."""
        rule = self.rule_for(topic)
        return rule.history_seconds if rule is not None else None

    def is_presence(self, topic: str) -> bool:
        rule = self.rule_for(topic)
        return rule is not None and rule.presence

    def decide(self, caller: Caller, topic: str, operation: Operation) -> Decision:
        rule = self.rule_for(topic)
        if rule is None:
            return Decision(False, None)
        access = rule.access[operation]
        if access.kind == HOOK:
            return Decision(False, rule, ask_hook=True)
        return Decision(access.allows(caller, rule.bind(tuple(topic.split("/")))), rule)

    @classmethod
    def default(cls) -> ChannelRules:
        return cls.compile(DEFAULT_RULES)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChannelRules) and self.rules == other.rules

    def __hash__(self) -> int:
        return hash(tuple(rule.pattern for rule in self.rules))


def _search(node: _Node, topic: tuple[str, ...], i: int) -> list[int]:
    if i == len(topic):
        return list(node.ends)
    found = list(node.rest)
    child = node.literal.get(topic[i])
    if child is not None:
        found += _search(child, topic, i + 1)
    if node.one is not None:
        found += _search(node.one, topic, i + 1)
    return found


def _compile(index: int, entry: Any) -> Rule:
    where = f"rule {index}"
    if not isinstance(entry, dict):
        raise RuleError(f"{where}: must be an object with 'topic', 'subscribe', 'publish'")
    pattern = entry.get("topic")
    where = f"rule {index} ({pattern!r})"
    unknown = set(entry) - {"topic", "history_seconds", "presence", *OPERATIONS}
    if unknown:
        raise RuleError(f"{where}: unknown key(s) {sorted(unknown)}")
    if not isinstance(pattern, str) or not pattern or len(pattern) > 256:
        raise RuleError(f"{where}: 'topic' must be a pattern of 1-256 characters")
    segments = tuple(pattern.split("/"))
    for position, segment in enumerate(segments):
        if not segment:
            raise RuleError(f"{where}: empty segment")
        if segment == "**" and position != len(segments) - 1:
            raise RuleError(f"{where}: '**' only as the last segment")
        if ("{" in segment or "}" in segment) and segment not in PLACEHOLDERS:
            raise RuleError(f"{where}: unknown placeholder {segment!r} (known: {', '.join(PLACEHOLDERS)})")
        if "*" in segment and segment not in ("*", "**"):
            raise RuleError(f"{where}: '*' must be a whole segment")
    if "subscribe" not in entry or "publish" not in entry:
        raise RuleError(f"{where}: needs both 'subscribe' and 'publish'")
    access = {operation: _access(where, operation, entry.get(operation, ANY), segments) for operation in OPERATIONS}
    history = entry.get("history_seconds")
    if history is not None and (type(history) is not int or not 1 <= history <= MAX_HISTORY_SECONDS):
        raise RuleError(f"{where}: history_seconds must be a whole number of seconds, 1 to {MAX_HISTORY_SECONDS}")
    presence = entry.get("presence", False)
    if not isinstance(presence, bool):
        raise RuleError(f"{where}: presence must be true or false")
    return Rule(index, pattern, segments, access, history, presence)


def _access(where: str, operation: str, value: Any, segments: tuple[str, ...]) -> Access:
    if value in (ANY, NONE, HOOK) or (value == SELF and operation != "push"):
        if value == SELF and not any(segment in PLACEHOLDERS for segment in segments):
            raise RuleError(f"{where}: {operation} 'self' needs a placeholder in the pattern")
        if value == HOOK and operation == "push":
            raise RuleError(f"{where}: push cannot be 'hook' (back-ends are authorized by PUSH_GROUPS/PUSH_SCOPES)")
        return Access(value)
    if isinstance(value, dict) and len(value) == 1:
        (kind, names), = value.items()
        if kind in ("groups", "scopes") and isinstance(names, list) and names and \
                all(isinstance(n, str) and n for n in names):
            return Access(kind, frozenset(names))
    allowed = "'any', 'self', 'none', 'hook', {\"groups\": [...]}, {\"scopes\": [...]}"
    raise RuleError(f"{where}: {operation} must be one of {allowed}, not {json.dumps(value)[:80]}")


def check_push(rules: ChannelRules, topic: str, caller: Caller | None) -> None:
    """A back-end's push to ``topic``: a rule must match and its ``push`` allow it (``caller``: a REST
    caller, already in PUSH_GROUPS/PUSH_SCOPES; None: notify or EventBridge, authorized by IAM)."""
    from .errors import AppError, ErrorCode

    rule = rules.rule_for(topic)
    if rule is None:
        raise AppError(ErrorCode.FORBIDDEN, f"no channel rule matches {topic!r}: pushes go to ruled topics only")
    access = rule.access["push"]
    if access.kind == NONE or (caller is not None and access.kind != ANY and not access.allows(caller, {})):
        raise AppError(ErrorCode.FORBIDDEN, f"channel rule {rule.index} does not let this back-end push to {topic!r}")


def channel_decision(rules: ChannelRules, caller: Caller | None, topic: str, operation: Operation) -> Decision:
    """The stage's answer for ``caller``; a hook rule asks the app's function once per subscribe (the stored
    subscription is its answer from then on: deliveries never ask) and once per publish."""
    if caller is None:
        return Decision(False, None)
    decision = rules.decide(caller, topic, operation)
    if not decision.ask_hook:
        return decision
    return Decision(ask_hook(caller, topic, operation), decision.rule)
