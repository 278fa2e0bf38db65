"""The API's pydantic models: what the routes accept, and the document generated from them."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import pytest
from multidict import MultiDict
from pydantic import BaseModel

from streams.http.models import (
    Alert,
    Programme,
    ProgrammeUpdateBody,
    Score,
    ScoresQuery,
    Standings,
)
from streams.http.openapi import openapi_document
from streams.http.params import BadRequest, body_as, query
from streams.settings import load_settings


def avro_fields(*names: str) -> set[str]:
    out = files("streams") / "schemas" / "out"
    return {f["name"] for n in names for f in json.loads((out / f"{n}.avsc").read_text())["fields"]}


def documented(model: type[BaseModel]) -> set[str]:
    return set(model.model_json_schema(by_alias=True)["properties"])


@pytest.mark.parametrize(
    ("model", "schemas"),
    [
        (Score, ("kpi_window", "cemi_score")),
        (Alert, ("alert",)),
        (Standings, ("standings",)),
        (Programme, ("programme_status",)),
    ],
)
def test_the_documented_records_have_exactly_the_avro_schemas_fields(
    model: type[BaseModel], schemas: tuple[str, ...]
) -> None:
    assert documented(model) == avro_fields(*schemas)


class Request:
    def __init__(self, *pairs: tuple[str, str]) -> None:
        self.query = MultiDict(pairs)


@pytest.mark.parametrize(
    ("pairs", "named"),
    [
        ((("colour", "red"),), "unknown parameter 'colour'"),
        ((("unit", "HPG"), ("unit", "HNI")), "'unit' given more than once"),
        ((("limit", "+5"),), "invalid limit"),
        ((("limit", "1e3"),), "invalid limit"),
        ((("limit", "0"),), "invalid limit"),
        ((("unit", "HPG\n"),), "invalid unit"),
        ((("level", "planet"),), "invalid level"),
    ],
)
def test_a_bad_query_is_refused_naming_the_parameter(
    pairs: tuple[tuple[str, str], ...], named: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        query(Request(*pairs), ScoresQuery)
    assert refused.value.status == 400 and named in refused.value.message


def test_a_query_gives_its_filters_and_page_with_defaults() -> None:
    params = query(Request(("unit", "HPG"), ("limit", "10")), ScoresQuery)
    assert params.filters("limit", "offset") == {"unit": "HPG"}
    assert (params.limit, params.offset) == (10, 0)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"unit": "HPG", "indicator": "trained", "value": True}, "value"),
        ({"unit": "HPG", "indicator": "trained", "value": "0.5"}, "value"),
        ({"unit": "HPG", "indicator": "trained", "value": 0.5, "event_time": 1.5}, "event_time"),
        ({"unit": "HPG", "indicator": "trained", "value": 0.5, "colour": 1}, "colour"),
        ({"unit": "hpg", "indicator": "trained", "value": 0.5}, "unit"),
    ],
)
def test_a_bad_body_is_refused_naming_the_field(body: dict[str, Any], named: str) -> None:
    with pytest.raises(BadRequest) as refused:
        body_as(body, ProgrammeUpdateBody)
    assert refused.value.status == 400 and refused.value.message.startswith(named)


def test_a_whole_float_is_an_integer_event_time() -> None:
    body = {"unit": "HPG", "indicator": "trained", "value": 1, "event_time": 1.0}
    assert body_as(body, ProgrammeUpdateBody).event_time == 1


def test_the_document_refers_only_to_schemas_it_defines() -> None:
    document = openapi_document(load_settings())
    text = json.dumps(document)
    defined = set(document["components"]["schemas"])
    referred = {part.split('"')[0] for part in text.split("#/components/schemas/")[1:]}
    assert referred <= defined and {"Score", "Alert", "Standings", "Programme"} <= defined
