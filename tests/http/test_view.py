"""The API's view of the output topics: what it keeps of each record as it arrives."""

from __future__ import annotations

from streams.http.view import OutputView


def test_standings_keep_the_newest_window_per_key_read_from_the_key_alone() -> None:
    view = OutputView()
    # the values are not records: the view must not decode them on arrival
    view.add_standings(b"day/2026-11-02T00:00:00+07:00/-/-", b"second")
    view.add_standings(b"day/2026-11-01T00:00:00+07:00/-/-", b"older: ignored")
    view.add_standings(b"day/2026-11-02T00:00:00+07:00/mobile/-", b"mobile")
    view.add_standings(b"month/2026-11-01T00:00:00+07:00/mobile/install", b"install")
    view.add_standings(b"day/2026-11-02T00:00:00+07:00/-/-", b"second, republished")
    assert {slot: kept.raw for slot, kept in view.standings.items()} == {
        ("day", None, None): b"second, republished",
        ("day", "mobile", None): b"mobile",
        ("month", "mobile", "install"): b"install",
    }
    assert all(kept.record is None for kept in view.standings.values())


def test_a_standings_record_with_a_malformed_key_is_counted_and_left_out() -> None:
    view = OutputView()
    view.add_standings(b"day/2026-11-02", b"x")
    view.add_standings(None, b"x")
    assert view.standings == {} and view.undecodable == 2
