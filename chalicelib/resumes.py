"""Catching up after a reconnect (``subscribe`` with ``since``, ``resume``) and joining or leaving presence.

``resume`` (``{"action": "resume", "connectionId": <old id>, "since": {topic: seq}}``)
moves the old connection's subscriptions to the new one, replays each topic's
gap, and answers per topic. The old connection's ``$disconnect`` left its
tombstone with its user and topics (``connections.py``); the resume takes the
topics from it in one conditional write, so only the same user may, only once,
only after the old connection is gone and only within the tombstone's life.
Anything else is ``forbidden`` or ``not_found`` and changes nothing. Every topic
moved is checked against the channel rules again.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping

from .channels import channel_decision
from .errors import AppError, ErrorCode
from .members import announce
from .presence import member_view
from .protocol import MAX_FRAME_BYTES, new_message_id
from .validation import check_id, check_topic

if TYPE_CHECKING:
    from .actions import Call
    from .identity import Identity

Reply = dict[str, Any]


def catch_up(call: Call, topic: str, since: int) -> Reply:
    """Replay what ``topic`` kept after ``since`` (the subscription is already live), or say why not."""
    services = call.services
    replay = services.history.since(topic, since, services.settings.max_replay_messages)
    if not replay.complete:  # nothing replayed: the client reloads from its own source
        answer: Reply = {"resumed": False}
        if replay.oldest is not None:
            answer["oldest"] = replay.oldest
        if replay.latest:
            answer["seq"] = replay.latest
        return answer
    for frame in replay_frames(topic, replay.frames):  # live already: a newer frame may have arrived first
        call.broadcaster.send(call.connection_id, frame)
    return {"resumed": True, "seq": replay.latest}


def replay_frames(topic: str, stored: list[bytes]) -> list[bytes]:
    """The kept frames, packed in order into ``{"type":"replay","topic":…,"messages":[…]}`` frames of at most
    128 KB each (each message exactly as it was delivered, its ``messageId`` too): a thousand messages are a
    few posts, not a thousand. A message too large to share a frame goes alone, as it was delivered."""
    frames: list[bytes] = []
    batch: list[bytes] = []

    def wrap() -> bytes:
        head = {"type": "replay", "topic": topic, "messageId": new_message_id()}
        return json.dumps(head, separators=(",", ":")).encode()[:-1] + b',"messages":[' + b",".join(batch) + b"]}"

    room = MAX_FRAME_BYTES - len(wrap())  # what the wrapper leaves (its topic escaped, its id)
    size = 0
    for message in stored:
        if len(message) + 1 > room:  # too big to share: alone, as delivered
            if batch:
                frames.append(wrap())
                batch, size = [], 0
            frames.append(message)
            continue
        if batch and size + len(message) + 1 > room:
            frames.append(wrap())
            batch, size = [], 0
        batch.append(message)
        size += len(message) + 1
    if batch:
        frames.append(wrap())
    return frames


def since_value(value: object) -> int:
    if type(value) is not int or value < 0:
        raise AppError(ErrorCode.BAD_FIELD, "'since' must be a whole number >= 0")
    return value


def _since_map(body: Mapping[str, Any]) -> dict[str, int]:
    value = body.get("since", {})
    if not isinstance(value, dict) or len(value) > 100:
        raise AppError(ErrorCode.BAD_FIELD, "'since' must map at most 100 topics to sequence numbers")
    return {check_topic(topic, ErrorCode.BAD_FIELD): since_value(seq) for topic, seq in value.items()}


def resume(call: Call) -> Reply:
    old = check_id(call.field("connectionId"), "'connectionId'", ErrorCode.BAD_FIELD)
    since = _since_map(call.frame.body)
    if old == call.connection_id:
        raise AppError(ErrorCode.BAD_FIELD, "a connection cannot resume itself")
    services = call.services
    identity = call.sender().identity
    topics = services.tombstones.claim_resume(old, identity.sub, by=call.connection_id)
    if topics is None:
        _refuse(call, old)
    rules = services.settings.channel_rules
    results: dict[str, Reply] = {}
    for topic in topics:
        if not channel_decision(rules, identity, topic, "subscribe").allowed:
            results[topic] = {"resumed": False, "reason": "forbidden"}
            continue
        stored = services.subscriptions.subscribe(call.connection_id, topic,
                                                  max_subscriptions=services.settings.max_subscriptions_per_connection)
        if topic in since and rules.history_seconds(topic):
            results[topic] = catch_up(call, topic, since[topic])
        else:
            results[topic] = {"resumed": topic not in since}  # subscribed; a gap it keeps no history of is said
        if rules.is_presence(topic):
            results[topic]["members"] = join(call, topic, identity, stored)
    return {"type": "resumed", "connectionId": old, "topics": results}


def _refuse(call: Call, old: str) -> None:
    """Why nothing could be taken (an extra read on this path only): ``not_found`` or ``forbidden``."""
    if call.services.tombstones.closed_by(old) is None:
        if call.services.connections.get(old) is not None:
            raise AppError(ErrorCode.FORBIDDEN, "that connection is still open: only a closed one can be resumed")
        raise AppError(ErrorCode.NOT_FOUND, "no closed connection with that id (unknown, or closed too long ago)")
    raise AppError(ErrorCode.FORBIDDEN, "that connection cannot be resumed by this user, or was resumed already")


def join(call: Call, topic: str, identity: Identity, stored: bool) -> list[dict[str, str]]:
    """A presence topic's subscribe: a new connection counts (``presence_full`` undoes the subscription); a new
    member is announced to the others; the answer lists the members."""
    services = call.services
    if stored:
        try:
            added = services.presence.join(topic, identity, services.settings.max_presence_members)
        except AppError:
            services.subscriptions.unsubscribe(call.connection_id, topic)  # nothing half-written
            raise
        if added:
            announce(services.delivery, topic, "member_added", member_view(identity), exclude=(call.connection_id,))
    return services.presence.members(topic, services.settings.max_presence_members)


def leave(call: Call, topic: str) -> None:
    """A presence topic's unsubscribe: the user's last connection leaving is announced to the others."""
    member = call.services.presence.leave(topic, call.sender().user_id)
    if member is not None:
        announce(call.services.delivery, topic, "member_removed", member)
