"""Hypothesis strategies for valid events, built from the one event definition."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from streams.core.events import EVENT_FIELDS, FieldSpec
from tests.factories import local_ms

TOUCHPOINTS = ("install", "care", "repair", "use", "payment", "leave")
NOV_START = local_ms("2026-11-01 00:00")
DEC_END = local_ms("2027-01-01 00:00")


def _value(spec: FieldSpec) -> st.SearchStrategy[Any]:
    if spec.name == "event_time":
        return st.integers(NOV_START - 3_600_000, DEC_END)
    if spec.name == "unit":
        return st.sampled_from(("HPG", "QBH", "HNI"))
    if spec.name == "touchpoint":
        return st.sampled_from(TOUCHPOINTS)
    if spec.type == "enum":
        return st.sampled_from(spec.symbols)
    if spec.type == "bool":
        return st.booleans()
    if spec.type == "int":
        return st.integers(int(spec.minimum or 0), int(spec.maximum or 100_000))
    if spec.type == "float":
        return st.floats(0, 200, allow_nan=False).map(lambda x: round(x, 2))
    return st.just("c1")


def events_of(etype: str) -> st.SearchStrategy[dict[str, Any]]:
    fields = {
        name: (st.none() | _value(spec)) if spec.nullable else _value(spec)
        for name, spec in EVENT_FIELDS[etype].items()
        if name != "event_id"
    }
    return st.fixed_dictionaries({"type": st.just(etype), **fields})


any_event = st.one_of(*(events_of(t) for t in EVENT_FIELDS))


@st.composite
def event_lists(draw: st.DrawFn, max_size: int = 60) -> list[dict[str, Any]]:
    events = draw(st.lists(any_event, max_size=max_size))
    for i, e in enumerate(events):
        e["event_id"] = f"h{i}"
    return events
