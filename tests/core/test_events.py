from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.events import EVENT_FIELDS, InvalidEvent, string_test, validate_event
from tests.factories import event


def test_valid_event_is_returned_with_missing_nullable_fields_set_to_null() -> None:
    e = event("install", kind="install", status="completed")
    assert validate_event(e) is e
    assert e["on_time"] is None and e["delay_hours"] is None


def test_unknown_extra_fields_are_ignored_for_forward_compatibility() -> None:
    validate_event(event("order", kind="new", status="completed", promo_code="X"))


@pytest.mark.parametrize(
    ("changes", "code", "fragment"),
    [
        ({"type": "refund"}, "unknown_type", "type must be one of"),
        ({"event_id": None}, "missing_field", "order.event_id is required"),
        ({"event_id": "has space"}, "bad_value", "event_id does not match"),
        ({"event_id": "ctl\x07"}, "bad_value", "event_id does not match"),
        ({"event_time": 1.5e12}, "bad_value", "event_time must be an integer"),
        ({"event_time": -1}, "bad_value", "event_time must be >= 0"),
        ({"event_time": 5_000_000_000_000}, "bad_value", "event_time must be <="),
        ({"unit": "hpg"}, "bad_unit", "unit does not match"),
        ({"unit": 7}, "bad_unit", "unit must be a string"),
        ({"service": "landline"}, "bad_value", "service must be one of"),
        ({"channel": ["web"]}, "bad_value", "channel must be one of"),
        ({"status": "done"}, "bad_value", "status must be one of"),
        ({"lead_time_hours": float("nan")}, "bad_value", "must be a finite number"),
        ({"lead_time_hours": float("inf")}, "bad_value", "must be a finite number"),
        ({"lead_time_hours": -2}, "bad_value", "lead_time_hours must be >= 0"),
        ({"lead_time_hours": "3"}, "bad_value", "must be a finite number"),
        ({"lead_time_hours": True}, "bad_value", "must be a finite number"),
    ],
)
def test_invalid_fields_are_refused_with_a_reason(
    changes: dict[str, Any], code: str, fragment: str
) -> None:
    e = event("order", kind="new", status="completed", lead_time_hours=3.5)
    e.update(changes)
    with pytest.raises(InvalidEvent) as raised:
        validate_event(e)
    assert raised.value.code == code
    assert fragment in raised.value.text


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"csat": 6}, "csat must be <= 5"),
        ({"nps": 11}, "nps must be <= 10"),
        ({"ces": 0}, "ces must be >= 1"),
        ({"csat": 4.5}, "csat must be an integer"),
        ({"touchpoint": "Install!"}, "touchpoint does not match"),
    ],
)
def test_survey_answers_out_of_range_are_refused(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidEvent, match=fragment):
        validate_event(event("survey", **{"touchpoint": "care", **fields}))


def test_non_objects_are_refused() -> None:
    for value in ([], "x", 3, None):
        with pytest.raises(InvalidEvent) as raised:
            validate_event(value)
        assert raised.value.code == "not_an_object"


def test_every_event_type_has_the_common_fields_and_a_doc_on_each() -> None:
    for etype, fields in EVENT_FIELDS.items():
        assert {"event_id", "event_time", "unit"} <= set(fields)
        if etype != "programme_update":  # touchpoint events and the subscriber base
            assert {"service", "customer_ref", "channel"} <= set(fields)
        assert all(spec.doc for spec in fields.values())


@settings(max_examples=600, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=300),
        st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x80), max_size=300),
        st.sampled_from(["HPG", "HPG\n", "install", "a" * 128, "a" * 129, "b" * 257, " ", ""]),
    )
)
def test_the_string_field_tests_accept_exactly_what_their_pattern_fully_matches(
    text: str,
) -> None:
    patterns = {s.pattern for fields in EVENT_FIELDS.values() for s in fields.values()}
    for pattern in patterns - {None}:
        assert pattern is not None
        test = string_test(pattern)
        expected = pattern.fullmatch(text) is not None
        assert test(text) is expected
        assert test(text) is expected  # and again, once it may be remembered
