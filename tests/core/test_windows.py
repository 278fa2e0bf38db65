from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from streams.core.windows import LocalCalendar, slice_start_ms

CAL = LocalCalendar("Asia/Ho_Chi_Minh")


def utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_event_at_1730z_on_oct_31_is_in_the_november_local_month() -> None:
    start = CAL.window_start("month", utc_ms("2026-10-31T17:30:00"))
    assert CAL.isoformat(start) == "2026-11-01T00:00:00+07:00"
    assert CAL.isoformat(CAL.window_start("day", utc_ms("2026-10-31T17:30:00"))) == (
        "2026-11-01T00:00:00+07:00"
    )
    assert CAL.isoformat(CAL.window_start("month", utc_ms("2026-10-31T16:59:59"))) == (
        "2026-10-01T00:00:00+07:00"
    )


def test_window_end_is_the_next_local_midnight_or_first_of_month() -> None:
    nov = utc_ms("2026-10-31T17:00:00")
    assert CAL.isoformat(CAL.window_end("month", nov)) == "2026-12-01T00:00:00+07:00"
    assert CAL.isoformat(CAL.window_end("day", nov)) == "2026-11-02T00:00:00+07:00"
    dec = CAL.window_end("month", nov)
    assert CAL.isoformat(CAL.window_end("month", dec)) == "2027-01-01T00:00:00+07:00"
    assert CAL.previous_start("month", nov) == CAL.window_start("month", nov - 1)


def test_days_follow_daylight_saving_where_the_zone_has_it() -> None:
    paris = LocalCalendar("Europe/Paris")
    start = paris.window_start("day", utc_ms("2026-03-29T12:00:00"))  # 23-hour day
    assert paris.window_end("day", start) - start == 23 * 3_600_000


@given(st.integers(min_value=0, max_value=4_102_444_799_999))
def test_every_time_falls_inside_its_day_and_month(ms: int) -> None:
    day, month = CAL.starts(ms)
    assert day <= ms < CAL.window_end("day", day)
    assert month <= day and CAL.window_end("day", day) <= CAL.window_end("month", month)


@given(st.integers(min_value=0, max_value=2**42), st.sampled_from([1_000, 60_000, 300_000]))
def test_slices_are_aligned_and_contain_the_time(ms: int, slice_ms: int) -> None:
    start = slice_start_ms(ms, slice_ms)
    assert start % slice_ms == 0 and start <= ms < start + slice_ms


def test_2026_12_31_1730z_is_in_the_first_quarter_and_the_year_2027_locally() -> None:
    moment = utc_ms("2026-12-31T17:30:00")  # 00:30 on 1 January 2027 in UTC+7
    for kind in ("day", "month", "quarter", "year"):
        assert CAL.isoformat(CAL.window_start(kind, moment)) == "2027-01-01T00:00:00+07:00"
    before = utc_ms("2026-12-31T16:59:59")  # 23:59:59 on 31 December 2026 locally
    assert CAL.isoformat(CAL.window_start("quarter", before)) == "2026-10-01T00:00:00+07:00"
    assert CAL.isoformat(CAL.window_start("year", before)) == "2026-01-01T00:00:00+07:00"


def test_quarters_start_in_january_april_july_and_october_and_end_three_months_on() -> None:
    starts = {CAL.isoformat(CAL.window_start("quarter", utc_ms(f"2026-{m:02d}-15T05:00:00")))
              for m in range(1, 13)}  # fmt: skip
    assert starts == {f"2026-{m}-01T00:00:00+07:00" for m in ("01", "04", "07", "10")}
    q3 = CAL.window_start("quarter", utc_ms("2026-08-15T05:00:00"))
    assert CAL.isoformat(CAL.window_end("quarter", q3)) == "2026-10-01T00:00:00+07:00"
    assert CAL.isoformat(CAL.previous_start("quarter", q3)) == "2026-04-01T00:00:00+07:00"
    assert [CAL.isoformat(m)[:7] for m in CAL.months_of("quarter", q3)] == [
        "2026-07",
        "2026-08",
        "2026-09",
    ]
    year = CAL.window_start("year", q3)
    assert len(CAL.months_of("year", year)) == 12
    assert CAL.isoformat(CAL.window_end("year", year)) == "2027-01-01T00:00:00+07:00"


def test_quarter_and_year_records_are_stamped_with_their_newest_month() -> None:
    q4 = CAL.window_start("quarter", utc_ms("2026-11-15T05:00:00"))
    watermark = utc_ms("2026-11-20T05:00:00")
    assert CAL.isoformat(CAL.stamp("quarter", q4, watermark)) == "2026-11-01T00:00:00+07:00"
    year = CAL.window_start("year", q4)
    assert CAL.isoformat(CAL.stamp("year", year, utc_ms("2027-02-01T05:00:00"))) == (
        "2026-12-01T00:00:00+07:00"  # past its end: its last month
    )
    day = CAL.window_start("day", watermark)
    assert CAL.stamp("day", day, watermark) == day  # days and months: their own start
