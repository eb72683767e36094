"""MQTT topic filters (MQTT 3.1.1 section 4.7): wildcard matching, validity, the router."""

from __future__ import annotations

import pytest

from iot_bridge.topics import TopicRouter, filter_problem, is_wildcard, matches

MATCH_TABLE = [
    # exact
    ("a/b", "a/b", True),
    ("a/b", "a/c", False),
    ("a/b", "a/b/c", False),
    ("a/b", "a", False),
    ("a/b", "a/b/", False),
    ("A/b", "a/b", False),  # topics are case sensitive
    ("shaperorigin/status/pm1:0", "shaperorigin/status/pm1:0", True),
    # single level
    ("a/+", "a/b", True),
    ("a/+", "a/b/c", False),
    ("a/+", "a", False),
    ("a/+", "a/", True),  # an empty level is a level
    ("a/+/c", "a/x/c", True),
    ("a/+/c", "a//c", True),
    ("a/+/c", "a/x/d", False),
    ("+", "a", True),
    ("+", "a/b", False),
    ("+", "/a", False),
    ("+/+", "/a", True),
    ("/+", "/a", True),
    ("+/status/+", "shelly1/status/switch:0", True),
    # multi level
    ("a/#", "a", True),  # "sport/#" also matches "sport" (4.7.1.2)
    ("a/#", "a/b", True),
    ("a/#", "a/b/c/d", True),
    ("a/#", "b/a", False),
    ("a/b/#", "a", False),
    ("#", "a", True),
    ("#", "a/b/c", True),
    ("#", "/", True),
    ("+/#", "a/b", True),
    ("+/#", "a", True),
    # $ topics are not matched by a leading wildcard (4.7.2)
    ("#", "$SYS/broker/uptime", False),
    ("+/broker/uptime", "$SYS/broker/uptime", False),
    ("+/#", "$SYS/x", False),
    ("$SYS/#", "$SYS/broker/uptime", True),
    ("$SYS/+/uptime", "$SYS/broker/uptime", True),
    ("$SYS/broker/uptime", "$SYS/broker/uptime", True),
    ("a/#", "a/$b", True),  # $ only matters at the start of the topic
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCH_TABLE)
def test_matches_table(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected


@pytest.mark.parametrize(
    ("topic_filter", "problem"),
    [
        ("a/b", None),
        ("a/+/c", None),
        ("a/#", None),
        ("/", None),
        ("shop/+/power", None),
        ("", "is empty"),
        ("#", "matches every topic"),
        ("+", "matches every topic"),
        ("+/+/#", "matches every topic"),
        ("$SYS/#", "reserved for the broker"),
        ("$share/bridges/a/b", "shared subscription"),
        ("a/#/b", "'#' that is not the whole last level"),
        ("#/a", "'#' that is not the whole last level"),
        ("a#", "'#' that is not the whole last level"),
        ("a/b#", "'#' that is not the whole last level"),
        ("a+", "'+' that is not a whole level"),
        ("a/+b/c", "'+' that is not a whole level"),
        ("++", "'+' that is not a whole level"),
        ("a/\0", "NUL"),
        ("a/" + "x" * 65_534, "65536 bytes long"),
        ("ä" * 32_768, "65536 bytes long"),
    ],
)
def test_filter_problem(topic_filter: str, problem: str | None) -> None:
    found = filter_problem(topic_filter)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_is_wildcard() -> None:
    assert is_wildcard("a/+")
    assert is_wildcard("#")
    assert not is_wildcard("a/b")


def test_router_exact_and_wildcards() -> None:
    router: TopicRouter[str] = TopicRouter()
    router.add("shop/laser/status", "laser")
    router.add("shop/laser/status", "laser-audit")  # two targets on one exact filter
    router.add("shop/+/status", "any-status")
    router.add("shop/#", "everything")
    router.add("#", "root")

    assert router.match("shop/laser/status") == [
        "laser",
        "laser-audit",
        "any-status",
        "everything",
        "root",
    ]
    assert router.match("shop/cnc/status") == ["any-status", "everything", "root"]
    assert router.match("shop/cnc/status/extra") == ["everything", "root"]
    assert router.match("office/door") == ["root"]
    assert router.match("$SYS/broker/uptime") == []
    assert router.filters() == {"shop/laser/status", "shop/+/status", "shop/#", "#"}


def test_router_exact_only_and_no_match() -> None:
    router: TopicRouter[int] = TopicRouter()
    assert router.match("a") == []
    router.add("a/b", 1)
    assert router.match("a/b") == [1]
    assert router.match("a/c") == []
    assert router.match("a") == []


def test_router_same_target_on_two_matching_filters_listed_once() -> None:
    router: TopicRouter[str] = TopicRouter()
    router.add("a/b", "dev")
    router.add("a/+", "dev")
    router.add("a/#", "dev")
    assert router.match("a/b") == ["dev"]
    assert router.match("a/x") == ["dev"]
