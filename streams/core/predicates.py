"""Field predicates of the catalog (`where`, `numerator`): checking and compiling.

A predicate maps field -> condition. A condition is a plain value (equality) or a map of
operators that must all hold. A missing or null field fails every condition except `eq: null`.
Predicates are compiled once into closures over plain dicts; nothing is interpreted per event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from streams.core.events import FieldSpec, field_spec

OPERATORS: Final = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte")
ORDERING_OPERATORS: Final = frozenset({"gt", "gte", "lt", "lte"})

Predicate = Callable[[Mapping[str, Any]], bool]
Problem = tuple[str, str]  # (path relative to the predicate, message)


def _normalise(condition: Any) -> dict[str, Any]:
    """A plain value means equality; an operator map is taken as is."""
    if isinstance(condition, Mapping):
        return dict(condition)
    return {"eq": condition}


def _value_problem(spec: FieldSpec, value: Any) -> str | None:
    """Is `value` something this field can hold (so a typo in the catalog is caught)?"""
    t = spec.type
    if t == "enum":
        ok = type(value) is str and value in spec.symbols
        return None if ok else f"{value!r} is not one of {spec.symbols}"
    if t == "bool":
        return None if type(value) is bool else f"{value!r} is not true/false"
    if t == "str":
        return None if type(value) is str else f"{value!r} is not a string"
    if type(value) is bool or not isinstance(value, (int, float)):
        return f"{value!r} is not a number"
    return None


def check_predicate(predicate: Mapping[str, Any], event_type: str) -> list[Problem]:
    """Problems with a predicate for events of `event_type` (empty list: it is valid)."""
    problems: list[Problem] = []
    for field, condition in predicate.items():
        spec = field_spec(event_type, field)
        if spec is None:
            problems.append((field, f"unknown field for event type {event_type!r}"))
            continue
        ops = _normalise(condition)
        if not ops:
            problems.append((field, "empty condition"))
        for op, value in ops.items():
            path = f"{field}.{op}" if isinstance(condition, Mapping) else field
            if op not in OPERATORS:
                problems.append((path, f"unknown operator {op!r}; use one of {OPERATORS}"))
                continue
            if op in ORDERING_OPERATORS and not spec.numeric:
                problems.append((path, f"{op} needs a numeric field, {field} is {spec.type}"))
                continue
            if op in ("in", "not_in"):
                if not isinstance(value, list) or not value:
                    problems.append((path, f"{op} needs a non-empty list"))
                    continue
                for item in value:
                    problem = _value_problem(spec, item)
                    if problem:
                        problems.append((path, problem))
            elif value is None:
                if op != "eq" and op != "ne":
                    problems.append((path, f"{op} cannot compare with null"))
            else:
                problem = _value_problem(spec, value)
                if problem:
                    problems.append((path, problem))
    return problems


def _compile_condition(field: str, op: str, value: Any) -> Predicate:
    # Each closure reads one field; None (missing or null) fails all but `eq: null`.
    if op == "eq":
        if value is None:
            return lambda e: e.get(field) is None
        return lambda e: e.get(field) == value
    if op == "ne":
        if value is None:
            return lambda e: e.get(field) is not None
        return lambda e: (x := e.get(field)) is not None and x != value
    if op == "in":
        members = frozenset(value)
        return lambda e: (x := e.get(field)) is not None and x in members
    if op == "not_in":
        members = frozenset(value)
        return lambda e: (x := e.get(field)) is not None and x not in members
    if op == "gt":
        return lambda e: (x := e.get(field)) is not None and x > value
    if op == "gte":
        return lambda e: (x := e.get(field)) is not None and x >= value
    if op == "lt":
        return lambda e: (x := e.get(field)) is not None and x < value
    if op == "lte":
        return lambda e: (x := e.get(field)) is not None and x <= value
    raise ValueError(f"unknown operator {op!r}")


def _always(_: Mapping[str, Any]) -> bool:
    return True


def compile_predicate(predicate: Mapping[str, Any]) -> Predicate:
    """One callable for the whole predicate (all conditions must hold); empty = always true."""
    conditions = [
        _compile_condition(field, op, value)
        for field, condition in predicate.items()
        for op, value in _normalise(condition).items()
    ]
    if not conditions:
        return _always
    if len(conditions) == 1:
        return conditions[0]
    if len(conditions) == 2:
        first, second = conditions
        return lambda e: first(e) and second(e)
    frozen = tuple(conditions)

    def all_hold(e: Mapping[str, Any]) -> bool:
        return all(condition(e) for condition in frozen)

    return all_hold
