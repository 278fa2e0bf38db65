"""Standings: competition ranking of the units' scores, with the previous window's ranks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.core.plan import ScoringPlan
from streams.core.standings import ranking, scores_by_key, standings_keys, standings_records


def test_equal_scores_share_a_rank_and_the_next_rank_skips() -> None:
    # HNI 4.2; HPG and QBH both 3.9 (full precision); DNG 3.1; CTO has no score
    scores = {"HPG": 3.9, "QBH": 3.9, "HNI": 4.2, "DNG": 3.1, "CTO": None}
    # the previous month: QBH 4.0 first, HNI 3.8, HPG 3.5; DNG unranked
    previous = {"QBH": 4.0, "HNI": 3.8, "HPG": 3.5, "DNG": None}
    ranked = ranking(scores, previous)
    assert [(e["unit"], e["rank"], e["rank_prev"]) for e in ranked] == [
        ("HNI", 1, 2),
        ("HPG", 2, 3),  # ties listed by unit code
        ("QBH", 2, 1),
        ("DNG", 4, None),  # after two 2nd places: 4th
    ]
    hni, hpg, _, dng = ranked
    assert hni["delta_prev"] == 4.2 - 3.8 and hpg["delta_prev"] == 3.9 - 3.5
    assert dng["delta_prev"] is None
    assert [e["class"] for e in ranked] == ["good", "good", "good", "fair"]


def test_scores_that_differ_past_the_rounding_rank_apart() -> None:
    ranked = ranking({"A1": 3.9000000001, "B1": 3.9})
    assert [(e["unit"], e["rank"]) for e in ranked] == [("A1", 1), ("B1", 2)]


@given(
    st.dictionaries(
        st.from_regex(r"[A-Z][A-Z0-9]{1,4}", fullmatch=True),
        st.one_of(st.none(), st.sampled_from([1.0, 2.5, 3.0, 3.75, 5.0]), st.floats(1, 5)),
        max_size=12,
    )
)
def test_standings_are_the_unit_records_sorted_with_competition_ranks(
    scores: dict[str, float | None],
) -> None:
    ranked = ranking(scores)
    scored = sorted(((-s, u) for u, s in scores.items() if s is not None))
    assert [(e["unit"], e["score"]) for e in ranked] == [(u, -s) for s, u in scored]
    for entry in ranked:  # rank = 1 + the number of units strictly better
        better = sum(1 for s in scores.values() if s is not None and s > entry["score"])
        assert entry["rank"] == 1 + better


def test_one_standings_record_per_key_from_the_unit_service_and_touchpoint_records(
    small_plan: ScoringPlan,
) -> None:
    rows = [
        {"level": "unit", "unit": "HPG", "service": None, "touchpoint": None, "score": 3.0},
        {"level": "unit", "unit": "QBH", "service": None, "touchpoint": None, "score": 4.0},
        {"level": "service", "unit": "HPG", "service": "mobile", "touchpoint": None, "score": 2},
        {
            "level": "touchpoint",
            "unit": "QBH",
            "service": "mobile",
            "touchpoint": "install",
            "score": 5.0,
        },
        {
            "level": "kpi",
            "unit": "QBH",
            "service": "mobile",
            "touchpoint": "install",
            "score": 1.0,
        },
    ]
    records = standings_records(
        small_plan, "month", "2026-11-01T00:00:00+07:00", scores_by_key(rows)
    )
    assert [(r["service"], r["touchpoint"]) for r in records] == list(standings_keys(small_plan))
    by_key = {(r["service"], r["touchpoint"]): r for r in records}
    assert [e["unit"] for e in by_key[(None, None)]["units"]] == ["QBH", "HPG"]
    assert [e["unit"] for e in by_key[("mobile", None)]["units"]] == ["HPG"]
    assert [e["unit"] for e in by_key[("mobile", "install")]["units"]] == ["QBH"]
    assert all(r["level"] == "standings" and r["catalog_version"] for r in records)
