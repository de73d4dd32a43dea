//! Accounting periods of the fiscal calendar (docs/configuration.md, "Fiscal calendar"): which
//! period a business day belongs to, and the first and last day of that period. Pure date
//! arithmetic; it never looks at a clock.
//!
//! Two kinds of calendar:
//! - `months`: each calendar month is a period, `2026-11`.
//! - `4-4-5`, `4-5-4`, `5-4-4`: 52-week years of four 13-week quarters whose three periods have
//!   that many weeks, `FY2026-P03`. A fiscal year starts on the weekday of `year_start` nearest
//!   to the anniversary of `year_start` (the NRF rule: `2026-02-01`, a Sunday, makes every year
//!   start on the Sunday nearest February 1 and end on the Saturday nearest January 31). When
//!   that leaves 53 weeks until the next start, the 53rd week belongs to the year's last period.

use chrono::{Datelike, Duration, Months, NaiveDate};

/// What the topology needs of `[fiscal]`: the calendar, and how long (event time) after its
/// end a period still takes adjustments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FiscalSettings {
    pub calendar: FiscalCalendar,
    pub close_grace: Duration,
}

/// A fiscal calendar, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FiscalCalendar {
    /// Calendar months.
    #[default]
    Months,
    /// Week-based periods: `pattern` weeks per period of each quarter, years anchored on
    /// `year_start` (a first day of a fiscal year).
    Weeks { pattern: [u8; 3], year_start: NaiveDate },
}

/// One accounting period: its id (`2026-11`, `FY2026-P03`) and its first and last business
/// day. Periods of one calendar order by their first day.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period {
    pub first: NaiveDate,
    pub last: NaiveDate,
    pub id: String,
}

/// Why a configured calendar cannot be used; the processor names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("{0:?} is not a calendar; use \"months\", \"4-4-5\", \"4-5-4\" or \"5-4-4\"")]
    Unknown(String),
    #[error("the {0} calendar needs year_start, the first day of one of its fiscal years, e.g. \"2026-02-01\"")]
    MissingYearStart(String),
    #[error("{0:?} is not a date like \"2026-02-01\"")]
    BadYearStart(String),
    #[error("calendar months need no year_start; remove it, or choose calendar \"4-4-5\", \"4-5-4\" or \"5-4-4\"")]
    YearStartWithMonths,
}

impl FiscalCalendar {
    /// The calendar that `fiscal.calendar` and `fiscal.year_start` name.
    pub fn parse(calendar: &str, year_start: Option<&str>) -> Result<FiscalCalendar, CalendarError> {
        let pattern = match calendar {
            "months" => {
                return match year_start {
                    None => Ok(FiscalCalendar::Months),
                    Some(_) => Err(CalendarError::YearStartWithMonths),
                }
            }
            "4-4-5" => [4, 4, 5],
            "4-5-4" => [4, 5, 4],
            "5-4-4" => [5, 4, 4],
            other => return Err(CalendarError::Unknown(other.to_string())),
        };
        let text = year_start.ok_or_else(|| CalendarError::MissingYearStart(calendar.to_string()))?;
        let year_start = NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .filter(|day| (1..=9998).contains(&day.year()))
            .ok_or_else(|| CalendarError::BadYearStart(text.to_string()))?;
        Ok(FiscalCalendar::Weeks { pattern, year_start })
    }

    /// The period `day` belongs to. A day so far from today that its fiscal year cannot be
    /// computed (beyond chrono's date range) falls back to its calendar month.
    pub fn period_of(&self, day: NaiveDate) -> Period {
        match self {
            FiscalCalendar::Months => month_of(day),
            FiscalCalendar::Weeks { pattern, year_start } => {
                week_period_of(day, *pattern, *year_start).unwrap_or_else(|| month_of(day))
            }
        }
    }
}

fn month_of(day: NaiveDate) -> Period {
    let first = day.with_day(1).unwrap_or(day);
    let last = first.checked_add_months(Months::new(1)).and_then(|next| next.pred_opt()).unwrap_or(day);
    Period { first, last, id: format!("{:04}-{:02}", first.year(), first.month()) }
}

/// The first day of fiscal year `year`: the weekday of `anchor` nearest the anniversary of
/// `anchor` in `year` (February 29 counts as February 28 in other years).
fn year_start_in(year: i32, anchor: NaiveDate) -> Option<NaiveDate> {
    let anniversary =
        anchor.with_year(year).or_else(|| NaiveDate::from_ymd_opt(year, anchor.month(), anchor.day().min(28)))?;
    let wanted = i64::from(anchor.weekday().num_days_from_monday());
    let has = i64::from(anniversary.weekday().num_days_from_monday());
    let ahead = (wanted - has).rem_euclid(7);
    let offset = if ahead <= 3 { ahead } else { ahead - 7 };
    anniversary.checked_add_signed(Duration::days(offset))
}

fn week_period_of(day: NaiveDate, pattern: [u8; 3], anchor: NaiveDate) -> Option<Period> {
    let mut year = day.year();
    if day < year_start_in(year, anchor)? {
        year -= 1;
    } else if day >= year_start_in(year + 1, anchor)? {
        year += 1;
    }
    let start = year_start_in(year, anchor)?;
    let next = year_start_in(year + 1, anchor)?;
    let weeks_in_year = (next - start).num_days() / 7;
    let week = (day - start).num_days() / 7;
    let mut first_week = 0;
    for period in 0..12 {
        let mut weeks = i64::from(pattern[period % 3]);
        if period == 11 {
            // The 53rd week of a long year.
            weeks += weeks_in_year - 52;
        }
        if week < first_week + weeks {
            let first = start.checked_add_signed(Duration::weeks(first_week))?;
            let last = first.checked_add_signed(Duration::days(7 * weeks - 1))?;
            return Some(Period { first, last, id: format!("FY{year:04}-P{:02}", period + 1) });
        }
        first_week += weeks;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn nrf(pattern: &str) -> FiscalCalendar {
        FiscalCalendar::parse(pattern, Some("2026-02-01")).unwrap()
    }

    // Proves calendar months run from the 1st to the month's last day, leap February included.
    #[test]
    fn months_are_calendar_months() {
        let months = FiscalCalendar::Months;
        let p = months.period_of(d("2026-11-30"));
        assert_eq!((p.id.as_str(), p.first, p.last), ("2026-11", d("2026-11-01"), d("2026-11-30")));
        assert_eq!(months.period_of(d("2026-12-01")).id, "2026-12");
        assert_eq!(months.period_of(d("2028-02-29")).last, d("2028-02-29"));
        assert_eq!(months.period_of(d("2027-02-01")).last, d("2027-02-28"));
        assert_eq!(months.period_of(d("2026-12-31")).last, d("2026-12-31"));
    }

    // Proves the 4-5-4 periods of fiscal 2026 (the NRF calendar: Feb 1, 2026 to Jan 30, 2027),
    // on both sides of every boundary.
    #[test]
    fn four_five_four_periods_and_their_boundaries() {
        let cal = nrf("4-5-4");
        let expected_weeks = [4, 5, 4, 4, 5, 4, 4, 5, 4, 4, 5, 4];
        let mut first = d("2026-02-01");
        for (i, weeks) in expected_weeks.iter().enumerate() {
            let last = first + Duration::days(7 * weeks - 1);
            let id = format!("FY2026-P{:02}", i + 1);
            for day in [first, last] {
                let p = cal.period_of(day);
                assert_eq!((p.id.as_str(), p.first, p.last), (id.as_str(), first, last), "{day}");
            }
            first = last + Duration::days(1);
        }
        assert_eq!(first, d("2027-01-31"), "fiscal 2027 starts on the Sunday nearest February 1");
        assert_eq!(cal.period_of(d("2027-01-31")).id, "FY2027-P01");
        assert_eq!(cal.period_of(d("2026-01-31")).id, "FY2025-P12");
    }

    // Proves the 4-4-5 and 5-4-4 patterns put their weeks where their names say.
    #[test]
    fn four_four_five_and_five_four_four() {
        let p = nrf("4-4-5").period_of(d("2026-03-29"));
        assert_eq!((p.id.as_str(), p.first, p.last), ("FY2026-P03", d("2026-03-29"), d("2026-05-02")));
        let p = nrf("5-4-4").period_of(d("2026-03-07"));
        assert_eq!((p.id.as_str(), p.first, p.last), ("FY2026-P01", d("2026-02-01"), d("2026-03-07")));
        assert_eq!(nrf("5-4-4").period_of(d("2026-03-08")).id, "FY2026-P02");
    }

    // Proves a year with 53 weeks (NRF fiscal 2023: Jan 29, 2023 to Feb 3, 2024) gives its
    // 53rd week to the last period, and the next year starts right after it.
    #[test]
    fn the_fifty_third_week_goes_to_the_last_period() {
        let cal = nrf("4-5-4");
        let p = cal.period_of(d("2024-02-03"));
        assert_eq!((p.id.as_str(), p.first, p.last), ("FY2023-P12", d("2023-12-31"), d("2024-02-03")));
        assert_eq!(cal.period_of(d("2023-01-29")).id, "FY2023-P01");
        assert_eq!(cal.period_of(d("2023-01-28")).id, "FY2022-P12");
        let next = cal.period_of(d("2024-02-04"));
        assert_eq!((next.id.as_str(), next.first), ("FY2024-P01", d("2024-02-04")));
    }

    // Proves every day of many years lies in exactly one period, periods tile without gaps and
    // each has 4 or 5 weeks (6 for a long year's last).
    #[test]
    fn periods_tile_the_days() {
        let cal = FiscalCalendar::parse("4-4-5", Some("2019-01-06")).unwrap();
        let mut day = d("2015-01-01");
        let mut current = cal.period_of(day);
        while day < d("2035-12-31") {
            let p = cal.period_of(day);
            assert!(p.first <= day && day <= p.last, "{day} outside {p:?}");
            if p != current {
                assert_eq!(p.first, current.last + Duration::days(1), "gap or overlap before {p:?}");
                current = p.clone();
            }
            let days = (p.last - p.first).num_days() + 1;
            assert!([28, 35, 42].contains(&days), "{p:?}");
            day += Duration::days(1);
        }
    }

    // Proves bad settings are refused with a sentence that says what to do.
    #[test]
    fn bad_calendars_are_refused() {
        assert_eq!(FiscalCalendar::parse("months", None), Ok(FiscalCalendar::Months));
        assert_eq!(FiscalCalendar::parse("4-4-4", None), Err(CalendarError::Unknown("4-4-4".into())));
        assert_eq!(FiscalCalendar::parse("4-5-4", None), Err(CalendarError::MissingYearStart("4-5-4".into())));
        assert_eq!(FiscalCalendar::parse("5-4-4", Some("Feb 1")), Err(CalendarError::BadYearStart("Feb 1".into())));
        assert_eq!(FiscalCalendar::parse("months", Some("2026-02-01")), Err(CalendarError::YearStartWithMonths));
        let message = CalendarError::MissingYearStart("4-5-4".into()).to_string();
        assert!(message.contains("year_start") && message.contains("2026-02-01"), "{message}");
    }

    // Proves dates at chrono's limits do not panic.
    #[test]
    fn extreme_days_do_not_panic() {
        for cal in [FiscalCalendar::Months, nrf("4-5-4")] {
            for day in [NaiveDate::MIN, NaiveDate::MAX, d("0001-01-01"), d("9999-12-31")] {
                let p = cal.period_of(day);
                assert!(p.first <= day && day <= p.last, "{p:?}");
            }
        }
    }
}
