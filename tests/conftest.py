from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.core.catalog import Catalog, load_catalog
from streams.core.plan import ScoringPlan

FIXTURES = Path(__file__).parent / "fixtures"
# Every broker the tests start is the embedded one, reached through a URL: its work-arounds
# are on for them (and for the workers they start, which inherit the environment). The tests
# of the default itself clear this.
os.environ.setdefault("CEMI_BROKER_WORKAROUNDS", "true")


@pytest.fixture(scope="session")
def small_catalog() -> Catalog:
    return load_catalog(FIXTURES / "small_catalog.yaml")


@pytest.fixture(scope="session")
def small_plan(small_catalog: Catalog) -> ScoringPlan:
    return ScoringPlan(small_catalog)


@pytest.fixture(scope="session")
def default_plan() -> ScoringPlan:
    return ScoringPlan(load_catalog())
