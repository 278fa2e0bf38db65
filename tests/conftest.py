from __future__ import annotations

from pathlib import Path

import pytest

from streams.core.catalog import Catalog, load_catalog
from streams.core.plan import ScoringPlan

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def small_catalog() -> Catalog:
    return load_catalog(FIXTURES / "small_catalog.yaml")


@pytest.fixture(scope="session")
def small_plan(small_catalog: Catalog) -> ScoringPlan:
    return ScoringPlan(small_catalog)


@pytest.fixture(scope="session")
def default_plan() -> ScoringPlan:
    return ScoringPlan(load_catalog())
