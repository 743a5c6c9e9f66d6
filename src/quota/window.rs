//! Quota windows: fixed windows aligned to the UTC clock (second … day) and calendar months
//! (chrono's calendar), with the labels counter keys and reports use.

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime, SecondsFormat, Timelike, Utc};

use crate::config::Period;

/// One window of a period: `[start, end)` in unix seconds, and its label in counter keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub period: Period,
    pub start: u64,
    pub end: u64,
}

impl Window {
    /// The window of `period` that contains unix second `now`.
    pub fn of(period: Period, now: u64) -> Self {
        let fixed = |len: u64| {
            let start = now - now % len;
            Window {
                period,
                start,
                end: start + len,
            }
        };
        match period {
            Period::Second => fixed(1),
            Period::Minute => fixed(60),
            Period::Hour => fixed(3_600),
            Period::Day => fixed(86_400),
            Period::Month => {
                let today = utc(now).date_naive();
                let first = today.with_day(1).unwrap_or(today);
                Self::calendar_month(first).unwrap_or_else(|| fixed(86_400))
            }
        }
    }

    /// The calendar month `year-month` (for billing reports).
    pub fn month(year: i32, month: u32) -> Option<Self> {
        if !(1970..=9999).contains(&year) {
            return None;
        }
        Self::calendar_month(NaiveDate::from_ymd_opt(year, month, 1)?)
    }

    /// The month a billing query names: exactly `YYYY-MM`, 1970-01 … 9999-12.
    pub fn parse_month(text: &str) -> Option<Self> {
        if text.len() != 7 {
            return None;
        }
        let first = NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").ok()?;
        let window = Self::month(first.year(), first.month())?;
        // chrono also reads `+197-01`-like spellings; only the canonical one is a month here.
        (window.label() == text).then_some(window)
    }

    /// The month that starts on `first` (day 1, midnight UTC).
    fn calendar_month(first: NaiveDate) -> Option<Self> {
        let next = first.checked_add_months(Months::new(1))?;
        let midnight =
            |d: NaiveDate| u64::try_from(d.and_time(NaiveTime::MIN).and_utc().timestamp()).ok();
        Some(Window {
            period: Period::Month,
            start: midnight(first)?,
            end: midnight(next)?,
        })
    }

    pub fn length(&self) -> u64 {
        self.end - self.start
    }

    /// Label used in counter keys: `2026-11` (month), `2026-11-28` (day), `2026-11-28T13`
    /// (hour), `2026-11-28T13:05` (minute), `2026-11-28T13:05:09` (second). Readable in
    /// `redis-cli`, and a month key is what the billing report reads.
    pub fn label(&self) -> String {
        let mut s = String::with_capacity(19);
        self.write_label(&mut s);
        s
    }

    /// Appends [`Window::label`] to `out` (builds a counter key with one allocation).
    /// Digits are written directly (no `fmt`): this runs for every counted request.
    pub fn write_label(&self, out: &mut String) {
        let t = utc(self.start);
        let year = t.year();
        if (0..10_000).contains(&year) {
            push_digits(out, year.unsigned_abs(), 4);
        } else {
            out.push_str(itoa::Buffer::new().format(year));
        }
        let rest = [
            ('-', t.month()),
            ('-', t.day()),
            ('T', t.hour()),
            (':', t.minute()),
            (':', t.second()),
        ];
        let fields = match self.period {
            Period::Month => 1,
            Period::Day => 2,
            Period::Hour => 3,
            Period::Minute => 4,
            Period::Second => 5,
        };
        for (sep, v) in &rest[..fields] {
            out.push(*sep);
            push_digits(out, *v, 2);
        }
    }

    /// When the counter of this window may be dropped. Month counters outlive their window by
    /// about 13 months so past months can still be billed; the others go at the window's end.
    pub fn expire_at(&self) -> u64 {
        match self.period {
            Period::Month => self.end + 400 * 86_400,
            _ => self.end + 1,
        }
    }
}

/// `v` as exactly `width` decimal digits (zero-padded; `v` < 10^width).
fn push_digits(out: &mut String, v: u32, width: u32) {
    for i in (0..width).rev() {
        out.push(char::from(b'0' + (v / 10u32.pow(i) % 10) as u8));
    }
}

/// The UTC time of a unix second; seconds past chrono's range (year 262143) clamp to its end.
fn utc(unix: u64) -> DateTime<Utc> {
    i64::try_from(unix)
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// RFC 3339 UTC time of a unix second (`2026-11-28T13:05:09Z`).
pub fn rfc3339(unix: u64) -> String {
    utc(unix).to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-28T13:05:09Z
    const NOW: u64 = 1_795_871_109;

    #[test]
    fn labels_and_bounds() {
        assert_eq!(rfc3339(NOW), "2026-11-28T13:05:09Z");
        let m = Window::of(Period::Month, NOW);
        assert_eq!(m.label(), "2026-11");
        assert_eq!(rfc3339(m.start), "2026-11-01T00:00:00Z");
        assert_eq!(rfc3339(m.end), "2026-12-01T00:00:00Z");
        assert_eq!(m.length(), 30 * 86_400);
        assert_eq!(Window::of(Period::Day, NOW).label(), "2026-11-28");
        assert_eq!(Window::of(Period::Hour, NOW).label(), "2026-11-28T13");
        assert_eq!(Window::of(Period::Minute, NOW).label(), "2026-11-28T13:05");
        let s = Window::of(Period::Second, NOW);
        assert_eq!(s.label(), "2026-11-28T13:05:09");
        assert_eq!(s.end, NOW + 1);
    }

    #[test]
    fn december_rolls_into_next_year_and_february_is_short() {
        let dec = Window::month(2026, 12).unwrap();
        assert_eq!(rfc3339(dec.end), "2027-01-01T00:00:00Z");
        assert_eq!(Window::month(2028, 2).unwrap().length(), 29 * 86_400);
        assert_eq!(Window::month(2027, 2).unwrap().length(), 28 * 86_400);
        assert!(Window::month(2026, 13).is_none());
    }

    #[test]
    fn billing_months_parse_only_as_yyyy_mm() {
        assert_eq!(
            Window::parse_month("2026-11"),
            Some(Window::of(Period::Month, NOW))
        );
        assert_eq!(Window::parse_month("1970-01").map(|w| w.start), Some(0));
        for bad in [
            "2026-13",
            "2026-00",
            "2026-1",
            "26-11",
            "2026-011",
            "2026/11",
            "+202-11",
            "1969-12",
            "2026-1a",
            "",
            "10000-01",
            "2026-11-01",
            " 2026-11",
        ] {
            assert_eq!(Window::parse_month(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn day_labels_across_leap_days() {
        for (unix, want) in [
            (951_782_400, "2000-02-29"),
            (951_868_800, "2000-03-01"),
            (4_107_456_000, "2100-02-28"),
            (4_107_542_400, "2100-03-01"),
        ] {
            assert_eq!(Window::of(Period::Day, unix).label(), want, "{unix}");
        }
    }

    proptest::proptest! {
        /// For any second up to year 9999, the month window is the calendar month chrono puts
        /// the second in: it starts at midnight on the 1st, ends where the next month starts,
        /// carries chrono's `%Y-%m` label, and the billing query of that label finds it again.
        #[test]
        fn month_windows_match_chrono(now in 0u64..253_402_300_800) {
            let w = Window::of(Period::Month, now);
            let t = DateTime::from_timestamp(now as i64, 0).unwrap();
            let first = NaiveDate::from_ymd_opt(t.year(), t.month(), 1).unwrap();
            let start = first.and_hms_opt(0, 0, 0).unwrap().and_utc();
            let end = start.checked_add_months(Months::new(1)).unwrap();
            proptest::prop_assert_eq!(w.start, start.timestamp() as u64);
            proptest::prop_assert_eq!(w.end, end.timestamp() as u64);
            proptest::prop_assert!(w.start <= now && now < w.end);
            proptest::prop_assert!((28 * 86_400..=31 * 86_400).contains(&w.length()));
            proptest::prop_assert_eq!(w.label(), t.format("%Y-%m").to_string());
            proptest::prop_assert_eq!(rfc3339(now), t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            proptest::prop_assert_eq!(Window::parse_month(&w.label()), Some(w));
        }
    }
}
