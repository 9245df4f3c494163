"""Who a message goes to: one user, a topic's subscribers, everyone, or every other connection.

Each kind knows how to list its connection ids, how to cut itself into fan-out
work items (``fanout.Slice``) and which frame type its clients receive:

====================  ==============  ===================================
audience              frame ``type``  ids from
====================  ==============  ===================================
``User`` (by sub)     notification    the user index
``User`` (username)   notification    the username index
``Topic``             publish         the topic index, page by page
``Everyone``          broadcast       a parallel Scan
``Others`` (sender)   message         a parallel Scan, less the sender
====================  ==============  ===================================

Pure: the reader (``readers.AudienceReader``) is passed in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Literal, Mapping, Protocol

from .fanout import Slice, segment_count

Frame = dict[str, Any]


class Reader(Protocol):
    """What an audience reads (``readers.AudienceReader``)."""

    def user_ids(self, user_id: str) -> list[str]: ...
    def username_ids(self, username: str) -> list[str]: ...
    def topic_pages(self, topic: str, page_size: int = ...) -> Iterator[tuple[list[str], Any]]: ...
    def topic_page_bounds(self, topic: str, page_size: int = ...) -> list[tuple[Any, str | None]]: ...
    def topic_page_ids(self, topic: str, after: Mapping[str, Any] | None, through: str | None) -> list[str]: ...
    def all_ids(self, segments: int = ..., page_size: int = ...) -> Iterator[list[str]]: ...
    def segment_ids(self, segment: int, segments: int, page_size: int = ...) -> Iterator[list[str]]: ...
    def approximate_count(self) -> int: ...


def _flatten(pages: Iterable[list[str]]) -> Iterator[str]:
    for page in pages:
        yield from page


@dataclass(frozen=True)
class User:
    """Every connection of one user, named by ``sub`` (``by="sub"``) or by username."""

    name: str
    by: Literal["sub", "username"] = "sub"
    frame_type = "notification"
    exclude: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return "user" if self.by == "sub" else "username"

    @property
    def target(self) -> str:
        return self.name

    def frame(self, data: object, sender: Mapping[str, str] | None = None) -> Frame:
        return {"type": self.frame_type, "data": data}

    def ids(self, reader: Reader, first_page: int | None = None) -> Iterator[str]:
        return iter(reader.user_ids(self.name) if self.by == "sub" else reader.username_ids(self.name))

    def slices(self, reader: Reader, seen: int, segment_size: int) -> list[Slice]:
        return [Slice("user" if self.by == "sub" else "username", user=self.name)]


@dataclass(frozen=True)
class Topic:
    """A topic's subscribers."""

    name: str
    exclude: tuple[str, ...] = ()
    frame_type = "publish"
    kind = "topic"

    @property
    def target(self) -> str:
        return self.name

    def frame(self, data: object, sender: Mapping[str, str] | None = None) -> Frame:
        """A user's ``publish`` carries ``from`` (the connection's verified identity); a back-end's is
        ``type: push`` and has none: the two cannot be mistaken, nor a ``from`` forged."""
        frame: Frame = {"type": self.frame_type if sender is not None else "push", "topic": self.name}
        if sender is not None:
            frame["from"] = dict(sender)
        frame["data"] = data
        return frame

    def ids(self, reader: Reader, first_page: int | None = None) -> Iterator[str]:
        return _flatten(ids for ids, _ in reader.topic_pages(self.name, first_page or 1000))

    def slices(self, reader: Reader, seen: int, segment_size: int) -> list[Slice]:
        return [Slice("topic", topic=self.name, after=after, through=through)
                for after, through in reader.topic_page_bounds(self.name, segment_size)]


@dataclass(frozen=True)
class Everyone:
    """Every connection (``Others``: every connection but the sender's)."""

    exclude: tuple[str, ...] = ()
    frame_type = "broadcast"
    kind = "all"
    target = ""

    def frame(self, data: object, sender: Mapping[str, str] | None = None) -> Frame:
        frame: Frame = {"type": self.frame_type}
        if sender is not None:
            frame["from"] = dict(sender)
        frame["data"] = data
        return frame

    def ids(self, reader: Reader, first_page: int | None = None) -> Iterator[str]:
        if first_page:  # the queued path's decision needs only the first few ids: one small segment
            return _flatten(reader.all_ids(segments=1, page_size=first_page))
        return _flatten(reader.all_ids())

    def slices(self, reader: Reader, seen: int, segment_size: int) -> list[Slice]:
        segments = segment_count(reader.approximate_count(), seen, segment_size)
        return [Slice("all", segment=i, segments=segments) for i in range(segments)]


@dataclass(frozen=True)
class Others(Everyone):
    """Every other connection: ``sendmessage``'s audience."""

    frame_type = "message"

    @classmethod
    def than(cls, connection_id: str) -> Others:
        return cls(exclude=(connection_id,))


Audience = User | Topic | Everyone

def slice_ids(piece: Slice, reader: Reader) -> Iterable[str]:
    """The connection ids of one work item's slice (the worker's read)."""
    if piece.kind == "all":
        return _flatten(reader.segment_ids(piece.segment, piece.segments))
    if piece.kind == "topic":
        return reader.topic_page_ids(piece.topic, piece.after, piece.through)
    return User(piece.user, "sub" if piece.kind == "user" else "username").ids(reader)


__all__ = ["Audience", "Everyone", "Others", "Topic", "User", "slice_ids"]
