"""The live demo's view: the day's units ranked as the standings topic says."""

from __future__ import annotations

from rich.console import Console

from streams.tools.demo import Board, units_table


def standings(start_ms: int, *ranked: tuple[str, float, int, int | None]) -> dict[str, object]:
    return {
        "level": "standings",
        "window": "day",
        "window_start_ms": start_ms,
        "service": None,
        "touchpoint": None,
        "units": [
            {"unit": u, "score": s, "class": "good", "rank": r, "rank_prev": p, "delta_prev": None}
            for u, s, r, p in ranked
        ],
    }


def rendered(board: Board) -> list[str]:
    console = Console(record=True, width=200)
    console.print(units_table(board, {}))
    return [line for line in console.export_text().splitlines() if line.startswith("│")]


def test_the_units_are_listed_by_their_rank_with_their_move_since_the_day_before() -> None:
    board = Board(units=("HPG", "QBH", "HNI"))
    board.add_standings(standings(1, ("HPG", 4.0, 1, None)))
    # the next day: QBH first (it was 3rd), HPG 2nd (was 1st); HNI unranked
    board.add_standings(standings(2, ("QBH", 4.4, 1, 3), ("HPG", 4.1, 2, 1)))
    board.add_standings({**standings(1, ("HNI", 5.0, 1, None))})  # an older day: ignored
    rows = rendered(board)
    assert [row.split("│")[2].strip() for row in rows] == ["QBH", "HPG", "HNI"]
    assert [row.split("│")[1].strip() for row in rows] == ["1 ↑2", "2 ↓1", "–"]


def test_the_programmes_panel_shows_value_target_attainment_and_effect() -> None:
    from streams.tools.demo import programmes_panel

    board = Board(units=("HPG",))
    record = {
        "window": "day",
        "window_start_ms": 5,
        "programme": "install_recovery_hpg",
        "unit": "HPG",
        "indicator": "technicians_trained_share",
        "value": 0.3,
        "target": 0.5,
        "attainment": 0.6,
        "on_track": False,
        "effect": [{"kpi": "install_on_time", "unit_delta": 1.25}],
    }
    board.add_programme(record)
    board.add_programme({**record, "window_start_ms": 4, "value": 0.9})  # an older day
    console = Console(record=True, width=200)
    console.print(programmes_panel(board))
    text = console.export_text()
    assert "technicians_trained_share" in text and "0.3 / 0.5" in text and "60%" in text
    assert "install_on_time +1.25" in text
