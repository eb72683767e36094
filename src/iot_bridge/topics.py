"""MQTT topic filters -> targets, with ``+`` and ``#`` wildcards (MQTT 3.1.1 section 4.7).

Exact filters are a dict lookup (the common case, on the hot path); wildcard filters are few and
matched segment by segment.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


def is_wildcard(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


def matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter``; ``$`` topics never match a leading wildcard."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_parts = topic_filter.split("/")
    t_parts = topic.split("/")
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts):
            return False
        if part != "+" and part != t_parts[i]:
            return False
    return len(f_parts) == len(t_parts)


MAX_TOPIC_BYTES = 65_535  # MQTT strings carry a two-byte length


def filter_problem(topic_filter: str) -> str | None:
    """Why ``topic_filter`` cannot be a device's subscription, or ``None`` if it can.

    Beyond MQTT's syntax (section 4.7) a device may not take the broker's ``$`` topics, a
    shared subscription (``$share/...`` spreads one device's readings over several bridges,
    which breaks its session state), or a filter that matches every topic."""
    if not topic_filter:
        return "is empty"
    if "\0" in topic_filter:
        return "contains a NUL character"
    size = len(topic_filter.encode("utf-8", "surrogatepass"))
    if size > MAX_TOPIC_BYTES:
        return f"is {size} bytes long, more than MQTT's {MAX_TOPIC_BYTES}"
    if topic_filter.startswith("$share/"):
        return "is a shared subscription ($share/...): one bridge must see all of a device"
    if topic_filter.startswith("$"):
        return "starts with '$', which is reserved for the broker"
    parts = topic_filter.split("/")
    for i, part in enumerate(parts):
        if "#" in part and (part != "#" or i != len(parts) - 1):
            return "has '#' that is not the whole last level"
        if "+" in part and part != "+":
            return "has '+' that is not a whole level"
    if all(part in ("+", "#") for part in parts):
        return "matches every topic"
    return None


class TopicRouter(Generic[T]):
    def __init__(self) -> None:
        self._exact: dict[str, list[T]] = {}
        self._wild: list[tuple[str, T]] = []

    def add(self, topic_filter: str, target: T) -> None:
        if is_wildcard(topic_filter):
            self._wild.append((topic_filter, target))
        else:
            self._exact.setdefault(topic_filter, []).append(target)

    def filters(self) -> set[str]:
        return set(self._exact) | {f for f, _ in self._wild}

    def match(self, topic: str) -> list[T]:
        found = self._exact.get(topic)
        if not self._wild:
            return found or []
        out = list(found or ())
        for topic_filter, target in self._wild:
            if matches(topic_filter, topic) and target not in out:
                out.append(target)
        return out
