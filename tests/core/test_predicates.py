from __future__ import annotations

from typing import Any

import pytest

from streams.core.predicates import check_predicate, compile_predicate


@pytest.mark.parametrize(
    ("predicate", "event", "holds"),
    [
        ({"status": "completed"}, {"status": "completed"}, True),
        ({"status": "completed"}, {"status": "failed"}, False),
        ({"on_time": True}, {"on_time": None}, False),
        ({"on_time": {"eq": None}}, {"on_time": None}, True),
        ({"on_time": {"eq": None}}, {}, True),
        ({"on_time": {"ne": None}}, {"on_time": False}, True),
        ({"on_time": {"ne": True}}, {"on_time": None}, False),
        ({"csat": {"gte": 4}}, {"csat": 4}, True),
        ({"csat": {"gte": 4}}, {"csat": 3}, False),
        ({"csat": {"gte": 4}}, {}, False),
        ({"csat": {"gt": 2, "lt": 4}}, {"csat": 3}, True),
        ({"csat": {"gt": 2, "lt": 4}}, {"csat": 4}, False),
        ({"csat": {"lte": 2}}, {"csat": None}, False),
        ({"channel": {"in": ["web", "app"]}}, {"channel": "app"}, True),
        ({"channel": {"not_in": ["web", "app"]}}, {"channel": "app"}, False),
        ({"channel": {"not_in": ["web", "app"]}}, {"channel": None}, False),
        ({"status": "completed", "on_time": True}, {"status": "completed", "on_time": True}, True),
        ({"status": "completed", "on_time": True}, {"status": "completed"}, False),
        ({}, {}, True),
    ],
)
def test_conditions_follow_the_null_rule(
    predicate: dict[str, Any], event: dict[str, Any], holds: bool
) -> None:
    assert compile_predicate(predicate)(event) is holds


@pytest.mark.parametrize(
    ("predicate", "path", "fragment"),
    [
        ({"sttus": "completed"}, "sttus", "unknown field"),
        ({"status": "complete"}, "status", "not one of"),
        ({"status": {"like": "x"}}, "status.like", "unknown operator"),
        ({"status": {"gt": "a"}}, "status.gt", "needs a numeric field"),
        ({"on_time": "yes"}, "on_time", "not true/false"),
        ({"channel": {"in": []}}, "channel.in", "non-empty list"),
        ({"delay_hours": {"lt": None}}, "delay_hours.lt", "cannot compare with null"),
    ],
)
def test_bad_predicates_name_the_field(predicate: dict[str, Any], path: str, fragment: str) -> None:
    problems = check_predicate(predicate, "install")
    assert problems and problems[0][0] == path and fragment in problems[0][1]
